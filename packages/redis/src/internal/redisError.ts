/*
 * `RedisClient.RedisError`, in a module of its own: the ioredis adapter raises it without importing the public module.
 */
import * as Schema from "effect/Schema"

/**
 * A failed Redis call. `detail` is the first line of the client's or server's message; it never contains the
 * command's arguments (they hold encrypted tokens and lease owners).
 *
 * - `Timeout`: no answer within the client's timeout.
 * - `Unavailable`: not connected (Redis down, connecting, cluster not ready).
 * - `Command`: Redis answered with an error (`NOSCRIPT`, `CROSSSLOT`, `CLUSTERDOWN`, a script error, ...).
 *
 * @example
 * ```ts
 * import { RedisClient } from "@effect-token/redis"
 * import { Effect } from "effect"
 *
 * declare const client: RedisClient.RedisClient
 * const value = client.get("k").pipe(
 *   Effect.catchTag("RedisError", (e) => Effect.logWarning(`redis ${e.command} failed: ${e.reason}`))
 * )
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class RedisError extends Schema.TaggedError<RedisError>("@effect-token/redis/RedisError")("RedisError", {
  reason: Schema.Literal("Timeout", "Unavailable", "Command"),
  /** The command's name (`GET`, `EVALSHA`, ...), never its arguments. */
  command: Schema.String,
  detail: Schema.optional(Schema.String)
}) {
  /**
   * @since 0.1.0
   */
  override get message(): string {
    return `Redis ${this.command} failed (${this.reason})${this.detail !== undefined ? `: ${this.detail}` : ""}`
  }
}
