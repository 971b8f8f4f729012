/**
 * Access tokens shared by every instance of a service through Redis, so that a fleet makes one token request per
 * token lifetime instead of one per instance.
 *
 * The store keeps, per `TokenSource.key`, one record: a version, the token encoded with its Schema and encrypted
 * (AES-GCM, see `KeyRing`), its expiry, and a keyed fingerprint. Its Redis TTL is the token's remaining lifetime.
 * The token's keys share a hash tag (`{prefix:id}:token`, `{prefix:id}:lease`), so the scripts work on a Cluster.
 *
 * {@link shared} wraps a source so that its fetches go through the store with cluster-wide single flight (lease,
 * re-read, fetch, compare-and-set write, notify). Put a `TokenCache` in front of it, as in front of any source: the
 * hot path stays in-process, and Redis is only asked when the local token must be replaced. When Redis is down or
 * slow, fetches go to the wrapped source directly (one warning per outage) and no caller fails because of Redis.
 *
 * @since 0.1.0
 */
import type { AccessToken } from "@effect-token/core"
import { TokenSource } from "@effect-token/core"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import type * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as internal from "./internal/store.js"
import * as KeyRing from "./KeyRing.js"
import type * as RedisClient from "./RedisClient.js"

/**
 * The Redis keys of one token source. `id` is the Base64url SHA-256 of the source's key: source keys name
 * endpoints, clients and audiences, which need not be visible in Redis, and can be long.
 *
 * @example
 * ```ts
 * import { RedisTokenStore } from "@effect-token/redis"
 * import { Effect } from "effect"
 *
 * const keys = Effect.flatMap(RedisTokenStore.RedisTokenStore, (store) => store.keysFor("my-source-key"))
 * // { id: "3q2+7w...", token: "{effect-token:3q2+7w...}:token", lease: "{effect-token:3q2+7w...}:lease" }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface StorageKeys {
  readonly id: string
  /** `{prefix:id}:token`: a hash with `v` (version), `fp` (fingerprint), `exp` (epoch ms), `data` (encrypted). */
  readonly token: string
  /** `{prefix:id}:lease`: the owner of the current fetch, with a TTL. */
  readonly lease: string
}

/**
 * What the store holds for a key. `version` is 0 when nothing was ever written (or the record expired); a token
 * cleared after a rejection leaves its version behind, one higher, without a token.
 *
 * @example
 * ```ts
 * import { RedisTokenStore } from "@effect-token/redis"
 * import { Effect, Option } from "effect"
 *
 * declare const keys: RedisTokenStore.StorageKeys
 * const stored = Effect.flatMap(RedisTokenStore.RedisTokenStore, (store) => store.read(keys)).pipe(
 *   Effect.map((entry) => Option.isSome(entry.token))
 * )
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Entry {
  readonly version: number
  readonly token: Option.Option<AccessToken.AccessToken>
  /** Epoch milliseconds. */
  readonly expiresAt: Option.Option<number>
  /** `false` when a record is there but cannot be decrypted or decoded (a key not in this ring): treat as absent. */
  readonly readable: boolean
}

/**
 * The right to fetch and write a key's token until the lease's TTL ends.
 *
 * @example
 * ```ts
 * import { RedisTokenStore } from "@effect-token/redis"
 * import { Effect, Option } from "effect"
 *
 * declare const keys: RedisTokenStore.StorageKeys
 * const withLease = Effect.gen(function*() {
 *   const store = yield* RedisTokenStore.RedisTokenStore
 *   const lease = yield* store.acquireLease(keys, "15 seconds")
 *   if (Option.isSome(lease)) yield* store.releaseLease(lease.value)
 * })
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Lease {
  readonly keys: StorageKeys
  /** Random, per acquisition: only its holder can write with it or release it. */
  readonly owner: string
}

