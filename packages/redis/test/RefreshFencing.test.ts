/**
 * A refresh token is spent at most once and its successor never lost, across instances on a real redis-server:
 * the spend record (fencing), its deadline and takeover, repairs after an empty restart or a failover that lost a
 * rotation, `WAIT` for replicas, and an unreadable record left alone.
 */
import type { AccessToken } from "@effect-token/core"
import { ClientAuth, RefreshToken, RefreshTokenStore } from "@effect-token/core"
import { RedisClient, RedisRefreshTokenStore } from "@effect-token/redis"
import { RedisIoredis } from "@effect-token/redis/ioredis"
import { HttpClient, HttpClientResponse } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Either, Logger, Option, Redacted } from "effect"
import { ring } from "./support/fixtures.js"
import * as RedisServer from "./support/redisServer.js"

type Options = RedisRefreshTokenStore.Options

/** A store on its own connection, as another process would have. */
const storeAt = (url: string, options: Options) =>
  Effect.flatMap(
    RedisIoredis.make({ url }),
    (client) => RedisRefreshTokenStore.make(options).pipe(Effect.provideService(RedisClient.RedisClient, client))
  )

const value = (token: Option.Option<Redacted.Redacted<string>>) => Option.map(token, Redacted.value)

const answer = Duration.seconds(2)

/** Spends `token` under the store's lock and returns the decision's tag (the spend itself for Granted). */
const trySpend = (store: RefreshTokenStore.RefreshTokenStore, token: string, answerTimeout = answer) =>
  store.withLock!(store.spend!(Redacted.make(token), { answerTimeout }))

/** Collects warnings (and above) of the effect's logs. */
const capturingLogs = () => {
  const lines: Array<string> = []
  const logger = Logger.replace(
    Logger.defaultLogger,
    Logger.make(({ logLevel, message }) => {
      if (logLevel._tag === "Warning" || logLevel._tag === "Error") lines.push(String(message))
    })
  )
  return { lines, logger }
}

/**
 * A token endpoint with rotation and reuse detection (`rt-n` in, `rt-(n+1)` out; a token presented twice is
 * `invalid_grant`), answering after `delay` of real time, and counting what it was shown.
 */
const rotatingServer = (delay: Duration.DurationInput) => {
  const presented: Array<string> = []
  const client = HttpClient.make((request) =>
    Effect.gen(function*() {
      const body = request.body._tag === "Uint8Array" ? new TextDecoder().decode(request.body.body) : ""
      const token = new URLSearchParams(body).get("refresh_token")!
      const reused = presented.includes(token)
      presented.push(token)
      yield* Effect.sleep(delay)
      const json = reused
        ? { error: "invalid_grant" }
        : {
          access_token: `at-for-${token}`,
          token_type: "Bearer",
          expires_in: 300,
          refresh_token: `rt-${Number(token.slice(3)) + 1}`
        }
      return HttpClientResponse.fromWeb(
        request,
        new Response(JSON.stringify(json), {
          status: reused ? 400 : 200,
          headers: { "content-type": "application/json" }
        })
      )
    })
  )
  return { client, presented }
}

const sourceOver = (
  store: RefreshTokenStore.RefreshTokenStore,
  client: HttpClient.HttpClient,
  attemptTimeout: Duration.DurationInput
) =>
  RefreshToken.make({
    tokenUrl: "https://as.example/token",
    clientAuth: ClientAuth.none({ clientId: "svc" }),
    attemptTimeout,
    answerTimeout: "10 seconds"
  }).pipe(
    Effect.provideService(RefreshTokenStore.RefreshTokenStore, store),
    Effect.provideService(HttpClient.HttpClient, client)
  )

