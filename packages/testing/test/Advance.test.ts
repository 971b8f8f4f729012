import { Advance } from "@effect-token/testing"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit } from "effect"

describe("Advance.untilDone", () => {
  it.effect("wakes a sleep that starts after real asynchronous work", () =>
    Effect.gen(function*() {
      const realAsyncThenSleep = Effect.promise(() => new Promise((resolve) => setImmediate(resolve))).pipe(
        Effect.zipRight(Effect.sleep("3 seconds")),
        Effect.as("done")
      )
      expect(yield* Advance.untilDone(realAsyncThenSleep)).toBe("done")
    }))

  it.effect("dies with a clear message when the limit is reached", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(Advance.untilDone(Effect.sleep("1 hour"), { limit: "1 minute" }))
      expect(Exit.isFailure(exit) && String(exit.cause)).toMatch(/not done after 1m of TestClock time/)
    }))
})
