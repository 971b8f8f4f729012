import { RefreshTokenStore, TokenError } from "@effect-token/core"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Encoding from "effect/Encoding"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Random from "effect/Random"
import * as Redacted from "effect/Redacted"
import * as Ref from "effect/Ref"
import * as RedisClient from "../RedisClient.js"
import type { Options, StorageKeys } from "../RedisRefreshTokenStore.js"
import { makeHealth } from "./health.js"
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

const randomOwner = (): string => Encoding.encodeBase64Url(globalThis.crypto.getRandomValues(new Uint8Array(16)))

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
    const lockTtl = Duration.toMillis(options.lockTtl ?? defaults.lockTtl)
    const pollMillis = Duration.toMillis(options.pollInterval ?? defaults.pollInterval)
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

    /** Waits for the lock while another process holds it; `None` when Redis failed (the local turn is the lock). */
    const acquire = Effect.gen(function*() {
      const owner = randomOwner()
      while (true) {
        const taken = yield* guard(client.set(keys.lock, owner, { nx: true, px: lockTtl }))
        if (taken) return Option.some(owner)
        // Jittered, so that waiting processes do not ask in step.
        yield* Effect.sleep(Duration.millis(pollMillis * (0.5 + (yield* Random.next))))
      }
    }).pipe(Effect.catchTag("RedisError", () => Effect.succeedNone))

    const release = (owner: string) => Effect.ignore(guard(client.eval(Scripts.release, [keys.lock], [owner])))

    // The lease outlives any one refresh because its holder keeps extending it; a holder that dies stops, and the
    // lease lapses within `lockTtl`.
    const renewEvery = Duration.millis(Math.max(1, Math.floor(lockTtl / 3)))
    const renewing = (owner: string) =>
      guard(client.eval(Scripts.renew, [keys.lock], [owner, lockTtl])).pipe(
        Effect.ignore,
        Effect.delay(renewEvery),
        Effect.forever
      )

    const withLock = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
      local.withPermits(1)(
        Effect.uninterruptibleMask((restore) =>
          Effect.flatMap(restore(acquire), (lease) =>
            Option.match(lease, {
              onNone: () => restore(effect),
              onSome: (owner) =>
                Effect.flatMap(
                  // Interruptible: a fiber forked in an uninterruptible region inherits it and could never be stopped.
                  Effect.fork(Effect.interruptible(renewing(owner))),
                  (renewal) =>
                    restore(effect).pipe(Effect.ensuring(Effect.zipRight(Fiber.interrupt(renewal), release(owner))))
                )
            }))
        )
      )

    return { get, set, clear, withLock } satisfies RefreshTokenStore.RefreshTokenStore
  })
