/**
 * Shared access tokens under faults, in one process over a real redis-server: a Redis blip during the leader's
 * write, a leader whose token arrives past its usable lifetime, and an instance whose key ring cannot read the record.
 */
import { AccessToken, TokenSource } from "@effect-token/core"
import { RedisClient, RedisTokenStore } from "@effect-token/redis"
import { RedisIoredis } from "@effect-token/redis/ioredis"
import { describe, expect, it } from "@effect/vitest"
import { DateTime, Deferred, Duration, Effect, Fiber, Logger, Option, Redacted, Ref } from "effect"
import { ring } from "./support/fixtures.js"
import * as RedisServer from "./support/redisServer.js"

/**
 * A source whose tokens live `lifetime` from when each request went out, answered after `delay`. With `holdFirst`,
 * the first request waits at the source until `releaseFirst`: a test can fault Redis while the leader is known to be
 * past its reads and before its write, however starved the CPU.
 */
const slowSource = (
  lifetime: Duration.DurationInput,
  delay: Duration.DurationInput,
  options: { readonly holdFirst?: boolean } = {}
) =>
  Effect.gen(function*() {
    const count = yield* Ref.make(0)
    const firstStarted = yield* Deferred.make<void>()
    const firstReleased = yield* Deferred.make<void>()
    const source = TokenSource.make({
      key: "slow-source",
      fetch: Effect.gen(function*() {
        const n = yield* Ref.updateAndGet(count, (c) => c + 1)
        const sentAt = yield* DateTime.now
        if (n === 1 && options.holdFirst === true) {
          yield* Deferred.succeed(firstStarted, undefined)
          yield* Deferred.await(firstReleased)
        }
        yield* Effect.sleep(delay)
        return AccessToken.make({
          value: Redacted.make(`token-${n}`),
          issuedAt: sentAt,
          expiresAt: Option.some(DateTime.addDuration(sentAt, Duration.decode(lifetime)))
        })
      })
    })
    return {
      source,
      count: Ref.get(count),
      firstStarted: Deferred.await(firstStarted),
      releaseFirst: Deferred.succeed(firstReleased, undefined)
    }
  })

const sharedAt = (
  url: string,
  source: TokenSource.TokenSource,
  options: RedisTokenStore.Options,
  timeout: Duration.DurationInput = "1 second"
) =>
  Effect.gen(function*() {
    const client = yield* RedisIoredis.make({ url, timeout })
    const store = yield* RedisTokenStore.make(options).pipe(Effect.provideService(RedisClient.RedisClient, client))
    return yield* RedisTokenStore.shared(source, { skew: "1 second" }).pipe(
      Effect.provideService(RedisTokenStore.RedisTokenStore, store)
    )
  })

/**
 * Two instances A and B on one slow source. A (the leader) takes the lease and sends its request; Redis is stopped
 * while the request is held at the source, so A's write (after the source's delay) meets the stalled Redis and times
 * out on its 2 s Redis timeout; Redis is back 4 s after it stopped; then B fetches. B's token and how long it took.
 */
const leaderStalledThenFollower = (
  redis: RedisServer.RedisServer,
  slow: Effect.Effect.Success<ReturnType<typeof slowSource>>,
  options: RedisTokenStore.Options
) =>
  Effect.gen(function*() {
    const a = yield* sharedAt(redis.url, slow.source, options, "2 seconds")
    const b = yield* sharedAt(redis.url, slow.source, options, "2 seconds")
    const { resume, stall } = yield* RedisServer.stallable(redis)
    const leading = yield* Effect.fork(a.fetch)
    // A's reads and its lease are done once its request is at the source; Redis stops before the answer comes.
    yield* slow.firstStarted
    yield* stall
    yield* slow.releaseFirst
    yield* Effect.sleep("4 seconds")
    yield* resume
    yield* Fiber.join(leading)
    const started = Date.now()
    const token = yield* b.fetch
    return { token: Redacted.value(token.value), waited: Date.now() - started }
  })

const warnings = () => {
  const lines: Array<string> = []
  const logger = Logger.replace(
    Logger.defaultLogger,
    Logger.make(({ logLevel, message }) => {
      if (logLevel._tag === "Warning") lines.push(String(message))
    })
  )
  return { lines, logger }
}

