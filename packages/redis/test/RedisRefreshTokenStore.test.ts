/**
 * The refresh-token store on a real redis-server: storage, encryption at rest, the cross-process lock, Redis outages.
 */
import { RefreshTokenStore, TokenError } from "@effect-token/core"
import { KeyRing, RedisClient, RedisRefreshTokenStore } from "@effect-token/redis"
import { RedisIoredis } from "@effect-token/redis/ioredis"
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Duration, Effect, Logger, Option, Redacted, Ref } from "effect"
import { ring } from "./support/fixtures.js"
import * as RedisServer from "./support/redisServer.js"

/** A store on its own connection, as another process would have. */
const storeAt = (url: string, options: RedisRefreshTokenStore.Options) =>
  Effect.flatMap(
    RedisIoredis.make({ url }),
    (client) => RedisRefreshTokenStore.make(options).pipe(Effect.provideService(RedisClient.RedisClient, client))
  )

const value = (token: Option.Option<Redacted.Redacted<string>>) => Option.map(token, Redacted.value)

const quiet = Logger.replace(Logger.defaultLogger, Logger.none)

describe("RedisRefreshTokenStore", () => {
  it.scopedLive("stores the token encrypted: another process reads it, Redis holds no plain text", () =>
    Effect.gen(function*() {
      const redis = yield* RedisServer.single
      const keyRing = yield* ring("k1")
      const a = yield* storeAt(redis.url, { keyRing, subject: "alice" })
      const b = yield* storeAt(redis.url, { keyRing, subject: "alice" })
      const other = yield* storeAt(redis.url, { keyRing, subject: "bob" })

      expect(value(yield* a.get)).toEqual(Option.none())
      yield* a.set(Redacted.make("plain-refresh-token-4711"))
      expect(value(yield* b.get)).toEqual(Option.some("plain-refresh-token-4711"))
      expect(value(yield* other.get)).toEqual(Option.none())

      const keys = yield* RedisRefreshTokenStore.storageKeys("effect-token", "alice")
      const dump = yield* Effect.promise(() => RedisServer.rawCommand(redis.port, `HGETALL ${keys.refreshToken}`))
      expect(dump).toContain("v1.k1.")
      expect(dump).not.toContain("plain-refresh-token-4711")
      expect(dump).not.toContain("alice")

      yield* b.clear
      expect(value(yield* a.get)).toEqual(Option.none())
    }))

  it.scopedLive("a store whose key ring lacks the writer's key fails with Misconfigured, not with an empty store", () =>
    Effect.gen(function*() {
      const redis = yield* RedisServer.single
      const a = yield* storeAt(redis.url, { keyRing: yield* ring("k1"), subject: "alice" })
      const b = yield* storeAt(redis.url, { keyRing: yield* ring("k2"), subject: "alice" })
      yield* a.set(Redacted.make("rt-1"))
      const error = yield* Effect.flip(b.get)
      expect(error.reason._tag).toBe("Misconfigured")
      expect(error.message).not.toContain("rt-1")
    }))

  it.scopedLive("the first token is written only where none is stored: a restart never puts back a spent one", () =>
    Effect.gen(function*() {
      const redis = yield* RedisServer.single
      const keyRing = yield* ring("k1")
      const initial = Redacted.make("seed-from-config")
      const first = yield* storeAt(redis.url, { keyRing, subject: "svc", initial })
      expect(value(yield* first.get)).toEqual(Option.some("seed-from-config"))
      yield* first.set(Redacted.make("rotated-1"))

      const restarted = yield* storeAt(redis.url, { keyRing, subject: "svc", initial })
      expect(value(yield* restarted.get)).toEqual(Option.some("rotated-1"))
    }))

  it.scopedLive("withLock: two processes never run inside at once", () =>
    Effect.gen(function*() {
      const redis = yield* RedisServer.single
      const keyRing = yield* ring("k1")
      const a = yield* storeAt(redis.url, { keyRing, subject: "alice", pollInterval: "10 millis" })
      const b = yield* storeAt(redis.url, { keyRing, subject: "alice", pollInterval: "10 millis" })
      const inside = yield* Ref.make(0)
      const most = yield* Ref.make(0)
      const runs = yield* Ref.make(0)
      const critical = Effect.gen(function*() {
        const now = yield* Ref.updateAndGet(inside, (n) => n + 1)
        yield* Ref.update(most, (m) => Math.max(m, now))
        yield* Effect.sleep("20 millis")
        yield* Ref.update(inside, (n) => n - 1)
        yield* Ref.update(runs, (n) => n + 1)
      })
      yield* Effect.all(
        Array.from({ length: 12 }, (_, i) => RefreshTokenStore.withLock(i % 2 === 0 ? a : b, critical)),
        { concurrency: "unbounded" }
      )
      expect(yield* Ref.get(runs)).toBe(12)
      expect(yield* Ref.get(most)).toBe(1)
    }))

  it.scopedLive("withLock: a release Redis did not take (it stalled) happens when Redis answers, not when the lock lapses", () =>
    Effect.gen(function*() {
      const redis = yield* RedisServer.single
      const keyRing = yield* ring("k1")
      // A long lock, so that waiting it out (the bug: a release the outage gate skipped was never retried) cannot
      // pass for a prompt answer.
      const options = { keyRing, subject: "alice", lockTtl: "20 seconds", retryRedisAfter: "100 millis" } as const
      const a = yield* storeAt(redis.url, options)
      const b = yield* storeAt(redis.url, options)
      const { resume, stall } = yield* RedisServer.stallable(redis)
      // A holds the lock; Redis stalls while it works, so its release times out.
      const holding = yield* Effect.fork(RefreshTokenStore.withLock(
        a,
        Effect.zipRight(stall, Effect.sleep("1500 millis"))
      ))
      yield* Effect.sleep("3 seconds")
      yield* resume
      yield* holding.await
      const started = Date.now()
      yield* RefreshTokenStore.withLock(b, Effect.void)
      // Bound: a poll and a few Redis round trips, with room for a starved CPU; the lock is 20 s.
      expect(Date.now() - started).toBeLessThan(5_000)
    }).pipe(Effect.provide(quiet)))

  it.scopedLive("withLock: a lock SET that timed out while Redis stalled, applied when it answers, does not block others", () =>
    Effect.gen(function*() {
      const redis = yield* RedisServer.single
      const keyRing = yield* ring("k1")
      const options = { keyRing, subject: "alice", lockTtl: "20 seconds", retryRedisAfter: "100 millis" } as const
      const a = yield* storeAt(redis.url, options)
      const b = yield* storeAt(redis.url, options)
      const { resume, stall } = yield* RedisServer.stallable(redis)
      yield* stall
      // A's SET NX waits in Redis's socket; its timeout makes the lock unavailable to A.
      const ran = yield* Ref.make(false)
      yield* Effect.either(RefreshTokenStore.withLock(a, Ref.set(ran, true)))
      yield* resume
      // Redis applies the SET when it resumes: a 20 s lock nobody holds, unless it is released.
      const started = Date.now()
      yield* RefreshTokenStore.withLock(b, Effect.void)
      expect(Date.now() - started).toBeLessThan(5_000)
    }).pipe(Effect.provide(quiet)))

  it.scopedLive("spend: a spend script that timed out while Redis stalled, applied when it answers, does not hold others off", () =>
    Effect.gen(function*() {
      const redis = yield* RedisServer.single
      const keyRing = yield* ring("k1")
      const options = { keyRing, subject: "alice", retryRedisAfter: "100 millis" } as const
      const a = yield* storeAt(redis.url, options)
      const b = yield* storeAt(redis.url, options)
      yield* a.set(Redacted.make("rt-1"))
      const spendOptions = { answerTimeout: Duration.seconds(60) }
      // Loads the spend script (a token that is not the stored one changes nothing): a stalled EVALSHA of a script
      // Redis does not know yet would be refused when Redis resumes, and prove nothing.
      expect((yield* a.withLock!(a.spend!(Redacted.make("rt-other"), spendOptions)))._tag).toBe("Stale")
      const { resume, stall } = yield* RedisServer.stallable(redis)
      // A's spend script waits in Redis's socket; its timeout fails the spend, so A sends nothing.
      const failed = yield* a.withLock!(
        stall.pipe(
          Effect.zipRight(Effect.either(a.spend!(Redacted.make("rt-1"), spendOptions))),
          Effect.ensuring(resume)
        )
      )
      expect(failed._tag).toBe("Left")
      // Redis applied the spend when it resumed: without its end, B would be Pending for the spend's minute.
      const started = Date.now()
      let decision = yield* b.withLock!(b.spend!(Redacted.make("rt-1"), spendOptions))
      while (decision._tag === "Pending" && Date.now() - started < 5_000) {
        yield* Effect.sleep("50 millis")
        decision = yield* b.withLock!(b.spend!(Redacted.make("rt-1"), spendOptions))
      }
      expect(decision._tag).toBe("Granted")
    }).pipe(Effect.provide(quiet)))

  it.scopedLive("Redis down: typed transient errors, no spend (so no send), and a token set meanwhile is not lost", () =>
    Effect.gen(function*() {
      const redis = yield* RedisServer.single
      const keyRing = yield* ring("k1")
      const options = { keyRing, subject: "alice", retryRedisAfter: "10 millis", watchInterval: "50 millis" } as const
      const a = yield* storeAt(redis.url, options)
      yield* a.set(Redacted.make("rt-1"))
      yield* redis.stop

      const readError = yield* Effect.flip(a.get)
      expect(readError.reason._tag).toBe("Unavailable")
      expect(TokenError.isTransient(readError)).toBe(true)
      expect(readError.operation).toBe(RefreshTokenStore.operation)

      // Turns are still taken in this process, but no spend can be recorded: no check, no send.
      yield* Effect.sleep("20 millis")
      const spendError = yield* Effect.flip(
        a.withLock!(a.spend!(Redacted.make("rt-1"), { answerTimeout: Duration.seconds(60) }))
      )
      expect(spendError.reason._tag).toBe("Unavailable")

      // A login while Redis is down: the write fails, but the token is kept here.
      yield* Effect.sleep("20 millis")
      const writeError = yield* Effect.flip(a.set(Redacted.make("rt-2")))
      expect(writeError.reason._tag).toBe("Unavailable")
      expect(writeError.message).not.toContain("rt-2")

      // Redis is back (empty, as after a failover without persistence): a's watch writes the kept token.
      yield* redis.start
      const b = yield* storeAt(redis.url, options)
      const seenByB = yield* Effect.sleep("50 millis").pipe(
        Effect.zipRight(Effect.orElseSucceed(b.get, Option.none)),
        Effect.map(value),
        Effect.repeat({ until: Option.isSome, times: 100 })
      )
      expect(seenByB).toEqual(Option.some("rt-2"))
    }).pipe(Effect.provide(quiet)))

  it.scopedLive("layerConfig: the subject, the first token and the key ring from configuration", () =>
    Effect.gen(function*() {
      const redis = yield* RedisServer.single
      const key = yield* KeyRing.generateKey("k1")
      const provider = ConfigProvider.fromMap(
        new Map([
          ["REDIS_TOKEN_KEYS", Redacted.value(KeyRing.format([key]))],
          ["REFRESH_TOKEN_SUBJECT", "reporting"],
          ["REFRESH_TOKEN", "seeded-from-config"]
        ])
      )
      const client = yield* RedisIoredis.make({ url: redis.url })
      const store = yield* RefreshTokenStore.RefreshTokenStore.pipe(
        Effect.provide(RedisRefreshTokenStore.layerConfig()),
        Effect.provideService(RedisClient.RedisClient, client),
        Effect.withConfigProvider(provider)
      )
      expect(value(yield* store.get)).toEqual(Option.some("seeded-from-config"))
      const keys = yield* RedisRefreshTokenStore.storageKeys("effect-token", "reporting")
      const dump = yield* Effect.promise(() => RedisServer.rawCommand(redis.port, `HGETALL ${keys.refreshToken}`))
      expect(dump).toContain("v1.k1.")

      const missing = yield* Effect.flip(
        RedisRefreshTokenStore.config.pipe(
          Effect.withConfigProvider(
            ConfigProvider.fromMap(new Map([["REDIS_TOKEN_KEYS", Redacted.value(KeyRing.format([key]))]]))
          )
        )
      )
      expect(String(missing)).toContain("REFRESH_TOKEN_SUBJECT")
    }))
})
