/**
 * The session store on a real redis-server: two stores on separate connections stand for two instances of a web
 * application. Storage, encryption at rest, compare-and-set, TTLs, the per-session lease, Redis
 * outages, and the session engine of two instances over it.
 */
import { AccessToken } from "@effect-token/core"
import { KeyRing, RedisClient } from "@effect-token/redis"
import { RedisIoredis } from "@effect-token/redis/ioredis"
import * as RedisUserTokenStore from "@effect-token/redis/RedisUserTokenStore"
import { SessionError, UserTokenStore } from "@effect-token/session"
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, DateTime, Deferred, Duration, Effect, Fiber, Logger, Option, Redacted, Ref } from "effect"
// The session package's in-process issuer (rotation, reuse detection, a record of refreshes), shared rather than
// copied: this test is the session engine's two-instance test, on Redis.
import * as FakeIssuer from "../../session/test/support/fakeIssuer.js"
import { ring } from "./support/fixtures.js"
import * as RedisServer from "./support/redisServer.js"

/** A store on its own connection, as another process would have. */
const storeAt = (url: string, options: RedisUserTokenStore.Options, timeout: Duration.DurationInput = "1 second") =>
  Effect.flatMap(
    RedisIoredis.make({ url, timeout }),
    (client) => RedisUserTokenStore.make(options).pipe(Effect.provideService(RedisClient.RedisClient, client))
  )

const quiet = Logger.replace(Logger.defaultLogger, Logger.none)

const secretAccessToken = "plain-access-token-4711"
const secretRefreshToken = "plain-refresh-token-0815"

const record = (subject = "alice@example.com") =>
  Effect.map(DateTime.now, (now) =>
    UserTokenStore.SessionRecord.make({
      subject,
      accessToken: AccessToken.make({
        value: Redacted.make(secretAccessToken),
        issuedAt: now,
        expiresAt: Option.some(DateTime.add(now, { minutes: 5 }))
      }),
      refreshToken: Option.some(Redacted.make(secretRefreshToken)),
      idToken: Option.some(Redacted.make("plain-id-token")),
      resourceTokens: {},
      createdAt: now,
      lastSeenAt: now
    }))

const hour = { expectedVersion: undefined, timeToLive: Duration.hours(1) } as const
const sessionId = "session-id-7f3a9c"

/** The raw reply of one command, as redis-cli would see it. */
const raw = (port: number, command: string) => Effect.promise(() => RedisServer.rawCommand(port, command))

const reasonOf = <A>(effect: Effect.Effect<A, SessionError.SessionError>) =>
  Effect.map(Effect.flip(effect), (error) => error.reason._tag)

