/*
 * A bound on one effect's time, cheap enough for every request: one forked fiber and one timer, where
 * `Effect.timeoutFail` races two forked fibers, joins their fiber refs and awaits the loser (about 70 µs more per
 * request on a loopback benchmark, a quarter of the request). The fast path needs the live clock, which it
 * recognises by identity; under any other `Clock` (`TestClock`, a clock of the application's) `Effect.timeoutFail`
 * keeps the same meaning.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"

/** The clock of Effect's default services: the one every runtime uses unless told otherwise. */
const liveClock = Effect.runSync(Effect.clock)

/** setTimeout's longest delay; a longer bound takes the general path. */
const maxTimerMillis = 2 ** 31 - 1

/**
 * `effect`, failing with `onTimeout()` if it has not ended within `duration`; it is then interrupted, and the failure
 * comes once the interruption is done (as with `Effect.timeoutFail`).
 */
export const within = <A, E, R, E2>(
  effect: Effect.Effect<A, E, R>,
  duration: Duration.Duration,
  onTimeout: () => E2
): Effect.Effect<A, E | E2, R> => {
  const millis = Duration.toMillis(duration)
  const general = Effect.timeoutFail(effect, { duration, onTimeout })
  if (!(millis <= maxTimerMillis)) return general
  return Effect.flatMap(
    Effect.clock,
    (clock) =>
      clock !== liveClock ?
        general :
        Effect.uninterruptibleMask((restore) =>
          Effect.flatMap(Effect.fork(restore(effect)), (worker) =>
            Effect.async<A, E | E2>((resume) => {
              let timedOut = false
              const timer = setTimeout(() => {
                timedOut = true
                worker.unsafeInterruptAsFork(FiberId.none)
              }, millis)
              worker.addObserver((exit) => {
                clearTimeout(timer)
                resume(timedOut && Exit.isInterrupted(exit) ? Exit.fail(onTimeout()) : exit)
              })
              return Effect.suspend(() => {
                clearTimeout(timer)
                return Fiber.interrupt(worker)
              })
            }))
        )
  )
}
