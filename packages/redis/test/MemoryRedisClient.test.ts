/**
 * The store logic that does not need a real server (leases, polling, pub/sub hand-over, health), on the in-memory
 * `RedisClient` under `TestClock`: no wall-clock bounds. The scripts themselves, Cluster routing and real faults
 * (SIGSTOP, restarts, processes) are tested against redis-server in the other files.
 */
import { AccessToken, TokenCache, TokenSource } from "@effect-token/core"
import { RedisClient, RedisRefreshTokenStore, RedisTokenStore } from "@effect-token/redis"
import { MemoryRedisClient } from "@effect-token/redis/testing"
import { Advance } from "@effect-token/testing"
import { describe, expect, it } from "@effect/vitest"
import {
  Array as Arr,
  Chunk,
  DateTime,
  Duration,
  Effect,
  Either,
  Fiber,
  Logger,
  LogLevel,
  Option,
  Redacted,
  Ref,
  TestClock
} from "effect"
import { ring } from "./support/fixtures.js"

/** A source that counts its fetches and hands out unique tokens of `lifetime`, each answered after `delay`. */
const countingSource = (lifetime: Duration.DurationInput, delay: Duration.DurationInput = "50 millis") =>
  Effect.gen(function*() {
    const count = yield* Ref.make(0)
    const source = TokenSource.make({
      key: "counting-source",
      fetch: Effect.gen(function*() {
        const n = yield* Ref.updateAndGet(count, (c) => c + 1)
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

/** An instance of a service: its store over the shared in-memory Redis, its shared source and its cache. */
const instance = (
  redis: MemoryRedisClient.MemoryRedisClient,
  source: TokenSource.TokenSource,
  options: RedisTokenStore.Options
) =>
  Effect.gen(function*() {
    const store = yield* RedisTokenStore.make(options).pipe(Effect.provideService(RedisClient.RedisClient, redis))
    const shared = yield* RedisTokenStore.shared(source, { skew: "1 second" }).pipe(
      Effect.provideService(RedisTokenStore.RedisTokenStore, store)
    )
    const cache = yield* TokenCache.make(shared, { skew: "1 second" })
    return { store, shared, cache }
  })

const capturing = () =>
  Effect.map(Ref.make(Chunk.empty<string>()), (logs) => ({
    logs: Effect.map(Ref.get(logs), Chunk.toReadonlyArray),
    logger: Logger.replace(
      Logger.defaultLogger,
      Logger.make(({ logLevel, message }) => {
        if (LogLevel.greaterThanEqual(logLevel, LogLevel.Info)) {
          Effect.runSync(Ref.update(logs, Chunk.append(`${logLevel.label} ${String(message)}`)))
        }
      })
    )
  }))

describe("MemoryRedisClient", () => {
  it.effect("strings and hashes with TTLs on the TestClock; SET NX; down and hung", () =>
    Effect.gen(function*() {
      const redis = yield* MemoryRedisClient.make({ timeout: "500 millis" })
      expect(yield* redis.set("lease", "a", { nx: true, px: "10 seconds" })).toBe(true)
      expect(yield* redis.set("lease", "b", { nx: true, px: "10 seconds" })).toBe(false)
      expect(yield* redis.send<number>("PTTL", "lease")).toBe(10_000)
      yield* TestClock.adjust("9999 millis")
      expect(yield* redis.get("lease")).toEqual(Option.some("a"))
      yield* TestClock.adjust("1 millis")
      expect(yield* redis.get("lease")).toEqual(Option.none())
      yield* redis.send("HSET", "h", "v", 1, "data", "x")
      expect(yield* redis.send("HMGET", "h", "v", "data", "missing")).toEqual(["1", "x", null])
      expect(yield* redis.keys).toEqual(["h"])

      yield* redis.setStatus("down")
      const refused = yield* Effect.either(redis.get("h"))
      expect(Either.isLeft(refused) && refused.left.reason._tag).toBe("Unavailable")
      yield* redis.setStatus("hung")
      const hung = yield* Effect.fork(Effect.either(redis.get("h")))
      yield* TestClock.adjust("499 millis")
      expect(Option.isNone(yield* Fiber.poll(hung))).toBe(true)
      yield* TestClock.adjust("1 millis")
      const timedOut = yield* Fiber.join(hung)
      expect(Either.isLeft(timedOut) && timedOut.left.reason._tag).toBe("Timeout")
      yield* redis.setStatus("up")
      yield* redis.flushAll
      expect(yield* redis.keys).toEqual([])
    }))

  it.effect("runs only this package's scripts: another is a Command error", () =>
    Effect.gen(function*() {
      const redis = yield* MemoryRedisClient.make()
      const other = RedisClient.script<number>("mine", "return 1")
      const failure = yield* Effect.flip(redis.eval(other, [], []))
      expect(failure.reason._tag).toBe("ErrorReply")
    }))
})

describe("shared access tokens on the in-memory client, TestClock", () => {
  it.scoped("the hot path stays local: no Redis command while the local token is valid", () =>
    Effect.gen(function*() {
      const redis = yield* MemoryRedisClient.make()
      const { count, source } = yield* countingSource("1 minute", "0 millis")
      const a = yield* instance(redis, source, { keyRing: yield* ring("k1") })
      yield* a.cache.get
      const afterFirst = (yield* redis.commands).length
      expect(afterFirst).toBeGreaterThan(0)
      yield* Effect.forEach(Arr.range(1, 10_000), () => a.cache.get, { discard: true })
      expect((yield* redis.commands).length).toBe(afterFirst)
      expect(yield* count).toBe(1)
    }))

  it.scoped("four instances cold at once: one token request; the followers get the leader's token", () =>
    Effect.gen(function*() {
      const redis = yield* MemoryRedisClient.make()
      const keyRing = yield* ring("k1")
      const { count, source } = yield* countingSource("1 minute", "2 seconds")
      const instances = yield* Effect.forEach(
        Arr.range(1, 4),
        () => instance(redis, source, { keyRing, pollInterval: "100 millis" })
      )
      const tokens = yield* Advance.untilDone(
        Effect.forEach(instances, (i) => i.cache.get, { concurrency: "unbounded" })
      )
      expect(new Set(tokens.map((token) => Redacted.value(token.value)))).toEqual(new Set(["token-1"]))
      expect(yield* count).toBe(1)
      // A token request per expiry for the whole fleet, not per instance.
      yield* TestClock.adjust("1 minute")
      yield* Advance.untilDone(Effect.forEach(instances, (i) => i.cache.get, { concurrency: "unbounded" }))
      expect(yield* count).toBe(2)
    }))

  it.scoped("a leader that died holding the lease: the others wait out its TTL on the TestClock, then fetch", () =>
    Effect.gen(function*() {
      const redis = yield* MemoryRedisClient.make()
      const keyRing = yield* ring("k1")
      const { count, source } = yield* countingSource("1 minute", "0 millis")
      const b = yield* instance(redis, source, { keyRing, leaseTtl: "10 seconds", pollInterval: "100 millis" })
      // A process took the lease and died: nothing renews it.
      const keys = yield* b.store.keysFor(source.key)
      yield* redis.set(keys.lease, "dead-process", { px: "10 seconds" })
      const waiting = yield* Effect.fork(b.cache.get)
      yield* TestClock.adjust("9 seconds")
      expect(Option.isNone(yield* Fiber.poll(waiting))).toBe(true)
      expect(yield* count).toBe(0)
      const token = yield* Advance.untilDone(Fiber.join(waiting))
      expect(Redacted.value(token.value)).toBe("token-1")
      expect(yield* count).toBe(1)
    }))

  it.scoped("a hung Redis costs one timeout, then no Redis call for retryRedisAfter; one warning per outage", () =>
    Effect.gen(function*() {
      const redis = yield* MemoryRedisClient.make({ timeout: "300 millis" })
      const { logger, logs } = yield* capturing()
      const { count, source } = yield* countingSource("1 minute", "0 millis")
      const store = yield* RedisTokenStore.make({ keyRing: yield* ring("k1"), retryRedisAfter: "2 seconds" }).pipe(
        Effect.provideService(RedisClient.RedisClient, redis)
      )
      const shared = yield* RedisTokenStore.shared(source).pipe(
        Effect.provideService(RedisTokenStore.RedisTokenStore, store)
      )
      const fetch = shared.fetch.pipe(Effect.provide(logger))
      yield* redis.setStatus("hung")
      const first = yield* Effect.fork(fetch)
      yield* TestClock.adjust("299 millis")
      expect(Option.isNone(yield* Fiber.poll(first))).toBe(true)
      yield* TestClock.adjust("1 millis")
      expect(Redacted.value((yield* Fiber.join(first)).value)).toBe("token-1")
      const sent = (yield* redis.commands).length
      // Within retryRedisAfter of the timeout: served by the source at once, Redis not asked.
      for (let i = 0; i < 3; i++) yield* fetch
      expect((yield* redis.commands).length).toBe(sent)
      expect(yield* count).toBe(4)

      // Refused instead of hung, after retryRedisAfter: asked once more, still the same outage (no new warning).
      yield* redis.setStatus("down")
      yield* TestClock.adjust("3 seconds")
      yield* fetch
      expect((yield* redis.commands).length).toBeGreaterThan(sent)
      // Back, but within retryRedisAfter of the last failure: not asked yet; then asked, and said once.
      yield* redis.setStatus("up")
      const beforeBack = (yield* redis.commands).length
      yield* fetch
      expect((yield* redis.commands).length).toBe(beforeBack)
      yield* TestClock.adjust("3 seconds")
      yield* fetch
      expect((yield* redis.commands).length).toBeGreaterThan(beforeBack)
      const logged = yield* logs
      expect(logged.filter((line) => line.startsWith("WARN"))).toHaveLength(1)
      expect(logged.filter((line) => line.startsWith("INFO"))).toEqual([
        "INFO effect-token/redis: Redis answers again; tokens are shared again"
      ])
    }))
})

describe("the refresh-token lock on the in-memory client, TestClock", () => {
  it.scoped("outlives its TTL while the holder runs (renewed), and lapses within its TTL when a holder dies", () =>
    Effect.gen(function*() {
      const redis = yield* MemoryRedisClient.make()
      const keyRing = yield* ring("k1")
      const options = { keyRing, subject: "alice", lockTtl: "300 millis", pollInterval: "10 millis" } as const
      const a = yield* RedisRefreshTokenStore.make(options).pipe(Effect.provideService(RedisClient.RedisClient, redis))
      const b = yield* RedisRefreshTokenStore.make(options).pipe(Effect.provideService(RedisClient.RedisClient, redis))
      const order: Array<string> = []
      const holding = yield* Effect.fork(
        a.withLock!(
          Effect.sync(() => order.push("a:start")).pipe(
            Effect.zipRight(Effect.sleep("1 second")),
            Effect.zipRight(Effect.sync(() => order.push("a:end")))
          )
        )
      )
      yield* TestClock.adjust("100 millis")
      const waiting = yield* Effect.fork(b.withLock!(Effect.sync(() => order.push("b"))))
      // Three TTLs of a's lock go by; a keeps extending it, so b still waits.
      yield* TestClock.adjust("899 millis")
      expect(order).toEqual(["a:start"])
      yield* Advance.untilDone(Effect.zip(Fiber.join(holding), Fiber.join(waiting)))
      expect(order).toEqual(["a:start", "a:end", "b"])

      // A process that took the lock and died: it is free once its TTL has passed, not before.
      const keys = yield* RedisRefreshTokenStore.storageKeys("effect-token", "alice")
      yield* redis.set(keys.lock, "crashed-owner", { px: "300 millis" })
      const after = yield* Effect.fork(b.withLock!(Effect.void))
      yield* TestClock.adjust("250 millis")
      expect(Option.isNone(yield* Fiber.poll(after))).toBe(true)
      yield* Advance.untilDone(Fiber.join(after))
      expect(yield* redis.get(keys.lock)).toEqual(Option.none())
    }))
})
