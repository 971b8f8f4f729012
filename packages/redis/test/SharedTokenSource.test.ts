import { AccessToken, TokenCache, TokenSource } from "@effect-token/core"
import { RedisClient, RedisTokenStore } from "@effect-token/redis"
import { RedisIoredis } from "@effect-token/redis/ioredis"
import { describe, expect, it } from "@effect/vitest"
import {
  Array as Arr,
  Chunk,
  DateTime,
  Duration,
  Effect,
  Logger,
  LogLevel,
  Option,
  Redacted,
  Ref,
  Stream,
  TestClock
} from "effect"
import { ring, storeAt } from "./support/fixtures.js"
import * as RedisServer from "./support/redisServer.js"

/** A source that counts its fetches and hands out unique tokens of `lifetime`. */
const countingSource = (lifetime: Duration.DurationInput, delay: Duration.DurationInput = "50 millis") =>
  Effect.gen(function*() {
    const count = yield* Ref.make(0)
    const source = TokenSource.make({
      key: "counting-source",
      fetch: Effect.gen(function*() {
        const n = yield* Ref.updateAndGet(count, (c) => c + 1)
        // As a token endpoint's: the lifetime counts from when the request went out.
        const now = yield* DateTime.now
        yield* Effect.sleep(delay)
        return AccessToken.make({
          value: Redacted.make(`token-${n}`),
          issuedAt: now,
          expiresAt: Option.some(DateTime.addDuration(now, Duration.decode(lifetime)))
        })
      })
    })
    return { source, count: Ref.get(count) }
  })

/** A client that counts the commands it sends. */
const counting = (client: RedisClient.RedisClient) => {
  let commands = 0
  const counted: RedisClient.RedisClient = {
    send: (command, ...args) => Effect.suspend(() => (commands++, client.send(command, ...args))),
    get: (key) => Effect.suspend(() => (commands++, client.get(key))),
    set: (key, value, options) => Effect.suspend(() => (commands++, client.set(key, value, options))),
    del: (...keys) => Effect.suspend(() => (commands++, client.del(...keys))),
    eval: (script, keys, args) => Effect.suspend(() => (commands++, client.eval(script, keys, args))),
    waitForReplicas: (key, replicas, timeout) =>
      Effect.suspend(() => (commands++, client.waitForReplicas(key, replicas, timeout))),
    publish: (channel, message) => Effect.suspend(() => (commands++, client.publish(channel, message))),
    subscribe: (channel) => client.subscribe(channel)
  }
  return { client: counted, commands: () => commands }
}

const skew = Duration.millis(100)

/** An instance: its own connection, store, shared source and cache. */
const instance = (
  url: string,
  source: TokenSource.TokenSource,
  keyRing: Parameters<typeof storeAt>[1]["keyRing"],
  refreshAhead?: number
) =>
  Effect.gen(function*() {
    const { client } = yield* storeAt(url, { keyRing })
    const observed = counting(client)
    const store = yield* RedisTokenStore.make({ keyRing, pollInterval: "50 millis" }).pipe(
      Effect.provideService(RedisClient.RedisClient, observed.client)
    )
    const shared = yield* RedisTokenStore.shared(source, { skew, refreshAhead }).pipe(
      Effect.provideService(RedisTokenStore.RedisTokenStore, store)
    )
    const cache = yield* TokenCache.make(shared, { skew, refreshAhead })
    return { cache, shared, store, commands: observed.commands }
  })

