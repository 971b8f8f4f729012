import { KeyedLock } from "@effect-token/core"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Fiber } from "effect"

describe("KeyedLock", () => {
  it.effect("callers of one key take turns, other keys run, and the map forgets idle keys", () =>
    Effect.gen(function*() {
      const locks = KeyedLock.make()
      const gate = yield* Deferred.make<void>()
      const order: Array<string> = []
      const first = yield* Effect.fork(
        locks.withLock("a")(Effect.zipRight(Deferred.await(gate), Effect.sync(() => order.push("a1"))))
      )
      yield* Effect.yieldNow()
      const second = yield* Effect.fork(locks.withLock("a")(Effect.sync(() => order.push("a2"))))
      yield* locks.withLock("b")(Effect.sync(() => order.push("b")))
      expect(locks.size()).toBe(1)
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(first)
      yield* Fiber.join(second)
      expect(order).toEqual(["b", "a1", "a2"])
      expect(locks.size()).toBe(0)
    }))
})
