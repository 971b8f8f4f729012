/**
 * Runs an effect to completion while moving `TestClock` forward in steps.
 *
 * `TestClock.adjust` only wakes the sleeps registered before it moves time. An effect that awaits real
 * asynchronous work (WebCrypto signing a JWT, a socket) and only then sleeps (a retry backoff, a `Retry-After`)
 * registers its sleep too late for a single adjust, and the test hangs. Stepping the clock until the fiber is done
 * removes that race.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as TestClock from "effect/TestClock"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** How far each step moves the clock. Default 1 second. */
  readonly step?: Duration.DurationInput | undefined
  /** The most TestClock time to spend; beyond it the effect dies with a clear message. Default 10 minutes. */
  readonly limit?: Duration.DurationInput | undefined
}

/**
 * Forks `effect`, moves the TestClock by `step` until it completes, and returns its result.
 *
 * @example
 * ```ts
 * import { Advance } from "@effect-token/testing"
 * import { Effect } from "effect"
 *
 * declare const callWithRetries: Effect.Effect<number>
 *
 * // inside it.effect: retries sleep on the TestClock, which moves until the call is done
 * const status = Advance.untilDone(callWithRetries, { step: "500 millis" })
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const untilDone = <A, E, R>(effect: Effect.Effect<A, E, R>, options: Options = {}): Effect.Effect<A, E, R> =>
  Effect.gen(function*() {
    const step = Duration.decode(options.step ?? Duration.seconds(1))
    const limit = Duration.toMillis(options.limit ?? Duration.minutes(10))
    const fiber = yield* Effect.fork(effect)
    let spent = 0
    yield* Effect.yieldNow()
    while (fiber.unsafePoll() === null) {
      if (spent >= limit) {
        yield* Fiber.interrupt(fiber)
        return yield* Effect.dieMessage(
          `Advance.untilDone: not done after ${Duration.format(Duration.millis(limit))} of TestClock time`
        )
      }
      yield* TestClock.adjust(step)
      spent += Duration.toMillis(step)
    }
    return yield* Fiber.join(fiber)
  })
