/**
 * The few Redis commands a shared token store needs, behind a small interface: plain commands (`send`), cached
 * Lua scripts (`eval`), and pub/sub. It has the shape of Effect's own persistence layer (`send` + `eval(script)`),
 * so any client can implement it; `fromIoredis` and `layerIoredis` adapt ioredis, single node or Cluster.
 *
 * Every call has a timeout and fails with a typed {@link RedisError}: a shared token store treats every failure
 * as "Redis is not there" and goes to the token source directly, so no call may hang.
 *
 * Only commands that Valkey serves as well are used.
 *
 * @since 0.1.0
 */
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import type { Cluster, ClusterOptions, Redis, RedisOptions } from "ioredis"
import * as internal from "./internal/ioredis.js"
import { RedisError } from "./internal/redisError.js"

/**
 * See `internal/redisError.ts` (a module of its own, so that the implementation raises it without importing this public
 * module at run time).
 *
 * @since 0.1.0
 * @category errors
 */
export { RedisError }

/**
 * A Lua script run with `EVALSHA`. Its SHA-1 is computed locally (Web Crypto) once; a node that does not know the
 * script yet (`NOSCRIPT`: a restart, another cluster node, `SCRIPT FLUSH`) gets it with one `EVAL`, which also
 * loads it there. `A` is the script's reply type, as the caller vouches for it.
 *
 * @example
 * ```ts
 * import { RedisClient } from "@effect-token/redis"
 *
 * // Deletes KEYS[1] only if it holds ARGV[1].
 * const compareAndDelete = RedisClient.script<number>(
 *   "compare-and-delete",
 *   "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
 * )
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Script<A> {
  readonly name: string
  readonly lua: string
  /** The script's SHA-1 in hex, as `EVALSHA` wants it. */
  readonly sha: Effect.Effect<string>
  /** Phantom: the reply type. */
  readonly _A?: (_: never) => A
}

/**
 * @example
 * ```ts
 * import { RedisClient } from "@effect-token/redis"
 *
 * const incrementBy = RedisClient.script<number>("incr-by", "return redis.call('INCRBY', KEYS[1], ARGV[1])")
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const script = <A>(name: string, lua: string): Script<A> => {
  let sha: Promise<string> | undefined
  return {
    name,
    lua,
    sha: Effect.promise(() =>
      sha ??= globalThis.crypto.subtle.digest("SHA-1", new TextEncoder().encode(lua)).then((digest) =>
        Array.from(new Uint8Array(digest), (byte) => byte.toString(16).padStart(2, "0")).join("")
      )
    )
  }
}

/**
 * An argument of a command: strings and integers, as Redis sees them.
 *
 * @example
 * ```ts
 * import type { RedisClient } from "@effect-token/redis"
 *
 * const args: ReadonlyArray<RedisClient.Arg> = ["key", "value", "PX", 60_000]
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export type Arg = string | number

/**
 * @example
 * ```ts
 * import { RedisClient } from "@effect-token/redis"
 * import { Effect } from "effect"
 *
 * const lock = Effect.gen(function*() {
 *   const client = yield* RedisClient.RedisClient
 *   return yield* client.set("{jobs}:lock", "me", { nx: true, px: "10 seconds" })
 * })
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface RedisClient {
  /** Any command; the reply as the client decodes it (bulk strings as strings, integers as numbers, nil as null). */
  readonly send: <A = unknown>(command: string, ...args: ReadonlyArray<Arg>) => Effect.Effect<A, RedisError>
  readonly get: (key: string) => Effect.Effect<Option.Option<string>, RedisError>
  /** `SET key value [NX] [PX ms]`; `false` when `nx` was asked and the key existed. */
  readonly set: (
    key: string,
    value: string,
    options?: { readonly nx?: boolean | undefined; readonly px?: Duration.DurationInput | undefined }
  ) => Effect.Effect<boolean, RedisError>
  /** The number of keys removed. In a cluster, all keys must share a hash slot. */
  readonly del: (...keys: ReadonlyArray<string>) => Effect.Effect<number, RedisError>
  /** Runs a script: `EVALSHA`, then `EVAL` on `NOSCRIPT`. In a cluster, all keys must share a hash slot. */
  readonly eval: <A>(
    script: Script<A>,
    keys: ReadonlyArray<string>,
    args: ReadonlyArray<Arg>
  ) => Effect.Effect<A, RedisError>
  /**
   * `WAIT replicas timeout` on the node that holds `key`, after this client's writes to it: how many replicas
   * acknowledged them within `timeout` (Redis replication is asynchronous; an acknowledged write can be lost on a
   * failover unless replicas have it). The call's own timeout is the client's plus `timeout`.
   */
  readonly waitForReplicas: (key: string, replicas: number, timeout: Duration.DurationInput) => Effect.Effect<
    number,
    RedisError
  >
  /** The number of subscribers that got the message (on the node it was sent to). */
  readonly publish: (channel: string, message: string) => Effect.Effect<number, RedisError>
  /**
   * The channel's messages while the stream runs, on a connection of its own. It fails when the subscription cannot
   * be made; once made, it survives reconnections (messages sent while disconnected are lost: pub/sub is a hint).
   */
  readonly subscribe: (channel: string) => Stream.Stream<string, RedisError>
}

