import { KeyedLock } from "@effect-token/core"
import { SessionError, UserTokenStore } from "@effect-token/session"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Encoding from "effect/Encoding"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as RedisClient from "../RedisClient.js"
import type { Options, SessionKeys } from "../RedisUserTokenStore.js"
import { makeHealth } from "./health.js"
import { makeLease } from "./lease.js"
import { defaultPrefix, validPrefix } from "./prefix.js"
import { unexpectedReply } from "./redisError.js"
import * as Scripts from "./scripts.js"

export const defaults = {
  lockTtl: Duration.seconds(15),
  pollInterval: Duration.millis(50),
  retryRedisAfter: Duration.seconds(2)
} as const

const utf8 = new TextEncoder()

/** SHA-256 of a session id, base64url: the id never appears in Redis, and a key cannot be turned back into it. */
const hashId = (id: Redacted.Redacted<string>): Effect.Effect<string> =>
  Effect.map(
    Effect.promise(() => globalThis.crypto.subtle.digest("SHA-256", utf8.encode(Redacted.value(id)))),
    (digest) => Encoding.encodeBase64Url(new Uint8Array(digest))
  )

export const sessionKeys = (prefix: string, id: Redacted.Redacted<string>): Effect.Effect<SessionKeys> =>
  Effect.map(hashId(id), (hash) => ({ session: `{${prefix}:s:${hash}}:session`, lock: `{${prefix}:s:${hash}}:lock` }))

const outageMessages = {
  down: "effect-token/redis: Redis is unavailable; user sessions cannot be read or written until it answers again " +
    "(requests that need a session answer 503; nobody is logged out)",
  up: "effect-token/redis: Redis answers again; user sessions are served from it again"
}

const isHmgetReply = (reply: unknown): reply is [string | null, string | null] =>
  Array.isArray(reply) && reply.length === 2 && reply.every((field) => field === null || typeof field === "string")

const operation = "session store"

