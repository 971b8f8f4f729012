/*
 * `RedisClient.RedisError` and its reasons, in a module of their own: the ioredis adapter raises them without
 * importing the public module.
 */
import * as Duration from "effect/Duration"
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"

/**
 * No answer within the client's timeout. The command may still have run (Redis applies what it received).
 *
 * @example
 * ```ts
 * import { RedisClient } from "@effect-token/redis"
 * import { Duration } from "effect"
 *
 * const reason = new RedisClient.Timeout({ after: Duration.seconds(1) })
 * reason.message // "no answer within 1s"
 * ```
 *
 * @since 0.3.0
 * @category reasons
 */
export class Timeout extends Schema.TaggedError<Timeout>("@effect-token/redis/RedisError/Timeout")("Timeout", {
  after: Schema.optional(Schema.DurationFromSelf)
}) {
  override get message(): string {
    return this.after === undefined ? "no answer in time" : `no answer within ${Duration.format(this.after)}`
  }
}

/**
 * Not connected (Redis down, connecting, a cluster not ready), or skipped because Redis failed moments ago: the
 * command was not sent.
 *
 * @example
 * ```ts
 * import { RedisClient } from "@effect-token/redis"
 *
 * const reason = new RedisClient.Unavailable({ description: "connect ECONNREFUSED 127.0.0.1:6379" })
 * ```
 *
 * @since 0.3.0
 * @category reasons
 */
export class Unavailable extends Schema.TaggedError<Unavailable>("@effect-token/redis/RedisError/Unavailable")(
  "Unavailable",
  { description: Schema.String }
) {
  override get message(): string {
    return this.description
  }
}

/**
 * Redis answered with an error (`NOSCRIPT`, `CROSSSLOT`, `CLUSTERDOWN`, a script error, ...): the first line of it.
 *
 * @example
 * ```ts
 * import { RedisClient } from "@effect-token/redis"
 *
 * const reason = new RedisClient.ErrorReply({ reply: "NOSCRIPT No matching script" })
 * reason.reply.startsWith("NOSCRIPT") // true
 * ```
 *
 * @since 0.3.0
 * @category reasons
 */
export class ErrorReply extends Schema.TaggedError<ErrorReply>("@effect-token/redis/RedisError/ErrorReply")(
  "ErrorReply",
  { reply: Schema.String }
) {
  override get message(): string {
    return this.reply
  }
}

/**
 * Redis answered, but not in the shape the command promises (another program wrote the key, a record that keeps
 * changing under a read): the command ran.
 *
 * @example
 * ```ts
 * import { RedisClient } from "@effect-token/redis"
 *
 * const reason = new RedisClient.UnexpectedReply({ description: "HMGET: not an array" })
 * ```
 *
 * @since 0.3.0
 * @category reasons
 */
export class UnexpectedReply
  extends Schema.TaggedError<UnexpectedReply>("@effect-token/redis/RedisError/UnexpectedReply")(
    "UnexpectedReply",
    { description: Schema.String }
  )
{
  override get message(): string {
    return this.description
  }
}

/**
 * @since 0.3.0
 * @category reasons
 */
export const RedisErrorReason = Schema.Union(Timeout, Unavailable, ErrorReply, UnexpectedReply)

/**
 * @since 0.3.0
 * @category reasons
 */
export type RedisErrorReason = typeof RedisErrorReason.Type

/**
 * A failed Redis call: the command's name (never its arguments: they hold encrypted tokens and lease owners) and
 * why, as a tagged reason (`Timeout`, `Unavailable`, `ErrorReply`, `UnexpectedReply`). Texts from the client or
 * the server are their first line, at most 200 characters.
 *
 * @example
 * ```ts
 * import { RedisClient } from "@effect-token/redis"
 * import { Effect } from "effect"
 *
 * declare const client: RedisClient.RedisClient
 * const value = client.get("k").pipe(
 *   Effect.catchTag("RedisError", (e) =>
 *     e.reason._tag === "Timeout" ? Effect.succeed(undefined) : Effect.fail(e))
 * )
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class RedisError extends Schema.TaggedError<RedisError>("@effect-token/redis/RedisError")("RedisError", {
  /** The command's name (`GET`, `EVALSHA`, ...), never its arguments. */
  command: Schema.String,
  reason: RedisErrorReason
}) {
  /**
   * @since 0.1.0
   */
  override get message(): string {
    return `Redis ${this.command} failed (${this.reason._tag}): ${this.reason.message}`
  }
}

/**
 * @since 0.3.0
 * @category refinements
 */
export const isRedisError = (u: unknown): u is RedisError => Predicate.isTagged(u, "RedisError")

/** A reply not in the shape `command` promises, as a `RedisError`. */
export const unexpectedReply = (
  command: string,
  description = "a reply not in the shape the command promises"
): RedisError => new RedisError({ command, reason: new UnexpectedReply({ description }) })
