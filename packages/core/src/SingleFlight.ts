/**
 * One run per key at a time, shared: a caller that finds its key's run in flight waits for that run's outcome
 * instead of starting another. The run belongs to the flight's scope, not to the caller that started it, so a
 * caller that goes away (an interrupted request) does not cancel work that other callers, or a server that may
 * already have acted on it, depend on. Only keys in flight are held. The session package's per-session refresh
 * runs through it.
 *
 * @since 0.3.0
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as FiberId from "effect/FiberId"
import type * as Scope from "effect/Scope"

/**
 * @since 0.3.0
 * @category models
 */
export interface SingleFlight<A, E> {
  /**
   * Runs `effect` for `key`, or joins the run of `key` in flight. The run goes on in the flight's scope when the
   * caller is interrupted; the caller stops waiting.
   */
  readonly run: (key: string) => <R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** How many keys are in flight now (for tests and diagnostics). */
  readonly size: () => number
}

/**
 * A single flight whose runs live in the current scope: closing it interrupts them, and their callers fail as
 * interrupted.
 *
 * @example
 * ```ts
 * import { SingleFlight } from "@effect-token/core"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const flight = yield* SingleFlight.make<string, never>()
 *   const refresh = (session: string) => flight.run(session)(Effect.succeed(`refreshed ${session}`))
 *   // Both callers get the one run's result.
 *   return yield* Effect.all([refresh("s1"), refresh("s1")], { concurrency: "unbounded" })
 * }).pipe(Effect.scoped)
 * ```
 *
 * @since 0.3.0
 * @category constructors
 */
export const make = <A, E>(): Effect.Effect<SingleFlight<A, E>, never, Scope.Scope> =>
  Effect.map(Effect.scope, (scope) => {
    const flights = new Map<string, Deferred.Deferred<A, E>>()
    return {
      run: (key) => (effect) =>
        // Uninterruptible from registering the key to watching the run: a caller interrupted in between would
        // leave the key in flight for ever. The run and the wait are interruptible as usual.
        Effect.uninterruptibleMask((restore) =>
          Effect.suspend(() => {
            const inFlight = flights.get(key)
            if (inFlight !== undefined) return restore(Deferred.await(inFlight))
            const outcome = Deferred.unsafeMake<A, E>(FiberId.none)
            flights.set(key, outcome)
            return Effect.flatMap(Effect.forkIn(restore(effect), scope), (fiber) => {
              // Observed from outside: a run interrupted before it began (its scope closing) still settles.
              fiber.addObserver((exit) => {
                if (flights.get(key) === outcome) flights.delete(key)
                Deferred.unsafeDone(outcome, exit)
              })
              return restore(Deferred.await(outcome))
            })
          })
        ),
      size: () => flights.size
    }
  })
