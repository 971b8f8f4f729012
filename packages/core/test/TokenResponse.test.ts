import type { TokenError } from "@effect-token/core"
import { TokenEndpoint } from "@effect-token/core"
import { describe, expect, it } from "@effect/vitest"
import { DateTime, Duration, Effect, Either, FastCheck as fc, Option, Redacted } from "effect"
import { generateKeyPair, SignJWT, UnsecuredJWT } from "jose"

const operation = "client_credentials grant"
const max = TokenEndpoint.maxExpiresInSeconds

const decode = (body: unknown, now: DateTime.Utc, defaultLifetime: Option.Option<Duration.Duration> = Option.none()) =>
  TokenEndpoint.decodeResponseBody(body, { operation, now, defaultLifetime })

/** Everything a log line could show of an error. */
const printed = (error: unknown): string =>
  `${(error as Error).message}\n${String(error)}\n${JSON.stringify(error)}\n${JSON.stringify(Either.left(error))}`

const compact = (record: Record<string, unknown>): Record<string, unknown> =>
  Object.fromEntries(Object.entries(record).filter(([, value]) => value !== undefined))

const base64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url")

/** A JWT as an authorization server might issue it; the client reads it without verifying. */
const unsignedJwt = (payload: Record<string, unknown>) =>
  `${base64url({ alg: "none", typ: "at+jwt" })}.${base64url(payload)}.`

// ---------------------------------------------------------------------------------------------------------------
// Arbitraries
// ---------------------------------------------------------------------------------------------------------------

/** Long and random enough that finding it in an error message can only mean a leak. */
const secretArb = (prefix: string) => fc.stringMatching(/^[A-Za-z0-9_.~+/-]{24,48}$/).map((s) => `${prefix}${s}`)

/** Any RFC 6750 §2.1 `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`. */
const anyTokenArb = fc.oneof(
  secretArb("at_"),
  fc.stringMatching(/^[A-Za-z0-9\-._~+/]{1,40}={0,3}$/)
)

/**
 * A character no `b64token` holds (and, but for the ASCII punctuation, no refresh token either): controls, NUL,
 * DEL, non-ASCII letters, `=` in the middle, the punctuation a header value cannot carry bare.
 */
const unsendableArb = fc.oneof(
  fc.constantFrom("\u0000", "\u0001", "\u001f", "\u007f", "\u00e9", "\u4e2d", "\ud83d\ude00", "\u00ff", "\u0085"),
  fc.integer({ min: 0x80, max: 0xd7ff }).map((code) => String.fromCharCode(code)),
  fc.integer({ min: 0, max: 0x1f }).map((code) => String.fromCharCode(code))
)
const notB64Arb = fc.oneof(unsendableArb, fc.constantFrom("\"", ",", ";", "\\", "(", "@", "!", "%"))

const nowArb = fc.date({
  min: new Date("2000-01-01T00:00:00Z"),
  max: new Date("2100-01-01T00:00:00Z"),
  noInvalidDate: true
})
  .map((date) => DateTime.unsafeMake(date))

const tokenTypeArb = fc.mixedCase(fc.constantFrom("bearer", "dpop"))

const expiresInArb = fc.integer({ min: 1, max }).chain((seconds) =>
  fc.constantFrom<number | string>(seconds, String(seconds)).map((wire) => ({ seconds, wire }))
)

const scopeArb = fc.array(fc.stringMatching(/^[a-z][a-z0-9:._-]{0,15}$/), { minLength: 1, maxLength: 4 })
  .map((scopes) => scopes.join(" "))

const knownFields = new Set([
  "access_token",
  "token_type",
  "expires_in",
  "scope",
  "refresh_token",
  "issued_token_type",
  "id_token"
])

/** Unknown fields a server may add (`not-before-policy`, ...): ignored. */
const extraFieldsArb = fc.dictionary(
  fc.string({ minLength: 1, maxLength: 12 }).filter((key) => !knownFields.has(key) && key !== "__proto__"),
  fc.jsonValue({ maxDepth: 2 }),
  { maxKeys: 4 }
)

interface ValidCase {
  readonly accessToken: string
  readonly tokenType: string
  readonly expiresIn: { readonly seconds: number; readonly wire: number | string } | undefined
  readonly scope: string | undefined
  readonly refreshToken: string | undefined
  readonly issuedTokenType: string | undefined
  readonly extra: Record<string, unknown>
}

