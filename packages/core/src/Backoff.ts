/**
 * Retry schedules for transient failures: jittered exponential backoff that honours the server's `Retry-After`.
 *
 * Used by `TokenCache` for token fetches and by `AuthHttpClient` for API requests, so both back off alike.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options<E> {
  /** First delay. Default 100 ms. */
  readonly base?: Duration.DurationInput | undefined
  /** Growth per attempt. Default 2. */
  readonly factor?: number | undefined
  /** Largest backoff delay. Default 10 s. */
  readonly cap?: Duration.DurationInput | undefined
  /** Retries after the first attempt. Default 3. */
  readonly maxRetries?: number | undefined
  /**
   * Longest `Retry-After` to wait. A server asking for more is not retried: waiting less would be impolite and
   * futile, waiting longer would stall the caller. Default 60 s.
   */
  readonly maxRetryAfter?: Duration.DurationInput | undefined
  /** Which failures are worth retrying. */
  readonly isTransient: (error: E) => boolean
  /** The server's requested delay for this failure, if any. */
  readonly retryAfter?: ((error: E) => Option.Option<Duration.Duration>) | undefined
}

/**
 * A schedule for `Effect.retry`: delays `base * factor^n`, each jittered to 80–120 % and capped, at most
 * `maxRetries` times, only while the failure is transient; a `Retry-After` replaces the computed delay.
 *
 * @example
 * ```ts
 * import { Backoff, TokenError } from "@effect-token/core"
 * import { Effect } from "effect"
 *
 * declare const fetchToken: Effect.Effect<string, TokenError.TokenError>
 *
 * const resilient = Effect.retry(
 *   fetchToken,
 *   Backoff.schedule({ isTransient: TokenError.isTransient, retryAfter: TokenError.retryAfter, maxRetries: 5 })
 * )
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const schedule = <E>(options: Options<E>): Schedule.Schedule<E, E> => {
  const cap = Duration.decode(options.cap ?? Duration.seconds(10))
  const maxRetryAfter = Duration.decode(options.maxRetryAfter ?? Duration.seconds(60))
  const retryAfter = options.retryAfter ?? (() => Option.none())
  const backoff = Schedule.exponential(options.base ?? Duration.millis(100), options.factor ?? 2).pipe(
    Schedule.jittered,
    Schedule.modifyDelay((_, delay) => Duration.min(delay, cap)),
    Schedule.intersect(Schedule.recurs(options.maxRetries ?? 3))
  ) as Schedule.Schedule<unknown, E>
  return Schedule.passthrough(backoff).pipe(
    Schedule.whileInput((error: E) =>
      options.isTransient(error) &&
      Option.match(retryAfter(error), {
        onNone: () => true,
        onSome: (delay) => Duration.lessThanOrEqualTo(delay, maxRetryAfter)
      })
    ),
    Schedule.modifyDelay((error, delay) => Option.getOrElse(retryAfter(error), () => delay))
  )
}
