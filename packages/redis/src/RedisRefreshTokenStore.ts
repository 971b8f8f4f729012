/**
 * A `RefreshTokenStore` on Redis: one rotating refresh token shared by every instance of a service, spent at most
 * once in the whole cluster, its successor never lost, whatever pauses, failovers and blips happen.
 *
 * With rotation every refresh spends the stored refresh token and returns the next one, and a server with reuse
 * detection answers a second use of a spent token by revoking the whole family (RFC 9700 §4.14.2). This store keeps
 * the token encrypted (AES-GCM, `KeyRing`) under `{prefix:rt:<sha256(subject)>}:refresh` and fences each spend:
 * - `withLock` holds a lease across processes (`SET NX PX`, renewed while the refresh runs, compare-and-delete).
 * - `spend`, right before core's refresh source sends the token, checks in one script that this instance still
 *   holds the lease, the token is still the stored one and no other spend of it is unresolved, and records the
 *   spend until its deadline (the source's `answerTimeout` and a margin). No record, no send. The answer resolves it
 *   by compare-and-set whenever it arrives (core reads it even after its caller stopped waiting); until then, and
 *   until the deadline, every other instance waits and serves the access tokens it has.
 * - After each write, `WAIT` for replicas (up to `replicas`, where the node has any, within `replicationTimeout`).
 * - Every instance remembers the newest token it has seen (its rotations, its reads, and a watch that follows the
 *   record: pub/sub plus a read every `watchInterval`) and repairs a store that lost it, from a failover to a
 *   replica that missed the write or an empty restart, instead of sending the older token it finds there.
 * - `initial` seeds only an empty store, and a seeded token settles for `seedSettle` before anyone spends it, so
 *   that running instances that know a newer one put it back first.
 *
 * The lock makes instances take turns, not share results: for one refresh per expiry across the cluster, share the
 * access tokens too, with `RedisTokenStore.shared` over the refresh source (see the example on {@link layer}).
 *
 * Redis down: no spend is recorded, so no refresh token is sent (no check, no send); the cache keeps serving the
 * access tokens it has, and a rotation Redis did not take is kept in this process and written when Redis answers.
 * What stays impossible (a process that dies after sending) is in docs/ARCHITECTURE.md.
 *
 * @since 0.1.0
 */
import { RefreshTokenStore } from "@effect-token/core"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as prefixes from "./internal/prefix.js"
import * as internal from "./internal/refreshStore.js"
import * as KeyRing from "./KeyRing.js"
import type * as RedisClient from "./RedisClient.js"

/**
 * @example
 * ```ts
 * import type { KeyRing, RedisRefreshTokenStore } from "@effect-token/redis"
 *
 * declare const keyRing: KeyRing.KeyRing
 * const options: RedisRefreshTokenStore.Options = { keyRing, subject: "reporting-service@tenant-42" }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly keyRing: KeyRing.KeyRing
  /**
   * Whose refresh token this is (a user, device or service account; never the token). Instances with the same
   * prefix and subject share the token. It is hashed into the Redis key.
   */
  readonly subject: string
  /** The start of every key. No `{` or `}`. Default `"effect-token"`, as `RedisTokenStore`'s. */
  readonly prefix?: string | undefined
  /**
   * A first refresh token (from configuration, a one-off login), written only when Redis holds none for the
   * subject: a restarted instance never puts back a token that a sibling has already rotated.
   */
  readonly initial?: Redacted.Redacted<string> | undefined
  /**
   * How long the lock outlives a holder that stopped extending it (a crashed or stalled process); the holder
   * extends it every third of this. Default 15 seconds.
   */
  readonly lockTtl?: Duration.DurationInput | undefined
  /** How often a process waiting for the lock asks again (jittered). Default 100 ms. */
  readonly pollInterval?: Duration.DurationInput | undefined
  /** After a Redis failure, Redis is not asked again for this long. Default 2 seconds. */
  readonly retryRedisAfter?: Duration.DurationInput | undefined
  /**
   * How often this instance reads the record to learn other instances' rotations and repair a store that lost one
   * (pub/sub wakes it sooner). Default 1 second.
   */
  readonly watchInterval?: Duration.DurationInput | undefined
  /**
   * How long a token seeded from `initial`, or put back by a repair, waits before anyone spends it, so that running
   * instances that know a newer token put it back first: after an empty restart, and after a failover that lost an
   * unresolved spend (its sender's answer is newer than the repaired token). Keep it above the time an instance
   * takes to notice: its client's reconnection (up to 2 s with `failFastOptions`), `watchInterval` and a Redis
   * timeout. Default 5 s.
   */
  readonly seedSettle?: Duration.DurationInput | undefined
  /**
   * How many replicas must acknowledge a written token (`WAIT`), at most as many as the node has. In a Cluster a
   * replica counts while the cluster lists it for the node, even with its replication link down (a partition, a
   * replica that fell behind): the write then waits `replicationTimeout` and says that no replica acknowledged it,
   * rather than skip the wait silently when the write is least safe. Outside a Cluster only connected replicas
   * count. Default 1.
   */
  readonly replicas?: number | undefined
  /** How long a write waits for them; a shortfall is logged, and the token kept here for repairs. Default 1 s. */
  readonly replicationTimeout?: Duration.DurationInput | undefined
}