describe("shared source with a TokenCache in front, in one process", () => {
  it.scopedLive("the hot path stays local: no Redis command while the local token is valid", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.single
      const { count, source } = yield* countingSource("1 minute")
      const a = yield* instance(server.url, source, yield* ring("k1"))
      yield* a.cache.get
      const afterFirst = a.commands()
      expect(afterFirst).toBeGreaterThan(0)
      yield* Effect.forEach(Arr.range(1, 10_000), () => a.cache.get, { discard: true })
      expect(a.commands()).toBe(afterFirst)
      expect(yield* count).toBe(1)
    }))

  it.scopedLive(
    "refresh ahead under load: one instance refreshes, the others keep serving; one fetch per lifetime",
    () =>
      Effect.gen(function*() {
        const server = yield* RedisServer.single
        const keyRing = yield* ring("k1")
        const lifetimeMillis = 3_000
        const fetchMillis = 300
        // The refresh window (the last 30-15 % of the usable lifetime: 0.9-0.45 s) is longer than a fetch, so no
        // caller should ever wait for one.
        const refreshAhead = 0.3
        const { count, source } = yield* countingSource(`${lifetimeMillis} millis`, `${fetchMillis} millis`)
        const instances = yield* Effect.forEach(Arr.range(1, 4), () =>
          instance(server.url, source, keyRing, refreshAhead))
        // Warm every cache, then measure: no caller may wait for a fetch again.
        yield* Effect.forEach(instances, (i) =>
          i.cache.get, { concurrency: "unbounded" })
        const runMillis = 10_000
        const started = Date.now()
        const latencies = yield* Effect.forEach(instances, (i) =>
          Effect.gen(function*() {
            const seen: Array<number> = []
            const values = new Set<string>()
            while (Date.now() - started < runMillis) {
              const before = performance.now()
              const token = yield* i.cache.get
              seen.push(performance.now() - before)
              values.add(Redacted.value(token.value))
              yield* Effect.sleep("20 millis")
            }
            return { max: Math.max(...seen), values: values.size }
          }), { concurrency: "unbounded" })
        const fetches = yield* count
        // One refresh every 70-85 % of a lifetime across all four instances (alone, each would make as many).
        const most = 1 + Math.ceil(runMillis / (lifetimeMillis * 0.7))
        const least = 1 + Math.floor(runMillis / lifetimeMillis)
        process.stdout.write(
          `    [measured] refresh ahead: ${fetches} fetches in ${runMillis} ms for 4 instances (lifetime ${lifetimeMillis} ms), ` +
            `slowest get ${Math.max(...latencies.map((l) => l.max)).toFixed(1)} ms\n`
        )
        expect(fetches).toBeGreaterThanOrEqual(least)
        expect(fetches).toBeLessThanOrEqual(most)
        // The 300 ms fetch never shows in a caller's latency: refreshes run behind the current token.
        for (const l of latencies) {
          expect(l.max).toBeLessThan(fetchMillis - 50)
          expect(l.values).toBeGreaterThanOrEqual(fetches - 1)
        }
      }),
    { timeout: 60_000 }
  )

  it.scopedLive("a rejected token is compare-and-cleared across instances: two 401s, one new token", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.single
      const keyRing = yield* ring("k1")
      const { count, source } = yield* countingSource("1 minute")
      const a = yield* instance(server.url, source, keyRing)
      const b = yield* instance(server.url, source, keyRing)
      const first = yield* a.cache.get
      expect(yield* b.cache.get).toEqual(first)

      // A's request gets a 401: its cache clears the token and (as core will) tells the shared source.
      yield* a.cache.invalidate(first)
      yield* a.shared.invalidate(first)
      const second = yield* a.cache.get
      expect(Redacted.value(second.value)).toBe("token-2")
      // B gets its own 401 for the old token a moment later: it clears nothing in Redis and takes the new token.
      yield* b.cache.invalidate(first)
      yield* b.shared.invalidate(first)
      expect(yield* b.cache.get).toEqual(second)
      expect(yield* count).toBe(2)
    }))

  it.scopedLive("without the invalidate hook, a cache asking again for the token it has refreshes it once", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.single
      const keyRing = yield* ring("k1")
      const { count, source } = yield* countingSource("1 minute")
      const a = yield* instance(server.url, source, keyRing)
      const b = yield* instance(server.url, source, keyRing)
      const first = yield* a.cache.get
      yield* b.cache.get
      yield* a.cache.invalidate(first)
      const second = yield* a.cache.get
      expect(second).not.toEqual(first)
      yield* b.cache.invalidate(first)
      expect(yield* b.cache.get).toEqual(second)
      expect(yield* count).toBe(2)
    }))

  it.scopedLive("a hung Redis (SIGSTOP) costs one timeout, then callers are served by the source directly", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.single
      const keyRing = yield* ring("k1")
      const { count, source } = yield* countingSource("1 minute", "10 millis")
      const observed = counting(yield* RedisIoredis.make({ url: server.url, timeout: "300 millis" }))
      const store = yield* RedisTokenStore.make({ keyRing }).pipe(
        Effect.provideService(RedisClient.RedisClient, observed.client)
      )
      const shared = yield* RedisTokenStore.shared(source).pipe(
        Effect.provideService(RedisTokenStore.RedisTokenStore, store)
      )
      server.process()!.kill("SIGSTOP")
      yield* Effect.addFinalizer(() => Effect.sync(() => server.process()?.kill("SIGCONT")))
      const started = Date.now()
      const first = yield* Effect.either(shared.fetch)
      expect(first._tag).toBe("Right")
      expect(Date.now() - started).toBeGreaterThanOrEqual(290)
      const sent = observed.commands()
      // The next fetches, within `retryRedisAfter` (2 s) of the timeout, do not wait on Redis at all.
      const more = yield* Effect.forEach(Arr.range(1, 3), () => Effect.either(shared.fetch))
      expect(more.every((r) => r._tag === "Right")).toBe(true)
      expect(observed.commands()).toBe(sent)
      expect(yield* count).toBe(4)
      server.process()!.kill("SIGCONT")
    }).pipe(
      // The outage's warning is the subject of the TestClock test below; here it would only reach the test output.
      Effect.provide(Logger.remove(Logger.defaultLogger))
    ))
})

