import { AccessToken } from "@effect-token/core"
import { Expiry } from "@effect-token/testing"
import { describe, expect, it } from "@effect/vitest"
import { DateTime, Duration, Effect, Exit, Fiber, Option, Redacted, TestClock } from "effect"

const tokenExpiringAt = (millis: number) =>
  AccessToken.make({
    value: Redacted.make("t"),
    issuedAt: DateTime.unsafeMake(0),
    expiresAt: Option.some(DateTime.unsafeMake(millis))
  })

const isExpiredNow = (token: AccessToken.AccessToken, skew: Duration.DurationInput = Duration.zero) =>
  Effect.map(DateTime.now, (now) => AccessToken.isExpired(token, now, skew))

describe("Expiry", () => {
  it.effect("adjustToJustBefore / adjustToJustAfter land 1 ms either side of the expiry", () =>
    Effect.gen(function*() {
      const token = tokenExpiringAt(60_000)
      expect((yield* Expiry.adjustToJustBefore(token)).epochMillis).toBe(59_999)
      expect(yield* isExpiredNow(token)).toBe(false)
      expect(yield* Expiry.remaining(token)).toEqual(Duration.millis(1))
      expect((yield* Expiry.adjustToJustAfter(token)).epochMillis).toBe(60_001)
      expect(yield* isExpiredNow(token)).toBe(true)
      expect(yield* Expiry.remaining(token)).toEqual(Duration.zero)
    }))

  it.effect("with a skew the edges move early, matching AccessToken.isExpired with that skew", () =>
    Effect.gen(function*() {
      const token = tokenExpiringAt(60_000)
      const skew = "10 seconds"
      yield* Expiry.adjustToJustBefore(token, { skew })
      expect(yield* isExpiredNow(token, skew)).toBe(false)
      yield* Expiry.adjustToExpiry(token, { skew })
      expect(yield* Effect.map(DateTime.now, (n) => n.epochMillis)).toBe(50_000)
      expect(yield* isExpiredNow(token, skew)).toBe(true)
      expect(yield* isExpiredNow(token)).toBe(false)
      yield* Expiry.adjustToJustAfter(token, { skew, margin: "5 seconds" })
      expect(yield* Effect.map(DateTime.now, (n) => n.epochMillis)).toBe(55_000)
    }))

  it.effect("sleeps due by the new time run, as with TestClock.adjust", () =>
    Effect.gen(function*() {
      const token = tokenExpiringAt(30_000)
      const refresher = yield* Effect.fork(Effect.sleep("29 seconds"))
      yield* Expiry.adjustToJustBefore(token)
      expect(Exit.isSuccess(yield* Fiber.await(refresher))).toBe(true)
    }))

  it.effect("accepts a DateTime; dies rather than go backwards or guess a missing expiry", () =>
    Effect.gen(function*() {
      yield* TestClock.adjust("1 minute")
      const past = yield* Effect.exit(Expiry.adjustToJustBefore(DateTime.unsafeMake(30_000)))
      expect(Exit.isFailure(past) && String(past.cause)).toContain("does not move backwards")
      const noExpiry = AccessToken.make({ value: Redacted.make("t"), issuedAt: DateTime.unsafeMake(0) })
      const unknown = yield* Effect.exit(Expiry.adjustToJustAfter(noExpiry))
      expect(Exit.isFailure(unknown) && String(unknown.cause)).toContain("no known expiry")
      expect((yield* Expiry.adjustToJustAfter(DateTime.unsafeMake(120_000))).epochMillis).toBe(120_001)
    }))
})
