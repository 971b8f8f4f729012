import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { Cluster, ClusterOptions, Redis, RedisOptions } from "ioredis"
import type { Driver } from "../RedisClient.js"
import type { Options as IoredisOptions } from "../RedisIoredis.js"
import { ErrorReply, RedisError, Timeout, Unavailable } from "./redisError.js"

type Client = Redis | Cluster

// Reconnect quickly at first, then every 2 s, forever: Redis coming back must be noticed without a restart.
const reconnectDelay = (times: number): number => Math.min(100 * 2 ** Math.min(times, 5), 2_000)

export const failFastOptions: RedisOptions = {
  // With the offline queue on, a command sent while disconnected waits for the reconnection: callers would stall.
  enableOfflineQueue: false,
  // A command in flight when the connection drops is retried once after the reconnection, then fails.
  maxRetriesPerRequest: 1,
  connectTimeout: 2_000,
  retryStrategy: reconnectDelay
}

export const failFastClusterOptions: ClusterOptions = {
  enableOfflineQueue: false,
  clusterRetryStrategy: reconnectDelay,
  slotsRefreshTimeout: 1_000,
  retryDelayOnClusterDown: 100,
  retryDelayOnFailover: 100,
  retryDelayOnTryAgain: 100
}

const firstLine = (message: string): string => {
  const line = message.split("\n", 1)[0] ?? ""
  return line.length > 200 ? `${line.slice(0, 200)}...` : line
}

/** Only the name and message are kept: ioredis attaches the command with its arguments to some errors. */
const toError = (command: string, cause: unknown): RedisError => {
  const error = cause as { readonly name?: unknown; readonly message?: unknown } | null | undefined
  const name = typeof error?.name === "string" ? error.name : ""
  const message = typeof error?.message === "string" ? error.message : String(cause)
  return new RedisError({
    command,
    reason: name === "ReplyError"
      ? new ErrorReply({ reply: firstLine(message) })
      : new Unavailable({ description: firstLine(message) })
  })
}

const noop = () => {}

/** Waits until the client is ready, failing as `Unavailable` after `timeout`. */
export const awaitReady = (
  client: Client,
  timeout: Duration.Duration,
  command: string
): Effect.Effect<void, RedisError> =>
  client.status === "ready" ? Effect.void : Effect.async<void>((resume) => {
    const onReady = () => resume(Effect.void)
    client.once("ready", onReady)
    return Effect.sync(() => client.off("ready", onReady))
  }).pipe(
    Effect.timeoutFail({
      duration: timeout,
      onTimeout: () =>
        new RedisError({ command, reason: new Unavailable({ description: `not connected (${client.status})` }) })
    })
  )

const isCluster = (client: Client): client is Cluster => "isCluster" in client && client.isCluster === true

export const driver = (client: Client): Driver => ({
  // A Cluster sends a command without a key to any node; in a pipeline it goes where the pipeline's key lives, on
  // the connection that wrote to it (which is what `WAIT` counts).
  sendToNodeOf: isCluster(client)
    ? (key, command, args) =>
      Effect.tryPromise({
        try: () => client.pipeline([["exists", key], [command.toLowerCase(), ...args]]).exec(),
        catch: (cause) => toError(command.toUpperCase(), cause)
      }).pipe(
        Effect.flatMap((results) => {
          const [error, reply] = results?.[1] ?? [new Error("no reply"), undefined]
          return error === null ? Effect.succeed(reply) : Effect.fail(toError(command.toUpperCase(), error))
        })
      )
    : undefined,
  send: (command, args) =>
    Effect.tryPromise({
      try: () =>
        (client.call as (command: string, ...args: ReadonlyArray<string | number>) => Promise<unknown>)(
          command,
          ...args
        ),
      catch: (cause) => toError(command.toUpperCase(), cause)
    }),
  subscribe: (channel, timeout) =>
    Stream.asyncScoped<string, RedisError>((emit) =>
      Effect.gen(function*() {
        // A subscribed connection can run no other command: it gets its own, closed with the stream.
        // ioredis's own re-subscription after a reconnection (`autoResubscribe`) leaves its promise unobserved: a
        // connection that becomes ready after it was closed rejects it as an unhandled rejection. A single node's
        // subscriber subscribes again itself below; a Cluster's subscriber never reconnects (it picks a new node and
        // handles that subscription's failure).
        const subscriber = yield* Effect.acquireRelease(
          Effect.sync(() => {
            const duplicate: Client = isCluster(client)
              ? client.duplicate()
              : client.duplicate({ autoResubscribe: false })
            duplicate.on("error", noop)
            return duplicate
          }),
          (duplicate) =>
            Effect.sync(() => {
              duplicate.removeAllListeners("ready")
              duplicate.disconnect()
            })
        )
        subscriber.on("message", (from: string, message: string) => {
          if (from === channel) void emit.single(message)
        })
        yield* awaitReady(subscriber, timeout, "SUBSCRIBE")
        yield* Effect.tryPromise({
          try: () => subscriber.subscribe(channel),
          catch: (cause) => toError("SUBSCRIBE", cause)
        }).pipe(
          Effect.timeoutFail({
            duration: timeout,
            onTimeout: () => new RedisError({ command: "SUBSCRIBE", reason: new Timeout({ after: timeout }) })
          })
        )
        if (!isCluster(subscriber)) {
          // A failed re-subscription ends the stream; its consumer subscribes again on a new connection.
          subscriber.on("ready", () => {
            subscriber.subscribe(channel).catch((cause) => void emit.fail(toError("SUBSCRIBE", cause)))
          })
        }
      })
    )
})

const parseNode = (node: string): { host: string; port: number } => {
  const at = node.lastIndexOf(":")
  return at < 0 ? { host: node, port: 6379 } : { host: node.slice(0, at), port: Number(node.slice(at + 1)) }
}

/** How long a new client may take to connect before the application starts without it. */
const startupWait = Duration.seconds(2)

export const connect = (options: IoredisOptions): Effect.Effect<Client, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.promise(() => import("ioredis")).pipe(
      Effect.map((ioredis): Client => {
        const { Cluster, Redis } = ioredis
        const client: Client = options.nodes !== undefined && options.nodes.length > 0
          ? new Cluster(options.nodes.map(parseNode), {
            ...failFastClusterOptions,
            ...options.clusterOptions,
            redisOptions: {
              ...failFastOptions,
              ...(options.password !== undefined ? { password: Redacted.value(options.password) } : {}),
              ...options.redisOptions
            }
          })
          : options.url !== undefined
          ? new Redis(
            Redacted.isRedacted(options.url) ? Redacted.value(options.url) : options.url,
            { ...failFastOptions, ...options.redisOptions }
          )
          : new Redis({ ...failFastOptions, ...options.redisOptions })
        // Without a listener ioredis prints every connection error; failures reach callers as RedisError instead.
        client.on("error", noop)
        return client
      })
    ),
    (client) =>
      Effect.tryPromise(() => client.quit()).pipe(
        Effect.timeout(Duration.seconds(1)),
        Effect.ignore,
        Effect.ensuring(Effect.sync(() => client.disconnect()))
      )
  ).pipe(
    // Commands fail while connecting (no offline queue): give the first connection a moment, but never fail here.
    Effect.tap((client) => Effect.ignore(awaitReady(client, startupWait, "CONNECT")))
  )