/**
 * The default client of an application.
 *
 * @example
 * ```ts
 * import { RedisClient } from "@effect-token/redis"
 * import { Effect } from "effect"
 *
 * const ping = Effect.flatMap(RedisClient.RedisClient, (client) => client.send<string>("PING"))
 * ```
 *
 * @since 0.1.0
 * @category tags
 */
export const RedisClient: Context.Tag<RedisClient, RedisClient> = Context.GenericTag<RedisClient>(
  "@effect-token/redis/RedisClient"
)

/**
 * What a client adapter provides: one command, and a subscription. Timeouts are added by {@link make}.
 *
 * @example
 * ```ts
 * import { RedisClient } from "@effect-token/redis"
 * import { Effect, Stream } from "effect"
 *
 * // Adapting a promise-based client with a `sendCommand(args)` method.
 * declare const other: { sendCommand: (args: Array<string>) => Promise<unknown> }
 * const driver: RedisClient.Driver = {
 *   send: (command, args) =>
 *     Effect.tryPromise({
 *       try: () => other.sendCommand([command, ...args.map(String)]),
 *       catch: () => new RedisClient.RedisError({ reason: "Unavailable", command })
 *     }),
 *   subscribe: () => Stream.never
 * }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Driver {
  readonly send: (command: string, args: ReadonlyArray<Arg>) => Effect.Effect<unknown, RedisError>
  readonly subscribe: (channel: string, timeout: Duration.Duration) => Stream.Stream<string, RedisError>
  /**
   * Sends a command that names no key (`WAIT`) to the node holding `key`, on the connection that wrote to it. A
   * single-node driver leaves it out: `send` goes there anyway.
   */
  readonly sendToNodeOf?:
    | ((key: string, command: string, args: ReadonlyArray<Arg>) => Effect.Effect<
      unknown,
      RedisError
    >)
    | undefined
}

