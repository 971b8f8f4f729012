/**
 * `@effect-token/session`'s `UserTokenStore` on Redis: user sessions shared by every instance of a web application,
 * so a user's requests may land on any of them.
 *
 * - A session is one hash, `{prefix:s:<sha256(session id)>}:session`, with `v` (its version) and `data` (the
 *   `SessionRecord`'s JSON encoding, encrypted with the `KeyRing`; associated data = the key). Session ids never
 *   appear in Redis, tokens never in plain text. `set` is a compare-and-set on `v` (a Lua script) that also sets the
 *   key's TTL to the session's remaining life, so Redis forgets expired sessions by itself. A record this key ring
 *   cannot decrypt (its key was dropped, or a rotation made the new key current before every instance had it) reads
 *   as absent and is left in place: the user signs in again instead of being locked out until the ring is fixed, and
 *   an instance that holds the key still reads it.
 * - `withLock` holds a lease across processes per session (`{…}:lock`, as `RedisRefreshTokenStore`'s): one user's
 *   parallel requests on different instances refresh once.
 * - Redis down: every operation fails with the session's transient `SessionError` (reason `Unavailable`, a 503 with
 *   `Retry-After`); the session engine deletes nothing for it, so nobody is logged out by an outage.
 *
 * Import it by its path (the package's index does not re-export it, so applications without sessions do not need
 * `@effect-token/session`, an optional peer dependency):
 * `import * as RedisUserTokenStore from "@effect-token/redis/RedisUserTokenStore"`.
 *
 * @since 0.1.0
 */
import { UserTokenStore } from "@effect-token/session"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import * as prefixes from "./internal/prefix.js"
import * as internal from "./internal/userTokenStore.js"
import * as KeyRing from "./KeyRing.js"
import type * as RedisClient from "./RedisClient.js"

/**
 * @example
 * ```ts
 * import type { KeyRing } from "@effect-token/redis"
 * import type * as RedisUserTokenStore from "@effect-token/redis/RedisUserTokenStore"
 *
 * declare const keyRing: KeyRing.KeyRing
 * const options: RedisUserTokenStore.Options = { keyRing, prefix: "shop" }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Encrypts records. Rotate keys by adding the new one second, then making it first. */
  readonly keyRing: KeyRing.KeyRing
  /** The start of every key. No `{` or `}`. Default `"effect-token"`, as the other Redis stores'. */
  readonly prefix?: string | undefined
  /**
   * How long a session's lock outlives a holder that stopped extending it (a crashed or stalled process); the holder
   * extends it every third of this. Default 15 seconds, longer than one token request (10 s endpoint timeout).
   */
  readonly lockTtl?: Duration.DurationInput | undefined
  /** How often a process waiting for a session's lock asks again (jittered). Default 50 ms. */
  readonly pollInterval?: Duration.DurationInput | undefined
  /**
   * After a Redis failure, Redis is not asked again for this long: requests fail at once (503) rather than each
   * waiting for the client's timeout. It is also the `Retry-After` of those answers. Default 2 seconds.
   */
  readonly retryRedisAfter?: Duration.DurationInput | undefined
}