describe("RedisUserTokenStore", () => {
  it.scopedLive("round trip across two instances; encrypted at rest, no session id or token in Redis", () =>
    Effect.gen(function*() {
      const redis = yield* RedisServer.single
      const keyRing = yield* ring("k1")
      const a = yield* storeAt(redis.url, { keyRing })
      const b = yield* storeAt(redis.url, { keyRing })
      const id = Redacted.make(sessionId)
      const written = yield* record()

      expect(yield* b.get(id)).toEqual(Option.none())
      const version = yield* a.set(id, written, hour)
      expect(Option.isSome(version)).toBe(true)

      const read = yield* b.get(id)
      expect(Option.map(read, (found) => found.version)).toEqual(version)
      const got = Option.getOrThrow(read).record
      expect(got.subject).toBe("alice@example.com")
      expect(Redacted.value(got.accessToken.value)).toBe(secretAccessToken)
      expect(Option.map(got.refreshToken, Redacted.value)).toEqual(Option.some(secretRefreshToken))
      expect(DateTime.toEpochMillis(got.createdAt)).toBe(DateTime.toEpochMillis(written.createdAt))

      const keys = yield* RedisUserTokenStore.sessionKeys("effect-token", id)
      const dump = yield* raw(redis.port, `HGETALL ${keys.session}`)
      expect(dump).toContain("v1.k1.")
      const allKeys = yield* raw(redis.port, "KEYS *")
      for (const text of [dump, allKeys]) {
        for (const secret of [sessionId, secretAccessToken, secretRefreshToken, "plain-id-token", "alice"]) {
          expect(text).not.toContain(secret)
        }
      }

      yield* b.delete(id)
      expect(yield* a.get(id)).toEqual(Option.none())
      // Deleting an unknown id is not an error.
      yield* a.delete(id)
    }))

  it.scopedLive("compare-and-set: a write on a stale version is refused, a new id must not exist", () =>
    Effect.gen(function*() {
      const redis = yield* RedisServer.single
      const keyRing = yield* ring("k1")
      const a = yield* storeAt(redis.url, { keyRing })
      const b = yield* storeAt(redis.url, { keyRing })
      const id = Redacted.make(sessionId)
      const first = Option.getOrThrow(yield* a.set(id, yield* record(), hour))

      // A second login with the same id: refused.
      expect(yield* b.set(id, yield* record("mallory"), hour)).toEqual(Option.none())

      // Both read version `first`; a writes first, b's write on the same version loses.
      const second = yield* a.set(id, yield* record("alice-2"), {
        expectedVersion: first,
        timeToLive: Duration.hours(1)
      })
      expect(Option.isSome(second)).toBe(true)
      expect(Option.getOrThrow(second)).not.toBe(first)
      expect(yield* b.set(id, yield* record("alice-3"), { expectedVersion: first, timeToLive: Duration.hours(1) }))
        .toEqual(Option.none())
      const stored = Option.getOrThrow(yield* b.get(id))
      expect(stored.record.subject).toBe("alice-2")
      expect(Option.some(stored.version)).toEqual(second)
    }))

  it.scopedLive("the record's TTL is the session's time to live, set again on every write", () =>
    Effect.gen(function*() {
      const redis = yield* RedisServer.single
      const a = yield* storeAt(redis.url, { keyRing: yield* ring("k1") })
      const id = Redacted.make(sessionId)
      const keys = yield* RedisUserTokenStore.sessionKeys("effect-token", id)
      const v1 = Option.getOrThrow(
        yield* a.set(id, yield* record(), { expectedVersion: undefined, timeToLive: Duration.hours(1) })
      )
      const ttl1 = Number((yield* raw(redis.port, `PTTL ${keys.session}`)).slice(1))
      expect(ttl1).toBeGreaterThan(3_590_000)
      expect(ttl1).toBeLessThanOrEqual(3_600_000)

      yield* a.set(id, yield* record(), { expectedVersion: v1, timeToLive: Duration.millis(300) })
      const ttl2 = Number((yield* raw(redis.port, `PTTL ${keys.session}`)).slice(1))
      expect(ttl2).toBeGreaterThan(0)
      expect(ttl2).toBeLessThanOrEqual(300)
      yield* Effect.sleep("400 millis")
      expect(yield* a.get(id)).toEqual(Option.none())
    }))

  it.scopedLive("a record this key ring cannot decrypt reads as absent (the user signs in again), and stays", () =>
    Effect.gen(function*() {
      const redis = yield* RedisServer.single
      const a = yield* storeAt(redis.url, { keyRing: yield* ring("k1") })
      const b = yield* storeAt(redis.url, { keyRing: yield* ring("k2") })
      const id = Redacted.make(sessionId)
      yield* a.set(id, yield* record(), hour)
      const keys = yield* RedisUserTokenStore.sessionKeys("effect-token", id)
      const before = yield* RedisServer.cli(redis.port, "HGET", keys.session, "data")
      expect(before.length).toBeGreaterThan(20)
      const lines: Array<string> = []
      const logger = Logger.replace(Logger.defaultLogger, Logger.make(({ message }) => lines.push(String(message))))
      for (let i = 0; i < 5; i++) expect(yield* Effect.provide(b.get(id), logger)).toEqual(Option.none())
      // Loud once per stretch of unreadability, not once per request; the record is left for the instances that
      // can read it.
      expect(lines.filter((line) => line.includes("cannot be read"))).toHaveLength(1)
      expect(yield* RedisServer.cli(redis.port, "HGET", keys.session, "data")).toBe(before)
      expect(Option.isSome(yield* a.get(id))).toBe(true)
    }))

  it.scopedLive("withLock: two instances never run inside at once for one session; other sessions do not wait", () =>
    Effect.gen(function*() {
      const redis = yield* RedisServer.single
      const keyRing = yield* ring("k1")
      const options = { keyRing, pollInterval: "10 millis" } as const
      const a = yield* storeAt(redis.url, options)
      const b = yield* storeAt(redis.url, options)
      const id = Redacted.make(sessionId)
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
      const holding = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const other = yield* Effect.fork(
        a.withLock(
          Redacted.make("another-session"),
          Effect.zipRight(Deferred.succeed(holding, undefined), Deferred.await(release))
        )
      )
      yield* Deferred.await(holding)
      yield* Effect.all(
        Array.from({ length: 12 }, (_, i) => (i % 2 === 0 ? a : b).withLock(id, critical)),
        { concurrency: "unbounded" }
      )
      expect(yield* Ref.get(runs)).toBe(12)
      expect(yield* Ref.get(most)).toBe(1)
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(other)

      // Released: no lease is left behind.
      const keys = yield* RedisUserTokenStore.sessionKeys("effect-token", id)
      expect(yield* raw(redis.port, `EXISTS ${keys.lock}`)).toContain(":0")
    }))

  it.scopedLive("Redis killed: typed Unavailable (503) from every operation, never a defect; restarted: works", () =>
    Effect.gen(function*() {
      const redis = yield* RedisServer.single
      const keyRing = yield* ring("k1")
      const options = { keyRing, retryRedisAfter: "10 millis" } as const
      const a = yield* storeAt(redis.url, options)
      const id = Redacted.make(sessionId)
      const version = Option.getOrThrow(yield* a.set(id, yield* record(), hour))
      yield* redis.stop

      const errors = [
        yield* Effect.flip(a.get(id)),
        yield* Effect.flip(a.set(id, yield* record(), { expectedVersion: version, timeToLive: Duration.hours(1) })),
        yield* Effect.flip(a.delete(id)),
        yield* Effect.flip(a.withLock(id, Effect.succeed("ran")))
      ]
      for (const error of errors) {
        expect(error._tag).toBe("SessionError")
        expect(error.reason._tag).toBe("Unavailable")
        expect(SessionError.status(error)).toBe(503)
        expect(error.message).not.toContain(sessionId)
        expect(error.message).not.toContain(secretRefreshToken)
        yield* Effect.sleep("15 millis")
      }

      yield* redis.start
      const b = yield* storeAt(redis.url, options)
      const again = Redacted.make("session-after-restart")
      yield* b.set(again, yield* record(), hour)
      // a's connection comes back on its own schedule.
      const seen = yield* a.get(again).pipe(
        Effect.tapError(() => Effect.sleep("50 millis")),
        Effect.retry({ times: 100 })
      )
      expect(Option.map(seen, (found) => found.record.subject)).toEqual(Option.some("alice@example.com"))
    }).pipe(Effect.provide(quiet)))

  it.scopedLive("Redis paused (hung): the session engine answers 503, deletes nothing, and serves the same session after", () =>
    Effect.gen(function*() {
      const redis = yield* RedisServer.single
      const keyRing = yield* ring("k1")
      const fake = yield* FakeIssuer.make
      const store = yield* storeAt(redis.url, { keyRing, retryRedisAfter: "10 millis" }, "200 millis")
      const { sessions } = yield* FakeIssuer.sessions(fake, { store })
      const id = yield* Effect.flatMap(
        FakeIssuer.loginToken({ lifetime: Duration.minutes(5) }),
        (token) => sessions.create({ subject: "alice", token, idToken: Option.none() })
      )
      const redisProcess = redis.process()!
      redisProcess.kill("SIGSTOP")
      const error = yield* Effect.flip(sessions.accessToken(id)).pipe(
        Effect.ensuring(Effect.sync(() => redisProcess.kill("SIGCONT")))
      )
      expect(error.reason._tag).toBe("Unavailable")
      expect(SessionError.status(error)).toBe(503)
      yield* Effect.sleep("50 millis")
      const token = yield* sessions.accessToken(id).pipe(
        Effect.tapError(() => Effect.sleep("50 millis")),
        Effect.retry({ times: 40 })
      )
      expect(Redacted.value(token.value)).toBe("at-0")
      expect(yield* reasonOf(sessions.accessToken(Redacted.make("unknown")))).toBe("NotSignedIn")
    }).pipe(Effect.provide(quiet)))

  it.scopedLive("Redis stalls for 6 s: a signed-in request past expiry is answered within one Redis timeout and a refresh's bound", () =>
    Effect.gen(function*() {
      const redis = yield* RedisServer.single
      const keyRing = yield* ring("k1")
      const fake = yield* FakeIssuer.make
      // 500 ms Redis timeout, 1 s for a refresh's answer: the stated bound is their sum, plus room for a busy CPU.
      const store = yield* storeAt(redis.url, { keyRing, retryRedisAfter: "100 millis" }, "500 millis")
      const { sessions } = yield* FakeIssuer.sessions(fake, { store, attemptTimeout: "1 second" })
      const id = yield* Effect.flatMap(
        FakeIssuer.loginToken({ lifetime: Duration.seconds(2) }),
        (token) => sessions.create({ subject: "alice", token, idToken: Option.none() })
      )
      yield* Effect.sleep("2 seconds")
      const redisProcess = redis.process()!
      // The refresh is under way when Redis stalls: its lease is held, its writes hang.
      const held = yield* fake.hold
      const first = yield* Effect.fork(Effect.either(sessions.accessToken(id)))
      yield* Deferred.await(held.started)
      redisProcess.kill("SIGSTOP")
      yield* Effect.addFinalizer(() => Effect.sync(() => redisProcess.kill("SIGCONT")))
      yield* held.open
      const waits: Array<number> = []
      for (let i = 0; i < 5; i++) {
        const started = Date.now()
        const result = yield* Effect.either(sessions.accessToken(id))
        waits.push(Date.now() - started)
        expect(result._tag === "Left" && result.left.reason._tag).toBe("Unavailable")
        yield* Effect.sleep("500 millis")
      }
      yield* Fiber.join(first)
      redisProcess.kill("SIGCONT")
      process.stdout.write(`    [measured] request waits while Redis stalls: ${waits.join(", ")} ms\n`)
      expect(Math.max(...waits)).toBeLessThan(500 + 1_000 + 1_000)
    }).pipe(Effect.provide(quiet)))

  it.scopedLive("two instances' sessions over Redis: requests split across them past the refresh point make one refresh", () =>
    Effect.gen(function*() {
      const redis = yield* RedisServer.single
      const keyRing = yield* ring("k1")
      const fake = yield* FakeIssuer.make
      const options = { keyRing, pollInterval: "10 millis" } as const
      const one = (yield* FakeIssuer.sessions(fake, { store: yield* storeAt(redis.url, options) })).sessions
      const two = (yield* FakeIssuer.sessions(fake, { store: yield* storeAt(redis.url, options) })).sessions
      // A 2 s token: due for a refresh after 1 s (the refresh window is capped at half the lifetime).
      const id = yield* Effect.flatMap(
        FakeIssuer.loginToken({ lifetime: Duration.seconds(2) }),
        (token) => one.create({ subject: "alice", token, idToken: Option.none() })
      )
      expect(Redacted.value((yield* two.accessToken(id)).value)).toBe("at-0")
      yield* Effect.sleep("1200 millis")

      // The first refresh is held at the issuer until every request has been sent, on both instances.
      const held = yield* fake.hold
      const all = yield* Effect.fork(
        Effect.forEach(
          Array.from({ length: 60 }, (_, i) => i % 2 === 0 ? one : two),
          (instance) => Effect.either(instance.accessToken(id)),
          { concurrency: "unbounded" }
        )
      )
      yield* Deferred.await(held.started)
      yield* Effect.sleep("200 millis")
      yield* held.open
      const answers = yield* Fiber.join(all)
      const rejected = answers.filter((answer) => answer._tag === "Left")
      expect(rejected).toEqual([])
      const tokens = answers.flatMap((answer) => answer._tag === "Right" ? [Redacted.value(answer.right.value)] : [])
      // In the refresh window the current token is still valid: a request may be served it or the new one.
      expect(tokens).toHaveLength(60)
      for (const token of tokens) expect(["at-0", "at-1"]).toContain(token)
      expect(fake.refreshRequests).toEqual([{ refreshToken: "rt-0", resource: null }])

      // Both instances now serve the refreshed token, without another refresh.
      expect(Redacted.value((yield* one.accessToken(id)).value)).toBe("at-1")
      expect(Redacted.value((yield* two.accessToken(id)).value)).toBe("at-1")
      expect(fake.refreshRequests).toHaveLength(1)
    }))

  it.scopedLive("two instances over Redis, past expiry: every request waits for the one refresh and gets its token", () =>
    Effect.gen(function*() {
      const redis = yield* RedisServer.single
      const keyRing = yield* ring("k1")
      const fake = yield* FakeIssuer.make
      const options = { keyRing, pollInterval: "10 millis" } as const
      const one = (yield* FakeIssuer.sessions(fake, { store: yield* storeAt(redis.url, options) })).sessions
      const two = (yield* FakeIssuer.sessions(fake, { store: yield* storeAt(redis.url, options) })).sessions
      // A 2 s token is treated as expired after 1.8 s (the skew is capped at 10 % of the lifetime).
      const id = yield* Effect.flatMap(
        FakeIssuer.loginToken({ lifetime: Duration.seconds(2) }),
        (token) => two.create({ subject: "alice", token, idToken: Option.none() })
      )
      yield* Effect.sleep("1900 millis")
      const held = yield* fake.hold
      const all = yield* Effect.fork(
        Effect.forEach(
          Array.from({ length: 60 }, (_, i) => i % 2 === 0 ? one : two),
          (instance) => Effect.either(instance.accessToken(id)),
          { concurrency: "unbounded" }
        )
      )
      yield* Deferred.await(held.started)
      yield* Effect.sleep("200 millis")
      yield* held.open
      const answers = yield* Fiber.join(all)
      expect(answers.filter((answer) => answer._tag === "Left")).toEqual([])
      expect(new Set(answers.map((answer) => answer._tag === "Right" ? Redacted.value(answer.right.value) : "")))
        .toEqual(new Set(["at-1"]))
      expect(fake.refreshRequests).toEqual([{ refreshToken: "rt-0", resource: null }])
    }))

  it.scopedLive("layerConfig: the key ring and the prefix from configuration", () =>
    Effect.gen(function*() {
      const redis = yield* RedisServer.single
      const key = yield* KeyRing.generateKey("k9")
      const provider = ConfigProvider.fromMap(
        new Map([["REDIS_TOKEN_KEYS", Redacted.value(KeyRing.format([key]))], ["REDIS_TOKEN_PREFIX", "shop"]])
      )
      const client = yield* RedisIoredis.make({ url: redis.url })
      const store = yield* UserTokenStore.UserTokenStore.pipe(
        Effect.provide(RedisUserTokenStore.layerConfig()),
        Effect.provideService(RedisClient.RedisClient, client),
        Effect.withConfigProvider(provider)
      )
      const id = Redacted.make(sessionId)
      yield* store.set(id, yield* record(), hour)
      const keys = yield* RedisUserTokenStore.sessionKeys("shop", id)
      expect(keys.session.startsWith("{shop:s:")).toBe(true)
      expect(yield* raw(redis.port, `HGET ${keys.session} data`)).toContain("v1.k9.")

      const invalid = yield* Effect.flip(
        RedisUserTokenStore.config.pipe(
          Effect.withConfigProvider(
            ConfigProvider.fromMap(
              new Map([["REDIS_TOKEN_KEYS", Redacted.value(KeyRing.format([key]))], ["REDIS_TOKEN_PREFIX", "{bad}"]])
            )
          )
        )
      )
      expect(String(invalid)).toContain("REDIS_TOKEN_PREFIX")
      const missing = yield* Effect.flip(
        RedisUserTokenStore.config.pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map())))
      )
      expect(String(missing)).toContain("REDIS_TOKEN_KEYS")
      expect(String(missing)).not.toContain(Redacted.value(KeyRing.format([key])).slice("k9:".length))
    }))
})
