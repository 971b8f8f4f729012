/**
 * The ioredis adapter of {@link RedisClient.RedisClient}, single node or Cluster, on its own entry point
 * (`@effect-token/redis/ioredis`): `@effect-token/redis` itself type-checks and runs without ioredis, for an
 * application that brings its own client through `RedisClient.make`. ioredis (5.x) is an optional peer dependency,
 * loaded on first use.
 *
 * @example
 * ```ts
 * import { RedisIoredis } from "@effect-token/redis/ioredis"
 *
 * // REDIS_URL, or REDIS_CLUSTER_NODES; REDIS_PASSWORD and REDIS_TIMEOUT optional.
 * const RedisLive = RedisIoredis.layerConfig()
 * ```
 *
 * @since 0.1.0
 */
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import type { Cluster, ClusterOptions, Redis, RedisOptions } from "ioredis"
import * as internal from "./internal/ioredis.js"
import * as RedisClient from "./RedisClient.js"

/**
 * Adapts an ioredis client (`Redis` or `Cluster`) the application made and owns; it is not closed here.
 *
 * Configure it to fail fast while disconnected (see {@link failFastOptions}): with ioredis' defaults a command
 * sent while Redis is down waits in the offline queue, and only the timeout here would end it.
 *
 * @example
 * ```ts
 * import { RedisIoredis } from "@effect-token/redis/ioredis"
 * import { Redis } from "ioredis"
 *
 * const redis = new Redis("redis://127.0.0.1:6379", RedisIoredis.failFastOptions)
 * const client = RedisIoredis.fromClient(redis, { timeout: "500 millis" })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromClient = (
  client: Redis | Cluster,
  options: { readonly timeout?: Duration.DurationInput | undefined } = {}
): RedisClient.RedisClient => RedisClient.make(internal.driver(client), options)

/**
 * ioredis options that make commands fail at once while Redis is unreachable, and reconnect in the background
 * (within 2 s of Redis coming back), forever.
 *
 * @example
 * ```ts
 * import { RedisIoredis } from "@effect-token/redis/ioredis"
 * import { Cluster } from "ioredis"
 *
 * const cluster = new Cluster([{ host: "10.0.0.1", port: 6379 }], {
 *   ...RedisIoredis.failFastClusterOptions,
 *   redisOptions: RedisIoredis.failFastOptions
 * })
 * ```
 *
 * @since 0.1.0
 * @category constants
 */
export const failFastOptions: RedisOptions = internal.failFastOptions

/**
 * The {@link failFastOptions} of a `Cluster` (its own queue and retry settings; give `redisOptions` too).
 *
 * @example
 * ```ts
 * import { RedisIoredis } from "@effect-token/redis/ioredis"
 *
 * const RedisLive = RedisIoredis.layer({
 *   nodes: ["10.0.0.1:6379"],
 *   clusterOptions: { ...RedisIoredis.failFastClusterOptions, slotsRefreshTimeout: 2_000 }
 * })
 * ```
 *
 * @since 0.1.0
 * @category constants
 */
export const failFastClusterOptions: ClusterOptions = internal.failFastClusterOptions

/**
 * How {@link make} connects: a URL for one node, or the seed nodes of a Cluster.
 *
 * @example
 * ```ts
 * import { RedisIoredis } from "@effect-token/redis/ioredis"
 *
 * const single: RedisIoredis.Options = { url: "redis://127.0.0.1:6379" }
 * const cluster: RedisIoredis.Options = { nodes: ["10.0.0.1:6379", "10.0.0.2:6379"] }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** `redis://[user:password@]host:port[/db]` (or `rediss://`) of a single node. */
  readonly url?: string | Redacted.Redacted<string> | undefined
  /** Cluster seed nodes as `host:port`; when given, a `Cluster` is made. */
  readonly nodes?: ReadonlyArray<string> | undefined
  /** Password for cluster nodes (a single node takes it in the URL). */
  readonly password?: Redacted.Redacted<string> | undefined
  /** Per-call timeout. Default `RedisClient.defaultTimeout` (1 s). */
  readonly timeout?: Duration.DurationInput | undefined
  /** Extra ioredis options, applied over {@link failFastOptions}. */
  readonly redisOptions?: RedisOptions | undefined
  /** Extra ioredis Cluster options, applied over {@link failFastClusterOptions}. */
  readonly clusterOptions?: ClusterOptions | undefined
}

/**
 * Makes an ioredis client (ioredis is loaded on first use: it is an optional peer dependency), waits a bounded time
 * for it to be ready, and quits it when the scope closes. Redis being down does not fail this: calls fail fast and
 * the client reconnects in the background.
 *
 * @example
 * ```ts
 * import { RedisIoredis } from "@effect-token/redis/ioredis"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const client = yield* RedisIoredis.make({ url: "redis://127.0.0.1:6379" })
 *   yield* client.set("greeting", "hello", { px: "1 minute" })
 * }).pipe(Effect.scoped)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<RedisClient.RedisClient, never, Scope.Scope> =>
  Effect.map(internal.connect(options), (client) => fromClient(client, options))

/**
 * Provides {@link make} as the default `RedisClient`.
 *
 * @example
 * ```ts
 * import { RedisIoredis } from "@effect-token/redis/ioredis"
 *
 * const RedisLive = RedisIoredis.layer({ nodes: ["10.0.0.1:6379", "10.0.0.2:6379", "10.0.0.3:6379"] })
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<RedisClient.RedisClient> =>
  Layer.scoped(RedisClient.RedisClient, make(options))

/**
 * ioredis settings from configuration: `REDIS_URL` (single node) or `REDIS_CLUSTER_NODES` (comma-separated
 * `host:port`, makes a Cluster; wins over the URL), optional `REDIS_PASSWORD` (cluster) and `REDIS_TIMEOUT`
 * (e.g. `500 millis`). The URL and password are read as `Redacted`.
 *
 * @example
 * ```ts
 * import { RedisIoredis } from "@effect-token/redis/ioredis"
 * import { Config } from "effect"
 *
 * // reads TOKENS_REDIS_URL, TOKENS_REDIS_TIMEOUT, ...
 * const config = Config.nested(RedisIoredis.config, "TOKENS")
 * ```
 *
 * @since 0.1.0
 * @category config
 */
export const config: Config.Config<Options> = Config.all({
  url: Config.option(Config.redacted("REDIS_URL")),
  nodes: Config.option(Config.array(Config.nonEmptyString(), "REDIS_CLUSTER_NODES")),
  password: Config.option(Config.redacted("REDIS_PASSWORD")),
  timeout: Config.option(Config.duration("REDIS_TIMEOUT"))
}).pipe(
  Config.mapOrFail((c) =>
    Option.isNone(c.url) && Option.isNone(c.nodes)
      ? Either.left(ConfigError.MissingData(["REDIS_URL"], "REDIS_URL or REDIS_CLUSTER_NODES is required"))
      : Either.right<Options>({
        url: Option.getOrUndefined(c.url),
        nodes: Option.getOrUndefined(c.nodes),
        password: Option.getOrUndefined(c.password),
        timeout: Option.getOrUndefined(c.timeout)
      })
  )
)

/**
 * Provides an ioredis `RedisClient` from configuration (see {@link config}).
 *
 * @example
 * ```ts
 * import { RedisIoredis } from "@effect-token/redis/ioredis"
 *
 * const RedisLive = RedisIoredis.layerConfig()
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  settings: Config.Config<Options> = config
): Layer.Layer<RedisClient.RedisClient, ConfigError.ConfigError> =>
  Layer.scoped(RedisClient.RedisClient, Effect.flatMap(settings, make))
