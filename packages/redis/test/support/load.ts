/**
 * Continuous load on instance processes: rounds of concurrent `cache.get` on every instance, back to back, while a
 * fault runs. A paused (SIGSTOP) instance's round simply takes longer.
 */
import { Effect, Fiber } from "effect"
import type * as Instances from "./instances.js"

export interface Tagged extends Instances.RoundResult {
  readonly instance: number
}

export const underLoad = <A, E, R>(
  instances: ReadonlyArray<Instances.Instance>,
  callers: number,
  fault: Effect.Effect<A, E, R>
) =>
  Effect.gen(function*() {
    const results: Array<Tagged> = []
    const started = Date.now()
    let running = true
    const loops = yield* Effect.forEach(instances, (instance) =>
      Effect.fork(Effect.gen(function*() {
        while (running) {
          const result = yield* instance.round(callers)
          results.push({ ...result, instance: instance.index })
          yield* Effect.sleep("50 millis")
        }
      })))
    const value = yield* fault
    running = false
    yield* Effect.forEach(loops, Fiber.join)
    return { results, value, runMillis: Date.now() - started }
  })

export const log = (line: string) => Effect.sync(() => process.stdout.write(`    [measured] ${line}\n`))