/**
 * The Redis keys of a subject's refresh token: the record (a hash with `v`, the version, and `data`, the encrypted
 * token) and the lock. They share one hash tag, so they live on one Cluster node.
 *
 * @example
 * ```ts
 * import { RedisRefreshTokenStore } from "@effect-token/redis"
 *
 * const keys = RedisRefreshTokenStore.storageKeys("effect-token", "alice")
 * // Effect<{ id, refreshToken: "{effect-token:rt:<id>}:refresh", lock: "{effect-token:rt:<id>}:lock" }>
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface StorageKeys {
  readonly id: string
  readonly refreshToken: string
  readonly lock: string
}

/**
 * The keys a store with this prefix uses for `subject`.
 *
 * @example
 * ```ts
 * import { RedisRefreshTokenStore } from "@effect-token/redis"
 * import { Effect } from "effect"
 *
 * const lockKey = Effect.map(RedisRefreshTokenStore.storageKeys("billing", "alice"), (keys) => keys.lock)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const storageKeys: (prefix: string, subject: string) => Effect.Effect<StorageKeys> = internal.storageKeys

/**
 * A store for one subject's refresh token.
 *
 * @example
 * ```ts
 * import { RedisClient, RedisRefreshTokenStore } from "@effect-token/redis"
 * import type { KeyRing } from "@effect-token/redis"
 * import { Effect } from "effect"
 * import { RedisIoredis } from "@effect-token/redis/ioredis"
 *
 * declare const keyRing: KeyRing.KeyRing
 * const program = Effect.gen(function*() {
 *   const store = yield* RedisRefreshTokenStore.make({ keyRing, subject: "reporting-service" })
 *   return yield* store.get
 * }).pipe(Effect.scoped, Effect.provide(RedisIoredis.layer({ url: "redis://127.0.0.1:6379" })))
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: (
  options: Options
) => Effect.Effect<RefreshTokenStore.RefreshTokenStore, never, RedisClient.RedisClient | Scope.Scope> = internal.make

/**
 * Provides core's `RefreshTokenStore` on Redis. Put `RedisTokenStore.layerShared()` between the refresh source and
 * the cache so that the cluster makes one refresh per expiry and the others take its access token.
 *
 * @example
 * ```ts
 * import { ClientAuth, RefreshToken, TokenCache } from "@effect-token/core"
 * import { KeyRing, RedisClient, RedisRefreshTokenStore, RedisTokenStore } from "@effect-token/redis"
 * import { NodeHttpClient } from "@effect/platform-node"
 * import { Layer } from "effect"
 * import { RedisIoredis } from "@effect-token/redis/ioredis"
 *
 * declare const keyRing: KeyRing.KeyRing
 * const TokensLive = TokenCache.layer().pipe(
 *   Layer.provide(RedisTokenStore.layerShared()),
 *   Layer.provide(RefreshToken.layer({
 *     tokenUrl: "https://auth.example.com/oauth/token",
 *     clientAuth: ClientAuth.none({ clientId: "reporting" }),
 *     subjectKey: "reporting-service"
 *   })),
 *   Layer.provide(RedisRefreshTokenStore.layer({ keyRing, subject: "reporting-service" })),
 *   Layer.provide(RedisTokenStore.layer({ keyRing })),
 *   Layer.provide(Layer.merge(RedisIoredis.layerConfig(), NodeHttpClient.layerUndici))
 * )
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Options
): Layer.Layer<RefreshTokenStore.RefreshTokenStore, never, RedisClient.RedisClient> =>
  Layer.scoped(RefreshTokenStore.RefreshTokenStore, make(options))

/**
 * What {@link config} reads.
 *
 * @example
 * ```ts
 * import { RedisRefreshTokenStore } from "@effect-token/redis"
 * import { Config } from "effect"
 *
 * const subject = Config.map(RedisRefreshTokenStore.config, (options) => options.subject)
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface ConfigOptions extends Omit<Options, "keyRing"> {
  readonly keys: ReadonlyArray<KeyRing.Key>
}

/**
 * Settings from configuration: `REDIS_TOKEN_KEYS` and `REDIS_TOKEN_PREFIX` (as `RedisTokenStore.config`),
 * `REFRESH_TOKEN_SUBJECT` (required), `REFRESH_TOKEN` (optional first token, read as `Redacted`), optional
 * durations `REFRESH_TOKEN_LOCK_TTL`, `REFRESH_TOKEN_POLL_INTERVAL`, `REFRESH_TOKEN_WATCH_INTERVAL`,
 * `REFRESH_TOKEN_SEED_SETTLE`, `REFRESH_TOKEN_REPLICATION_TIMEOUT`, and `REFRESH_TOKEN_REPLICAS` (an integer).
 *
 * @example
 * ```ts
 * import { RedisRefreshTokenStore } from "@effect-token/redis"
 * import { Config } from "effect"
 *
 * // reads GITHUB_REFRESH_TOKEN_SUBJECT, GITHUB_REFRESH_TOKEN, GITHUB_REDIS_TOKEN_KEYS, ...
 * const github = Config.nested(RedisRefreshTokenStore.config, "GITHUB")
 * ```
 *
 * @since 0.1.0
 * @category config
 */
