import {
  ClientAuth,
  ClientCredentials,
  Discovery,
  RefreshToken,
  RefreshTokenStore,
  Revocation
} from "@effect-token/core"
import { OidcProvider } from "@effect-token/testing/oidc-provider"
import { HttpClient, HttpClientRequest } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Redacted } from "effect"
import { fake, json } from "./support/http.js"

const secret = "revoker-s3cr3t: &="
const audience = "urn:effect-token:api"

const startProvider = OidcProvider.make({
  clients: [{
    client_id: "web",
    client_secret: secret,
    grant_types: ["client_credentials", "authorization_code", "refresh_token"],
    response_types: ["code"],
    redirect_uris: ["http://127.0.0.1/callback"],
    scope: "openid offline_access api:read"
  }],
  configuration: {
    rotateRefreshToken: true,
    features: {
      // Opaque access tokens: a JWT access token is not stored by the server, so it could not be revoked.
      resourceIndicators: {
        enabled: true,
        defaultResource: () => audience,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({ scope: "api:read", audience, accessTokenTTL: 120, accessTokenFormat: "opaque" })
      }
    }
  }
})

const basic = ClientAuth.clientSecretBasic({ clientId: "web", clientSecret: Redacted.make(secret) })

/** RFC 7662 introspection with the same client: whether the server still considers `token` active. */
const isActive = (as: OidcProvider.OidcProvider, token: Redacted.Redacted<string>) =>
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    const response = yield* client.execute(
      HttpClientRequest.post(`${as.issuer}/token/introspection`).pipe(
        HttpClientRequest.setHeader(
          "authorization",
          `Basic ${Buffer.from(`web:${encodeURIComponent(secret)}`).toString("base64")}`
        ),
        HttpClientRequest.bodyUrlParams({ token: Redacted.value(token) })
      )
    )
    const body = (yield* response.json) as { active: boolean }
    return body.active
  }).pipe(Effect.orDie)

const live = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.provide(effect, NodeHttpClient.layerUndici)

describe("token revocation (RFC 7009) against a real oidc-provider", () => {
  it.scopedLive("a revoked refresh token is inactive and its next use is RefreshTokenRejected", () =>
    live(Effect.gen(function*() {
      const as = yield* startProvider
      const refreshToken = Redacted.make(yield* as.issueRefreshToken({ clientId: "web" }))
      expect(yield* isActive(as, refreshToken)).toBe(true)

      const revocation = yield* Revocation.make({ revocationUrl: `${as.issuer}/token/revocation`, clientAuth: basic })
      yield* revocation.revokeRefreshToken(refreshToken)
      expect(yield* isActive(as, refreshToken)).toBe(false)

      const store = yield* RefreshTokenStore.make(refreshToken)
      const source = yield* RefreshToken.make({ tokenUrl: as.tokenUrl, clientAuth: basic }).pipe(
        Effect.provideService(RefreshTokenStore.RefreshTokenStore, store)
      )
      expect((yield* Effect.flip(source.fetch)).reason._tag).toBe("RefreshTokenRejected")
      // RFC 7009 §2.2: revoking an invalid token again still succeeds.
      yield* revocation.revokeRefreshToken(refreshToken)
    })))

  it.scopedLive("an access token revoked through the discovered endpoint is inactive", () =>
    live(Effect.gen(function*() {
      const as = yield* startProvider
      const source = yield* ClientCredentials.make({ tokenUrl: as.tokenUrl, clientAuth: basic })
      const token = yield* source.fetch
      expect(yield* isActive(as, token.value)).toBe(true)

      const discovery = yield* Discovery.make({ issuer: as.issuer })
      const revocation = yield* Revocation.make({
        revocationUrl: discovery,
        clientAuth: ClientAuth.clientSecretPost({ clientId: "web", clientSecret: Redacted.make(secret) })
      })
      yield* revocation.revokeAccessToken(token)
      expect(yield* isActive(as, token.value)).toBe(false)
    })))

  it.scopedLive("a wrong client secret is OAuthError invalid_client; neither secret nor token shows", () =>
    live(Effect.gen(function*() {
      const as = yield* startProvider
      const refreshToken = yield* as.issueRefreshToken({ clientId: "web" })
      const wrong = "not-the-secret"
      const error = yield* Effect.flip(Revocation.revoke({
        revocationUrl: `${as.issuer}/token/revocation`,
        clientAuth: ClientAuth.clientSecretBasic({ clientId: "web", clientSecret: Redacted.make(wrong) }),
        token: Redacted.make(refreshToken),
        tokenTypeHint: "refresh_token"
      }))
      expect(error.reason._tag).toBe("OAuthError")
      expect((error.reason as any).code).toBe("invalid_client")
      expect(error.operation).toBe("token revocation")
      const printed = `${error.message} ${String(error)} ${JSON.stringify(error)}`
      expect(printed).not.toContain(wrong)
      expect(printed).not.toContain(refreshToken)
      expect(yield* isActive(as, Redacted.make(refreshToken))).toBe(true)
    })))
})

describe("Revocation with an in-process server", () => {
  it.effect("sends token, token_type_hint and the client's credentials as a form", () =>
    Effect.gen(function*() {
      const { client, requests } = yield* fake(() => new Response(null, { status: 200 }))
      const revocation = Revocation.makeWith(client, {
        revocationUrl: "https://as.example/revoke",
        clientAuth: ClientAuth.clientSecretPost({ clientId: "web", clientSecret: Redacted.make("s&=+ é") })
      })
      yield* revocation.revoke(Redacted.make("tok&en=+ ü"), "access_token")
      yield* revocation.revoke(Redacted.make("other"))
      const [first, second] = yield* requests
      expect(first!.method).toBe("POST")
      expect(first!.url).toBe("https://as.example/revoke")
      expect([...first!.form.entries()]).toEqual([
        ["token", "tok&en=+ ü"],
        ["token_type_hint", "access_token"],
        ["client_id", "web"],
        ["client_secret", "s&=+ é"]
      ])
      expect(second!.form.has("token_type_hint")).toBe(false)
    }))

  it.effect("503 with Retry-After is Unavailable; an OAuth error body is OAuthError; no body is MalformedResponse", () =>
    Effect.gen(function*() {
      const revokeWith = (response: () => Response) =>
        Effect.flatMap(fake(response), ({ client }) =>
          Effect.flip(
            Revocation.makeWith(client, {
              revocationUrl: "https://as.example/revoke",
              clientAuth: ClientAuth.none({ clientId: "cli" })
            }).revoke(Redacted.make("t"))
          ))
      const unavailable = yield* revokeWith(() => new Response("", { status: 503, headers: { "retry-after": "30" } }))
      expect(unavailable.reason._tag).toBe("Unavailable")
      expect((unavailable.reason as any).retryAfter).toEqual(Duration.seconds(30))
      const unsupported = yield* revokeWith(() => json({ error: "unsupported_token_type" }, 400))
      expect(unsupported.reason._tag).toBe("OAuthError")
      expect((unsupported.reason as any).code).toBe("unsupported_token_type")
      const odd = yield* revokeWith(() => new Response("<html>", { status: 400 }))
      expect(odd.reason._tag).toBe("MalformedResponse")
    }))
})