describe("the spend record: no other instance spends a token whose spend is unresolved", () => {
  it.scopedLive("a recorded spend makes the other instance wait; its completion makes the token stale there", () =>
    Effect.gen(function*() {
      const redis = yield* RedisServer.single
      const keyRing = yield* ring("k1")
      const a = yield* storeAt(redis.url, { keyRing, subject: "svc" })
      const b = yield* storeAt(redis.url, { keyRing, subject: "svc" })
      yield* a.set(Redacted.make("rt-0"))

      const decision = yield* trySpend(a, "rt-0")
      expect(decision._tag).toBe("Granted")
      expect((yield* trySpend(b, "rt-0"))._tag).toBe("Pending")

      if (decision._tag !== "Granted") return
      const rotated = { refreshToken: Option.some(Redacted.make("rt-1")) } as AccessToken.AccessToken
      yield* decision.spend.complete(rotated)
      expect((yield* trySpend(b, "rt-0"))._tag).toBe("Stale")
      expect(value(yield* b.get)).toEqual(Option.some("rt-1"))
      expect((yield* trySpend(b, "rt-1"))._tag).toBe("Granted")
    }))

  it.scopedLive("no lock, no spend: outside withLock, or after the lock lapsed to another instance", () =>
    Effect.gen(function*() {
      const redis = yield* RedisServer.single
      const keyRing = yield* ring("k1")
      const a = yield* storeAt(redis.url, { keyRing, subject: "svc", lockTtl: "300 millis" })
      yield* a.set(Redacted.make("rt-0"))
      const outside = yield* Effect.flip(a.spend!(Redacted.make("rt-0"), { answerTimeout: answer }))
      expect(outside.reason._tag).toBe("Unavailable")

      const keys = yield* RedisRefreshTokenStore.storageKeys("effect-token", "svc")
      // Inside the lock, but the lock now belongs to someone else (this holder was paused past its TTL).
      const lapsed = yield* Effect.flip(a.withLock!(
        Effect.zipRight(
          Effect.promise(() => RedisServer.rawCommand(redis.port, `SET ${keys.lock} someone-else`)),
          a.spend!(Redacted.make("rt-0"), { answerTimeout: answer })
        )
      ))
      expect(lapsed.message).toContain("lapsed")
    }))

  it.scopedLive("past its deadline, an unresolved spend is taken over once; the late answer no longer lands", () =>
    Effect.gen(function*() {
      const redis = yield* RedisServer.single
      const keyRing = yield* ring("k1")
      const a = yield* storeAt(redis.url, { keyRing, subject: "svc" })
      const b = yield* storeAt(redis.url, { keyRing, subject: "svc" })
      yield* a.set(Redacted.make("rt-0"))
      // The record lasts the answer's bound plus a margin of at least a second.
      const first = yield* trySpend(a, "rt-0", Duration.millis(200))
      expect((yield* trySpend(b, "rt-0"))._tag).toBe("Pending")
      yield* Effect.sleep("1300 millis")
      const second = yield* trySpend(b, "rt-0")
      expect(second._tag === "Granted" && second.spend.takeover).toBe(true)
      if (first._tag !== "Granted" || second._tag !== "Granted") return
      yield* second.spend.complete({ refreshToken: Option.some(Redacted.make("rt-1b")) } as AccessToken.AccessToken)
      const { lines, logger } = capturingLogs()
      yield* first.spend.complete({ refreshToken: Option.some(Redacted.make("rt-1a")) } as AccessToken.AccessToken)
        .pipe(Effect.provide(logger))
      expect(lines.some((line) => line.includes("taken over"))).toBe(true)
      expect(value(yield* a.get)).toEqual(Option.some("rt-1b"))
    }))

  it.scopedLive("two refresh sources: A's answer comes after its caller gave up; B waits for it and spends the successor", () =>
    Effect.gen(function*() {
      const redis = yield* RedisServer.single
      const keyRing = yield* ring("k1")
      const as = rotatingServer("1500 millis")
      const storeA = yield* storeAt(redis.url, { keyRing, subject: "svc" })
      const storeB = yield* storeAt(redis.url, { keyRing, subject: "svc" })
      yield* storeA.set(Redacted.make("rt-0"))
      const a = yield* sourceOver(storeA, as.client, "500 millis")
      const b = yield* sourceOver(storeB, as.client, "5 seconds")

      const first = yield* Effect.either(a.fetch)
      expect(Either.isLeft(first) && first.left.reason._tag).toBe("Timeout")
      // A's request is still out; B must not send rt-0 again.
      const token = yield* b.fetch
      expect(Redacted.value(token.value)).toBe("at-for-rt-1")
      expect(as.presented).toEqual(["rt-0", "rt-1"])
      expect(value(yield* storeA.get)).toEqual(Option.some("rt-2"))
    }))

  it.scopedLive("the watch runs while this instance's own rotation is being written: not a loss, no repair, no warning", () =>
    Effect.gen(function*() {
      const redis = yield* RedisServer.single
      const keyRing = yield* ring("k1")
      const client = yield* RedisIoredis.make({ url: redis.url })
      // The rotation's write is held back so that the watch (every 20 ms) surely reads the record between this
      // instance learning the rotation and storing it: on a starved CPU the fibers interleave so by chance.
      const slowRotationWrite: RedisClient.RedisClient = {
        ...client,
        eval: (script, keys, args) =>
          script.name === "effect-token/rt-complete"
            ? Effect.zipRight(Effect.sleep("300 millis"), client.eval(script, keys, args))
            : client.eval(script, keys, args)
      }
      const { lines, logger } = capturingLogs()
      const store = yield* RedisRefreshTokenStore.make({
        keyRing,
        subject: "svc",
        initial: Redacted.make("rt-0"),
        watchInterval: "20 millis",
        seedSettle: "100 millis"
      }).pipe(Effect.provideService(RedisClient.RedisClient, slowRotationWrite), Effect.provide(logger))
      const as = rotatingServer(0)
      const source = yield* sourceOver(store, as.client, "5 seconds")
      yield* source.fetch.pipe(Effect.provide(logger))
      yield* source.fetch.pipe(Effect.provide(logger))
      expect(as.presented).toEqual(["rt-0", "rt-1"])
      expect(value(yield* store.get)).toEqual(Option.some("rt-2"))
      expect(lines).toEqual([])
    }))
})

