import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { describe, expect, it } from "@effect/vitest"
import { Context, Duration, Effect, Exit, Option, TestClock } from "effect"
import * as jose from "jose"
import * as IdToken from "../src/internal/idToken.js"

const issuer = "https://issuer.test"
const clientId = "web"

const keys = Effect.promise(async () => {
  const one = await jose.generateKeyPair("RS256", { extractable: true })
  const two = await jose.generateKeyPair("RS256", { extractable: true })
  const publicJwk = async (key: jose.CryptoKey, kid: string) => ({ ...(await jose.exportJWK(key)), kid, alg: "RS256" })
  return { one, two, jwk1: await publicJwk(one.publicKey, "k1"), jwk2: await publicJwk(two.publicKey, "k2") }
})

/** A JWKS endpoint serving `published()` and counting its requests. */
const jwksServer = (published: () => ReadonlyArray<jose.JWK>) => {
  let fetches = 0
  const client = HttpClient.make((request) =>
    Effect.sync(() => {
      fetches++
      return HttpClientResponse.fromWeb(
        request,
        new Response(JSON.stringify({ keys: published() }), { headers: { "content-type": "application/json" } })
      )
    })
  )
  return { client, fetches: () => fetches }
}

const verifierWith = (client: HttpClient.HttpClient) =>
  IdToken.make(client, {
    issuer,
    clientId,
    jwksUri: Effect.succeed(`${issuer}/jwks`),
    refetchInterval: Duration.seconds(60),
    timeout: Duration.seconds(5),
    maxBytes: 64 * 1024,
    clockTolerance: Duration.seconds(0)
  })

/** An ID token as of TestClock time 0 (iat 0, exp 300 s), overridable claim by claim. */
const sign = (
  key: jose.CryptoKey,
  claims: Record<string, unknown>,
  header: jose.JWTHeaderParameters = { alg: "RS256", kid: "k1" }
) =>
  Effect.promise(() =>
    new jose.SignJWT({ nonce: "n-1", ...claims })
      .setProtectedHeader(header)
      .setIssuer((claims.iss as string | undefined) ?? issuer)
      .setAudience((claims.aud as string | Array<string> | undefined) ?? clientId)
      .setSubject("alice")
      .setIssuedAt(0)
      .setExpirationTime((claims.exp as number | undefined) ?? 300)
      .sign(key)
  )

const checkOf = (effect: Effect.Effect<unknown, { readonly reason: { readonly _tag: string } }>) =>
  Effect.map(Effect.flip(effect), (error) => error.reason as unknown as { _tag: string; check?: string })