const validCaseArb = (accessToken: fc.Arbitrary<string>): fc.Arbitrary<ValidCase> =>
  fc.record({
    accessToken,
    tokenType: tokenTypeArb,
    expiresIn: fc.option(expiresInArb, { nil: undefined }),
    scope: fc.option(scopeArb, { nil: undefined }),
    refreshToken: fc.option(secretArb("rt_"), { nil: undefined }),
    issuedTokenType: fc.option(fc.constant("urn:ietf:params:oauth:token-type:access_token"), { nil: undefined }),
    extra: extraFieldsArb
  })

const bodyOf = (c: ValidCase): Record<string, unknown> => ({
  ...c.extra,
  ...compact({
    access_token: c.accessToken,
    token_type: c.tokenType,
    expires_in: c.expiresIn?.wire,
    scope: c.scope,
    refresh_token: c.refreshToken,
    issued_token_type: c.issuedTokenType
  })
})

/** Values of the wrong JSON type for a string field. */
const notAStringArb = fc.oneof(
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.string(), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 5 }), fc.string({ maxLength: 5 }), { maxKeys: 3 })
)

const badTokenTypeArb = fc.oneof(
  fc.constantFrom("mac", "N_A", "", "Basic", "bearer ", " Bearer", "Bearer\n", "dpop+jwt", "Bearer DPoP"),
  fc.string({ maxLength: 10 }).filter((s) => !["bearer", "dpop"].includes(s.toLowerCase())),
  notAStringArb
)

const badExpiresInArb = fc.oneof(
  fc.integer({ max: 0 }),
  fc.integer({ min: max + 1 }),
  fc.integer({ max: 0 }).map(String),
  fc.integer({ min: max + 1, max: Number.MAX_SAFE_INTEGER }).map(String),
  fc.double({ noInteger: true }), // fractions, NaN, ±Infinity
  fc.double({ noInteger: true, noNaN: true, noDefaultInfinity: true }).map(String),
  fc.constantFrom("NaN", "Infinity", "-Infinity", "abc", "", " ", "3600s", "1.5", "-1", "0", "1e400", 1e21),
  fc.boolean(),
  fc.array(fc.integer({ min: 1, max: 100 }), { minLength: 1, maxLength: 2 }),
  fc.record({ seconds: fc.integer({ min: 1, max: 100 }) })
)

const whitespaceArb = fc.constantFrom(" ", "\t", "\n", "\r\n", "\u00a0", "\u2003")

type Mutation = { readonly name: string; readonly apply: (body: Record<string, unknown>) => unknown }

const without = (body: Record<string, unknown>, key: string) => {
  const { [key]: _removed, ...rest } = body
  return rest
}

/** Ways to break a valid body, each named so a counterexample reads well. */
const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.constant<Mutation>({ name: "no access_token", apply: (b) => without(b, "access_token") }),
  fc.constant<Mutation>({ name: "no token_type", apply: (b) => without(b, "token_type") }),
  fc.array(whitespaceArb, { maxLength: 3 }).map((ws): Mutation => ({
    name: `blank access_token ${JSON.stringify(ws.join(""))}`,
    apply: (b) => ({ ...b, access_token: ws.join("") })
  })),
  fc.tuple(whitespaceArb, fc.constantFrom("start", "middle", "end")).map(([ws, where]): Mutation => ({
    name: `whitespace at the ${where} of access_token`,
    apply: (b) => {
      const token = String(b.access_token)
      const access_token = where === "start" ? ws + token : where === "end" ? token + ws : `${token}${ws}${token}`
      return { ...b, access_token }
    }
  })),
  notAStringArb.map((v): Mutation => ({
    name: `access_token ${JSON.stringify(v)}`,
    apply: (b) => ({ ...b, access_token: v })
  })),
  badTokenTypeArb.map((v): Mutation => ({
    name: `token_type ${JSON.stringify(v)}`,
    apply: (b) => ({ ...b, token_type: v })
  })),
  badExpiresInArb.map((v): Mutation => ({
    name: `expires_in ${typeof v === "number" ? String(v) : JSON.stringify(v)}`,
    apply: (b) => ({ ...b, expires_in: v })
  })),
  fc.tuple(fc.constantFrom("scope", "refresh_token", "issued_token_type"), notAStringArb.filter((v) => v !== null))
    .map(([key, v]): Mutation => ({ name: `${key} ${JSON.stringify(v)}`, apply: (b) => ({ ...b, [key]: v }) })),
  whitespaceArb.map((ws): Mutation => ({
    name: "whitespace in refresh_token",
    apply: (b) => ({ ...b, refresh_token: `rt_${ws}${String(b.access_token)}` })
  })),
  fc.tuple(notB64Arb, fc.constantFrom("start", "middle", "end")).map(([char, where]): Mutation => ({
    name: `access_token with ${JSON.stringify(char)} at the ${where}`,
    apply: (b) => {
      const token = String(b.access_token)
      const access_token = where === "start" ? char + token : where === "end" ? token + char : `${token}${char}${token}`
      return { ...b, access_token }
    }
  })),
  fc.constant<Mutation>({ name: "'=' inside access_token", apply: (b) => ({ ...b, access_token: `ab=cd` }) }),
  fc.constant<Mutation>({ name: "empty refresh_token", apply: (b) => ({ ...b, refresh_token: "" }) }),
  unsendableArb.map((char): Mutation => ({
    name: `refresh_token with ${JSON.stringify(char)}`,
    apply: (b) => ({ ...b, refresh_token: `rt_${char}${String(b.access_token)}` })
  })),
  // Not an object at all, even though the valid body (and its secrets) is inside.
  fc.constant<Mutation>({ name: "array around the body", apply: (b) => [b] }),
  fc.constant<Mutation>({ name: "body as a JSON string", apply: (b) => JSON.stringify(b) }),
  fc.oneof(fc.string(), fc.double(), fc.boolean(), fc.constant(null), fc.constant(undefined), fc.array(fc.jsonValue()))
    .map((v): Mutation => ({ name: `non-object ${String(JSON.stringify(v))}`, apply: () => v }))
)

