import { AccessToken, TokenCache, TokenSource } from "@effect-token/core"
import { RedisClient, RedisTokenStore } from "@effect-token/redis"
import { MemoryRedisClient } from "@effect-token/redis/testing"
import { describe, expect, it } from "@effect/vitest"
import { Array as Arr, DateTime, Duration, Effect, Logger, Option, Redacted, Ref } from "effect"
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
