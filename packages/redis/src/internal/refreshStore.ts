import { RefreshTokenStore, TokenError } from "@effect-token/core"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Encoding from "effect/Encoding"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Ref from "effect/Ref"
import * as RedisClient from "../RedisClient.js"
import type { Options, StorageKeys } from "../RedisRefreshTokenStore.js"
import { makeHealth } from "./health.js"
import { makeLease } from "./lease.js"
import { defaultPrefix, validPrefix } from "./prefix.js"
import * as Scripts from "./scripts.js"

export const defaults = {
  lockTtl: Duration.seconds(15),
  pollInterval: Duration.millis(100),
  retryRedisAfter: Duration.seconds(2)
} as const

const utf8 = new TextEncoder()

export const storageKeys = (prefix: string, subject: string): Effect.Effect<StorageKeys> =>
  Effect.map(
    Effect.promise(() => globalThis.crypto.subtle.digest("SHA-256", utf8.encode(subject))),
    (digest) => {
      const id = Encoding.encodeBase64Url(new Uint8Array(digest))
      return { id, refreshToken: `{${prefix}:rt:${id}}:refresh`, lock: `{${prefix}:rt:${id}}:lock` }
    }
  )

const outageMessages = {
  down:
    "effect-token/redis: Redis is unavailable; refresh tokens cannot be read or stored there until it answers again " +
    "(refreshes take turns in this process only, and a rotated token Redis did not take is kept here meanwhile)",
  up: "effect-token/redis: Redis answers again; refresh tokens are stored and locked there again"
}

const isHmgetReply = (reply: unknown): reply is [string | null, string | null] =>
  Array.isArray(reply) && reply.length === 2 && reply.every((field) => field === null || typeof field === "string")

/** Redis failures reach the refresh source as the store's own typed, transient error; never with the token. */
const unavailable = (error: RedisClient.RedisError): TokenError.TokenError =>
  RefreshTokenStore.unavailable(`Redis: ${error.message}`)

export const make = (
  options: Options
): Effect.Effect<RefreshTokenStore.RefreshTokenStore, never, RedisClient.RedisClient> =>
  Effect.gen(function*() {
    const client = yield* RedisClient.RedisClient
    const prefix = options.prefix ?? defaultPrefix
    if (!validPrefix(prefix)) {
      return yield* Effect.dieMessage("RedisRefreshTokenStore: the prefix must be non-empty, without { or }")
    }
    const keys = yield* storageKeys(prefix, options.subject)
    const keyRing = options.keyRing
    const lockTtl = Duration.decode(options.lockTtl ?? defaults.lockTtl)
    const pollInterval = Duration.decode(options.pollInterval ?? defaults.pollInterval)
    const health = yield* makeHealth(
      Duration.decode(options.retryRedisAfter ?? defaults.retryRedisAfter),
      outageMessages
    )
    const guard = health.guard
    // A rotated token that Redis failed to take: the only copy of the one valid refresh token, so it is kept and
    // served here until a write succeeds.
    const pending = yield* Ref.make(Option.none<Redacted.Redacted<string>>())
    // Refreshes in this process take turns here first, so only one of them polls Redis for the lock; when Redis is
    // down this is the whole lock.
    const local = yield* Effect.makeSemaphore(1)

    const write = (token: Redacted.Redacted<string>, mode: "set" | "seed") =>
      Effect.flatMap(
        keyRing.encrypt(Redacted.value(token), keys.refreshToken),
        (data) => guard(client.eval(Scripts.writeRefreshToken, [keys.refreshToken], [data, mode]))
      )

    const flush = (token: Redacted.Redacted<string>) =>
      write(token, "set").pipe(
        // Clear only what was flushed: a newer rotation may have become pending meanwhile.
        Effect.zipRight(
          Ref.update(pending, (current) => Option.isSome(current) && current.value === token ? Option.none() : current)
        ),
        Effect.ignore
      )

    const readStored: Effect.Effect<Option.Option<Redacted.Redacted<string>>, TokenError.TokenError> = Effect.gen(
      function*() {
        const reply = yield* guard(
          client.send<unknown>("HMGET", keys.refreshToken, "v", "data").pipe(
            Effect.filterOrFail(isHmgetReply, () =>
              new RedisClient.RedisError({ reason: "Command", command: "HMGET", detail: "unexpected reply" }))
          )
        ).pipe(Effect.mapError(unavailable))
        const data = reply[1]
        if (data === null) {
          if (options.initial === undefined) {
            return Option.none()
          }
          const seeded = yield* write(options.initial, "seed").pipe(Effect.mapError(unavailable))
          // Another instance seeded (or rotated) first: its token is the one to use.
          return seeded === 0 ? yield* readStored : Option.some(options.initial)
        }
        const plaintext = yield* keyRing.decrypt(data, keys.refreshToken).pipe(
          Effect.mapError(() =>
            new TokenError.TokenError({
              operation: RefreshTokenStore.operation,
              reason: new TokenError.Misconfigured({
                description:
                  "the stored refresh token cannot be decrypted with this key ring: is the key that wrote it missing?"
              })
            })
          )
        )
        return Option.some(Redacted.make(plaintext))
      }
    )

    const get = Effect.flatMap(
      Ref.get(pending),
      (held) =>
        Option.isSome(held) ? Effect.as(flush(held.value), held) : readStored
    )

    const set = (token: Redacted.Redacted<string>) =>
      Effect.zipRight(
        Ref.set(pending, Option.none()),
        write(token, "set").pipe(
          Effect.asVoid,
          Effect.tapError(() => Ref.set(pending, Option.some(token))),
          Effect.mapError(unavailable)
        )
      )

    const clear = Effect.zipRight(
      Ref.set(pending, Option.none()),
      guard(client.del(keys.refreshToken)).pipe(Effect.asVoid, Effect.mapError(unavailable))
    )

    const lease = makeLease(client, health, { ttl: lockTtl, pollInterval })

    // Redis failing: the local turn is the whole lock, so refreshes still take turns in this process.
    const withLock = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
      local.withPermits(1)(lease.withLease(keys.lock, effect, () => effect))

    return { get, set, clear, withLock } satisfies RefreshTokenStore.RefreshTokenStore
  })
