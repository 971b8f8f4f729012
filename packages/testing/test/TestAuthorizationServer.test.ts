import { ClientAuth, ClientCredentials, TokenEndpoint, TokenError } from "@effect-token/core"
import { Expiry, Fault, TestAuthorizationServer, TestHttpClient } from "@effect-token/testing"
import { HttpClient, HttpClientRequest } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { DateTime, Duration, Effect, Fiber, Layer, Option, Redacted, Schedule, TestClock } from "effect"
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from "jose"
import * as Jws from "../src/internal/authorizationServer/jws.js"

// Characters that RFC 6749 §2.3.1 form-encoding changes: a server that skips decoding would reject the client.
const oddSecret = "s3cr3t: +/%&=~!*()"

const clients: ReadonlyArray<TestAuthorizationServer.Client> = [
  { clientId: "svc", clientSecret: Redacted.make(oddSecret), scopes: ["api:read", "api:write"] },
  { clientId: "post-only", clientSecret: Redacted.make("p"), authMethods: ["client_secret_post"] },
  { clientId: "spa" }
]

const sourceFor = (
  as: TestAuthorizationServer.TestAuthorizationServer,
  options: { readonly clientAuth?: ClientAuth.ClientAuth; readonly scope?: string } = {}
) =>
  ClientCredentials.make({
    tokenUrl: as.tokenUrl,
    clientAuth: options.clientAuth ?? as.clientAuth(),
    ...(options.scope !== undefined ? { scope: options.scope } : {})
  }).pipe(Effect.provideService(HttpClient.HttpClient, as.client))

const fetchWith = (
  as: TestAuthorizationServer.TestAuthorizationServer,
  options: { readonly clientAuth?: ClientAuth.ClientAuth; readonly scope?: string } = {}
) => Effect.flatMap(sourceFor(as, options), (source) => source.fetch)

/** The raw HTTP answer to a client-credentials request, for asserting on what the server sends. */
const rawTokenRequest = (as: TestAuthorizationServer.TestAuthorizationServer) =>
  HttpClientRequest.post(as.tokenUrl).pipe(
    HttpClientRequest.bodyUrlParams({ grant_type: "client_credentials", client_id: "post-only", client_secret: "p" }),
    as.client.execute,
    Effect.flatMap((response) => Effect.map(response.text, (text) => ({ response, text })))
  )

