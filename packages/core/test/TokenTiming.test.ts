import { AccessToken, TokenCache, TokenTiming } from "@effect-token/core"
import { describe, expect, it } from "@effect/vitest"
import { DateTime, Duration, FastCheck as fc, Option, Redacted } from "effect"

const token = (lifetimeMillis: number | undefined) =>
  AccessToken.make({
    value: Redacted.make("t"),
    issuedAt: DateTime.unsafeMake(0),
    expiresAt: lifetimeMillis === undefined ? Option.none() : Option.some(DateTime.unsafeMake(lifetimeMillis))
  })

describe("TokenTiming", () => {
  const timing = TokenTiming.resolve()

  it("a 300 s token with the defaults: fresh until 243 s, due until 270 s, then expired", () => {
    const at = (now: number) => TokenTiming.validity(token(300_000), timing, now)
    expect(at(242_999)._tag).toBe("Fresh")
    expect(at(243_000)).toEqual({ _tag: "RefreshDue", validUntil: 270_000, refreshAt: 243_000, expiryKnown: true })
    expect(at(270_000)._tag).toBe("Expired")
  })

  it("one rule for a token without an expiry: it lives the default lifetime", () => {
    const validity = TokenTiming.validity(token(undefined), timing, 0)
    expect(validity.expiryKnown).toBe(false)
    expect(validity.validUntil).toBe(TokenTiming.validity(token(300_000), timing, 0).validUntil)
  })

  it("the jitter draw and the fetch time move the window; refreshBefore is its floor", () => {
    expect(TokenTiming.validity(token(300_000), timing, 0, { random: 1 }).refreshAt).toBe(256_500)
    expect(TokenTiming.validity(token(300_000), timing, 0, { fetchMillis: 20_000 }).refreshAt).toBe(230_000)
    const before = TokenTiming.resolve({ refreshBefore: "60 seconds" })
    expect(TokenTiming.validity(token(300_000), before, 0).refreshAt).toBe(210_000)
    const off = TokenTiming.resolve({ refreshAhead: 0 })
    expect(TokenTiming.validity(token(300_000), off, 0).refreshAt).toBe(270_000)
  })

  it("TokenCache.validUntil is the same rule", () => {
    fc.assert(fc.property(fc.option(fc.integer({ min: 0, max: 86_400_000 }), { nil: undefined }), (lifetime) => {
      expect(TokenCache.validUntil(token(lifetime), { skew: Duration.seconds(10) })).toBe(
        TokenTiming.validUntil(token(lifetime), TokenTiming.resolve({ skew: "10 seconds" }))
      )
    }))
  })
})