export const make = (
  options: Options
): Effect.Effect<UserTokenStore.UserTokenStore, never, RedisClient.RedisClient> =>
  Effect.gen(function*() {
    const client = yield* RedisClient.RedisClient
    const prefix = options.prefix ?? defaultPrefix
    if (!validPrefix(prefix)) {
      return yield* Effect.dieMessage("RedisUserTokenStore: the prefix must be non-empty, without { or }")
    }
    const keyRing = options.keyRing
    const retryAfter = Duration.decode(options.retryRedisAfter ?? defaults.retryRedisAfter)
    const health = yield* makeHealth(retryAfter, outageMessages)
    const guard = health.guard
    const lease = makeLease(client, health, {
      ttl: Duration.decode(options.lockTtl ?? defaults.lockTtl),
      pollInterval: Duration.decode(options.pollInterval ?? defaults.pollInterval)
    })

    /**
     * Redis failures reach the session as its typed, transient `Unavailable` (a 503 with `Retry-After`): the session
     * engine never deletes a session for it. The message names the command and the reason, never an argument.
     */
    const unavailable = (error: RedisClient.RedisError): SessionError.SessionError =>
      SessionError.make(
        operation,
        new SessionError.Unavailable({ description: `Redis: ${error.message}`, retryAfter })
      )

    /**
     * A stored value this process cannot read: written with a key this ring does not hold (a rotation done in the
     * wrong order, a key dropped too early), tampered with, or from an incompatible version. It is treated as
     * absent: the user signs in again, which is what a lost session costs, whereas failing would lock the user out
     * until an operator fixes the ring. It is not deleted, since an instance that holds the key may still read it.
     * The log line says what, never which session.
     */
    // Said once per stretch of unreadable records, and once when they read again: loud, never a log line per request.
    let unreadableSince = false
    const unreadable = (what: string) =>
      Effect.suspend(() => {
        const already = unreadableSince
        unreadableSince = true
        return Effect.as(
          already ? Effect.void : Effect.logWarning(
            `effect-token/redis: a stored ${what} cannot be read with this key ring (is the key that wrote it ` +
              "missing?); treated as absent, and left in place for the instances that can read it"
          ),
          Option.none()
        )
      })
    const readable = Effect.suspend(() => {
      const was = unreadableSince
      unreadableSince = false
      return was ? Effect.logInfo("effect-token/redis: stored sessions are readable again") : Effect.void
    })

    const encode = <A>(schema: Schema.Schema<A, string>, value: A) =>
      // The values are the session package's own Schema classes: encoding them cannot fail. The error would carry
      // the values (tokens), so it is replaced before it can be reported.
      Schema.encode(schema)(value).pipe(Effect.orDieWith(() => new Error("RedisUserTokenStore: cannot encode a value")))

    const decode = <A>(schema: Schema.Schema<A, string>, json: string, what: string) =>
      Schema.decode(schema)(json).pipe(
        Effect.map(Option.some),
        Effect.catchTag("ParseError", () => unreadable(what))
      )

    const get: UserTokenStore.UserTokenStore["get"] = (id) =>
      Effect.gen(function*() {
        const keys = yield* sessionKeys(prefix, id)
        const reply = yield* guard(
          client.send<unknown>("HMGET", keys.session, "v", "data").pipe(
            Effect.filterOrFail(
              isHmgetReply,
              () => unexpectedReply("HMGET")
            )
          )
        ).pipe(Effect.mapError(unavailable))
        const [version, data] = reply
        if (version === null || data === null) return Option.none()
        const json = yield* keyRing.decrypt(data, keys.session).pipe(Effect.option)
        if (Option.isNone(json)) return yield* unreadable("session")
        yield* readable
        const record = yield* decode(UserTokenStore.SessionRecordJson, json.value, "session")
        return Option.map(record, (record): UserTokenStore.Versioned => ({ record, version: Number(version) }))
      })

    const set: UserTokenStore.UserTokenStore["set"] = (id, record, setOptions) =>
      Effect.gen(function*() {
        const keys = yield* sessionKeys(prefix, id)
        const data = yield* keyRing.encrypt(yield* encode(UserTokenStore.SessionRecordJson, record), keys.session)
        // A TTL of 0 would be refused by Redis; a record past its expiry lives 1 ms.
        const ttl = Math.max(1, Math.ceil(Duration.toMillis(setOptions.timeToLive)))
        const expected = setOptions.expectedVersion === undefined ? "" : String(setOptions.expectedVersion)
        const version = yield* guard(client.eval(Scripts.writeSession, [keys.session], [expected, data, ttl])).pipe(
          Effect.mapError(unavailable)
        )
        return version < 0 ? Option.none() : Option.some(version)
      })

    const del: UserTokenStore.UserTokenStore["delete"] = (id) =>
      Effect.flatMap(
        sessionKeys(prefix, id),
        (keys) => guard(client.del(keys.session)).pipe(Effect.asVoid, Effect.mapError(unavailable))
      )

    // One lock per session in this process while someone holds or waits for it (core's `KeyedLock`), so that one
    // process polls Redis for a session's lease once.
    const locals = KeyedLock.make()

    const withLock: UserTokenStore.UserTokenStore["withLock"] = (id, effect) =>
      Effect.flatMap(sessionKeys(prefix, id), (keys) =>
        // Redis failing while the lease is taken: the work does not run. Unlike a service's refresh token, a
        // session's work under the lock needs Redis anyway (it re-reads and writes the record), and refreshing
        // without the lease could spend a refresh token another instance is spending.
        locals.withLock(keys.lock)(
          lease.withLease(keys.lock, () => effect, (error) => Effect.fail(unavailable(error)))
        ))

    return {
      get,
      set,
      delete: del,
      withLock
    } satisfies UserTokenStore.UserTokenStore
  })