describe("TestAuthorizationServer (in process, TestClock)", () => {
  it.effect("issues a signed JWT with the RFC 9068 claims, with client_secret_basic and client_secret_post", () =>
    Effect.gen(function*() {
      const as = yield* TestAuthorizationServer.makeInProcess({ clients, tokenLifetime: "2 minutes" })
      yield* TestClock.adjust("1 hour")
      const jwks = createLocalJWKSet(as.jwks)
      for (const method of ["client_secret_basic", "client_secret_post"] as const) {
        const token = yield* fetchWith(as, { clientAuth: as.clientAuth({ method }), scope: "api:read" })
        expect(token.issuedAt.epochMillis).toBe(3_600_000)
        expect(Option.getOrThrow(token.expiresAt).epochMillis).toBe(3_600_000 + 120_000)
        expect(Option.getOrThrow(token.scope)).toBe("api:read")
        const value = Redacted.value(token.value)
        expect(decodeProtectedHeader(value)).toMatchObject({ alg: "RS256", typ: "at+jwt" })
        const { payload } = yield* Effect.promise(() =>
          jwtVerify(value, jwks, { issuer: as.issuer, audience: as.audience, currentDate: new Date(3_600_000) })
        )
        expect(payload).toMatchObject({ client_id: "svc", sub: "svc", scope: "api:read", iat: 3600, exp: 3720 })
        expect(payload.jti).toMatch(/^at-\d+$/)
      }
      expect(yield* as.requests).toEqual({ client_credentials: 2 })
      const issued = yield* as.issuedTokens
      expect(issued.map((t) => [t.jti, t.sequence, t.grantType])).toEqual([
        ["at-1", 1, "client_credentials"],
        ["at-2", 2, "client_credentials"]
      ])
    }))

  it.effect("without a scope the client's configured scopes are granted; others give invalid_scope", () =>
    Effect.gen(function*() {
      const as = yield* TestAuthorizationServer.makeInProcess({ clients })
      const token = yield* fetchWith(as)
      expect(Option.getOrThrow(token.scope)).toBe("api:read api:write")
      const error = yield* Effect.flip(fetchWith(as, { scope: "admin" }))
      expect(error).toMatchObject({ reason: { _tag: "OAuthError", code: "invalid_scope", status: 400 } })
    }))

  it.effect("token times follow TestClock: valid until exp, Expired from exp on", () =>
    Effect.gen(function*() {
      const as = yield* TestAuthorizationServer.makeInProcess({ tokenLifetime: "5 minutes" })
      yield* TestClock.adjust("90 seconds")
      const token = yield* fetchWith(as)
      expect(decodeJwt(Redacted.value(token.value))).toMatchObject({ iat: 90, exp: 390 })
      yield* Expiry.adjustToJustBefore(token)
      expect((yield* as.verify(token)).jti).toBe("at-1")
      yield* Expiry.adjustToJustAfter(token)
      const error = yield* Effect.flip(as.verify(token))
      expect(error).toMatchObject({ _tag: "InvalidToken", reason: "Expired" })
    }))

  it.effect("signing and verifying take no real time: nothing that moves the TestClock runs in between", () =>
    Effect.gen(function*() {
      // Asynchronous crypto (WebCrypto runs on the thread pool) is real time in which a test moving the clock along
      // (`Advance.untilDone`) moved it: on a starved CPU a 1 s token was expired when it arrived. `runSyncExit`
      // fails with an AsyncFiberException on anything asynchronous.
      const as = yield* TestAuthorizationServer.makeInProcess({ tokenLifetime: "1 second" })
      const clock = yield* Effect.clock
      const signingKey = yield* TestAuthorizationServer.generateSigningKey
      const signed = Effect.runSyncExit(
        Jws.signRs256({ kid: signingKey.kid }, { sub: "x" }, Redacted.value(signingKey.privateKey))
      )
      expect(signed._tag).toBe("Success")
      const token = yield* fetchWith(as)
      const verified = Effect.runSyncExit(Effect.withClock(as.verify(token), clock))
      expect(verified._tag === "Success" && verified.value.jti).toBe("at-1")
      // The same JWS that jose verifies (see the first test), and what jose refuses, refused the same way here.
      const [header, payload] = Redacted.value(token.value).split(".")
      const forged = `${header}.${payload}.${"A".repeat(342)}`
      expect(yield* Effect.flip(as.verify(forged))).toMatchObject({ reason: "Signature" })
      expect(yield* Effect.flip(as.verify(`${header}.${payload}`))).toMatchObject({ reason: "Malformed" })
      const none = `${Buffer.from(JSON.stringify({ alg: "none" })).toString("base64url")}.${payload}.`
      expect(yield* Effect.flip(as.verify(none))).toMatchObject({ reason: "Malformed" })
    }))

  it.effect("exp is rounded up so it is never before the expiry the client computes", () =>
    Effect.gen(function*() {
      const as = yield* TestAuthorizationServer.makeInProcess({ tokenLifetime: "10 seconds" })
      yield* TestClock.adjust("1500 millis")
      const token = yield* fetchWith(as)
      expect(Option.getOrThrow(token.expiresAt).epochMillis).toBe(11_500)
      expect(decodeJwt(Redacted.value(token.value)).exp).toBe(12)
      yield* Expiry.adjustToJustBefore(token)
      yield* as.verify(token)
    }))

  it.effect("setTokenLifetime changes later tokens; nextTokenLifetime only the next ones", () =>
    Effect.gen(function*() {
      const as = yield* TestAuthorizationServer.makeInProcess({ tokenLifetime: "1 minute" })
      const lifetimes = Effect.map(
        Effect.all(Array.from({ length: 4 }, () => fetchWith(as))),
        (tokens) => tokens.map((t) => Option.getOrThrow(t.expiresAt).epochMillis - t.issuedAt.epochMillis)
      )
      yield* as.nextTokenLifetime("10 seconds", 2)
      expect(yield* lifetimes).toEqual([10_000, 10_000, 60_000, 60_000])
      yield* as.setTokenLifetime("2 hours")
      yield* as.nextTokenLifetime("3 seconds")
      expect(yield* lifetimes).toEqual([3_000, 7_200_000, 7_200_000, 7_200_000])
    }))

  it.effect("without expires_in the client reads the lifetime from the JWT exp", () =>
    Effect.gen(function*() {
      const as = yield* TestAuthorizationServer.makeInProcess({ tokenLifetime: "45 seconds", includeExpiresIn: false })
      const { text } = yield* rawTokenRequest(as).pipe(Effect.provideService(HttpClient.HttpClient, as.client))
      expect(JSON.parse(text)).not.toHaveProperty("expires_in")
      const token = yield* fetchWith(as)
      expect(Option.getOrThrow(token.expiresAt).epochMillis).toBe(45_000)
    }))

  describe("client authentication", () => {
    it.effect("a wrong secret is invalid_client 401, with a Basic challenge when Basic was tried", () =>
      Effect.gen(function*() {
        const as = yield* TestAuthorizationServer.makeInProcess({ clients })
        const wrong = ClientAuth.clientSecretBasic({ clientId: "svc", clientSecret: Redacted.make("nope") })
        const error = yield* Effect.flip(fetchWith(as, { clientAuth: wrong }))
        expect(error).toMatchObject({ reason: { _tag: "OAuthError", code: "invalid_client", status: 401 } })
        expect(error.message).not.toContain("nope")
        const response = yield* HttpClientRequest.post(as.tokenUrl).pipe(
          HttpClientRequest.basicAuth("svc", "nope"),
          HttpClientRequest.bodyUrlParams({ grant_type: "client_credentials" }),
          as.client.execute
        )
        expect(response.status).toBe(401)
        expect(response.headers["www-authenticate"]).toBe(`Basic realm="${as.issuer}"`)
      }))

    it.effect("a client limited to client_secret_post is refused with Basic; unknown clients are refused", () =>
      Effect.gen(function*() {
        const as = yield* TestAuthorizationServer.makeInProcess({ clients })
        const secret = Redacted.make("p")
        yield* fetchWith(as, {
          clientAuth: ClientAuth.clientSecretPost({ clientId: "post-only", clientSecret: secret })
        })
        for (
          const auth of [
            ClientAuth.clientSecretBasic({ clientId: "post-only", clientSecret: secret }),
            ClientAuth.clientSecretPost({ clientId: "ghost", clientSecret: secret })
          ]
        ) {
          const error = yield* Effect.flip(fetchWith(as, { clientAuth: auth }))
          expect(error).toMatchObject({ reason: { _tag: "OAuthError", code: "invalid_client" } })
        }
      }))

    it.effect("public clients cannot use client_credentials; unknown grants are unsupported_grant_type", () =>
      Effect.gen(function*() {
        const as = yield* TestAuthorizationServer.makeInProcess({ clients })
        const error = yield* Effect.flip(fetchWith(as, { clientAuth: as.clientAuth({ clientId: "spa" }) }))
        expect(error).toMatchObject({ reason: { _tag: "OAuthError", code: "unauthorized_client" } })
        const endpoint = TokenEndpoint.makeWith(as.client, { tokenUrl: as.tokenUrl, clientAuth: as.clientAuth() })
        const unsupported = yield* Effect.flip(endpoint.request({ grant_type: "password", username: "u" }))
        expect(unsupported).toMatchObject({
          reason: { _tag: "OAuthError", code: "unsupported_grant_type", status: 400 }
        })
        expect(yield* as.requests).toEqual({ client_credentials: 1, password: 1 })
      }))
  })

  describe("scripted faults: the HTTP answer and the TokenError it becomes", () => {
    const cases: ReadonlyArray<{
      readonly name: string
      readonly fault: Fault.Fault
      readonly status: number
      readonly contentType: RegExp
      readonly retryAfter?: string
      readonly expected: Record<string, unknown>
      readonly parsedRetryAfter?: number
      readonly transient: boolean
    }> = [
      {
        name: "503 with Retry-After",
        fault: Fault.unavailable({ retryAfter: "2 seconds" }),
        status: 503,
        contentType: /text\/plain/,
        retryAfter: "2",
        expected: { _tag: "Unavailable", status: 503 },
        parsedRetryAfter: 2_000,
        transient: true
      },
      {
        name: "429 with Retry-After",
        fault: Fault.tooManyRequests({ retryAfter: "1500 millis" }),
        status: 429,
        contentType: /text\/plain/,
        retryAfter: "2",
        expected: { _tag: "Unavailable", status: 429 },
        parsedRetryAfter: 2_000,
        transient: true
      },
      {
        name: "bare 500",
        fault: Fault.serverError,
        status: 500,
        contentType: /text\/plain/,
        expected: { _tag: "Unavailable", status: 500 },
        transient: true
      },
      {
        name: "HTML page",
        fault: Fault.htmlPage(),
        status: 200,
        contentType: /text\/html/,
        expected: { _tag: "MalformedResponse", status: 200 },
        transient: false
      },
      {
        name: "non-JSON 200",
        fault: Fault.nonJson(),
        status: 200,
        contentType: /text\/plain/,
        expected: { _tag: "MalformedResponse", status: 200 },
        transient: false
      },
      {
        name: "JSON without access_token",
        fault: Fault.missingAccessToken,
        status: 200,
        contentType: /application\/json/,
        expected: { _tag: "MalformedResponse", description: "invalid token response field(s): access_token" },
        transient: false
      },
      {
        name: "invalid_client",
        fault: Fault.oauthError("invalid_client", { description: "client disabled" }),
        status: 401,
        contentType: /application\/json/,
        expected: {
          _tag: "OAuthError",
          code: "invalid_client",
          description: "client disabled",
          status: 401
        },
        transient: false
      },
      {
        name: "invalid_grant",
        fault: Fault.oauthError("invalid_grant"),
        status: 400,
        contentType: /application\/json/,
        expected: { _tag: "OAuthError", code: "invalid_grant", status: 400 },
        transient: false
      },
      {
        name: "temporarily_unavailable",
        fault: Fault.oauthError("temporarily_unavailable"),
        status: 503,
        contentType: /application\/json/,
        expected: { _tag: "OAuthError", code: "temporarily_unavailable", status: 503 },
        transient: true
      },
      {
        name: "a raw response with an unparsable Retry-After",
        fault: Fault.response({ status: 502, headers: { "retry-after": "soon" }, body: "Bad Gateway" }),
        status: 502,
        contentType: /text\/plain/,
        retryAfter: "soon",
        expected: { _tag: "Unavailable", status: 502 },
        transient: true
      }
    ]

    for (const c of cases) {
      it.effect(c.name, () =>
        Effect.gen(function*() {
          const as = yield* TestAuthorizationServer.makeInProcess({ clients })
          yield* as.failNext(c.fault)
          const { response } = yield* rawTokenRequest(as)
          expect(response.status).toBe(c.status)
          expect(response.headers["content-type"]).toMatch(c.contentType)
          expect(response.headers["retry-after"]).toBe(c.retryAfter)

          yield* as.failNext(c.fault)
          const error = yield* Effect.flip(fetchWith(as))
          expect(error.reason).toMatchObject(c.expected)
          expect(Option.map(TokenError.retryAfter(error), Duration.toMillis)).toEqual(
            Option.fromNullable(c.parsedRetryAfter)
          )
          expect(TokenError.isTransient(error)).toBe(c.transient)

          // The fault was used up: the next request is served normally.
          yield* fetchWith(as)
          expect(yield* as.requests).toEqual({ client_credentials: 3 })
        }))
    }

    it.effect("faults queue up: 3 times 503, then an OAuth error, then tokens again", () =>
      Effect.gen(function*() {
        const as = yield* TestAuthorizationServer.makeInProcess({ clients })
        yield* as.failNext(Fault.unavailable({ retryAfter: "1 second" }), 3)
        yield* as.failNext(Fault.oauthError("invalid_client"))
        const source = yield* sourceFor(as)
        const outcomes = yield* Effect.all(
          Array.from({ length: 5 }, () =>
            source.fetch.pipe(
              Effect.match({ onFailure: (e) => TokenError.oauthCode(e) ?? e.reason._tag, onSuccess: () => "token" })
            ))
        )
        expect(outcomes).toEqual(["Unavailable", "Unavailable", "Unavailable", "invalid_client", "token"])
      }))

    it.effect("a fetch retried after Retry-After waits on TestClock time", () =>
      Effect.gen(function*() {
        const as = yield* TestAuthorizationServer.makeInProcess({ clients })
        yield* as.failNext(Fault.unavailable({ retryAfter: "5 seconds" }), 2)
        const source = yield* sourceFor(as)
        const honourRetryAfter = Schedule.identity<TokenError.TokenError>().pipe(
          Schedule.addDelay((error) => Option.getOrElse(TokenError.retryAfter(error), () => Duration.zero))
        )
        const fiber = yield* source.fetch.pipe(
          Effect.retry({ while: TokenError.isTransient, schedule: honourRetryAfter }),
          Effect.fork
        )
        yield* TestClock.adjust("9 seconds")
        expect(fiber.unsafePoll()).toBeNull()
        expect(yield* as.requests).toEqual({ client_credentials: 2 })
        yield* TestClock.adjust("1 second")
        const token = yield* Fiber.join(fiber)
        expect(token.issuedAt.epochMillis).toBe(10_000)
        expect(yield* as.requests).toEqual({ client_credentials: 3 })
      }))

    it.effect("a slow answer arrives when TestClock says so; slower than the timeout is Timeout", () =>
      Effect.gen(function*() {
        const as = yield* TestAuthorizationServer.makeInProcess({ clients })
        yield* as.failNext(Fault.slow("5 seconds"))
        const slow = yield* Effect.fork(fetchWith(as))
        yield* TestClock.adjust("4999 millis")
        expect(slow.unsafePoll()).toBeNull()
        yield* TestClock.adjust("1 millis")
        const token = yield* Fiber.join(slow)
        // The lifetime counts from when the request was sent: the 5 s on the way are spent of it.
        expect(token.issuedAt.epochMillis).toBe(0)

        yield* as.failNext(Fault.slow("1 minute"))
        const tooSlow = yield* Effect.fork(Effect.flip(fetchWith(as)))
        yield* TestClock.adjust(TokenEndpoint.defaultTimeout)
        const error = yield* Fiber.join(tooSlow)
        expect(error).toMatchObject({ reason: { _tag: "Timeout" } })
        expect(TokenError.isTransient(error)).toBe(true)
      }))

    it.effect("a request to an origin nothing listens on is a Transport error", () =>
      Effect.gen(function*() {
        const as = yield* TestAuthorizationServer.makeInProcess({ clients })
        const client = TestHttpClient.make()
        const error = yield* ClientCredentials.make({ tokenUrl: as.tokenUrl, clientAuth: as.clientAuth() }).pipe(
          Effect.flatMap((source) => source.fetch),
          Effect.provideService(HttpClient.HttpClient, client),
          Effect.flip
        )
        expect(error).toMatchObject({ reason: { _tag: "Transport" } })
        expect(error.message).toContain("ECONNREFUSED")
      }))
  })

  describe("refresh tokens", () => {
    const refresh = (as: TestAuthorizationServer.TestAuthorizationServer, refreshToken: Redacted.Redacted<string>) =>
      TokenEndpoint.makeWith(as.client, { tokenUrl: as.tokenUrl, clientAuth: as.clientAuth() })
        .request({ grant_type: "refresh_token", refresh_token: refreshToken })

    it.effect("each refresh rotates the refresh token; reusing a rotated one is invalid_grant", () =>
      Effect.gen(function*() {
        const as = yield* TestAuthorizationServer.makeInProcess({ clients, tokenLifetime: "1 minute" })
        const first = yield* as.issueRefreshToken({ scope: "api:read" })
        const a = yield* refresh(as, first)
        const second = Option.getOrThrow(a.refreshToken)
        expect(Redacted.value(second)).not.toBe(Redacted.value(first))
        expect(Option.getOrThrow(a.scope)).toBe("api:read")
        yield* TestClock.adjust("30 seconds")
        const b = yield* refresh(as, second)
        expect(Option.getOrThrow(b.expiresAt).epochMillis).toBe(90_000)

        const reused = yield* Effect.flip(refresh(as, first))
        expect(reused).toMatchObject({ reason: { _tag: "OAuthError", code: "invalid_grant", status: 400 } })
        expect(reused.message).not.toContain(Redacted.value(first))
        expect(yield* as.requests).toEqual({ refresh_token: 3 })
        expect((yield* as.issuedTokens).map((t) => t.grantType)).toEqual(["refresh_token", "refresh_token"])
      }))

    it.effect("a revoked, unknown or other client's refresh token is invalid_grant; scope can only narrow", () =>
      Effect.gen(function*() {
        const as = yield* TestAuthorizationServer.makeInProcess({ clients })
        const revoked = yield* as.issueRefreshToken()
        yield* as.revokeRefreshToken(revoked)
        const others = yield* as.issueRefreshToken({ clientId: "post-only" })
        for (const token of [revoked, others, Redacted.make("rt-made-up")]) {
          expect(TokenError.oauthCode(yield* Effect.flip(refresh(as, token)))).toBe("invalid_grant")
        }
        const narrow = yield* as.issueRefreshToken({ scope: "api:read api:write" })
        const endpoint = TokenEndpoint.makeWith(as.client, { tokenUrl: as.tokenUrl, clientAuth: as.clientAuth() })
        const wider = yield* Effect.flip(
          endpoint.request({ grant_type: "refresh_token", refresh_token: narrow, scope: "admin" })
        )
        expect(TokenError.oauthCode(wider)).toBe("invalid_scope")
        const narrowed = yield* endpoint.request({
          grant_type: "refresh_token",
          refresh_token: narrow,
          scope: "api:read"
        })
        expect(Option.getOrThrow(narrowed.scope)).toBe("api:read")
      }))

    it.effect("without rotation the same refresh token keeps working and none is returned", () =>
      Effect.gen(function*() {
        const as = yield* TestAuthorizationServer.makeInProcess({ clients, rotateRefreshTokens: false })
        const token = yield* as.issueRefreshToken()
        const a = yield* refresh(as, token)
        const b = yield* refresh(as, token)
        expect(Option.isNone(a.refreshToken) && Option.isNone(b.refreshToken)).toBe(true)
      }))
  })

  describe("verification and revocation", () => {
    it.effect("revoke(jti) makes verify fail with Revoked; isRevoked accepts the token or its jti", () =>
      Effect.gen(function*() {
        const as = yield* TestAuthorizationServer.makeInProcess()
        const token = yield* fetchWith(as)
        const other = yield* fetchWith(as)
        expect(TestAuthorizationServer.jtiOf(token)).toBe("at-1")
        yield* as.revoke("at-1")
        expect(yield* as.isRevoked(token)).toBe(true)
        expect(yield* as.isRevoked(other)).toBe(false)
        expect(yield* Effect.flip(as.verify(token))).toMatchObject({ reason: "Revoked" })
        yield* as.verify(other)
      }))

    it.effect("verify rejects another server's token, another audience and garbage", () =>
      Effect.gen(function*() {
        const as = yield* TestAuthorizationServer.makeInProcess()
        const impostor = yield* TestAuthorizationServer.makeInProcess()
        const foreign = yield* fetchWith(impostor)
        expect(yield* Effect.flip(as.verify(foreign))).toMatchObject({ reason: "Signature" })
        const own = yield* fetchWith(as)
        expect(yield* Effect.flip(as.verify(own, { audience: "urn:other" }))).toMatchObject({ reason: "Audience" })
        expect(yield* Effect.flip(as.verify("not-a-jwt"))).toMatchObject({ reason: "Malformed" })
        const otherIssuer = yield* TestAuthorizationServer.makeInProcess({ issuer: "https://elsewhere.test" })
        expect(
          yield* Effect.flip(otherIssuer.verify(
            yield* fetchWith(otherIssuer).pipe(
              Effect.map((t) => t.value)
            ),
            { audience: "urn:nope" }
          ))
        ).toMatchObject({ reason: "Audience" })
      }))

    it.effect("serves JWKS and discovery metadata", () =>
      Effect.gen(function*() {
        const as = yield* TestAuthorizationServer.makeInProcess()
        const get = (url: string) => Effect.flatMap(as.client.get(url), (r) => r.json)
        expect(yield* get(as.jwksUrl)).toEqual(as.jwks)
        const metadata = yield* get(as.discoveryUrl)
        expect(metadata).toMatchObject({ issuer: as.issuer, token_endpoint: as.tokenUrl, jwks_uri: as.jwksUrl })
        expect(yield* get(`${as.issuer}/.well-known/oauth-authorization-server`)).toEqual(metadata)
        // The authorization endpoint answers a request it cannot redirect (no client, no redirect_uri) with a 400.
        expect((yield* as.client.get(as.authorizationUrl)).status).toBe(400)
        const notFound = yield* as.client.get(`${as.issuer}/userinfo`)
        expect(notFound.status).toBe(404)
        const wrongMethod = yield* as.client.get(as.tokenUrl)
        expect(wrongMethod.status).toBe(405)
      }))
  })

  it.effect("layerInProcess + layerClient give code under test an HttpClient that reaches the server", () =>
    Effect.gen(function*() {
      const as = yield* TestAuthorizationServer.TestAuthorizationServer
      const source = yield* ClientCredentials.make({ tokenUrl: as.tokenUrl, clientAuth: as.clientAuth() })
      yield* source.fetch
      expect(yield* as.requests).toEqual({ client_credentials: 1 })
    }).pipe(
      Effect.provide(
        TestAuthorizationServer.layerClient.pipe(Layer.provideMerge(TestAuthorizationServer.layerInProcess()))
      )
    ))
})

