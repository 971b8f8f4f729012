import { WwwAuthenticate } from "@effect-token/core"
import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"

const token = fc.stringMatching(/^[A-Za-z][A-Za-z0-9_-]{0,11}$/)
// Printable ASCII: what a quoted-string may hold without obs-text.
const value = fc.string({
  maxLength: 30,
  unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c))
})
const challenge = fc.record({
  scheme: token,
  params: fc.dictionary(token.map((s) => s.toLowerCase()), value, { maxKeys: 4 })
})

const quote = (s: string) => `"${s.replace(/["\\]/g, (c) => `\\${c}`)}"`
const serialize = (c: { scheme: string; params: Record<string, string> }) =>
  [c.scheme, Object.entries(c.params).map(([k, v]) => `${k}=${quote(v)}`).join(", ")].filter((s) => s !== "").join(" ")

describe("WwwAuthenticate.parse", () => {
  it("reads RFC 6750 Bearer challenges", () => {
    const [bearer] = WwwAuthenticate.parse(
      "Bearer realm=\"example\", error=\"invalid_token\", error_description=\"The access token expired\""
    )
    expect(bearer).toEqual({
      scheme: "Bearer",
      params: { realm: "example", error: "invalid_token", error_description: "The access token expired" }
    })
  })

  it("reads several challenges, token68 values and unquoted params", () => {
    const parsed = WwwAuthenticate.parse(
      "Basic YWxhZGRpbjpvcGVuc2VzYW1l==, DPoP algs=ES256, Bearer error=invalid_token"
    )
    expect(parsed.map((c) => c.scheme)).toEqual(["Basic", "DPoP", "Bearer"])
    expect(parsed[0]!.token68).toBe("YWxhZGRpbjpvcGVuc2VzYW1l==")
    expect(parsed[1]!.params.algs).toBe("ES256")
    expect(WwwAuthenticate.find(parsed, "bearer")!.params.error).toBe("invalid_token")
  })

  it("is lenient with garbage and empty headers", () => {
    expect(WwwAuthenticate.parse("")).toEqual([])
    expect(() => WwwAuthenticate.parse("\"unterminated, =, ,,")).not.toThrow()
  })

  it.prop("round-trips generated challenges", [fc.array(challenge, { minLength: 1, maxLength: 3 })], ([challenges]) => {
    const parsed = WwwAuthenticate.parse(challenges.map(serialize).join(", "))
    expect(parsed.map((c) => ({ scheme: c.scheme, params: c.params }))).toEqual(challenges)
  })

  it.prop("never throws", [fc.string()], ([header]) => {
    WwwAuthenticate.parse(header)
  })
})
