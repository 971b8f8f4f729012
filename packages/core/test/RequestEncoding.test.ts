import type { TokenSource } from "@effect-token/core"
import {
  ClientAuth,
  ClientCredentials,
  Password,
  RefreshToken,
  RefreshTokenStore,
  TokenExchange
} from "@effect-token/core"
import { HttpClient } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Effect, FastCheck as fc, Layer, Redacted } from "effect"
import type { Captured } from "./support/http.js"
import { fake, tokenResponse } from "./support/http.js"

/** Characters form encoding must get right, mixed with any Unicode text. */
const tricky = fc.string({
  unit: fc.constantFrom("&", "=", "+", " ", "%", "%20", "?", "#", ";", ":", "/", "é", "😀", "\n", "\u00a0", "a")
})
const text = fc.oneof(tricky, fc.fullUnicodeString())

/** Names the grants or the shape set themselves: an extra parameter cannot use them (see `extraParams`). */
const reserved = new Set([
  "grant_type",
  "scope",
  "resource",
  "audience",
  "refresh_token",
  "username",
  "password",
  "subject_token",
  "subject_token_type",
  "actor_token",
  "actor_token_type",
  "requested_token_type",
  "client_id",
  "client_secret",
  "client_assertion",
  "client_assertion_type"
])
const paramName = fc.oneof(fc.constantFrom("__proto__", "constructor", "toString", "tenant"), text).filter((name) =>
  !reserved.has(name.toLowerCase())
)

const shapeArb = fc.record({
  scope: fc.option(text, { nil: undefined }),
  resource: fc.option(fc.array(text, { maxLength: 3 }), { nil: undefined }),
  audience: fc.option(fc.oneof(text, fc.array(text, { maxLength: 3 })), { nil: undefined }),
  // Object.fromEntries keeps `__proto__` as an own property, as a parsed JSON or config object would.
  extraParams: fc.option(
    fc.uniqueArray(fc.tuple(paramName, text), { selector: ([name]) => name, maxLength: 4 }).map(Object.fromEntries),
    { nil: undefined }
  )
})

type Shape = typeof shapeArb extends fc.Arbitrary<infer A> ? A : never

const expectedShape = (shape: Shape): Array<[string, string]> => {
  const entries: Array<[string, string]> = []
  if (shape.scope !== undefined) entries.push(["scope", shape.scope])
  for (const r of shape.resource ?? []) entries.push(["resource", r])
  const audiences = shape.audience === undefined
    ? []
    : typeof shape.audience === "string"
    ? [shape.audience]
    : shape.audience
  for (const a of audiences) entries.push(["audience", a])
  for (const [name, value] of Object.entries(shape.extraParams ?? {})) entries.push([name, value as string])
  return entries
}

const sorted = (entries: Iterable<[string, string]>) => [...entries].map((e) => JSON.stringify(e)).sort()

/** The body, parsed back: exactly the expected parameters, none dropped, none added, none altered. */
const expectForm = (request: Captured, expected: Array<[string, string]>) =>
  expect(sorted(request.form.entries())).toEqual(sorted(expected))

/** RFC 6749 §2.3.1: Base64 of form-encoded id ":" form-encoded secret. */
const decodeBasic = (header: string): [string, string] => {
  const decoded = Buffer.from(header.replace(/^Basic /, ""), "base64").toString("utf8")
  const colon = decoded.indexOf(":")
  const formDecode = (s: string) => new URLSearchParams(`v=${s}`).get("v")!
  return [formDecode(decoded.slice(0, colon)), formDecode(decoded.slice(colon + 1))]
}

const once = <R>(build: Effect.Effect<TokenSource.TokenSource, never, HttpClient.HttpClient | R>) =>
  Effect.gen(function*() {
    const { client, requests } = yield* fake(() => tokenResponse())
    const source = yield* Effect.provideService(build, HttpClient.HttpClient, client)
    yield* source.fetch
    const [request] = yield* requests
    return request!
  })

const tokenUrl = "https://as.example/oauth/token?tenant=a&x=1"