/**
 * The Redis keys of one session: the record and its lock, under one hash tag (one Cluster node).
 *
 * @example
 * ```ts
 * import type * as RedisUserTokenStore from "@effect-token/redis/RedisUserTokenStore"
 *
 * const keys: RedisUserTokenStore.SessionKeys = {
 *   session: "{effect-token:s:<sha256>}:session",
 *   lock: "{effect-token:s:<sha256>}:lock"
 * }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface SessionKeys {
  readonly session: string
  readonly lock: string
}

/**
 * The keys a store with this prefix uses for a session id (hashed: the id is not in them).
 *
 * @example
 * ```ts
 * import * as RedisUserTokenStore from "@effect-token/redis/RedisUserTokenStore"
 * import { Effect, Redacted } from "effect"
 *
 * const recordKey = (id: Redacted.Redacted<string>) =>
 *   Effect.map(RedisUserTokenStore.sessionKeys("shop", id), (keys) => keys.session)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const sessionKeys: (prefix: string, id: Redacted.Redacted<string>) => Effect.Effect<SessionKeys> =
  internal.sessionKeys

/**
 * A session store on the application's `RedisClient`.
 *
 * @example
 * ```ts
 * import { RedisClient } from "@effect-token/redis"
 * import type { KeyRing } from "@effect-token/redis"
 * import * as RedisUserTokenStore from "@effect-token/redis/RedisUserTokenStore"
 * import { Effect, Redacted } from "effect"
 * import { RedisIoredis } from "@effect-token/redis/ioredis"
 *
 * declare const keyRing: KeyRing.KeyRing
 * const program = Effect.gen(function*() {
 *   const store = yield* RedisUserTokenStore.make({ keyRing })
 *   return yield* store.get(Redacted.make("session-id-from-a-cookie"))
 * }).pipe(Effect.scoped, Effect.provide(RedisIoredis.layer({ url: "redis://127.0.0.1:6379" })))
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: (
  options: Options
) => Effect.Effect<UserTokenStore.UserTokenStore, never, RedisClient.RedisClient> = internal.make

/**
 * Provides the session package's `UserTokenStore` on Redis, in place of `UserTokenStore.layerMemory()`.
 *
 * @example
 * ```ts
 * import { KeyRing, RedisClient } from "@effect-token/redis"
 * import * as RedisUserTokenStore from "@effect-token/redis/RedisUserTokenStore"
 * import { Effect, Layer } from "effect"
 * import { RedisIoredis } from "@effect-token/redis/ioredis"
 *
 * // The ring from REDIS_TOKEN_KEYS, the client from its configuration.
 * const StoreLive = Layer.unwrapEffect(
 *   Effect.map(KeyRing.KeyRing, (keyRing) => RedisUserTokenStore.layer({ keyRing, prefix: "shop" }))
 * ).pipe(Layer.provide(Layer.merge(KeyRing.layerConfig(), RedisIoredis.layerConfig())))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Options
): Layer.Layer<UserTokenStore.UserTokenStore, never, RedisClient.RedisClient> =>
  Layer.effect(UserTokenStore.UserTokenStore, make(options))

/**
 * What {@link config} reads.
 *
 * @example
 * ```ts
 * import * as RedisUserTokenStore from "@effect-token/redis/RedisUserTokenStore"
 * import { Config } from "effect"
 *
 * const prefix = Config.map(RedisUserTokenStore.config, (options) => options.prefix)
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface ConfigOptions extends Omit<Options, "keyRing"> {
  readonly keys: ReadonlyArray<KeyRing.Key>
}

/**
 * Settings from configuration: `REDIS_TOKEN_KEYS` (read as `Redacted`) and `REDIS_TOKEN_PREFIX`, as the other Redis
 * stores', and optional durations `SESSION_LOCK_TTL`, `SESSION_LOCK_POLL_INTERVAL`.
 *
 * @example
 * ```ts
 * import * as RedisUserTokenStore from "@effect-token/redis/RedisUserTokenStore"
 * import { Config } from "effect"
 *
 * // reads WEB_REDIS_TOKEN_KEYS, WEB_REDIS_TOKEN_PREFIX, ...
 * const web = Config.nested(RedisUserTokenStore.config, "WEB")
 * ```
 *
 * @since 0.1.0
 * @category config
 */
export const config: Config.Config<ConfigOptions> = Config.all({
  keys: KeyRing.keysConfig,
  prefix: prefixes.prefixConfig,
  lockTtl: Config.option(Config.duration("SESSION_LOCK_TTL")),
  pollInterval: Config.option(Config.duration("SESSION_LOCK_POLL_INTERVAL"))
}).pipe(Config.map((c): ConfigOptions => ({
  keys: c.keys,
  prefix: c.prefix,
  lockTtl: Option.getOrUndefined(c.lockTtl),
  pollInterval: Option.getOrUndefined(c.pollInterval)
})))

/**
 * Provides the store from configuration (see {@link config}).
 *
 * @example
 * ```ts
 * import { RedisClient } from "@effect-token/redis"
 * import * as RedisUserTokenStore from "@effect-token/redis/RedisUserTokenStore"
 * import { Layer } from "effect"
 * import { RedisIoredis } from "@effect-token/redis/ioredis"
 *
 * const StoreLive = RedisUserTokenStore.layerConfig().pipe(Layer.provide(RedisIoredis.layerConfig()))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  options: Config.Config<ConfigOptions> = config
): Layer.Layer<UserTokenStore.UserTokenStore, ConfigError.ConfigError, RedisClient.RedisClient> =>
  Layer.effect(
    UserTokenStore.UserTokenStore,
    Effect.gen(function*() {
      const { keys, ...rest } = yield* options
      return yield* make({ ...rest, keyRing: yield* KeyRing.make(keys) })
    })
  )

/**
 * The defaults of {@link Options}.
 *
 * @example
 * ```ts
 * import * as RedisUserTokenStore from "@effect-token/redis/RedisUserTokenStore"
 * import { Duration } from "effect"
 *
 * Duration.toSeconds(RedisUserTokenStore.defaults.lockTtl) // 15
 * ```
 *
 * @since 0.1.0
 * @category constants
 */
export const defaults: {
  readonly lockTtl: Duration.Duration
  readonly pollInterval: Duration.Duration
  readonly retryRedisAfter: Duration.Duration
} = internal.defaults
