/**
 * Moves `TestClock` to the edges of a token's lifetime, where expiry bugs live.
 *
 * "Just before" is the last millisecond at which the token still counts as valid (with `skew`: valid for a
 * client that refreshes `skew` early); "just after" is the first millisecond after it. Both use `TestClock`, so
 * every sleep due by then runs, in order, as with `TestClock.adjust`.
 *
 * @since 0.1.0
 */
import type { AccessToken } from "@effect-token/core"
import * as Clock from "effect/Clock"
import * as DateTime from "effect/DateTime"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"

/**
 * A token, or its expiry.
 *
 * @since 0.1.0
 * @category models
 */
export type Expiring = AccessToken.AccessToken | DateTime.Utc

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Treat the token as expiring this much early, like a cache's refresh skew. Default 0. */
  readonly skew?: Duration.DurationInput | undefined
  /** How far from the edge to land. Default 1 millisecond. */
  readonly margin?: Duration.DurationInput | undefined
}

/**
 * When the token expires, `skew` early; dies if it has no known expiry (a test that asks is broken).
 *
 * @example
 * ```ts
 * import { Expiry } from "@effect-token/testing"
 *
 * declare const token: import("@effect-token/core").AccessToken.AccessToken
 * const refreshAt = Expiry.deadline(token, { skew: "30 seconds" })
 * ```
 *
 * @since 0.1.0
 * @category accessors
 */
export const deadline = (
  token: Expiring,
  options: { readonly skew?: Duration.DurationInput | undefined } = {}
): Effect.Effect<DateTime.Utc> => {
  const expiresAt = DateTime.isDateTime(token) ? Option.some(token) : token.expiresAt
  return Option.match(expiresAt, {
    onNone: () => Effect.dieMessage("Expiry: the token has no known expiry"),
    onSome: (at) => Effect.succeed(DateTime.subtractDuration(at, options.skew ?? Duration.zero))
  })
}

/**
 * The time left until the deadline (zero once past), on the Effect `Clock`.
 *
 * @example
 * ```ts
 * import { Expiry } from "@effect-token/testing"
 *
 * declare const token: import("@effect-token/core").AccessToken.AccessToken
 * const left = Expiry.remaining(token) // Effect<Duration>
 * ```
 *
 * @since 0.1.0
 * @category accessors
 */
export const remaining = (
  token: Expiring,
  options: { readonly skew?: Duration.DurationInput | undefined } = {}
): Effect.Effect<Duration.Duration> =>
  Effect.zipWith(
    deadline(token, options),
    Clock.currentTimeMillis,
    (at, now) => Duration.millis(Math.max(0, DateTime.toEpochMillis(at) - now))
  )

/**
 * Sets `TestClock` to `margin` (1 ms) before the token's expiry minus `skew`, and returns that instant. Dies
 * rather than move the clock backwards: a test that asks has already passed the point it wanted to see.
 *
 * @example
 * ```ts
 * import { Expiry } from "@effect-token/testing"
 *
 * declare const token: import("@effect-token/core").AccessToken.AccessToken
 * const program = Expiry.adjustToJustBefore(token, { skew: "30 seconds" })
 * ```
 *
 * @since 0.1.0
 * @category TestClock
 */
export const adjustToJustBefore = (token: Expiring, options: Options = {}): Effect.Effect<DateTime.Utc> =>
  Effect.flatMap(
    deadline(token, options),
    (at) => setForward(DateTime.subtractDuration(at, options.margin ?? Duration.millis(1)))
  )

/**
 * Sets `TestClock` to `margin` (1 ms) after the token's expiry minus `skew`, and returns that instant.
 *
 * @example
 * ```ts
 * import { Expiry } from "@effect-token/testing"
 *
 * declare const token: import("@effect-token/core").AccessToken.AccessToken
 * const program = Expiry.adjustToJustAfter(token)
 * ```
 *
 * @since 0.1.0
 * @category TestClock
 */
export const adjustToJustAfter = (token: Expiring, options: Options = {}): Effect.Effect<DateTime.Utc> =>
  Effect.flatMap(
    deadline(token, options),
    (at) => setForward(DateTime.addDuration(at, options.margin ?? Duration.millis(1)))
  )

/**
 * Sets `TestClock` to exactly the token's expiry minus `skew`, where `AccessToken.isExpired` first holds.
 *
 * @example
 * ```ts
 * import { Expiry } from "@effect-token/testing"
 *
 * declare const token: import("@effect-token/core").AccessToken.AccessToken
 * const program = Expiry.adjustToExpiry(token, { skew: "10 seconds" })
 * ```
 *
 * @since 0.1.0
 * @category TestClock
 */
export const adjustToExpiry = (
  token: Expiring,
  options: { readonly skew?: Duration.DurationInput | undefined } = {}
): Effect.Effect<DateTime.Utc> => Effect.flatMap(deadline(token, options), setForward)

const setForward = (target: DateTime.Utc): Effect.Effect<DateTime.Utc> =>
  Effect.flatMap(Clock.currentTimeMillis, (now) => {
    const millis = DateTime.toEpochMillis(target)
    if (millis < now) {
      return Effect.dieMessage(
        `Expiry: TestClock is already ${now - millis} ms past the requested instant; it does not move backwards`
      )
    }
    return Effect.as(TestClock.setTime(millis), target)
  })