/**
 * The outcome of a compare-and-set write.
 *
 * - `Written`: the record now holds the token, at `version`.
 * - `LeaseLost`: the lease expired or another instance holds it now; nothing was written.
 * - `VersionConflict`: the record changed since the version the writer read (another write, a clear); nothing was
 *   written. A record that is gone (its TTL ran out with the token it held) is no conflict for the lease holder.
 * - `Skipped`: the token was not written (already expired, or its Schema could not encode it).
 *
 * @example
 * ```ts
 * import type { RedisTokenStore } from "@effect-token/redis"
 *
 * const describe = (result: RedisTokenStore.WriteResult) =>
 *   result._tag === "Written" ? `version ${result.version}` : result._tag
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export type WriteResult =
  | { readonly _tag: "Written"; readonly version: number }
  | { readonly _tag: "LeaseLost" }
  | { readonly _tag: "VersionConflict" }
  | { readonly _tag: "Skipped"; readonly reason: string }

/**
 * A notification that a key's token was written, from pub/sub: a hint to read again, never a token.
 *
 * @example
 * ```ts
 * import type { RedisTokenStore } from "@effect-token/redis"
 *
 * const update: RedisTokenStore.Update = { id: "3q2-7w", version: 4 }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Update {
  readonly id: string
  readonly version: number
}

/**
 * The store's operations. Most applications only use {@link shared}; these are its building blocks.
 *
 * @example
 * ```ts
 * import { RedisTokenStore } from "@effect-token/redis"
 * import { Effect } from "effect"
 *
 * const version = Effect.gen(function*() {
 *   const store = yield* RedisTokenStore.RedisTokenStore
 *   const entry = yield* store.read(yield* store.keysFor("my-source-key"))
 *   return entry.version
 * })
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface RedisTokenStore {
  readonly prefix: string
  /** The pub/sub channel of {@link Update}s. */
  readonly channel: string
  readonly keysFor: (sourceKey: string) => Effect.Effect<StorageKeys>
  readonly read: (keys: StorageKeys) => Effect.Effect<Entry, RedisClient.RedisError>
  /** `SET lease owner NX PX ttl`: `None` when another instance holds it. */
  readonly acquireLease: (
    keys: StorageKeys,
    ttl: Duration.DurationInput
  ) => Effect.Effect<Option.Option<Lease>, RedisClient.RedisError>
  /** Compare-and-delete: releases the lease only if `lease` still holds it. */
  readonly releaseLease: (lease: Lease) => Effect.Effect<boolean, RedisClient.RedisError>
  /** Extends the lease to `ttl` from now, only if `lease` still holds it. */
  readonly renewLease: (lease: Lease, ttl: Duration.DurationInput) => Effect.Effect<boolean, RedisClient.RedisError>
  /**
   * Compare-and-set (one script): writes only while `lease` is held and the record is still at `expectedVersion`
   * (or gone: its TTL ran out with the old token while the holder fetched), then sets the version to
   * `expectedVersion + 1`, the TTL to the token's remaining lifetime and publishes an {@link Update}.
   */
  readonly write: (
    lease: Lease,
    token: AccessToken.AccessToken,
    expectedVersion: number
  ) => Effect.Effect<WriteResult, RedisClient.RedisError>
  /**
   * Compare-and-clear: removes the stored token only if it is `token` (compared by keyed fingerprint, never the
   * token itself), e.g. after a resource server rejected it. Returns whether it did.
   */
  readonly clear: (keys: StorageKeys, token: AccessToken.AccessToken) => Effect.Effect<boolean, RedisClient.RedisError>
  /** Updates for every key while the scope lasts (best effort: pub/sub drops messages while disconnected). */
  readonly subscribeUpdates: Effect.Effect<Queue.Dequeue<Update>, never, Scope.Scope>
}

/**
 * @example
 * ```ts
 * import { RedisTokenStore } from "@effect-token/redis"
 * import { Effect } from "effect"
 *
 * const prefix = Effect.map(RedisTokenStore.RedisTokenStore, (store) => store.prefix)
 * ```
 *
 * @since 0.1.0
 * @category tags
 */
export const RedisTokenStore: Context.Tag<RedisTokenStore, RedisTokenStore> = internal.tag

