import { ClientAuth, Password } from "@effect-token/core"
import { OidcProvider } from "@effect-token/testing/oidc-provider"
import { NodeHttpClient } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option, Redacted } from "effect"
import type { KoaContextWithOIDC } from "oidc-provider"
import { errors } from "oidc-provider"

const clientSecret = "pw-client-s3cr3t"
const userPassword = "correct horse & battery = staple+"

/** oidc-provider has no password grant (it is deprecated): the test registers one that checks a user table. */
const registerPasswordGrant = (provider: OidcProvider.OidcProvider["provider"]) =>
  provider.registerGrantType(
    "password",
    async (ctx: KoaContextWithOIDC) => {
      const params = ctx.oidc.params as { username?: string; password?: string; scope?: string }
      if (params.username !== "batch" || params.password !== userPassword) {
        throw new errors.InvalidGrant("invalid resource owner credentials")
      }
      const grant = new ctx.oidc.provider.Grant({ accountId: params.username, clientId: ctx.oidc.client!.clientId })
      const token = new ctx.oidc.provider.AccessToken({
        accountId: params.username,
        client: ctx.oidc.client!,
        grantId: await grant.save(),
        gty: "password",
        scope: params.scope ?? ""
      })
      ctx.body = {
        access_token: await token.save(),
        token_type: "Bearer",
        expires_in: token.expiration,
        scope: params.scope,
        refresh_token: "pw-refresh-token"
      }
    },
    ["username", "password", "scope"]
  )

const startProvider = OidcProvider.make({
  clients: [{
    client_id: "legacy",
    client_secret: clientSecret,
    grant_types: ["password"],
    response_types: [],
    redirect_uris: [],
    scope: "api:read",
    token_endpoint_auth_method: "client_secret_post"
  }],
  setup: registerPasswordGrant
})

const clientAuth = ClientAuth.clientSecretPost({ clientId: "legacy", clientSecret: Redacted.make(clientSecret) })

const live = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.provide(effect, NodeHttpClient.layerUndici)

describe("password grant against a real oidc-provider (with a registered password grant)", () => {
  it.scopedLive("obtains a token for the user; the username is in the key, the password is not", () =>
    live(Effect.gen(function*() {
      const as = yield* startProvider
      const source = yield* Password.make({
        tokenUrl: as.tokenUrl,
        clientAuth,
        username: "batch",
        password: Redacted.make(userPassword),
        scope: "api:read"
      })
      const token = yield* source.fetch
      expect(Option.getOrThrow(token.scope)).toBe("api:read")
      const stored = yield* Effect.promise(() => as.provider.AccessToken.find(Redacted.value(token.value)))
      expect(stored?.accountId).toBe("batch")
      expect(stored?.clientId).toBe("legacy")
      // No store is involved: a refresh token the server sends stays with the token.
      expect(Option.map(token.refreshToken, Redacted.value)).toEqual(Option.some("pw-refresh-token"))
      expect(source.key).toContain("batch")
      expect(source.key).not.toContain(userPassword)
      expect(as.tokenRequests()["password"]).toBe(1)
    })))

  it.scopedLive("a wrong password is OAuthError invalid_grant (not RefreshTokenRejected), without the password", () =>
    live(Effect.gen(function*() {
      const as = yield* startProvider
      const wrong = "wrong-password-value"
      const source = yield* Password.make({
        tokenUrl: as.tokenUrl,
        clientAuth,
        username: "batch",
        password: Redacted.make(wrong)
      })
      const error = yield* Effect.flip(source.fetch)
      expect(error.reason._tag).toBe("OAuthError")
      expect((error.reason as any).code).toBe("invalid_grant")
      const printed = `${error.message} ${String(error)} ${JSON.stringify(error)}`
      expect(printed).not.toContain(wrong)
      expect(printed).not.toContain(clientSecret)
    })))

  it.scopedLive("the client still authenticates: a wrong client secret is invalid_client", () =>
    live(Effect.gen(function*() {
      const as = yield* startProvider
      const source = yield* Password.make({
        tokenUrl: as.tokenUrl,
        clientAuth: ClientAuth.clientSecretPost({ clientId: "legacy", clientSecret: Redacted.make("nope") }),
        username: "batch",
        password: Redacted.make(userPassword)
      })
      const error = yield* Effect.flip(source.fetch)
      expect((error.reason as any).code).toBe("invalid_client")
    })))
})