describe("outages, with a scripted Redis and TestClock", () => {
  it.scoped("one warning per outage, one notice when Redis is back; no Redis call for retryRedisAfter after a failure", () =>
    Effect.gen(function*() {
      const up = yield* Ref.make(false)
      const sent = yield* Ref.make(0)
      const storage = new Map<string, string>()
      const client = RedisClient.make({
        send: (command, args) =>
          Effect.flatMap(Ref.get(up), (isUp) => {
            if (!isUp) return Effect.fail(new RedisClient.RedisError({ reason: "Unavailable", command }))
            return Effect.zipRight(Ref.update(sent, (n) => n + 1), fakeReply(storage, command, args))
          }),
        subscribe: () => Stream.never
      })
      const logs = yield* Ref.make(Chunk.empty<string>())
      const logger = Logger.make(({ logLevel, message }) => {
        if (LogLevel.greaterThanEqual(logLevel, LogLevel.Info)) {
          Effect.runSync(Ref.update(logs, Chunk.append(`${logLevel.label} ${String(message)}`)))
        }
      })
      const { count, source } = yield* countingSource("1 minute", "0 millis")
      const store = yield* RedisTokenStore.make({ keyRing: yield* ring("k1"), retryRedisAfter: "2 seconds" }).pipe(
        Effect.provideService(RedisClient.RedisClient, client)
      )
      const shared = yield* RedisTokenStore.shared(source).pipe(
        Effect.provideService(RedisTokenStore.RedisTokenStore, store)
      )
      const fetch = shared.fetch.pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger)))

      for (let i = 0; i < 5; i++) yield* fetch
      expect(yield* count).toBe(5)
      yield* TestClock.adjust("3 seconds")
      yield* fetch
      yield* fetch
      expect(yield* count).toBe(7)
      expect(Chunk.toReadonlyArray(yield* Ref.get(logs)).filter((l) => l.startsWith("WARN")).length).toBe(1)

      // Back, but within retryRedisAfter of the last failure: not asked yet.
      yield* Ref.set(up, true)
      yield* fetch
      expect(yield* Ref.get(sent)).toBe(0)
      yield* TestClock.adjust("3 seconds")
      const token = yield* fetch
      expect(yield* Ref.get(sent)).toBeGreaterThan(0)
      expect(yield* count).toBe(9)
      const logged = Chunk.toReadonlyArray(yield* Ref.get(logs))
      expect(logged.filter((l) => l.startsWith("WARN")).length).toBe(1)
      expect(logged.filter((l) => l.startsWith("INFO"))).toEqual([
        "INFO effect-token/redis: Redis answers again; tokens are shared again"
      ])
      expect(Redacted.value(token.value)).toBe("token-9")
    }))
})

describe("invalidate", () => {
  it.scoped("clears in Redis and passes the rejection on to a wrapped source that listens for it", () =>
    Effect.gen(function*() {
      const heard = yield* Ref.make<Array<string>>([])
      const { source } = yield* countingSource("1 minute", "0 millis")
      const listening = {
        ...source,
        invalidate: (token: AccessToken.AccessToken) =>
          Ref.update(heard, (all) => [...all, Redacted.value(token.value)])
      }
      const down = RedisClient.make({
        send: (command) => Effect.fail(new RedisClient.RedisError({ reason: "Unavailable", command })),
        subscribe: () => Stream.never
      })
      const store = yield* RedisTokenStore.make({ keyRing: yield* ring("k1") }).pipe(
        Effect.provideService(RedisClient.RedisClient, down)
      )
      const shared = yield* RedisTokenStore.shared(listening).pipe(
        Effect.provideService(RedisTokenStore.RedisTokenStore, store)
      )
      const token = yield* shared.fetch
      // Redis is down: the clear fails quietly, the wrapped source still hears of it.
      yield* shared.invalidate(token).pipe(Effect.provide(Logger.remove(Logger.defaultLogger)))
      expect(yield* Ref.get(heard)).toEqual([Redacted.value(token.value)])
    }))
})

/** Just enough of Redis for the store's commands on one key (no scripts' atomicity needed in one fiber). */
const fakeReply = (storage: Map<string, string>, command: string, args: ReadonlyArray<RedisClient.Arg>) =>
  Effect.sync(() => {
    switch (command) {
      case "HMGET":
        return [
          storage.get(`${args[0]}:v`) ?? null,
          storage.get(`${args[0]}:exp`) ?? null,
          storage.get(`${args[0]}:data`) ?? null
        ]
      case "SET": {
        const [key, value] = args as Array<string>
        if (args.includes("NX") && storage.has(key!)) return null
        storage.set(key!, value!)
        return "OK"
      }
      case "EVALSHA":
        return new RedisClient.RedisError({ reason: "Command", command, detail: "NOSCRIPT" })
      case "EVAL": {
        const lua = String(args[0])
        const keys = args.slice(2, 2 + Number(args[1])).map(String)
        const argv = args.slice(2 + Number(args[1])).map(String)
        if (lua.includes("'HSET'")) {
          if (storage.get(keys[1]!) !== argv[0]) return -1
          const version = Number(storage.get(`${keys[0]}:v`) ?? "0") + 1
          storage.set(`${keys[0]}:v`, String(version))
          storage.set(`${keys[0]}:exp`, argv[3]!)
          storage.set(`${keys[0]}:data`, argv[4]!)
          return version
        }
        if (storage.get(keys[0]!) === argv[0]) storage.delete(keys[0]!)
        return 1
      }
      default:
        return null
    }
  }).pipe(
    Effect.flatMap((reply) => reply instanceof RedisClient.RedisError ? Effect.fail(reply) : Effect.succeed(reply))
  )