/**
 * Default per-call timeout: Redis answers in well under a millisecond when it is there; a call that waits this long
 * means it is not, and the token source is asked directly instead.
 *
 * @example
 * ```ts
 * import { RedisClient } from "@effect-token/redis"
 * import { Duration } from "effect"
 *
 * Duration.toMillis(RedisClient.defaultTimeout) // 1000
 * ```
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultTimeout: Duration.Duration = Duration.seconds(1)

/**
 * A client from any driver, e.g. node-redis or a test fake.
 *
 * @example
 * ```ts
 * import { RedisClient } from "@effect-token/redis"
 * import { Effect, Stream } from "effect"
 *
 * // A driver that is never there: every call fails as Unavailable.
 * const down = RedisClient.make({
 *   send: (command) => Effect.fail(new RedisClient.RedisError({ reason: "Unavailable", command })),
 *   subscribe: () => Stream.fail(new RedisClient.RedisError({ reason: "Unavailable", command: "SUBSCRIBE" }))
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  driver: Driver,
  options: { readonly timeout?: Duration.DurationInput | undefined } = {}
): RedisClient => {
  const timeout = Duration.decode(options.timeout ?? defaultTimeout)
  const bounded = <A>(effect: Effect.Effect<A, RedisError>, command: string, within: Duration.Duration) =>
    Effect.timeoutFail(effect, {
      duration: within,
      onTimeout: () =>
        new RedisError({ reason: "Timeout", command, detail: `no answer within ${Duration.format(within)}` })
    })
  const send = <A = unknown>(command: string, ...args: ReadonlyArray<Arg>): Effect.Effect<A, RedisError> =>
    bounded(driver.send(command, args) as Effect.Effect<A, RedisError>, command, timeout)
  const sendToNodeOf = driver.sendToNodeOf
  return {
    send,
    get: (key) => Effect.map(send<string | null>("GET", key), Option.fromNullable),
    set: (key, value, setOptions) => {
      const args: Array<Arg> = [key, value]
      if (setOptions?.px !== undefined) args.push("PX", Math.max(1, Math.ceil(Duration.toMillis(setOptions.px))))
      if (setOptions?.nx === true) args.push("NX")
      return Effect.map(send<string | null>("SET", ...args), (reply) => reply !== null)
    },
    del: (...keys) => keys.length === 0 ? Effect.succeed(0) : send<number>("DEL", ...keys),
    eval: <A>(script: Script<A>, keys: ReadonlyArray<string>, args: ReadonlyArray<Arg>) =>
      Effect.flatMap(script.sha, (sha) =>
        send<A>("EVALSHA", sha, keys.length, ...keys, ...args).pipe(
          Effect.catchIf(
            (error) => error.reason === "Command" && error.detail?.startsWith("NOSCRIPT") === true,
            () => send<A>("EVAL", script.lua, keys.length, ...keys, ...args)
          )
        )),
    waitForReplicas: (key, replicas, waitTimeout) => {
      const millis = Math.max(0, Math.ceil(Duration.toMillis(Duration.decode(waitTimeout))))
      const args = [replicas, millis]
      const reply = sendToNodeOf === undefined ? driver.send("WAIT", args) : sendToNodeOf(key, "WAIT", args)
      return bounded(reply, "WAIT", Duration.sum(timeout, Duration.millis(millis))).pipe(
        Effect.filterOrFail(
          (acknowledged): acknowledged is number => typeof acknowledged === "number",
          () => new RedisError({ reason: "Command", command: "WAIT", detail: "unexpected reply" })
        )
      )
    },
    publish: (channel, message) => send<number>("PUBLISH", channel, message),
    subscribe: (channel) => driver.subscribe(channel, timeout)
  }
}

/**
 * Adapts an ioredis client (`Redis` or `Cluster`) the application made and owns; it is not closed here.
 *
 * Configure it to fail fast while disconnected (see {@link failFastOptions}): with ioredis' defaults a command
 * sent while Redis is down waits in the offline queue, and only the timeout here would end it.
 *
 * @example
 * ```ts
 * import { RedisClient } from "@effect-token/redis"
 * import { Redis } from "ioredis"
 *
 * const redis = new Redis("redis://127.0.0.1:6379", RedisClient.failFastOptions)
 * const client = RedisClient.fromIoredis(redis, { timeout: "500 millis" })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromIoredis = (
  client: Redis | Cluster,
  options: { readonly timeout?: Duration.DurationInput | undefined } = {}
): RedisClient => make(internal.driver(client), options)

/**
 * ioredis options that make commands fail at once while Redis is unreachable, and reconnect in the background
 * (within 2 s of Redis coming back), forever.
 *
 * @example
 * ```ts
 * import { RedisClient } from "@effect-token/redis"
 * import { Cluster } from "ioredis"
 *
 * const cluster = new Cluster([{ host: "10.0.0.1", port: 6379 }], {
 *   ...RedisClient.failFastClusterOptions,
 *   redisOptions: RedisClient.failFastOptions
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
 * import { RedisClient } from "@effect-token/redis"
 *
 * const RedisLive = RedisClient.layerIoredis({
 *   nodes: ["10.0.0.1:6379"],
 *   clusterOptions: { ...RedisClient.failFastClusterOptions, slotsRefreshTimeout: 2_000 }
 * })
 * ```
 *
 * @since 0.1.0
 * @category constants
 */