describe("an acknowledged rotation survives a failover and an empty restart", () => {
  it.scopedLive("empty restart: the store comes back with the long-spent first token; an instance that knows better repairs it", () =>
    Effect.gen(function*() {
      const redis = yield* RedisServer.single
      const keyRing = yield* ring("k1")
      const initial = Redacted.make("rt-0")
      const options: Options = {
        keyRing,
        subject: "svc",
        initial,
        watchInterval: "100 millis",
        seedSettle: "3 seconds"
      }
      const as = rotatingServer(0)
      const storeA = yield* storeAt(redis.url, options)
      const a = yield* sourceOver(storeA, as.client, "5 seconds")
      yield* a.fetch
      yield* a.fetch
      expect(value(yield* storeA.get)).toEqual(Option.some("rt-2"))

      // Redis restarts empty. A fresh instance, configured with the same first token, reads and seeds it.
      yield* redis.stop
      yield* redis.start
      const { lines, logger } = capturingLogs()
      const storeB = yield* storeAt(redis.url, options).pipe(Effect.provide(logger))
      const b = yield* sourceOver(storeB, as.client, "5 seconds")
      const token = yield* b.fetch.pipe(Effect.provide(logger))
      // B never sent the spent first token: A put rt-2 back while B's seed was settling.
      expect(as.presented).toEqual(["rt-0", "rt-1", "rt-2"])
      expect(Redacted.value(token.value)).toBe("at-for-rt-2")
      expect(value(yield* storeB.get)).toEqual(Option.some("rt-3"))
      expect(lines).toEqual([])
    }))

  it.scopedLive("failover to a replica that missed the last rotation: the store goes back a version; it is repaired", () =>
    Effect.gen(function*() {
      const redis = yield* RedisServer.single
      const keyRing = yield* ring("k1")
      const options: Options = { keyRing, subject: "svc", watchInterval: "100 millis" }
      const as = rotatingServer(0)
      const storeA = yield* storeAt(redis.url, options)
      const a = yield* sourceOver(storeA, as.client, "5 seconds")
      yield* storeA.set(Redacted.make("rt-0"))
      yield* a.fetch
      const keys = yield* RedisRefreshTokenStore.storageKeys("effect-token", "svc")
      // What a lagging replica holds: the record before the last rotation.
      const snapshot = yield* RedisServer.cli(redis.port, "HGETALL", keys.refreshToken)
      yield* a.fetch
      expect(value(yield* storeA.get)).toEqual(Option.some("rt-2"))
      // The failover: the record is back at the older version.
      const pairs = snapshot.trim().split("\n")
      yield* RedisServer.cli(redis.port, "DEL", keys.refreshToken)
      yield* RedisServer.cli(redis.port, "HSET", keys.refreshToken, ...pairs)
      const storeB = yield* storeAt(redis.url, options)
      // B would read rt-1 (spent): A's watch puts rt-2 back first, or B's read of an older version is repaired.
      yield* Effect.sleep("300 millis")
      const b = yield* sourceOver(storeB, as.client, "5 seconds")
      yield* b.fetch
      expect(as.presented).toEqual(["rt-0", "rt-1", "rt-2"])
    }))

  it.scopedLive("a failover loses the spend record while its answer is on the way: the answer's rotation is put back, not forgotten", () =>
    Effect.gen(function*() {
      const redis = yield* RedisServer.single
      const keyRing = yield* ring("k1")
      const a = yield* storeAt(redis.url, { keyRing, subject: "svc", watchInterval: "1 minute" })
      yield* a.set(Redacted.make("rt-0"))
      const keys = yield* RedisRefreshTokenStore.storageKeys("effect-token", "svc")
      // What a replica that missed the spend holds: the record before it (rt-0, version 1, no spend).
      const snapshot = (yield* RedisServer.cli(redis.port, "HGETALL", keys.refreshToken)).trim().split("\n")
      const spend = yield* trySpend(a, "rt-0")
      expect(spend._tag).toBe("Granted")
      if (spend._tag !== "Granted") return
      // The failover: the record is back as it was before the spend.
      yield* RedisServer.cli(redis.port, "DEL", keys.refreshToken)
      yield* RedisServer.cli(redis.port, "HSET", keys.refreshToken, ...snapshot)
      const { lines, logger } = capturingLogs()
      yield* spend.spend.complete({ refreshToken: Option.some(Redacted.make("rt-1")) } as AccessToken.AccessToken)
        .pipe(Effect.provide(logger))
      expect(lines.some((line) => line.includes("lost this instance's spend"))).toBe(true)
      // rt-0 is spent: the store must hold rt-1, for this instance and any other.
      expect(value(yield* a.get)).toEqual(Option.some("rt-1"))
      const b = yield* storeAt(redis.url, { keyRing, subject: "svc" })
      expect(value(yield* b.get)).toEqual(Option.some("rt-1"))
    }))

  it.scopedLive("a rotation waits for the replica (WAIT); a replica that stopped acknowledging is said, not fatal", () =>
    Effect.gen(function*() {
      const redis = yield* RedisServer.single
      const replica = yield* RedisServer.replicaOf(redis)
      const keyRing = yield* ring("k1")
      const { lines, logger } = capturingLogs()
      const store = yield* storeAt(redis.url, { keyRing, subject: "svc", replicationTimeout: "2 seconds" })
      yield* store.set(Redacted.make("rt-0")).pipe(Effect.provide(logger))
      expect(lines).toEqual([])
      // The replica has it.
      const keys = yield* RedisRefreshTokenStore.storageKeys("effect-token", "svc")
      expect(yield* RedisServer.cli(replica.port, "HGET", keys.refreshToken, "v")).toContain("1")

      process.kill(replica.process()!.pid!, "SIGSTOP")
      yield* Effect.addFinalizer(() => Effect.sync(() => process.kill(replica.process()!.pid!, "SIGCONT")))
      const started = Date.now()
      yield* store.set(Redacted.make("rt-1")).pipe(Effect.provide(logger))
      expect(Date.now() - started).toBeGreaterThanOrEqual(1_990)
      expect(lines.some((line) => line.includes("acknowledged by 0 of 1 replicas within 2s"))).toBe(true)
    }))
})

