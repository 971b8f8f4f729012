import { Deferred, Effect, type Fiber } from "effect"

/**
 * Forks `effect` and returns once the fork has begun running it. The fork then goes on without yielding until it
 * completes or waits for something (a fetch in flight, a gate), so when this returns, a caller that must wait is
 * waiting: a gate instead of yielding some number of times and hoping the fork got that far.
 */
export const forkStarted = <A, E>(effect: Effect.Effect<A, E>): Effect.Effect<Fiber.RuntimeFiber<A, E>> =>
  Effect.gen(function*() {
    const started = yield* Deferred.make<void>()
    const fiber = yield* Effect.fork(Effect.zipRight(Deferred.succeed(started, undefined), effect))
    yield* Deferred.await(started)
    return fiber
  })