describe("TestAuthorizationServer (port 0)", () => {
  it.scopedLive("serves the same token endpoint over a real socket and stops with its scope", () =>
    Effect.gen(function*() {
      const tokenUrl = yield* Effect.scoped(Effect.gen(function*() {
        const as = yield* TestAuthorizationServer.make({ clients, tokenLifetime: "30 seconds" })
        expect(as.issuer).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
        const token = yield* ClientCredentials.make({ tokenUrl: as.tokenUrl, clientAuth: as.clientAuth() }).pipe(
          Effect.flatMap((source) => source.fetch)
        )
        const claims = yield* as.verify(token)
        expect(claims.iss).toBe(as.issuer)
        const lifetime = Option.getOrThrow(token.expiresAt).epochMillis - token.issuedAt.epochMillis
        expect(lifetime).toBe(30_000)

        yield* as.failNext(Fault.unavailable({ retryAfter: "3 seconds" }))
        const error = yield* Effect.flip(
          ClientCredentials.make({ tokenUrl: as.tokenUrl, clientAuth: as.clientAuth() }).pipe(
            Effect.flatMap((source) => source.fetch)
          )
        )
        expect(error).toMatchObject({ reason: { _tag: "Unavailable", status: 503, retryAfter: Duration.seconds(3) } })

        const metadata = yield* HttpClient.get(as.discoveryUrl).pipe(Effect.flatMap((r) => r.json))
        expect(metadata).toMatchObject({ issuer: as.issuer, token_endpoint: as.tokenUrl })
        const now = yield* DateTime.now
        expect(claims.exp * 1000).toBeGreaterThan(now.epochMillis)
        return as.tokenUrl
      }))
      const after = yield* Effect.flip(
        ClientCredentials.make({
          tokenUrl,
          clientAuth: ClientAuth.clientSecretBasic({ clientId: "svc", clientSecret: Redacted.make(oddSecret) })
        }).pipe(Effect.flatMap((source) => source.fetch))
      )
      expect(after.reason._tag).toBe("Transport")
    }).pipe(Effect.provide(NodeHttpClient.layerUndici)))
})
