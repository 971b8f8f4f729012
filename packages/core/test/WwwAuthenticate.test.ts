import { WwwAuthenticate } from "@effect-token/core"
import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import { maxHeaderLength, scan } from "../src/internal/wwwAuthenticate.js"

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

  // RFC 9110 §11.6.1, generated and rendered: the parser must give back exactly what was rendered.
  describe("against the RFC 9110 grammar", () => {
    const tchars = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    const rfcToken = fc.string({ unit: fc.constantFrom(...tchars), minLength: 1, maxLength: 12 })
    const token68 = fc.tuple(
      fc.stringMatching(/^[A-Za-z0-9\-._~+/]{1,20}$/),
      fc.integer({ min: 0, max: 3 })
    ).map(([chars, pad]) => chars + "=".repeat(pad))
    // qdtext and quoted-pair: HTAB, SP, VCHAR and obs-text (%x80-FF).
    const quotedValue = fc.string({
      maxLength: 20,
      unit: fc.oneof(
        fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)),
        fc.constantFrom("\t", "\u00e9", "\u00ff")
      )
    })
    const ows = fc.constantFrom("", " ", "\t", "  ")
    const sp = fc.constantFrom(" ", "  ")
    const param = fc.record({
      name: rfcToken,
      value: fc.oneof(
        rfcToken.map((v) => ({ value: v, wire: fc.constant(v) })),
        quotedValue.map((v) => ({
          value: v,
          // Escaping is optional for anything but `"` and `\`: escape some other characters too.
          wire: fc.boolean().map((all) =>
            `"${v.replace(all ? /[\s\S]/g : /["\\]/g, (c) => (all || c === "\"" || c === "\\" ? `\\${c}` : c))}"`
          )
        }))
      ),
      before: ows,
      after: ows
    })
    const rfcChallenge = fc.record({
      scheme: rfcToken,
      body: fc.oneof(
        fc.constant({ _tag: "none" as const }),
        token68.map((value) => ({ _tag: "token68" as const, value })),
        fc.array(param, { minLength: 1, maxLength: 4 }).map((params) => ({ _tag: "params" as const, params }))
      ),
      space: sp
    })
    const rendered = fc.array(rfcChallenge, { minLength: 1, maxLength: 4 }).chain((challenges) =>
      fc.tuple(
        fc.constant(challenges),
        fc.tuple(
          ...challenges.map((c) =>
            c.body._tag === "params"
              ? fc.tuple(...c.body.params.map((p) => p.value.wire)).map((wires) =>
                `${c.scheme}${c.space}${
                  wires.map((wire, i) => {
                    const p = (c.body as { params: Array<{ name: string; before: string; after: string }> }).params[i]!
                    return `${p.name}${p.before}=${p.after}${wire}`
                  }).join(", ")
                }`
              )
              : fc.constant(c.body._tag === "token68" ? `${c.scheme}${c.space}${c.body.value}` : c.scheme)
          )
        ),
        // #list: elements separated by OWS "," OWS, empty elements allowed.
        fc.constantFrom(", ", ",", " ,\t", ", , ")
      ).map(([cs, parts, separator]) => ({ challenges: cs, header: parts.join(separator) }))
    )
    const expected = (challenges: ReadonlyArray<typeof rfcChallenge extends fc.Arbitrary<infer A> ? A : never>) =>
      challenges.map((c) => {
        // fromEntries defines own properties, so `__proto__` is a parameter like any other (the last one wins).
        const params: Record<string, string> = Object.fromEntries(
          c.body._tag === "params" ? c.body.params.map((p) => [p.name.toLowerCase(), p.value.value]) : []
        )
        return {
          scheme: c.scheme,
          params,
          ...(c.body._tag === "token68" ? { token68: c.body.value } : {})
        }
      })

    it.prop("parses every rendered challenge list into what was rendered", [rendered], ([{ challenges, header }]) => {
      const parsed = WwwAuthenticate.parse(header).map((c) => ({ ...c, params: { ...c.params } }))
      expect(parsed).toEqual(expected(challenges))
    }, { fastCheck: { numRuns: 1000 } })

    it.prop("does work linear in the length of any input, and never throws", [
      fc.oneof(
        fc.string({ maxLength: 2000 }),
        fc.string({ maxLength: 2000, unit: fc.constantFrom("a", " ", "/", "=", ",", "\"", "\\", "\t", "!") }),
        rendered.map((r) => r.header)
      )
    ], ([header]) => {
      const { steps } = scan(header)
      expect(steps).toBeLessThanOrEqual(8 * header.length + 8)
    }, { fastCheck: { numRuns: 1000 } })
  })

  it("parses a pathological 64 KB header with linear work, reading at most 16 KiB", () => {
    // Every `a` after the first opens a challenge; the former parser's token68 look-ahead re-read the rest of the
    // header from each of them (25 s for this header).
    const pathological = `a ${"a/".repeat(32 * 1024 - 2)}!`
    expect(pathological.length).toBeGreaterThan(64_000)
    const { challenges, steps } = scan(pathological)
    expect(steps).toBeLessThanOrEqual(8 * maxHeaderLength)
    // The same shape within the cap: all of it is read, once.
    const within = `a ${"a/".repeat(4000)}!`
    const small = scan(within)
    expect(small.challenges.length).toBe(4002) // `a`, 4000 times `a`, and `!` (a tchar)
    expect(small.steps).toBeLessThanOrEqual(8 * within.length)
    // What lies past the cap is not read: the challenge the cut falls into is left out.
    expect(challenges.length).toBeLessThan(maxHeaderLength)
    const [first] = WwwAuthenticate.parse(`Bearer error="invalid_token", ${"x, ".repeat(10_000)}Late realm="r"`)
    expect(first?.params.error).toBe("invalid_token")
    expect(WwwAuthenticate.find(
      WwwAuthenticate.parse(`Bearer error="invalid_token", ${"x, ".repeat(10_000)}Late realm="r"`),
      "late"
    )).toBeUndefined()
  })
})