// ---------------------------------------------------------------------------------------------------------------

describe("TokenEndpoint.decodeResponseBody", () => {
  it.prop(
    "decodes every valid token response into the token it describes",
    { c: validCaseArb(anyTokenArb), now: nowArb },
    ({ c, now }) => {
      const token = Either.getOrThrowWith(decode(bodyOf(c), now), (e) => new Error(e.message))
      expect(Redacted.value(token.value)).toBe(c.accessToken)
      expect(token.type).toBe(c.tokenType.toLowerCase() === "bearer" ? "Bearer" : "DPoP")
      expect(token.issuedAt).toEqual(now)
      if (c.expiresIn !== undefined) {
        expect(Option.map(token.expiresAt, DateTime.toEpochMillis)).toEqual(
          Option.some(DateTime.toEpochMillis(now) + c.expiresIn.seconds * 1000)
        )
      }
      expect(token.scope).toEqual(Option.fromNullable(c.scope))
      expect(Option.map(token.refreshToken, Redacted.value)).toEqual(Option.fromNullable(c.refreshToken))
      expect(token.issuedTokenType).toEqual(Option.fromNullable(c.issuedTokenType))
      // The decoded token never shows its secrets either.
      const shown = `${String(token)} ${JSON.stringify(token)}`
      if (c.accessToken.startsWith("at_")) expect(shown).not.toContain(c.accessToken)
      if (c.refreshToken !== undefined) expect(shown).not.toContain(c.refreshToken)
    },
    { fastCheck: { numRuns: 500 } }
  )

  it.prop(
    "rejects every invalid body as MalformedResponse, never throws, and never shows a token in the error",
    { c: validCaseArb(secretArb("at_")), mutation: mutationArb, now: nowArb },
    ({ c, mutation, now }) => {
      const body = mutation.apply(bodyOf(c))
      let result: Either.Either<unknown, TokenError.TokenError> | undefined
      expect(() => {
        result = decode(body, now)
      }, mutation.name).not.toThrow()
      expect(Either.isLeft(result!), mutation.name).toBe(true)
      const error = Either.getLeft(result!).pipe(Option.getOrThrow)
      expect(error._tag).toBe("TokenError")
      expect(error.reason._tag, mutation.name).toBe("MalformedResponse")
      expect(error.operation).toBe(operation)
      const text = printed(error)
      expect(text, mutation.name).not.toContain(c.accessToken)
      if (c.refreshToken !== undefined) expect(text, mutation.name).not.toContain(c.refreshToken)
    },
    { fastCheck: { numRuns: 1000 } }
  )

  it.prop(
    "never throws on arbitrary input, whatever its shape",
    {
      body: fc.anything({
        withNullPrototype: true,
        withMap: true,
        withSet: true,
        withDate: true,
        withBigInt: true,
        withTypedArray: true,
        withBoxedValues: true,
        withSparseArray: true
      }),
      now: nowArb
    },
    ({ body, now }) => {
      const result = decode(body, now)
      if (Either.isLeft(result)) expect(result.left.reason._tag).toBe("MalformedResponse")
    },
    { fastCheck: { numRuns: 500 } }
  )

  it("names the offending fields in the detail, never their values", () => {
    const now = DateTime.unsafeMake(0)
    const error = decode(
      { access_token: "at_visible secret", token_type: "mac", expires_in: "soon", refresh_token: "rt_also secret" },
      now
    ).pipe(Either.flip, Either.getOrThrow)
    expect(error.reason).toMatchObject({ fields: ["access_token", "token_type", "expires_in", "refresh_token"] })
    expect(error.message).toBe(
      "client_credentials grant failed (MalformedResponse): invalid token response field(s): access_token, token_type, expires_in, refresh_token"
    )
    expect(printed(error)).not.toMatch(/secret|mac|soon/)
    expect(decode(null, now).pipe(Either.flip, Either.getOrThrow).reason.message).toBe("the body is not a JSON object")
  })

  it("accepts expires_in as a string of digits (older Azure AD) at both ends of the range", () => {
    const now = DateTime.unsafeMake(1_700_000_000_000)
    for (const [wire, seconds] of [["1", 1], [String(max), max], [1, 1], [max, max]] as const) {
      const token = Either.getOrThrow(decode({ access_token: "a", token_type: "Bearer", expires_in: wire }, now))
      expect(Option.getOrThrow(token.expiresAt).epochMillis).toBe(now.epochMillis + seconds * 1000)
    }
  })
})

