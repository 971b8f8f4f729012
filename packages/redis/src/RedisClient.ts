/**
 * The few Redis commands a shared token store needs, behind a small interface: plain commands (`send`), cached
 * Lua scripts (`eval`), and pub/sub. It has the shape of Effect's own persistence layer (`send` + `eval(script)`),
 * so any client can implement it. The ioredis adapter (single node or Cluster) is on its own entry point,
 * `@effect-token/redis/ioredis` (`RedisIoredis.layerConfig()`), so that this one type-checks without ioredis.
 *
 * Every call has a timeout and fails with a typed {@link RedisError}: a shared token store treats every failure
 * as "Redis is not there" and goes to the token source directly, so no call may hang.
 *
 * Only commands that Valkey serves as well are used.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Stream from "effect/Stream"
import {
  ErrorReply,
  isRedisError,
  RedisError,
  RedisErrorReason,
  Timeout,
  Unavailable,
  UnexpectedReply
} from "./internal/redisError.js"

/**
 * The error and its reasons: see `internal/redisError.ts` (a module of its own, so that the implementation raises
 * them without importing this public module at run time).
 *
 * @since 0.1.0
 * @category errors
 */
export { ErrorReply, isRedisError, RedisError, RedisErrorReason, Timeout, Unavailable, UnexpectedReply }

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
 *       catch: () => new RedisClient.RedisError({
 *         command,
 *         reason: new RedisClient.Unavailable({ description: "the connection is closed" })
 *       })
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
 *   send: (command) =>
 *     Effect.fail(new RedisClient.RedisError({ command, reason: new RedisClient.Unavailable({ description: "down" }) })),
 *   subscribe: () =>
 *     Stream.fail(
 *       new RedisClient.RedisError({ command: "SUBSCRIBE", reason: new RedisClient.Unavailable({ description: "down" }) })
 *     )
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
      onTimeout: () => new RedisError({ command, reason: new Timeout({ after: within }) })
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
            (error) => error.reason._tag === "ErrorReply" && error.reason.reply.startsWith("NOSCRIPT"),
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
          () => new RedisError({ command: "WAIT", reason: new UnexpectedReply({ description: "not a number" }) })
        )
      )
    },
    publish: (channel, message) => send<number>("PUBLISH", channel, message),
    subscribe: (channel) => driver.subscribe(channel, timeout)
  }
}