describe("shared access tokens under faults", () => {
  it.scopedLive("a Redis blip during the leader's write: it writes and releases when Redis is back; no one waits for the lease to lapse", () =>
    Effect.gen(function*() {
      const redis = yield* RedisServer.single
      const keyRing = yield* ring("k1")
      const slow = yield* slowSource("1 minute", "1 second", { holdFirst: true })
      const options = { keyRing, pollInterval: "50 millis", retryRedisAfter: "100 millis" } as const
      // Redis calls time out after 2 s: long enough for a starved CPU, shorter than the stall. B arrives after the
      // blip: it must get A's token, promptly, without a token request of its own.
      const { token, waited } = yield* leaderStalledThenFollower(redis, slow, options)
      expect(token).toBe("token-1")
      expect(yield* slow.count).toBe(1)
      // Bound: one poll of the leader's background write and a Redis round trip or two, with room for a starved
      // CPU; well under the lease (10 s) B would otherwise wait out.
      expect(waited).toBeLessThan(5_000)
    }))

  it.scopedLive("a Redis blip that outlasts the leader's token: the token is not written, the lease is still released when Redis is back", () =>
    Effect.gen(function*() {
      const redis = yield* RedisServer.single
      const keyRing = yield* ring("k1")
      // 3 s tokens, served until 1 s before their end: A's token is past its usable life when the 4 s stall ends.
      const slow = yield* slowSource("3 seconds", "1 second", { holdFirst: true })
      // A long lease, so that waiting it out (the bug: the lease was kept when the token was too old to write)
      // cannot pass for a prompt answer.
      const options = {
        keyRing,
        pollInterval: "50 millis",
        retryRedisAfter: "100 millis",
        leaseTtl: "20 seconds"
      } as const
      // B's token ran out: it takes the lease A released and fetches, without waiting for the lease to lapse.
      const { token, waited } = yield* leaderStalledThenFollower(redis, slow, options)
      expect(token).toBe("token-2")
      expect(yield* slow.count).toBe(2)
      // Bound: a poll, a few Redis round trips and one 1 s fetch, with room for a starved CPU; the lease is 20 s.
      expect(waited).toBeLessThan(5_000)
    }))

  it.scopedLive("a lease SET that timed out while Redis stalled, applied when it answers, is released at once", () =>
    Effect.gen(function*() {
      const redis = yield* RedisServer.single
      const client = yield* RedisIoredis.make({ url: redis.url, timeout: "1 second" })
      const store = yield* RedisTokenStore.make({ keyRing: yield* ring("k1"), pollInterval: "50 millis" }).pipe(
        Effect.provideService(RedisClient.RedisClient, client)
      )
      const keys = yield* store.keysFor("orphan-lease")
      const { resume, stall } = yield* RedisServer.stallable(redis)
      yield* stall
      // The SET NX waits in Redis's socket; the caller's timeout ends the call first.
      const error = yield* Effect.flip(store.acquireLease(keys, "20 seconds"))
      expect(error.reason._tag).toBe("Timeout")
      yield* resume
      // Redis applies the SET when it resumes: a 20 s lease nobody holds, unless it is released.
      const started = Date.now()
      while ((yield* RedisServer.cli(redis.port, "EXISTS", keys.lease)).trim() !== "0") {
        expect(Date.now() - started).toBeLessThan(5_000)
        yield* Effect.sleep("50 millis")
      }
      const taken = yield* store.acquireLease(keys, "20 seconds")
      expect(Option.isSome(taken)).toBe(true)
    }))

  it.scopedLive("a token that arrives past its usable lifetime (lifetime counted from the send) is never stored", () =>
    Effect.gen(function*() {
      const redis = yield* RedisServer.single
      const keyRing = yield* ring("k1")
      // A 3 s token whose answer takes 2.5 s: 0.5 s left, less than the 1 s skew.
      const late = yield* slowSource("3 seconds", "2500 millis")
      const a = yield* sharedAt(redis.url, late.source, { keyRing })
      const token = yield* a.fetch
      expect(Redacted.value(token.value)).toBe("token-1")
      const keys = yield* RedisServer.cli(redis.port, "KEYS", "*:token")
      expect(keys.trim()).toBe("")
    }))

  it.scopedLive("an instance whose ring cannot read the record warns once, fetches its own, and never overwrites it", () =>
    Effect.gen(function*() {
      const redis = yield* RedisServer.single
      const owner = yield* slowSource("1 minute", "10 millis")
      const a = yield* sharedAt(redis.url, owner.source, { keyRing: yield* ring("k1") })
      yield* a.fetch
      const [key] = (yield* RedisServer.cli(redis.port, "KEYS", "*:token")).trim().split("\n")
      const before = yield* RedisServer.cli(redis.port, "HGETALL", key!)
      const { lines, logger } = warnings()
      const stranger = yield* slowSource("1 minute", "10 millis")
      const b = yield* sharedAt(redis.url, stranger.source, { keyRing: yield* ring("k2") })
      for (let i = 0; i < 3; i++) yield* b.fetch.pipe(Effect.provide(logger))
      expect(yield* stranger.count).toBe(3)
      expect(lines.filter((line) => line.includes("cannot be read"))).toHaveLength(1)
      expect(yield* RedisServer.cli(redis.port, "HGETALL", key!)).toBe(before)
    }))
})
