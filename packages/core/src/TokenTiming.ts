/**
 * When a token stops being served and when its refresh starts: the one rule, and its one set of defaults, that
 * `TokenCache` (and `TokenManager`), the Redis shared source and user sessions all ask.
 *
 * - Expiry: the token's `expiresAt`; a token without one (no `expires_in`, no JWT `exp`) is assumed to live
 *   `defaultLifetime` (5 minutes) from `issuedAt`, everywhere. Past it, a cache fetches a new token and a session
 *   refreshes (a session without a refresh token keeps serving a token whose expiry is only assumed: nothing can
 *   replace it, and the resource server's 401 is what ends it).
 * - `validUntil = expiresAt - min(skew, max(10 % of the lifetime, min(1 s, half the lifetime)))`: the cap keeps
 *   short-lived tokens usable, and the one-second floor covers `expires_in` counting whole seconds (a 2 s token is
 *   served for 1 s, a 20 s token for 18 s, a one-hour token until 30 s before its end).
 * - The refresh window is the end of the usable lifetime (`validUntil - issuedAt`): the last `refreshAhead` of it,
 *   shortened by up to `refreshAheadJitter` of itself (the caller's random draw), but never shorter than
 *   `refreshBefore` nor than twice the recent fetch time, and never longer than half the usable lifetime.
 *   `refreshAhead` and `refreshBefore` both 0: no refresh window.
 *
 * @since 0.2.0
 */
import * as Duration from "effect/Duration"
import type * as AccessToken from "./AccessToken.js"

/**
 * @since 0.2.0
 * @category models
 */
export interface Timing {
  /**
   * Stop handing out a token this long before it expires, to allow for clock skew and request time. Never more than
   * 10 % of the token's lifetime, but at least one second of it where the lifetime allows. Default 30 seconds.
   */
  readonly skew?: Duration.DurationInput | undefined
  /** Fraction of the usable lifetime, at its end, that is the refresh window. Default 0.1; 0 turns it off. */
  readonly refreshAhead?: number | undefined
  /** Shortens the window by up to this fraction of it (times the caller's random draw). Default 0.5. */
  readonly refreshAheadJitter?: number | undefined
  /** The shortest refresh window (still capped at half the usable lifetime). Default 0. */
  readonly refreshBefore?: Duration.DurationInput | undefined
  /** Lifetime assumed for a token whose expiry is unknown. Default 5 minutes. */
  readonly defaultLifetime?: Duration.DurationInput | undefined
}

/**
 * The defaults of {@link Timing}, the same for every package.
 *
 * @since 0.2.0
 * @category constants
 */
export const defaults: {
  readonly skew: Duration.Duration
  readonly refreshAhead: number
  readonly refreshAheadJitter: number
  readonly refreshBefore: Duration.Duration
  readonly defaultLifetime: Duration.Duration
} = {
  skew: Duration.seconds(30),
  refreshAhead: 0.1,
  refreshAheadJitter: 0.5,
  refreshBefore: Duration.zero,
  defaultLifetime: Duration.minutes(5)
}

/**
 * The timing of tokens refreshed only when a request needs one (user sessions: no background refresh runs, so the
 * window is a fixed time before expiry, long enough for a user's next click to fall in it): a 5 s skew, a refresh
 * window of 60 s (capped at half the usable lifetime) and no fraction. The rest is {@link defaults}.
 *
 * @since 0.2.0
 * @category constants
 */
export const onRequest: {
  readonly skew: Duration.Duration
  readonly refreshAhead: number
  readonly refreshBefore: Duration.Duration
} = {
  skew: Duration.seconds(5),
  refreshAhead: 0,
  refreshBefore: Duration.seconds(60)
}

/**
 * A {@link Timing} with its defaults filled in and its durations in milliseconds: resolve once, ask per token.
 *
 * @since 0.2.0
 * @category models
 */
export interface Resolved {
  readonly skewMillis: number
  readonly refreshAhead: number
  readonly refreshAheadJitter: number
  readonly refreshBeforeMillis: number
  readonly defaultLifetimeMillis: number
}

/**
 * @since 0.2.0
 * @category constructors
 */
export const resolve = (timing: Timing = {}): Resolved => ({
  skewMillis: Duration.toMillis(timing.skew ?? defaults.skew),
  refreshAhead: timing.refreshAhead ?? defaults.refreshAhead,
  refreshAheadJitter: timing.refreshAheadJitter ?? defaults.refreshAheadJitter,
  refreshBeforeMillis: Duration.toMillis(timing.refreshBefore ?? defaults.refreshBefore),
  defaultLifetimeMillis: Duration.toMillis(timing.defaultLifetime ?? defaults.defaultLifetime)
})