describe("an unreadable record is loud and left alone", () => {
  it.scopedLive("an instance whose ring cannot read it warns once, fails Misconfigured, and changes nothing", () =>
    Effect.gen(function*() {
      const redis = yield* RedisServer.single
      const a = yield* storeAt(redis.url, { keyRing: yield* ring("k1"), subject: "svc" })
      const { lines, logger } = capturingLogs()
      const stranger = yield* storeAt(redis.url, {
        keyRing: yield* ring("k2"),
        subject: "svc",
        initial: Redacted.make("rt-config"),
        watchInterval: "50 millis"
      }).pipe(Effect.provide(logger))
      yield* a.set(Redacted.make("rt-0"))
      const keys = yield* RedisRefreshTokenStore.storageKeys("effect-token", "svc")
      const before = yield* RedisServer.cli(redis.port, "HGETALL", keys.refreshToken)
      for (let i = 0; i < 3; i++) {
        const error = yield* Effect.flip(stranger.get.pipe(Effect.provide(logger)))
        expect(error.reason._tag).toBe("Misconfigured")
      }
      yield* Effect.sleep("200 millis")
      expect(lines.filter((line) => line.includes("cannot be decrypted"))).toHaveLength(1)
      expect(yield* RedisServer.cli(redis.port, "HGETALL", keys.refreshToken)).toBe(before)
      expect(value(yield* a.get)).toEqual(Option.some("rt-0"))
    }))
})
