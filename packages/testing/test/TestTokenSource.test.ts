import { AccessToken, TokenError, TokenSource } from "@effect-token/core"
import { TestTokenSource } from "@effect-token/testing"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Fiber, Option, Redacted, TestClock } from "effect"

const lifetimeOf = (token: AccessToken.AccessToken) => Option.map(AccessToken.lifetime(token), Duration.toMillis)

describe("TestTokenSource", () => {
  it.effect("by default hands out token-1, token-2, ... with the configured lifetime, on TestClock time", () =>
    Effect.gen(function*() {
      const test = yield* TestTokenSource.make({ lifetime: "1 minute" })
      const first = yield* test.source.fetch
      yield* TestClock.adjust("10 seconds")
      const second = yield* test.source.fetch
      expect([Redacted.value(first.value), Redacted.value(second.value)]).toEqual(["token-1", "token-2"])
      expect(Option.getOrThrow(second.expiresAt).epochMillis).toBe(70_000)
      expect(lifetimeOf(first)).toEqual(Option.some(60_000))
      expect(yield* test.fetches).toBe(2)
      expect((yield* test.fetchStarts).map((t) => t.epochMillis)).toEqual([0, 10_000])
      expect(yield* test.issued).toEqual([first, second])
      expect(test.source.key).toBe("test-token-source")
    }))

  it.effect("scripted outcomes run in order, then the default resumes", () =>
    Effect.gen(function*() {
      const test = yield* TestTokenSource.make({
        prefix: "t",
        script: [TestTokenSource.fail("Unavailable", { status: 503, retryAfter: "2 seconds" })]
      })
      yield* test.script(
        TestTokenSource.succeed({ value: "custom", lifetime: "5 seconds", scope: "a b", refreshToken: "rt" }),
        TestTokenSource.succeed({ lifetime: "unknown" }),
        TestTokenSource.fail(
          new TokenError.TokenError({
            operation: "x",
            reason: new TokenError.OAuthError({ code: "invalid_client", status: 401 })
          })
        )
      )
      expect(yield* test.pending).toBe(4)
      const results = yield* Effect.all(Array.from({ length: 5 }, () => Effect.either(test.source.fetch)))
      const [unavailable, custom, unknown, invalidClient, fallback] = results
      expect(unavailable).toMatchObject({ _tag: "Left", left: { reason: { _tag: "Unavailable", status: 503 } } })
      expect(TokenError.retryAfter((unavailable as any).left)).toEqual(Option.some(Duration.seconds(2)))
      const token = (custom as any).right as AccessToken.AccessToken
      expect(Redacted.value(token.value)).toBe("custom")
      expect(lifetimeOf(token)).toEqual(Option.some(5_000))
      expect(token.scope).toEqual(Option.some("a b"))
      expect(Option.map(token.refreshToken, Redacted.value)).toEqual(Option.some("rt"))
      const noExpiry = (unknown as any).right as AccessToken.AccessToken
      expect(Redacted.value(noExpiry.value)).toBe("t-1")
      expect(Option.isNone(noExpiry.expiresAt)).toBe(true)
      expect(invalidClient).toMatchObject({
        _tag: "Left",
        left: { reason: { _tag: "OAuthError", code: "invalid_client" } }
      })
      expect(Redacted.value(((fallback as any).right as AccessToken.AccessToken).value)).toBe("t-2")
      expect(yield* test.fetches).toBe(5)
    }))

  it.effect("a delay is slept on TestClock; the token's lifetime counts from when the fetch started", () =>
    Effect.gen(function*() {
      const test = yield* TestTokenSource.make()
      yield* test.script(TestTokenSource.succeed({ delay: "2 seconds", lifetime: "10 seconds" }))
      const fiber = yield* Effect.fork(test.source.fetch)
      yield* TestClock.adjust("1 second")
      expect(yield* test.inFlight).toBe(1)
      yield* TestClock.adjust("1 second")
      const token = yield* Fiber.join(fiber)
      // As a token endpoint's: issued when the request went out, so the 2 s on the way are spent of its lifetime.
      expect(token.issuedAt.epochMillis).toBe(0)
      expect(Option.getOrThrow(token.expiresAt).epochMillis).toBe(10_000)
      expect(yield* test.inFlight).toBe(0)
    }))

  it.effect("gates hold fetches in flight; maxInFlight sees concurrent callers, interruptions are counted", () =>
    Effect.gen(function*() {
      const release = yield* Deferred.make<void>()
      const test = yield* TestTokenSource.make()
      const gated = TestTokenSource.succeed({ gate: Deferred.await(release) })
      yield* test.script(gated, gated, gated)
      const fibers = yield* Effect.all([
        Effect.fork(test.source.fetch),
        Effect.fork(test.source.fetch),
        Effect.fork(test.source.fetch)
      ])
      yield* test.awaitFetches(3)
      expect(yield* test.inFlight).toBe(3)
      yield* Fiber.interrupt(fibers[2])
      yield* Deferred.succeed(release, void 0)
      const tokens = yield* Effect.all([Fiber.join(fibers[0]), Fiber.join(fibers[1])])
      expect(tokens.map((t) => Redacted.value(t.value))).toEqual(["token-1", "token-2"])
      expect(yield* test.maxInFlight).toBe(3)
      expect(yield* test.inFlight).toBe(0)
      expect(yield* test.interruptions).toBe(1)
    }))

  it.effect("awaitFetches and awaitFinished wait for fetches to start and to finish, whatever their outcome", () =>
    Effect.gen(function*() {
      const release = yield* Deferred.make<void>()
      const test = yield* TestTokenSource.make()
      yield* test.script(
        TestTokenSource.succeed({ gate: Deferred.await(release) }),
        TestTokenSource.fail("Unavailable", { gate: Deferred.await(release) }),
        TestTokenSource.succeed({ delay: "1 minute" })
      )
      // Counts already reached: no wait at all.
      yield* test.awaitFetches(0)
      yield* test.awaitFinished(0)
      const waitingStarts = yield* Effect.fork(test.awaitFetches(3))
      const waitingEnds = yield* Effect.fork(test.awaitFinished(3))
      const fetches = yield* Effect.forkAll([test.source.fetch, Effect.either(test.source.fetch), test.source.fetch])
      yield* Fiber.join(waitingStarts)
      expect(yield* test.fetches).toBe(3)
      expect(yield* test.inFlight).toBe(3)
      expect(waitingEnds.unsafePoll()).toBeNull()
      yield* Deferred.succeed(release, undefined)
      yield* test.awaitFinished(2)
      expect(yield* test.inFlight).toBe(1)
      expect(waitingEnds.unsafePoll()).toBeNull()
      // An interrupted fetch is finished too.
      yield* Fiber.interrupt(fetches)
      yield* Fiber.join(waitingEnds)
      expect(yield* test.inFlight).toBe(0)
      expect(yield* test.interruptions).toBe(1)
    }))

  it.effect("a default delay applies to every outcome that sets none; expiresAt fixes the expiry", () =>
    Effect.gen(function*() {
      const test = yield* TestTokenSource.make({
        delay: "2 seconds",
        script: [
          TestTokenSource.fail("Transport"),
          TestTokenSource.succeed({ delay: "1 second", value: "same", expiresAt: 100_000 }),
          TestTokenSource.succeed({ value: "same", expiresAt: 100_000 })
        ]
      })
      const failed = yield* Effect.fork(Effect.flip(test.source.fetch))
      yield* TestClock.adjust("1999 millis")
      expect(failed.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 millis")
      expect((yield* Fiber.join(failed)).reason._tag).toBe("Transport")
      const first = yield* Effect.fork(test.source.fetch)
      yield* TestClock.adjust("1 second")
      const second = yield* Effect.fork(test.source.fetch)
      yield* TestClock.adjust("2 seconds")
      const tokens = [yield* Fiber.join(first), yield* Fiber.join(second)]
      expect(tokens.map((t) => t.issuedAt.epochMillis)).toEqual([2_000, 3_000])
      expect(tokens.map((t) => Option.getOrThrow(t.expiresAt).epochMillis)).toEqual([100_000, 100_000])
      expect(tokens.map((t) => Redacted.value(t.value))).toEqual(["same", "same"])
      // The default outcome takes the default delay too.
      const fallback = yield* Effect.fork(test.source.fetch)
      yield* TestClock.adjust("2 seconds")
      expect(Redacted.value((yield* Fiber.join(fallback)).value)).toBe("token-1")
    }))

  it.effect("setLifetime changes later default tokens", () =>
    Effect.gen(function*() {
      const test = yield* TestTokenSource.make()
      expect(lifetimeOf(yield* test.source.fetch)).toEqual(Option.some(300_000))
      yield* test.setLifetime("3 seconds")
      expect(lifetimeOf(yield* test.source.fetch)).toEqual(Option.some(3_000))
    }))

  it.effect("layer provides the scripted source as the default TokenSource", () =>
    Effect.gen(function*() {
      const source = yield* TokenSource.TokenSource
      const token = yield* source.fetch
      const test = yield* TestTokenSource.TestTokenSource
      expect(source.key).toBe("billing")
      expect(Redacted.value(token.value)).toBe("token-1")
      expect(yield* test.fetches).toBe(1)
    }).pipe(Effect.provide(TestTokenSource.layer({ key: "billing" }))))
})