/**
 * How a shared source waits and leases. Defaults come from the store's {@link Options}.
 *
 * @example
 * ```ts
 * import type { RedisTokenStore } from "@effect-token/redis"
 *
 * // A token endpoint with a 20 s timeout needs a longer lease.
 * const options: RedisTokenStore.SharedOptions = { leaseTtl: "25 seconds", waitTimeout: "30 seconds" }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface SharedOptions {
  /**
   * How long the lease lasts without renewal. The fetching instance renews it every third of this while it works,
   * so a long token request keeps it; a holder that crashed, is paused or lost Redis stops renewing, and the others
   * take over within this. Long enough that a starved process renews in time. Default 10 seconds.
   */
  readonly leaseTtl?: Duration.DurationInput | undefined
  /**
   * How long an instance waits for another's fetch before fetching itself (without writing), while that one keeps
   * renewing its lease (alive, but stuck). Waiters take the lease as soon as it is free, so this is a last resort.
   * Default 20 seconds.
   */
  readonly waitTimeout?: Duration.DurationInput | undefined
  /** How often a waiter reads the store when no notification comes. Default 500 ms. */
  readonly pollInterval?: Duration.DurationInput | undefined
  /** As `TokenCache`'s `skew` (the rule is `TokenTiming.validity`): a stored token within this of its expiry is expired. Default 30 s. */
  readonly skew?: Duration.DurationInput | undefined
  /**
   * The fraction of a stored token's usable lifetime, at its end, in which one instance refreshes it while the
   * others keep using it. Keep it at least the `TokenCache`'s (both default 0.1).
   */
  readonly refreshAhead?: number | undefined
  /** Lifetime assumed for a token whose expiry is unknown, as `TokenCache`'s. Default 5 minutes. */
  readonly defaultLifetime?: Duration.DurationInput | undefined
}

/**
 * @example
 * ```ts
 * import type { KeyRing, RedisTokenStore } from "@effect-token/redis"
 *
 * declare const keyRing: KeyRing.KeyRing
 * const options: RedisTokenStore.Options = { keyRing, prefix: "billing", retryRedisAfter: "5 seconds" }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Options extends SharedOptions {
  readonly keyRing: KeyRing.KeyRing
  /** The start of every key and of the channel. No `{` or `}`. Default `"effect-token"`. */
  readonly prefix?: string | undefined
  /**
   * After a Redis failure, fetches go straight to the source for this long before Redis is tried again, so that a
   * hung Redis costs one timeout per period rather than one per fetch. Default 2 seconds.
   */
  readonly retryRedisAfter?: Duration.DurationInput | undefined
}

/**
 * A store over the `RedisClient`. It listens to its update channel while the scope lasts.
 *
 * @example
 * ```ts
 * import { KeyRing, RedisClient, RedisTokenStore } from "@effect-token/redis"
 * import { Effect, Redacted } from "effect"
 * import { RedisIoredis } from "@effect-token/redis/ioredis"
 *
 * const program = Effect.gen(function*() {
 *   const keyRing = yield* KeyRing.make([{ kid: "k1", key: Redacted.make(crypto.getRandomValues(new Uint8Array(32))) }])
 *   const store = yield* RedisTokenStore.make({ keyRing, prefix: "billing-service" })
 * }).pipe(Effect.scoped, Effect.provide(RedisIoredis.layer({ url: "redis://127.0.0.1:6379" })))
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: (options: Options) => Effect.Effect<RedisTokenStore, never, RedisClient.RedisClient | Scope.Scope> =
  internal.make

/**
 * Provides the store.
 *
 * @example
 * ```ts
 * import { RedisClient, RedisTokenStore } from "@effect-token/redis"
 * import type { KeyRing } from "@effect-token/redis"
 * import { Layer } from "effect"
 * import { RedisIoredis } from "@effect-token/redis/ioredis"
 *
 * declare const keyRing: KeyRing.KeyRing
 * const StoreLive = RedisTokenStore.layer({ keyRing }).pipe(Layer.provide(RedisIoredis.layerConfig()))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<RedisTokenStore, never, RedisClient.RedisClient> =>
  Layer.scoped(RedisTokenStore, make(options))

/**
 * What {@link config} reads.
 *
 * @example
 * ```ts
 * import { RedisTokenStore } from "@effect-token/redis"
 * import { Config } from "effect"
 *
 * const prefixOnly = Config.map(RedisTokenStore.config, (options) => options.prefix)
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface ConfigOptions extends Omit<Options, "keyRing"> {
  readonly keys: ReadonlyArray<KeyRing.Key>
}

/**
 * Store settings from configuration: `REDIS_TOKEN_KEYS` (required, see `KeyRing.parse`), `REDIS_TOKEN_PREFIX`
 * (default `effect-token`), and optional durations `REDIS_TOKEN_LEASE_TTL`, `REDIS_TOKEN_WAIT_TIMEOUT`,
 * `REDIS_TOKEN_POLL_INTERVAL`, `REDIS_TOKEN_RETRY_AFTER`.
 *
 * @example
 * ```ts
 * import { RedisTokenStore } from "@effect-token/redis"
 * import { Config } from "effect"
 *
 * // reads BILLING_REDIS_TOKEN_KEYS, BILLING_REDIS_TOKEN_PREFIX, ...
 * const billing = Config.nested(RedisTokenStore.config, "BILLING")
 * ```
 *
 * @since 0.1.0
 * @category config
 */