describe("token lifetime without expires_in", () => {
  const jwtExpArb = fc.integer({ min: 946_684_800, max: 4_102_444_800 }) // 2000 .. 2100, in seconds
  /** Whole seconds after `now`, within the largest lifetime accepted. */
  const futureExp = (now: DateTime.Utc, aheadSeconds: number) => Math.floor(now.epochMillis / 1000) + aheadSeconds

  it.prop(
    "takes the expiry from an unsigned JWT's exp claim (an exp after now, at most a year ahead)",
    {
      ahead: fc.integer({ min: 1, max }),
      now: nowArb,
      type: tokenTypeArb,
      defaultSeconds: fc.option(fc.integer({ min: 1, max: 86_400 }))
    },
    ({ ahead, defaultSeconds, now, type }) => {
      const exp = futureExp(now, ahead)
      const jwt = new UnsecuredJWT({ sub: "svc", scope: "api:read" }).setExpirationTime(exp).encode()
      const defaultLifetime = Option.map(Option.fromNullable(defaultSeconds), Duration.seconds)
      const token = Either.getOrThrow(decode({ access_token: jwt, token_type: type }, now, defaultLifetime))
      // The token's own exp wins over any configured default.
      expect(Option.map(token.expiresAt, DateTime.toEpochMillis)).toEqual(Option.some(exp * 1000))
    }
  )

  it.prop(
    "an exp at or before now is MalformedResponse (expired on arrival), naming clock skew, never a token",
    {
      behind: fc.oneof(fc.integer({ min: 0, max }), fc.integer({ min: 0, max: 4_102_444_800 })),
      now: nowArb,
      defaultSeconds: fc.option(fc.integer({ min: 1, max: 86_400 }), { nil: undefined })
    },
    ({ behind, defaultSeconds, now }) => {
      // `now` may have milliseconds: the exp floor makes `behind` 0 still not after now.
      const exp = Math.floor(now.epochMillis / 1000) - behind
      const jwt = unsignedJwt({ sub: "svc", exp })
      const defaultLifetime = Option.map(Option.fromNullable(defaultSeconds), Duration.seconds)
      const error = decode({ access_token: jwt, token_type: "Bearer" }, now, defaultLifetime).pipe(
        Either.flip,
        Either.getOrThrow
      )
      expect(error.reason._tag).toBe("MalformedResponse")
      expect(error.message).toContain("expired on arrival")
      expect(error.message).toContain("clock skew")
      expect(printed(error)).not.toContain(jwt)
    }
  )

  it.prop(
    "an exp more than maxExpiresInSeconds ahead is MalformedResponse",
    {
      beyond: fc.oneof(fc.integer({ min: 1, max: 100 * max }), fc.constantFrom(1e300, Number.MAX_SAFE_INTEGER)),
      now: nowArb
    },
    ({ beyond, now }) => {
      const exp = Math.ceil(now.epochMillis / 1000) + max + beyond
      const error = decode({ access_token: unsignedJwt({ exp }), token_type: "Bearer" }, now).pipe(
        Either.flip,
        Either.getOrThrow
      )
      expect(error.reason._tag).toBe("MalformedResponse")
      expect(error.message).toContain("365 days ahead")
    }
  )

  it.prop(
    "expires_in wins over the JWT's exp",
    { exp: jwtExpArb, now: nowArb, expiresIn: fc.integer({ min: 1, max }) },
    ({ exp, expiresIn, now }) => {
      const jwt = unsignedJwt({ exp })
      const token = Either.getOrThrow(decode({ access_token: jwt, token_type: "Bearer", expires_in: expiresIn }, now))
      expect(Option.map(token.expiresAt, DateTime.toEpochMillis)).toEqual(
        Option.some(now.epochMillis + expiresIn * 1000)
      )
    }
  )

  it.prop(
    "without expires_in or a usable exp, uses the default lifetime, or leaves the expiry unknown",
    {
      now: nowArb,
      defaultSeconds: fc.option(fc.integer({ min: 1, max: 86_400 }), { nil: undefined }),
      accessToken: fc.oneof(
        secretArb("opaque_"), // not a JWT at all
        fc.constant(unsignedJwt({ sub: "svc" })), // a JWT without exp
        // An exp that is no number (1e300, once here, is a number: too far ahead, see above).
        fc.oneof(fc.string(), fc.constant(null), fc.constant(true), fc.constant([1])).map((exp) =>
          unsignedJwt({ exp })
        ),
        fc.constant(`${base64url({ alg: "none" })}.${Buffer.from("not json").toString("base64url")}.`) // broken payload
      )
    },
    ({ accessToken, defaultSeconds, now }) => {
      const defaultLifetime = Option.map(Option.fromNullable(defaultSeconds), Duration.seconds)
      const token = Either.getOrThrow(decode({ access_token: accessToken, token_type: "Bearer" }, now, defaultLifetime))
      expect(Option.map(token.expiresAt, DateTime.toEpochMillis)).toEqual(
        defaultSeconds === undefined ? Option.none() : Option.some(now.epochMillis + defaultSeconds * 1000)
      )
    }
  )

  it.effect("reads exp from a JWT signed with jose, without verifying it", () =>
    Effect.gen(function*() {
      const { privateKey } = yield* Effect.promise(() => generateKeyPair("ES256"))
      const now = DateTime.unsafeMake(1_700_000_000_000)
      const sign = (exp: number) =>
        Effect.promise(() =>
          new SignJWT({ scope: "api:read" })
            .setProtectedHeader({ alg: "ES256", typ: "at+jwt" })
            .setIssuer("https://as.example")
            .setExpirationTime(exp)
            .sign(privateKey)
        )
      for (const exp of [1_700_000_060, 1_700_003_600]) {
        const jwt = yield* sign(exp)
        const token = Either.getOrThrow(
          decode({ access_token: jwt, token_type: "DPoP" }, now, Option.some(Duration.hours(1)))
        )
        expect(token.type).toBe("DPoP")
        expect(Option.getOrThrow(token.expiresAt).epochMillis).toBe(exp * 1000)
      }
      // An exp already in the past (or exactly now) is expired on arrival: an error, not a token, whatever the default.
      for (const exp of [1_600_000_000, 1_700_000_000]) {
        const jwt = yield* sign(exp)
        const error = Either.getOrThrow(
          Either.flip(decode({ access_token: jwt, token_type: "DPoP" }, now, Option.some(Duration.hours(1))))
        )
        expect(error.reason._tag).toBe("MalformedResponse")
        expect(error.message).toContain("clock skew")
      }
    }))
})

