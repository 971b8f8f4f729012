import { ClientAuth, ClientCredentials } from "@effect-token/core"
import { OidcProvider } from "@effect-token/testing/oidc-provider"
import { NodeHttpClient } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Option, Redacted } from "effect"
import { createRemoteJWKSet, jwtVerify } from "jose"

// A secret with characters that RFC 6749 §2.3.1 form-encoding changes: a client that skips it is rejected.
const secret = "s3cr3t: +/%&=~!*()"

const clients = [
  {
    client_id: "basic-client",
    client_secret: secret,
    grant_types: ["client_credentials"],
    response_types: [],
    redirect_uris: [],
    scope: "api:read api:write",
    token_endpoint_auth_method: "client_secret_basic" as const
  },
  {
    client_id: "post-client",
    client_secret: secret,
    grant_types: ["client_credentials"],
    response_types: [],
    redirect_uris: [],
    scope: "api:read api:write",
    token_endpoint_auth_method: "client_secret_post" as const
  }
]

const fetchWith = (tokenUrl: string, clientAuth: ClientAuth.ClientAuth, scope = "api:read") =>
  ClientCredentials.make({ tokenUrl, clientAuth, scope }).pipe(
    Effect.flatMap((source) => source.fetch),
    Effect.provide(NodeHttpClient.layerUndici)
  )

describe("client credentials against a real oidc-provider", () => {
  it.scopedLive("obtains a verifiable JWT with client_secret_basic and client_secret_post", () =>
    Effect.gen(function*() {
      const as = yield* OidcProvider.make({ clients, accessTokenTtl: 120 })
      const jwks = createRemoteJWKSet(new URL(as.jwksUrl))
      for (
        const auth of [
          ClientAuth.clientSecretBasic({ clientId: "basic-client", clientSecret: Redacted.make(secret) }),
          ClientAuth.clientSecretPost({ clientId: "post-client", clientSecret: Redacted.make(secret) })
        ]
      ) {
        const token = yield* fetchWith(as.tokenUrl, auth)
        expect(token.type).toBe("Bearer")
        expect(Option.getOrThrow(token.scope)).toBe("api:read")
        const lifetimeMs = Option.getOrThrow(token.expiresAt).epochMillis - token.issuedAt.epochMillis
        expect(lifetimeMs).toBe(120_000)
        const { payload } = yield* Effect.promise(() =>
          jwtVerify(Redacted.value(token.value), jwks, { issuer: as.issuer, audience: as.audience })
        )
        expect(payload.client_id).toBe(auth.clientId)
      }
      expect(as.tokenRequests()["client_credentials"]).toBe(2)
    }))

  it.scopedLive("a wrong secret is OAuthError invalid_client, and the error never shows the secret", () =>
    Effect.gen(function*() {
      const as = yield* OidcProvider.make({ clients })
      const wrong = "wrong-secret-value"
      for (
        const auth of [
          ClientAuth.clientSecretBasic({ clientId: "basic-client", clientSecret: Redacted.make(wrong) }),
          ClientAuth.clientSecretPost({ clientId: "post-client", clientSecret: Redacted.make(wrong) })
        ]
      ) {
        const error = yield* Effect.flip(fetchWith(as.tokenUrl, auth))
        expect(error.reason._tag).toBe("OAuthError")
        expect((error.reason as any).code).toBe("invalid_client")
        expect((error.reason as any).status).toBe(401)
        const printed = `${error.message} ${String(error)} ${JSON.stringify(error)}`
        expect(printed).not.toContain(wrong)
        expect(printed).toContain("invalid_client")
      }
    }))

  it.scopedLive("a scope the client may not have is OAuthError invalid_scope", () =>
    Effect.gen(function*() {
      const as = yield* OidcProvider.make({ clients, apiScopes: ["api:read", "api:write", "api:admin"] })
      const auth = ClientAuth.clientSecretBasic({ clientId: "basic-client", clientSecret: Redacted.make(secret) })
      const error = yield* Effect.flip(fetchWith(as.tokenUrl, auth, "api:admin"))
      expect(error.reason._tag).toBe("OAuthError")
      expect((error.reason as any).code).toBe("invalid_scope")
      expect((error.reason as any).status).toBe(400)
    }))

  it.scopedLive("a stopped authorization server is a Transport error", () =>
    Effect.gen(function*() {
      const as = yield* OidcProvider.make({ clients })
      yield* as.stop
      const auth = ClientAuth.clientSecretBasic({ clientId: "basic-client", clientSecret: Redacted.make(secret) })
      const result = yield* Effect.either(fetchWith(as.tokenUrl, auth))
      expect(Either.isLeft(result)).toBe(true)
      const error = Either.getLeft(result).pipe(Option.getOrThrow)
      expect(error.reason._tag).toBe("Transport")
      expect(error.message).toMatch(/ECONNREFUSED|fetch failed/)
    }))
})