export const config: Config.Config<ConfigOptions> = Config.all({
  keys: KeyRing.keysConfig,
  prefix: internal.prefixConfig,
  leaseTtl: Config.option(Config.duration("REDIS_TOKEN_LEASE_TTL")),
  waitTimeout: Config.option(Config.duration("REDIS_TOKEN_WAIT_TIMEOUT")),
  pollInterval: Config.option(Config.duration("REDIS_TOKEN_POLL_INTERVAL")),
  retryRedisAfter: Config.option(Config.duration("REDIS_TOKEN_RETRY_AFTER"))
}).pipe(Config.map((c): ConfigOptions => ({
  keys: c.keys,
  prefix: c.prefix,
  leaseTtl: Option.getOrUndefined(c.leaseTtl),
  waitTimeout: Option.getOrUndefined(c.waitTimeout),
  pollInterval: Option.getOrUndefined(c.pollInterval),
  retryRedisAfter: Option.getOrUndefined(c.retryRedisAfter)
})))

/**
 * Provides the store from configuration (see {@link config}).
 *
 * @example
 * ```ts
 * import { RedisClient, RedisTokenStore } from "@effect-token/redis"
 * import { Layer } from "effect"
 * import { RedisIoredis } from "@effect-token/redis/ioredis"
 *
 * const StoreLive = RedisTokenStore.layerConfig().pipe(Layer.provide(RedisIoredis.layerConfig()))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  options: Config.Config<ConfigOptions> = config
): Layer.Layer<RedisTokenStore, ConfigError.ConfigError, RedisClient.RedisClient> =>
  Layer.scoped(
    RedisTokenStore,
    Effect.gen(function*() {
      const { keys, ...rest } = yield* options
      return yield* make({ ...rest, keyRing: yield* KeyRing.make(keys) })
    })
  )

/**
 * A `TokenSource` whose fetches are shared through Redis, plus the compare-and-clear a `TokenCache` calls when a
 * resource server rejects a token (`invalidate`, the optional member of core's `TokenSource` that the cache calls).
 *
 * @example
 * ```ts
 * import type { AccessToken } from "@effect-token/core"
 * import type { RedisTokenStore } from "@effect-token/redis"
 *
 * declare const source: RedisTokenStore.SharedTokenSource
 * declare const rejected: AccessToken.AccessToken
 * const onUnauthorized = source.invalidate(rejected)
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export type SharedTokenSource = TokenSource.TokenSource & {
  readonly invalidate: (token: AccessToken.AccessToken) => Effect.Effect<void>
}

/**
 * Shares `source`'s tokens through the store, across every instance using the same prefix and keys. Opt-in per
 * source: wrap the ones to share, and put a `TokenCache` in front (one cache per shared source).
 *
 * A fetch (the cache's miss, expiry or refresh-ahead):
 * 1. reads the store; a valid token outside its refresh window that this instance has not handed out yet is
 *    returned (no token request);
 * 2. otherwise takes the lease (`SET NX PX`), reads again (another instance may have just written), fetches from
 *    `source`, writes with compare-and-set on the version while holding the lease, publishes, releases;
 * 3. an instance that finds the lease taken waits for the notification (polling as a fallback) and takes the
 *    lease itself if it frees up without a new token; in the refresh window, one that has no token yet gets the
 *    current one at once, and the others keep serving theirs from their cache while they wait;
 * 4. past `waitTimeout`, it fetches from `source` itself, without writing.
 *
 * The leader renews its lease while it fetches. A token whose usable lifetime (its expiry minus the skew, counted
 * from when its request was sent) has run out is never written. When the write fails because Redis stumbled, the
 * leader writes and releases again in the background as soon as Redis answers, so the others get its token instead
 * of waiting for the lease to lapse.
 *
 * Any Redis failure sends the fetch to `source` directly: the cache in front keeps it to one request per
 * instance. One warning is logged per outage, and sharing resumes when Redis answers again. A record this
 * instance's key ring cannot read is left alone (another instance wrote it with a key this one lacks): this
 * instance fetches its own tokens, without writing, and says so once.
 *
 * @example
 * ```ts
 * import { TokenCache, TokenSource } from "@effect-token/core"
 * import { RedisTokenStore } from "@effect-token/redis"
 * import { Effect } from "effect"
 *
 * declare const billing: TokenSource.TokenSource
 *
 * const program = Effect.gen(function*() {
 *   const cache = yield* TokenCache.make(yield* RedisTokenStore.shared(billing), { name: "billing" })
 *   return yield* cache.get
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const shared: (
  source: TokenSource.TokenSource,
  options?: SharedOptions
) => Effect.Effect<SharedTokenSource, never, RedisTokenStore> = internal.shared

/**
 * Replaces the default `TokenSource` with its {@link shared} version: provide it between the source and the cache.
 *
 * @example
 * ```ts
 * import { ClientCredentials, TokenCache } from "@effect-token/core"
 * import { RedisClient, RedisTokenStore } from "@effect-token/redis"
 * import { NodeHttpClient } from "@effect/platform-node"
 * import { Layer } from "effect"
 * import { RedisIoredis } from "@effect-token/redis/ioredis"
 *
 * const TokensLive = TokenCache.layer().pipe(
 *   Layer.provide(RedisTokenStore.layerShared()),
 *   Layer.provide(ClientCredentials.layerConfig()),
 *   Layer.provide(RedisTokenStore.layerConfig()),
 *   Layer.provide(Layer.merge(RedisIoredis.layerConfig(), NodeHttpClient.layerUndici))
 * )
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerShared = (
  options?: SharedOptions
): Layer.Layer<TokenSource.TokenSource, never, TokenSource.TokenSource | RedisTokenStore> =>
  Layer.effect(
    TokenSource.TokenSource,
    Effect.flatMap(TokenSource.TokenSource, (source) => shared(source, options))
  )

/**
 * The defaults of {@link Options}; the refresh-ahead fraction, skew and default lifetime are `TokenTiming.defaults`, as
 * for `TokenCache`.
 *
 * @example
 * ```ts
 * import { RedisTokenStore } from "@effect-token/redis"
 * import { Duration } from "effect"
 *
 * Duration.toSeconds(RedisTokenStore.defaults.leaseTtl) // 10
 * ```
 *
 * @since 0.1.0
 * @category constants
 */
export const defaults: {
  readonly leaseTtl: Duration.Duration
  readonly waitTimeout: Duration.Duration
  readonly pollInterval: Duration.Duration
  readonly skew: Duration.Duration
  readonly refreshAhead: number
  readonly defaultLifetime: Duration.Duration
  readonly retryRedisAfter: Duration.Duration
} = internal.defaults