describe("request encoding (property tests against a capturing in-process client)", () => {
  it.effect.prop(
    "client_credentials with client_secret_post: every parameter and both credentials round-trip",
    { shape: shapeArb, clientId: text, secret: text },
    ({ clientId, secret, shape }) =>
      Effect.gen(function*() {
        const request = yield* once(ClientCredentials.make({
          tokenUrl,
          clientAuth: ClientAuth.clientSecretPost({ clientId, clientSecret: Redacted.make(secret) }),
          ...shape
        }))
        expect(request.url).toBe(tokenUrl)
        expect(request.headers["content-type"]).toBe("application/x-www-form-urlencoded")
        expectForm(request, [
          ["grant_type", "client_credentials"],
          ...expectedShape(shape),
          ["client_id", clientId],
          ["client_secret", secret]
        ])
      })
  )

  it.effect.prop(
    "refresh_token with client_secret_basic: the stored refresh token is sent, id and secret decode back",
    { shape: shapeArb, clientId: text, secret: text, refreshToken: text },
    ({ clientId, refreshToken, secret, shape }) =>
      Effect.gen(function*() {
        const store = yield* RefreshTokenStore.make(Redacted.make(refreshToken))
        const request = yield* once(
          RefreshToken.make({
            tokenUrl,
            clientAuth: ClientAuth.clientSecretBasic({ clientId, clientSecret: Redacted.make(secret) }),
            ...shape
          }).pipe(Effect.provideService(RefreshTokenStore.RefreshTokenStore, store))
        )
        expectForm(request, [["grant_type", "refresh_token"], ["refresh_token", refreshToken], ...expectedShape(shape)])
        expect(decodeBasic(request.headers["authorization"]!)).toEqual([clientId, secret])
      })
  )

  it.effect.prop(
    "password with a public client: username and password round-trip",
    { shape: shapeArb, clientId: text, username: text, password: text },
    ({ clientId, password, shape, username }) =>
      Effect.gen(function*() {
        const request = yield* once(Password.make({
          tokenUrl,
          clientAuth: ClientAuth.none({ clientId }),
          username,
          password: Redacted.make(password),
          ...shape
        }))
        expectForm(request, [
          ["grant_type", "password"],
          ["username", username],
          ["password", password],
          ...expectedShape(shape),
          ["client_id", clientId]
        ])
        expect(request.headers["authorization"]).toBeUndefined()
      })
  )

  it.effect.prop(
    "token exchange: subject, actor, their types and the requested type round-trip",
    {
      shape: shapeArb,
      subject: text,
      actor: fc.option(text, { nil: undefined }),
      subjectType: fc.option(text, { nil: undefined }),
      actorType: fc.option(text, { nil: undefined }),
      requested: fc.option(text, { nil: undefined })
    },
    ({ actor, actorType, requested, shape, subject, subjectType }) =>
      Effect.gen(function*() {
        const request = yield* once(TokenExchange.make({
          tokenUrl,
          clientAuth: ClientAuth.none({ clientId: "gw" }),
          subjectToken: Effect.succeed(Redacted.make(subject)),
          subjectTokenType: subjectType,
          actorToken: actor === undefined ? undefined : Redacted.make(actor),
          actorTokenType: actorType,
          requestedTokenType: requested,
          ...shape
        }))
        const accessToken = "urn:ietf:params:oauth:token-type:access_token"
        expectForm(request, [
          ["grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"],
          ["subject_token", subject],
          ["subject_token_type", subjectType ?? accessToken],
          ...(actor === undefined ?
            [] :
            [["actor_token", actor], ["actor_token_type", actorType ?? accessToken]] as Array<
              [string, string]
            >),
          ...(requested === undefined ? [] : [["requested_token_type", requested]] as Array<[string, string]>),
          ...expectedShape(shape),
          ["client_id", "gw"]
        ])
      })
  )

  it.effect("extraParams cannot replace a named shape parameter", () =>
    Effect.gen(function*() {
      const store = yield* RefreshTokenStore.make(Redacted.make("the-refresh-token"))
      const request = yield* once(
        RefreshToken.make({
          tokenUrl,
          clientAuth: ClientAuth.none({ clientId: "cli" }),
          scope: "a",
          extraParams: { scope: "admin", x: "1" }
        }).pipe(Effect.provideService(RefreshTokenStore.RefreshTokenStore, store))
      )
      expectForm(request, [
        ["grant_type", "refresh_token"],
        ["refresh_token", "the-refresh-token"],
        ["scope", "a"],
        ["x", "1"],
        ["client_id", "cli"]
      ])
    }))

  it.effect("extraParams cannot set a protocol parameter (any case): Misconfigured for every grant, nothing sent", () =>
    Effect.gen(function*() {
      const { client, requests } = yield* fake(() => tokenResponse())
      const clientAuth = ClientAuth.clientSecretBasic({ clientId: "app", clientSecret: Redacted.make("s3cr3t-basic") })
      const store = yield* RefreshTokenStore.make(Redacted.make("the-refresh-token"))
      const grants = (extraParams: Record<string, string>) => [
        ClientCredentials.make({ tokenUrl, clientAuth, extraParams }),
        RefreshToken.make({ tokenUrl, clientAuth, extraParams }),
        Password.make({ tokenUrl, clientAuth, username: "u", password: Redacted.make("p"), extraParams }),
        TokenExchange.make({ tokenUrl, clientAuth, subjectToken: Redacted.make("subject"), extraParams })
      ]
      const protocol = [
        ["client_id", "other"],
        // With client_secret_basic these went out beside the Basic header: two client authentications in one request.
        ["client_secret", "x"],
        ["CLIENT_SECRET", "x"],
        ["client_assertion", "eyJ"],
        ["Client_Assertion_Type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"],
        ["grant_type", "password"],
        ["refresh_token", "attacker"],
        ["code", "c"],
        ["code_verifier", "v"],
        ["redirect_uri", "https://evil.example/cb"],
        ["username", "root"],
        ["password", "p"],
        ["subject_token", "s"],
        ["actor_token", "a"],
        ["assertion", "eyJ"],
        ["device_code", "d"]
      ]
      for (const [name, value] of protocol) {
        for (const build of grants({ tenant: "eu", [name!]: value! })) {
          const source = yield* Effect.provide(
            build.pipe(Effect.provideService(RefreshTokenStore.RefreshTokenStore, store)),
            Layer.succeed(HttpClient.HttpClient, client)
          )
          const error = yield* Effect.flip(source.fetch)
          expect(error.reason._tag, name).toBe("Misconfigured")
          expect(error.message).toContain(name!.toLowerCase())
        }
      }
      expect(yield* requests).toEqual([])
      // An ordinary extra parameter still goes out.
      const [ordinary] = grants({ tenant: "eu" })
      const source = yield* ordinary!.pipe(
        Effect.provideService(RefreshTokenStore.RefreshTokenStore, store),
        Effect.provideService(HttpClient.HttpClient, client)
      )
      yield* source.fetch
      expect((yield* requests).map((r) => r.form.get("tenant"))).toEqual(["eu"])
    }))
})
