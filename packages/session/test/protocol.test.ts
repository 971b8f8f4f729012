import { AccessToken, TokenTiming } from "@effect-token/core"
import { describe, expect, it } from "@effect/vitest"
import { DateTime, Effect, FastCheck as fc, Option, Redacted } from "effect"
import { allowedAlgorithms } from "../src/internal/idToken.js"
import * as protocol from "../src/internal/protocol.js"

describe("PKCE", () => {
  it.effect("S256 matches RFC 7636 Appendix B", () =>
    Effect.gen(function*() {
      const challenge = yield* Effect.promise(() =>
        protocol.pkceChallenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
      )
      expect(challenge).toBe("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
    }))

  it("verifiers from 32 random bytes are valid RFC 7636 verifiers and differ", () => {
    const a = protocol.randomToken(32)
    const b = protocol.randomToken(32)
    expect(a).toHaveLength(43)
    expect(protocol.isValidVerifier(a)).toBe(true)
    expect(a).not.toBe(b)
    // 32 bytes = 256 bits, well over the 128 the session id needs.
    expect(protocol.isWellFormedId(a)).toBe(true)
  })
})

describe("state comparison", () => {
  it.prop("constantTimeEqual agrees with ===", [fc.string(), fc.string()], ([a, b]) => {
    expect(protocol.constantTimeEqual(a, b)).toBe(a === b)
    expect(protocol.constantTimeEqual(a, a)).toBe(true)
  })
})

describe("returnTo", () => {
  const base = "https://app.example"
  const isSameOriginPath = (out: string) =>
    out.startsWith("/") && !out.startsWith("//") && !out.startsWith("/\\") &&
    // eslint-disable-next-line no-control-regex -- control characters are what must never come out
    new URL(out, base).origin === base && !/[\u0000-\u001f\u007f\\]/.test(out)

  it.prop("is always a same-origin path", [fc.oneof(
    fc.string(),
    fc.webUrl(),
    fc.string().map((s) => `/${s}`),
    fc.string().map((s) => `//${s}`),
    fc.string().map((s) => `/\\${s}`),
    fc.constantFrom("/\t/evil.example", "/\n/evil.example", "https:evil.example", "javascript:alert(1)")
  )], ([input]) => {
    expect(isSameOriginPath(protocol.safeReturnTo(input))).toBe(true)
  })

  /** Path segments a browser or a URL parser normalizes away, and the hosts an attacker wants to reach. */
  const segment = fc.oneof(
    fc.constantFrom(".", "..", "%2e", "%2E", "%2e%2e", "%2E%2E", ".%2e", "%2e.", "", "", "a", "%5c", "%2f", "%09"),
    fc.constantFrom("evil.example", "evil.example:443", "127.0.0.1:9")
  )
  const dotted = fc.array(segment, { minLength: 1, maxLength: 8 }).map((segments) => `/${segments.join("/")}`)

  it.prop(
    "the path returned is the path checked: what the URL parser (and the browser) makes of it is itself, on this origin",
    [fc.oneof(dotted, dotted.map((p) => `${p}?q=1#f`), dotted.map((p) => `${p}/`))],
    ([input]) => {
      const out = protocol.safeReturnTo(input)
      expect(isSameOriginPath(out)).toBe(true)
      const resolved = new URL(out, base)
      // A browser resolves the Location against the callback's URL: nothing left to normalize, so it lands here.
      expect(resolved.pathname + resolved.search + resolved.hash).toBe(out)
      expect(protocol.safeReturnTo(out)).toBe(out)
    },
    { fastCheck: { numRuns: 2000 } }
  )

  it("shapes that normalize to a scheme-relative path are refused", () => {
    for (const shape of ["/.//evil.example/", "/..//evil.example/", "/%2e//evil.example/", "/%2E%2E//evil.example/"]) {
      expect(protocol.safeReturnTo(shape)).toBe("/")
    }
    expect(protocol.safeReturnTo("/a/..//evil.example/")).toBe("/")
    // Dot segments that leave a same-origin path are fine, and come back normalized.
    expect(protocol.safeReturnTo("/a/./b/../c")).toBe("/a/c")
  })

  it("keeps same-origin paths and refuses the rest", () => {
    expect(protocol.safeReturnTo("/orders?page=2#top")).toBe("/orders?page=2#top")
    for (
      const bad of [
        "//evil.example",
        "/\\evil.example",
        "https://evil.example/x",
        "evil",
        "",
        "/\t/evil.example",
        "/a\\b",
        undefined,
        42,
        `/${"a".repeat(3000)}`
      ]
    ) {
      expect(protocol.safeReturnTo(bad)).toBe("/")
    }
  })
})

describe("cookies", () => {
  it("session cookie: HttpOnly, Secure, SameSite=Lax, Path=/", () => {
    const cookie = protocol.serializeCookie("__Host-session", "abc", {
      path: "/",
      httpOnly: true,
      secure: true,
      sameSite: "Lax"
    })
    expect(cookie).toBe("__Host-session=abc; Path=/; HttpOnly; Secure; SameSite=Lax")
  })

  it("an expired cookie has Max-Age=0; Secure can be off (http loopback development)", () => {
    expect(
      protocol.serializeCookie("session", "", { path: "/", httpOnly: true, secure: false, sameSite: "Lax", maxAge: 0 })
    )
      .toBe("session=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax")
  })

  it("names and paths are checked", () => {
    expect(protocol.isCookieName("__Host-session")).toBe(true)
    expect(protocol.isCookieName("a;b")).toBe(false)
    expect(protocol.isCookiePath("/")).toBe(true)
    expect(protocol.isCookiePath("/a;b")).toBe(false)
  })
})

describe("refresh window (TokenTiming.onRequest, as sessions use it)", () => {
  const second = 1000
  const timing = TokenTiming.resolve(TokenTiming.onRequest)
  const tokenUntil = (expiresAt: number | undefined) =>
    AccessToken.make({
      value: Redacted.make("t"),
      issuedAt: DateTime.unsafeMake(0),
      expiresAt: expiresAt === undefined ? Option.none() : Option.some(DateTime.unsafeMake(expiresAt))
    })
  const stateAt = (expiresAt: number | undefined) => (now: number) =>
    TokenTiming.validity(tokenUntil(expiresAt), timing, now)._tag

  it("a 300 s token: fresh until 235 s, refresh due until 295 s, then expired", () => {
    const at = stateAt(300 * second)
    expect(at(0)).toBe("Fresh")
    expect(at(235 * second - 1)).toBe("Fresh")
    expect(at(235 * second)).toBe("RefreshDue")
    expect(at(295 * second - 1)).toBe("RefreshDue")
    expect(at(295 * second)).toBe("Expired")
  })

  it("no known expiry: it is assumed to live the default lifetime (5 minutes), as in a cache", () => {
    const validity = TokenTiming.validity(tokenUntil(undefined), timing, 0)
    expect(validity.expiryKnown).toBe(false)
    expect(validity.validUntil).toBe(295 * second)
    expect(validity.refreshAt).toBe(235 * second)
  })

  it.prop(
    "moves only forward, the window is never more than half the lifetime, expiry never after expiresAt",
    [fc.integer({ min: 1, max: 86_400_000 }), fc.integer({ min: 0, max: 100 }), fc.integer({ min: 0, max: 100 })],
    ([lifetime, a, b]) => {
      const rank = { Fresh: 0, RefreshDue: 1, Expired: 2 } as const
      const [t1, t2] = [Math.min(a, b), Math.max(a, b)].map((p) => Math.floor(lifetime * p / 100))
      const at = stateAt(lifetime)
      expect(rank[at(t1!)]).toBeLessThanOrEqual(rank[at(t2!)])
      expect(at(lifetime)).toBe("Expired")
      // Fresh for at least the first half of the usable lifetime (minus the capped skew).
      const validUntil = lifetime - Math.min(5 * second, Math.max(lifetime * 0.1, Math.min(1_000, lifetime / 2)))
      if (t1! < validUntil / 2) expect(at(t1!)).toBe("Fresh")
    }
  )
})

describe("ID token algorithms", () => {
  it("none and HS* are never allowed, whatever is configured", () => {
    expect(allowedAlgorithms(["none", "HS256", "hs512", "RS256", "ES256"])).toEqual(["RS256", "ES256"])
    expect(allowedAlgorithms(undefined)).not.toContain("none")
    expect(allowedAlgorithms(undefined).some((a) => a.startsWith("HS"))).toBe(false)
  })
})