describe("ID token validation", () => {
  it.scoped("a valid token gives its subject", () =>
    Effect.gen(function*() {
      const { jwk1, one } = yield* keys
      const verifier = yield* verifierWith(jwksServer(() => [jwk1]).client)
      const claims = yield* verifier.verify(yield* sign(one.privateKey, {}), { nonce: "n-1" })
      expect(claims.subject).toBe("alice")
    }))

  it.scoped("each failed check is IdTokenInvalid naming the check", () =>
    Effect.gen(function*() {
      const { jwk1, one, two } = yield* keys
      const verifier = yield* verifierWith(jwksServer(() => [jwk1]).client)
      const cases: Array<[string, Effect.Effect<string>, string]> = [
        ["iss", sign(one.privateKey, { iss: "https://other.test" }), "n-1"],
        ["aud", sign(one.privateKey, { aud: "another-client" }), "n-1"],
        ["azp", sign(one.privateKey, { aud: [clientId, "api"] }), "n-1"],
        ["azp", sign(one.privateKey, { aud: [clientId, "api"], azp: "api" }), "n-1"],
        ["nonce", sign(one.privateKey, {}), "n-2"],
        ["signature", sign(two.privateKey, {}), "n-1"]
      ]
      for (const [check, token, nonce] of cases) {
        const reason = yield* checkOf(verifier.verify(yield* token, { nonce }))
        expect(reason).toMatchObject({ _tag: "IdTokenInvalid", check })
      }
      yield* TestClock.adjust(Duration.seconds(301))
      expect(yield* checkOf(verifier.verify(yield* sign(one.privateKey, {}), { nonce: "n-1" }))).toMatchObject({
        check: "exp"
      })
    }))

  it.scoped("an iat in the future (past the clock tolerance) is refused: iat is bounded", () =>
    Effect.gen(function*() {
      const { jwk1, one } = yield* keys
      const verifier = yield* verifierWith(jwksServer(() => [jwk1]).client)
      const year = 365 * 24 * 3600
      const future = yield* Effect.promise(() =>
        new jose.SignJWT({ nonce: "n-1" }).setProtectedHeader({ alg: "RS256", kid: "k1" }).setIssuer(issuer)
          .setAudience(clientId).setSubject("alice").setIssuedAt(year).setExpirationTime(year + 300)
          .sign(one.privateKey)
      )
      expect(yield* checkOf(verifier.verify(future, { nonce: "n-1" }))).toMatchObject({
        _tag: "IdTokenInvalid",
        check: "iat"
      })
      // Within the tolerance (a provider's clock a little ahead) is fine.
      const ahead = yield* Effect.promise(() =>
        new jose.SignJWT({ nonce: "n-1" }).setProtectedHeader({ alg: "RS256", kid: "k1" }).setIssuer(issuer)
          .setAudience(clientId).setSubject("alice").setIssuedAt(0).setExpirationTime(300).sign(one.privateKey)
      )
      expect((yield* verifier.verify(ahead, { nonce: "n-1" })).subject).toBe("alice")
    }))

  it.scoped("alg none and HS256 are refused whatever the key set holds", () =>
    Effect.gen(function*() {
      const { jwk1 } = yield* keys
      const secret = new TextEncoder().encode("a-shared-secret-of-at-least-32-bytes!!")
      const verifier = yield* verifierWith(
        jwksServer(() => [jwk1, { kty: "oct", k: jose.base64url.encode(secret), kid: "h1" }]).client
      )
      const hs = yield* Effect.promise(() =>
        new jose.SignJWT({ nonce: "n-1" }).setProtectedHeader({ alg: "HS256", kid: "h1" }).setIssuer(issuer)
          .setAudience(clientId).setSubject("alice").setIssuedAt(0).setExpirationTime(300).sign(secret)
      )
      expect(yield* checkOf(verifier.verify(hs, { nonce: "n-1" }))).toMatchObject({
        _tag: "IdTokenInvalid",
        check: "alg"
      })
      const unsecured = new jose.UnsecuredJWT({ nonce: "n-1", sub: "alice" }).setIssuer(issuer).setAudience(clientId)
        .setIssuedAt(0).setExpirationTime(300).encode()
      expect(yield* checkOf(verifier.verify(unsecured, { nonce: "n-1" }))).toMatchObject({ _tag: "IdTokenInvalid" })
    }))

  it.scoped("an unknown kid fetches the JWKS again, at most once per interval", () =>
    Effect.gen(function*() {
      const { jwk1, jwk2, one, two } = yield* keys
      let published: ReadonlyArray<jose.JWK> = [jwk1]
      const server = jwksServer(() => published)
      const verifier = yield* verifierWith(server.client)
      yield* verifier.verify(yield* sign(one.privateKey, {}), { nonce: "n-1" })
      expect(server.fetches()).toBe(1)
      // A made-up kid, many times: within the interval, no new fetch.
      const forged = yield* sign(two.privateKey, {}, { alg: "RS256", kid: "k2" })
      for (let i = 0; i < 5; i++) {
        expect(yield* checkOf(verifier.verify(forged, { nonce: "n-1" }))).toMatchObject({ check: "kid" })
      }
      expect(server.fetches()).toBe(1)
      // The provider rotates to k2; after the interval one fetch finds it.
      published = [jwk1, jwk2]
      yield* TestClock.adjust(Duration.seconds(61))
      const rotated = yield* sign(two.privateKey, { exp: 400 }, { alg: "RS256", kid: "k2" })
      expect((yield* verifier.verify(rotated, { nonce: "n-1" })).subject).toBe("alice")
      expect(server.fetches()).toBe(2)
    }))

  it.scoped("a hung JWKS endpoint: concurrent callbacks share one fetch, fail together, and the failure is remembered briefly", () =>
    Effect.gen(function*() {
      const { jwk1, one } = yield* keys
      let fetches = 0
      let answering = false
      const client = HttpClient.make((request) =>
        Effect.suspend(() => {
          fetches++
          return answering
            ? Effect.succeed(HttpClientResponse.fromWeb(request, new Response(JSON.stringify({ keys: [jwk1] }))))
            : Effect.never
        })
      )
      const verifier = yield* verifierWith(client)
      const token = yield* sign(one.privateKey, {})
      const callbacks = yield* Effect.forEach(
        Array.from({ length: 5 }),
        () => Effect.fork(Effect.either(verifier.verify(token, { nonce: "n-1" }))),
        { concurrency: "unbounded" }
      )
      yield* Effect.repeat(Effect.yieldNow(), { until: () => fetches > 0, times: 1000 })
      // One timeout (5 s) answers every callback: they did not queue behind each other's fetches.
      yield* TestClock.adjust(Duration.seconds(5))
      for (let i = 0; i < 50; i++) yield* Effect.yieldNow()
      const results = yield* Effect.forEach(callbacks, (fiber) => fiber.poll)
      expect(results.map((r) => Option.isSome(r) && Exit.isSuccess(r.value) && r.value.value._tag)).toEqual(
        Array.from({ length: 5 }, () => "Left")
      )
      expect(fetches).toBe(1)
      // Within the next seconds a callback fails at once, without a fetch; then one fetch is tried again.
      answering = true
      const right = yield* checkOf(verifier.verify(token, { nonce: "n-1" }))
      expect(right).toMatchObject({ _tag: "Unavailable" })
      expect(fetches).toBe(1)
      yield* TestClock.adjust(Duration.seconds(5))
      expect((yield* verifier.verify(token, { nonce: "n-1" })).subject).toBe("alice")
      expect(fetches).toBe(2)
    }))

  it.scoped("an oversized JWKS is Unavailable, not parsed", () =>
    Effect.gen(function*() {
      const { one } = yield* keys
      const big = Array.from({ length: 2000 }, (_, i) => ({ kty: "RSA", kid: `k${i}`, n: "x".repeat(64), e: "AQAB" }))
      const verifier = yield* verifierWith(jwksServer(() => big as Array<jose.JWK>).client)
      expect(yield* checkOf(verifier.verify(yield* sign(one.privateKey, {}), { nonce: "n-1" }))).toMatchObject({
        _tag: "Unavailable"
      })
    }))

  it.scoped("the JWKS is never fetched through a redirect (core's ServerRequest: redirect manual under fetch)", () =>
    Effect.gen(function*() {
      const { one } = yield* keys
      const seen: Array<string | undefined> = []
      const client = HttpClient.make((request, _url, _signal, fiber) =>
        Effect.sync(() => {
          seen.push(
            Option.getOrUndefined(Context.getOption(fiber.currentContext, FetchHttpClient.RequestInit))?.redirect
          )
          return HttpClientResponse.fromWeb(
            request,
            new Response(null, { status: 302, headers: { location: "https://elsewhere.example/jwks" } })
          )
        })
      )
      const verifier = yield* verifierWith(client)
      expect(yield* checkOf(verifier.verify(yield* sign(one.privateKey, {}), { nonce: "n-1" }))).toMatchObject({
        _tag: "Unavailable"
      })
      expect(seen).toEqual(["manual"])
    }))
})
