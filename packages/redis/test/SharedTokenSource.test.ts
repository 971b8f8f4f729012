import { AccessToken, TokenCache, TokenSource } from "@effect-token/core"
import { RedisClient, RedisTokenStore } from "@effect-token/redis"
import { MemoryRedisClient } from "@effect-token/redis/testing"
import { describe, expect, it } from "@effect/vitest"
import {
  Array as Arr,
  DateTime,
  Duration,
  Effect,
  Exit,
  Fiber,
  Logger,
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
    { timeout: 300_000 }
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
})

describe("the lease, with a scripted Redis and TestClock", () => {
  /** Two instances over one scripted Redis; `beforeLease` runs once, just before `second` first asks for the lease. */
  const twoInstances = (
    source: TokenSource.TokenSource,
    beforeLease: (first: RedisTokenStore.SharedTokenSource) => Effect.Effect<unknown, unknown>
  ) =>
    Effect.gen(function*() {
      const storage = new Map<string, string>()
      const keyRing = yield* ring("k1")
      let hook: Effect.Effect<unknown, unknown> | undefined
      const client = (hooked: boolean) =>
        RedisClient.make({
          send: (command, args) => {
            if (hooked && command === "SET" && hook !== undefined) {
              const run = hook
              hook = undefined
              return Effect.zipRight(Effect.orDie(run), fakeReply(storage, command, args))
            }
            return fakeReply(storage, command, args)
          },
          subscribe: () => Stream.never
        })
      const instance = (hooked: boolean) =>
        Effect.gen(function*() {
          const store = yield* RedisTokenStore.make({ keyRing }).pipe(
            Effect.provideService(RedisClient.RedisClient, client(hooked))
          )
          return yield* RedisTokenStore.shared(source).pipe(
            Effect.provideService(RedisTokenStore.RedisTokenStore, store)
          )
        })
      const first = yield* instance(false)
      const second = yield* instance(true)
      hook = beforeLease(first)
      const leases = () => [...storage.keys()].filter((key) => key.endsWith(":lease"))
      return { first, second, leases }
    })

  it.scoped("a lease taken just after another instance wrote is released at once, not left to lapse", () =>
    Effect.gen(function*() {
      const { count, source } = yield* countingSource("1 minute", "0 millis")
      // `first` fetches, writes and releases between `second`'s read (nothing there) and its taking the lease: the
      // second read under the lease finds that token fresh.
      const { first, leases, second } = yield* twoInstances(source, (first) => first.fetch)
      const token = yield* second.fetch
      expect(Redacted.value(token.value)).toBe("token-1")
      expect(yield* count).toBe(1)
      expect(leases()).toEqual([])
      // `first` handed token-1 out, so it asks for a newer one: it takes the lease at once. A lease left behind would
      // keep it waiting for `waitTimeout` (20 s).
      const next = yield* Effect.fork(first.fetch)
      yield* TestClock.adjust("1 second")
      const done = yield* Fiber.poll(next)
      expect(Option.map(done, Exit.map((t) => Redacted.value(t.value)))).toEqual(Option.some(Exit.succeed("token-2")))
    }))

  it.scoped("a token not written (past its usable lifetime on arrival) releases the lease", () =>
    Effect.gen(function*() {
      // A 2 s token is usable for 1 s from its request; its answer takes 1.5 s: never stored, handed to its caller.
      const { source } = yield* countingSource("2 seconds", "1500 millis")
      const { leases, second } = yield* twoInstances(source, () => Effect.void)
      const fetching = yield* Effect.fork(second.fetch)
      yield* TestClock.adjust("2 seconds")
      yield* Fiber.join(fetching)
      expect(leases()).toEqual([])
    }))
  it.scoped("a lease whose holder lost Redis right after taking it is released as soon as Redis answers", () =>
    Effect.gen(function*() {
      // Redis fails right after the lease is taken (a failover): the holder's second read fails, the caller is served
      // by the source directly, and the release is skipped by the outage gate. Left to lapse, the lease (10 s) would
      // keep every instance whose token ran out waiting for it.
      const storage = new Map<string, string>()
      let down = false
      const client = RedisClient.make({
        send: (command, args) =>
          down
            ? Effect.fail(
              new RedisClient.RedisError({ command, reason: new RedisClient.Unavailable({ description: "down" }) })
            )
            : Effect.tap(fakeReply(storage, command, args), () => {
              if (command === "SET") down = true
            }),
        subscribe: () => Stream.never
      })
      const { source } = yield* countingSource("1 minute", "0 millis")
      const store = yield* RedisTokenStore.make({ keyRing: yield* ring("k1") }).pipe(
        Effect.provideService(RedisClient.RedisClient, client)
      )
      const shared = yield* RedisTokenStore.shared(source).pipe(
        Effect.provideService(RedisTokenStore.RedisTokenStore, store)
      )
      const leases = () => [...storage.keys()].filter((key) => key.endsWith(":lease"))
      const token = yield* shared.fetch
      expect(Redacted.value(token.value)).toBe("token-1")
      expect(leases()).toHaveLength(1)
      down = false
      yield* TestClock.adjust("1 second")
      expect(leases()).toEqual([])
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
      const down = yield* MemoryRedisClient.make()
      yield* down.setStatus("down")
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
        return new RedisClient.RedisError({ command, reason: new RedisClient.ErrorReply({ reply: "NOSCRIPT" }) })
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