describe("lenient where servers differ harmlessly", () => {
  const now = DateTime.unsafeMake(1_000_000)
  const decodeBody = (body: unknown) =>
    TokenEndpoint.decodeResponseBody(body, { operation: "test grant", now, defaultLifetime: Option.none() })

  it("treats null optional members as absent", () => {
    const token = decodeBody({
      access_token: "abc",
      token_type: "Bearer",
      expires_in: null,
      scope: null,
      refresh_token: null,
      issued_token_type: null
    }).pipe(Either.getOrThrow)
    expect(Option.isNone(token.expiresAt)).toBe(true)
    expect(Option.isNone(token.scope)).toBe(true)
    expect(Option.isNone(token.refreshToken)).toBe(true)
  })

  it("accepts expires_in as a string of digits only", () => {
    const expiresIn = (value: unknown) =>
      decodeBody({ access_token: "abc", token_type: "Bearer", expires_in: value }).pipe(
        Either.map((t) => Option.map(t.expiresAt, (e) => e.epochMillis - now.epochMillis))
      )
    expect(expiresIn("3599")).toEqual(Either.right(Option.some(3_599_000)))
    for (const loose of ["1e3", "0x10", " 300 ", "+300", "300.0"]) expect(Either.isLeft(expiresIn(loose))).toBe(true)
  })
})