export const config: Config.Config<ConfigOptions> = Config.all({
  keys: KeyRing.keysConfig,
  prefix: prefixes.prefixConfig,
  subject: Config.nonEmptyString("REFRESH_TOKEN_SUBJECT"),
  initial: Config.option(Config.redacted("REFRESH_TOKEN")),
  lockTtl: Config.option(Config.duration("REFRESH_TOKEN_LOCK_TTL")),
  pollInterval: Config.option(Config.duration("REFRESH_TOKEN_POLL_INTERVAL")),
  watchInterval: Config.option(Config.duration("REFRESH_TOKEN_WATCH_INTERVAL")),
  seedSettle: Config.option(Config.duration("REFRESH_TOKEN_SEED_SETTLE")),
  replicas: Config.option(Config.integer("REFRESH_TOKEN_REPLICAS")),
  replicationTimeout: Config.option(Config.duration("REFRESH_TOKEN_REPLICATION_TIMEOUT"))
}).pipe(Config.map((c): ConfigOptions => ({
  keys: c.keys,
  prefix: c.prefix,
  subject: c.subject,
  initial: Option.getOrUndefined(c.initial),
  lockTtl: Option.getOrUndefined(c.lockTtl),
  pollInterval: Option.getOrUndefined(c.pollInterval),
  watchInterval: Option.getOrUndefined(c.watchInterval),
  seedSettle: Option.getOrUndefined(c.seedSettle),
  replicas: Option.getOrUndefined(c.replicas),
  replicationTimeout: Option.getOrUndefined(c.replicationTimeout)
})))

/**
 * Provides the store from configuration (see {@link config}).
 *
 * @example
 * ```ts
 * import { RedisClient, RedisRefreshTokenStore } from "@effect-token/redis"
 * import { Layer } from "effect"
 * import { RedisIoredis } from "@effect-token/redis/ioredis"
 *
 * const StoreLive = RedisRefreshTokenStore.layerConfig().pipe(Layer.provide(RedisIoredis.layerConfig()))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  options: Config.Config<ConfigOptions> = config
): Layer.Layer<RefreshTokenStore.RefreshTokenStore, ConfigError.ConfigError, RedisClient.RedisClient> =>
  Layer.scoped(
    RefreshTokenStore.RefreshTokenStore,
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
 * import { RedisRefreshTokenStore } from "@effect-token/redis"
 * import { Duration } from "effect"
 *
 * Duration.toSeconds(RedisRefreshTokenStore.defaults.lockTtl) // 15
 * ```
 *
 * @since 0.1.0
 * @category constants
 */
export const defaults: {
  readonly lockTtl: Duration.Duration
  readonly pollInterval: Duration.Duration
  readonly retryRedisAfter: Duration.Duration
  readonly watchInterval: Duration.Duration
  readonly seedSettle: Duration.Duration
  readonly replicas: number
  readonly replicationTimeout: Duration.Duration
} = internal.defaults