export const failFastClusterOptions: ClusterOptions = internal.failFastClusterOptions

/**
 * How {@link makeIoredis} connects: a URL for one node, or the seed nodes of a Cluster.
 *
 * @example
 * ```ts
 * import { RedisClient } from "@effect-token/redis"
 *
 * const single: RedisClient.IoredisOptions = { url: "redis://127.0.0.1:6379" }
 * const cluster: RedisClient.IoredisOptions = { nodes: ["10.0.0.1:6379", "10.0.0.2:6379"] }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface IoredisOptions {
  /** `redis://[user:password@]host:port[/db]` (or `rediss://`) of a single node. */
  readonly url?: string | Redacted.Redacted<string> | undefined
  /** Cluster seed nodes as `host:port`; when given, a `Cluster` is made. */
  readonly nodes?: ReadonlyArray<string> | undefined
  /** Password for cluster nodes (a single node takes it in the URL). */
  readonly password?: Redacted.Redacted<string> | undefined
  /** Per-call timeout. Default {@link defaultTimeout}. */
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
 * import { RedisClient } from "@effect-token/redis"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const client = yield* RedisClient.makeIoredis({ url: "redis://127.0.0.1:6379" })
 *   yield* client.set("greeting", "hello", { px: "1 minute" })
 * }).pipe(Effect.scoped)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeIoredis = (options: IoredisOptions): Effect.Effect<RedisClient, never, Scope.Scope> =>
  Effect.map(internal.connect(options), (client) => fromIoredis(client, options))

/**
 * Provides {@link makeIoredis} as the default `RedisClient`.
 *
 * @example
 * ```ts
 * import { RedisClient } from "@effect-token/redis"
 *
 * const RedisLive = RedisClient.layerIoredis({ nodes: ["10.0.0.1:6379", "10.0.0.2:6379", "10.0.0.3:6379"] })
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerIoredis = (options: IoredisOptions): Layer.Layer<RedisClient> =>
  Layer.scoped(RedisClient, makeIoredis(options))

/**
 * ioredis settings from configuration: `REDIS_URL` (single node) or `REDIS_CLUSTER_NODES` (comma-separated
 * `host:port`, makes a Cluster; wins over the URL), optional `REDIS_PASSWORD` (cluster) and `REDIS_TIMEOUT`
 * (e.g. `500 millis`). The URL and password are read as `Redacted`.
 *
 * @example
 * ```ts
 * import { RedisClient } from "@effect-token/redis"
 * import { Config } from "effect"
 *
 * // reads TOKENS_REDIS_URL, TOKENS_REDIS_TIMEOUT, ...
 * const config = Config.nested(RedisClient.ioredisConfig, "TOKENS")
 * ```
 *
 * @since 0.1.0
 * @category config
 */
export const ioredisConfig: Config.Config<IoredisOptions> = Config.all({
  url: Config.option(Config.redacted("REDIS_URL")),
  nodes: Config.option(Config.array(Config.nonEmptyString(), "REDIS_CLUSTER_NODES")),
  password: Config.option(Config.redacted("REDIS_PASSWORD")),
  timeout: Config.option(Config.duration("REDIS_TIMEOUT"))
}).pipe(
  Config.mapOrFail((c) =>
    Option.isNone(c.url) && Option.isNone(c.nodes)
      ? Either.left(ConfigError.MissingData(["REDIS_URL"], "REDIS_URL or REDIS_CLUSTER_NODES is required"))
      : Either.right<IoredisOptions>({
        url: Option.getOrUndefined(c.url),
        nodes: Option.getOrUndefined(c.nodes),
        password: Option.getOrUndefined(c.password),
        timeout: Option.getOrUndefined(c.timeout)
      })
  )
)

/**
 * Provides an ioredis `RedisClient` from configuration (see {@link ioredisConfig}).
 *
 * @example
 * ```ts
 * import { RedisClient } from "@effect-token/redis"
 *
 * const RedisLive = RedisClient.layerIoredisConfig()
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerIoredisConfig = (
  config: Config.Config<IoredisOptions> = ioredisConfig
): Layer.Layer<RedisClient, ConfigError.ConfigError> => Layer.scoped(RedisClient, Effect.flatMap(config, makeIoredis))