/**
 * Where a token is in its life at one instant. Times in epoch milliseconds.
 *
 * @since 0.2.0
 * @category models
 */
export interface Validity {
  /** `Fresh` before `refreshAt`, `RefreshDue` from it, `Expired` from `validUntil` on. */
  readonly _tag: "Fresh" | "RefreshDue" | "Expired"
  /** The token is handed out strictly before this instant. */
  readonly validUntil: number
  /** From this instant on the token is due for a refresh (`validUntil` when there is no refresh window). */
  readonly refreshAt: number
  /** `false` when the expiry is assumed (`issuedAt + defaultLifetime`). */
  readonly expiryKnown: boolean
}

/** A skew never takes more than this fraction of a token's lifetime: short-lived tokens stay cacheable. */
const maxSkewFraction = 0.1

/** ...but at least this much where the lifetime allows: `expires_in` counts whole seconds. */
const minSkewMillis = 1_000

/**
 * The one computation of a token's validity and refresh window (see the module's description).
 *
 * `draw` is the caller's random number in `[0, 1)` for the jitter (0, the default, is the earliest window: a shared
 * store uses it so that its window opens no later than any cache's), and `fetchMillis` the recent fetch time.
 *
 * @example
 * ```ts
 * import { AccessToken, TokenTiming } from "@effect-token/core"
 * import { DateTime, Option, Redacted } from "effect"
 *
 * const issuedAt = DateTime.unsafeMake(0)
 * const token = AccessToken.make({
 *   value: Redacted.make("t"),
 *   issuedAt,
 *   expiresAt: Option.some(DateTime.addDuration(issuedAt, "300 seconds"))
 * })
 * TokenTiming.validity(token, TokenTiming.resolve(), 250_000)
 * // { _tag: "RefreshDue", validUntil: 270_000, refreshAt: 243_000, expiryKnown: true }
 * ```
 *
 * @since 0.2.0
 * @category utils
 */
export const validity = (
  token: AccessToken.AccessToken,
  timing: Resolved,
  now: number,
  draw: { readonly random?: number | undefined; readonly fetchMillis?: number | undefined } = {}
): Validity => {
  const issuedAt = token.issuedAt.epochMillis
  const expiryKnown = token.expiresAt._tag === "Some"
  const validUntil = validUntilMillis(issuedAt, expiryKnown ? token.expiresAt.value.epochMillis : undefined, timing)
  const refreshAt = refreshAtMillis(issuedAt, validUntil, timing, draw.random ?? 0, draw.fetchMillis ?? 0)
  const _tag = now >= validUntil ? "Expired" : now >= refreshAt ? "RefreshDue" : "Fresh"
  return { _tag, validUntil, refreshAt, expiryKnown }
}

/**
 * When a token stops being handed out (epoch milliseconds): {@link validity}'s `validUntil` alone.
 *
 * @since 0.2.0
 * @category utils
 */
export const validUntil = (token: AccessToken.AccessToken, timing: Resolved): number =>
  validUntilMillis(
    token.issuedAt.epochMillis,
    token.expiresAt._tag === "Some" ? token.expiresAt.value.epochMillis : undefined,
    timing
  )

const validUntilMillis = (issuedAt: number, expires: number | undefined, timing: Resolved): number => {
  const expiresAt = expires ?? issuedAt + timing.defaultLifetimeMillis
  const lifetime = Math.max(0, expiresAt - issuedAt)
  const cap = Math.max(lifetime * maxSkewFraction, Math.min(minSkewMillis, lifetime / 2))
  return expiresAt - Math.min(timing.skewMillis, cap)
}

const refreshAtMillis = (
  issuedAt: number,
  validUntil: number,
  timing: Resolved,
  random: number,
  fetchMillis: number
): number => {
  if (timing.refreshAhead <= 0 && timing.refreshBeforeMillis <= 0) return validUntil
  const usable = Math.max(0, validUntil - issuedAt)
  const ahead = usable * Math.max(0, timing.refreshAhead) * (1 - timing.refreshAheadJitter * random)
  const window = Math.min(usable / 2, Math.max(ahead, timing.refreshBeforeMillis, 2 * fetchMillis))
  return validUntil - window
}
