/**
 * `SingleFlight`: one run per key, shared by every caller of that key; runs owned by the flight's scope.
 */
import { SingleFlight } from "@effect-token/core"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, FastCheck as fc, Fiber, Scope } from "effect"

describe("SingleFlight", () => {
  it.scoped("concurrent callers of one key share one run; other keys run on their own; nothing is kept after", () =>
    Effect.gen(function*() {
      const flight = yield* SingleFlight.make<string, never>()
      const gate = yield* Deferred.make<void>()
      const runs: Array<string> = []
      const refresh = (key: string) =>
        flight.run(key)(Effect.zipRight(
          Effect.sync(() => runs.push(key)),
          Effect.as(Deferred.await(gate), `token for ${key}`)
        ))
      const callers = yield* Effect.fork(
        Effect.all([refresh("a"), refresh("a"), refresh("b"), refresh("a")], { concurrency: "unbounded" })
      )
      while (runs.length < 2) yield* Effect.yieldNow()
      expect(flight.size()).toBe(2)
      yield* Deferred.succeed(gate, undefined)
      expect(yield* Fiber.join(callers)).toEqual(["token for a", "token for a", "token for b", "token for a"])
      expect(runs).toEqual(["a", "b"])
      expect(flight.size()).toBe(0)
    }))

  it.scoped("a failure reaches every caller of the run and is not kept: the next call runs again", () =>
    Effect.gen(function*() {
      const flight = yield* SingleFlight.make<number, string>()
      let runs = 0
      const attempt = flight.run("k")(Effect.suspend(() => ++runs === 1 ? Effect.fail("down") : Effect.succeed(runs)))
      const [first, second] = yield* Effect.all([Effect.either(attempt), Effect.either(attempt)], {
        concurrency: "unbounded"
      })
      expect(first._tag === "Left" && first.left).toBe("down")
      expect(second._tag === "Left" && second.left).toBe("down")
      expect(yield* attempt).toBe(2)
    }))

  it.scoped("the caller that started a run goes away: the run goes on, and the other callers get its result", () =>
    Effect.gen(function*() {
      const flight = yield* SingleFlight.make<string, never>()
      const gate = yield* Deferred.make<void>()
      const finished = yield* Deferred.make<void>()
      const work = flight.run("session")(
        Effect.as(Effect.zipRight(Deferred.await(gate), Deferred.succeed(finished, undefined)), "rotated")
      )
      const starter = yield* Effect.fork(work)
      yield* Effect.yieldNow()
      const joiner = yield* Effect.fork(work)
      yield* Effect.yieldNow()
      yield* Fiber.interrupt(starter)
      yield* Deferred.succeed(gate, undefined)
      expect(yield* Fiber.join(joiner)).toBe("rotated")
      yield* Deferred.await(finished)
    }))

  it.effect("closing the flight's scope interrupts its runs; their callers fail as interrupted", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const flight = yield* SingleFlight.make<string, never>().pipe(Scope.extend(scope))
      const caller = yield* Effect.fork(flight.run("k")(Effect.never))
      while (flight.size() < 1) yield* Effect.yieldNow()
      yield* Scope.close(scope, Exit.void)
      const exit = yield* Fiber.await(caller)
      expect(Exit.isInterrupted(exit)).toBe(true)
      expect(flight.size()).toBe(0)
    }))

  it.effect("a run forked after its scope closed settles as interrupted: the key is not left in flight", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const flight = yield* SingleFlight.make<string, never>().pipe(Scope.extend(scope))
      yield* Scope.close(scope, Exit.void)
      const exit = yield* Effect.exit(flight.run("k")(Effect.succeed("never started")))
      expect(Exit.isInterrupted(exit)).toBe(true)
      expect(flight.size()).toBe(0)
    }))

  it.scoped.prop(
    "property: any callers of any keys at once: one run per distinct key, each caller gets its key's result",
    { keys: fc.array(fc.constantFrom("a", "b", "c", "d", "e"), { minLength: 1, maxLength: 40 }) },
    ({ keys }) =>
      Effect.gen(function*() {
        const flight = yield* SingleFlight.make<string, never>()
        const gate = yield* Deferred.make<void>()
        const runs = new Map<string, number>()
        const callers = yield* Effect.fork(Effect.all(
          keys.map((key) =>
            flight.run(key)(Effect.zipRight(
              Effect.sync(() => runs.set(key, (runs.get(key) ?? 0) + 1)),
              Effect.as(Deferred.await(gate), key.toUpperCase())
            ))
          ),
          { concurrency: "unbounded" }
        ))
        yield* Effect.yieldNow()
        yield* Deferred.succeed(gate, undefined)
        expect(yield* Fiber.join(callers)).toEqual(keys.map((key) => key.toUpperCase()))
        expect([...runs.values()].every((count) => count === 1)).toBe(true)
        expect(runs.size).toBe(new Set(keys).size)
        expect(flight.size()).toBe(0)
      })
  )
})
