import { ClientAuth, ClientCredentials, TokenExchange } from "@effect-token/core"
import { OidcProvider } from "@effect-token/testing/oidc-provider"
import { HttpClient } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option, Redacted } from "effect"
import { createRemoteJWKSet, jwtVerify, SignJWT } from "jose"
import type { KoaContextWithOIDC } from "oidc-provider"
import { errors } from "oidc-provider"
import { fake, json } from "./support/http.js"

const grantType = "urn:ietf:params:oauth:grant-type:token-exchange"
const accessTokenType = "urn:ietf:params:oauth:token-type:access_token"
const idTokenType = "urn:ietf:params:oauth:token-type:id_token"
/** The test's token exchange signs what it issues with this key, so the test can read what the server received. */
const issuedKey = new TextEncoder().encode("token-exchange-test-signing-key-32b!")
const secret = "gateway-s3cr3t"

interface ExchangeParams {
  subject_token?: string
  subject_token_type?: string
  actor_token?: string
  actor_token_type?: string
  requested_token_type?: string
  audience?: string | Array<string>
  scope?: string
}

/**
 * oidc-provider has no token exchange: the test registers one that verifies the subject (and actor) token as an
 * access token of this provider, and issues a token naming them, as RFC 8693 §4.1 `act` does.
 */
const registerTokenExchange = (provider: OidcProvider.OidcProvider["provider"]) =>
  provider.registerGrantType(
    grantType,
    async (ctx: KoaContextWithOIDC) => {
      const params = ctx.oidc.params as ExchangeParams
      const jwks = createRemoteJWKSet(new URL(`${ctx.oidc.issuer}/jwks`))
      const verify = async (token: string | undefined, type: string | undefined, name: string) => {
        if (type !== accessTokenType) throw new errors.InvalidRequest(`unsupported ${name}_token_type`)
        try {
          return (await jwtVerify(token ?? "", jwks, { issuer: ctx.oidc.issuer })).payload
        } catch {
          throw new errors.InvalidGrant(`invalid ${name}_token`)
        }
      }
      const subject = await verify(params.subject_token, params.subject_token_type, "subject")
      const actor = params.actor_token === undefined
        ? undefined
        : await verify(params.actor_token, params.actor_token_type, "actor")
      const idToken = params.requested_token_type === idTokenType
      const issued = await new SignJWT({
        scope: params.scope,
        ...(actor !== undefined ? { act: { sub: actor.client_id } } : {}),
        exchanged_by: ctx.oidc.client!.clientId
      })
        .setProtectedHeader({ alg: "HS256" })
        .setSubject(String(subject.client_id))
        .setAudience(params.audience ?? [])
        .setIssuedAt()
        .setExpirationTime("2m")
        .sign(issuedKey)
      ctx.body = {
        access_token: issued,
        issued_token_type: idToken ? idTokenType : accessTokenType,
        token_type: idToken ? "N_A" : "Bearer",
        ...(idToken ? {} : { expires_in: 120 })
      }
    },
    [
      "subject_token",
      "subject_token_type",
      "actor_token",
      "actor_token_type",
      "requested_token_type",
      "audience",
      "scope"
    ],
    ["audience"]
  )

const startProvider = OidcProvider.make({
  clients: [
    {
      client_id: "frontend",
      client_secret: "frontend-secret",
      grant_types: ["client_credentials"],
      response_types: [],
      redirect_uris: [],
      scope: "api:read"
    },
    {
      client_id: "gateway",
      client_secret: secret,
      grant_types: ["client_credentials", grantType],
      response_types: [],
      redirect_uris: [],
      scope: "api:read api:write"
    }
  ],
  setup: registerTokenExchange
})

const gatewayAuth = ClientAuth.clientSecretBasic({ clientId: "gateway", clientSecret: Redacted.make(secret) })

const frontendSource = (as: OidcProvider.OidcProvider) =>
  ClientCredentials.make({
    tokenUrl: as.tokenUrl,
    clientAuth: ClientAuth.clientSecretBasic({ clientId: "frontend", clientSecret: Redacted.make("frontend-secret") })
  })

const claims = (token: Redacted.Redacted<string>) =>
  Effect.map(Effect.promise(() => jwtVerify(Redacted.value(token), issuedKey)), (verified) => verified.payload)

const live = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.provide(effect, NodeHttpClient.layerUndici)

describe("token exchange (RFC 8693) against a real oidc-provider (with a registered exchange grant)", () => {
  it.scopedLive("a TokenSource as subject: its token is exchanged for one for two audiences", () =>
    live(Effect.gen(function*() {
      const as = yield* startProvider
      const frontend = yield* frontendSource(as)
      const source = yield* TokenExchange.make({
        tokenUrl: as.tokenUrl,
        clientAuth: gatewayAuth,
        subjectToken: frontend,
        audience: ["orders", "billing"],
        scope: "orders:read"
      })
      const token = yield* source.fetch
      expect(token.type).toBe("Bearer")
      expect(token.issuedTokenType).toEqual(Option.some(accessTokenType))
      const payload = yield* claims(token.value)
      expect(payload.sub).toBe("frontend")
      expect(payload.aud).toEqual(["orders", "billing"])
      expect(payload.scope).toBe("orders:read")
      expect(payload.exchanged_by).toBe("gateway")
      expect(payload.act).toBeUndefined()
      // The subject source's key is part of this source's key.
      expect(source.key).toContain(JSON.stringify(frontend.key).slice(1, -1))
      expect(as.tokenRequests()).toEqual({ client_credentials: 1, [grantType]: 1 })
    })))

  it.scopedLive("subject as an Effect and actor as a value: both are sent with their token types", () =>
    live(Effect.gen(function*() {
      const as = yield* startProvider
      const frontend = yield* frontendSource(as)
      const actorToken = (yield* (yield* ClientCredentials.make({ tokenUrl: as.tokenUrl, clientAuth: gatewayAuth }))
        .fetch).value
      const source = yield* TokenExchange.make({
        tokenUrl: as.tokenUrl,
        clientAuth: gatewayAuth,
        subjectToken: Effect.map(frontend.fetch, (token) => token.value),
        subjectKey: "frontend",
        actorToken,
        audience: "orders"
      })
      const payload = yield* claims((yield* source.fetch).value)
      expect(payload.sub).toBe("frontend")
      expect(payload.act).toEqual({ sub: "gateway" })
      expect(payload.aud).toBe("orders")
    })))

  it.scopedLive("an ID token requested: the N_A answer is accepted and says what it issued", () =>
    live(Effect.gen(function*() {
      const as = yield* startProvider
      const source = yield* TokenExchange.make({
        tokenUrl: as.tokenUrl,
        clientAuth: gatewayAuth,
        subjectToken: yield* frontendSource(as),
        requestedTokenType: TokenExchange.TokenTypes.idToken
      })
      const token = yield* source.fetch
      expect(token.issuedTokenType).toEqual(Option.some(idTokenType))
      // Lifetime from the JWT's exp: the answer had no expires_in.
      expect(Option.isSome(token.expiresAt)).toBe(true)
      expect((yield* claims(token.value)).sub).toBe("frontend")
    })))

  it.scopedLive("an invalid subject token is OAuthError invalid_grant, without the token in the error", () =>
    live(Effect.gen(function*() {
      const as = yield* startProvider
      const forged = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJtYWxsb3J5In0.forged-subject"
      const source = yield* TokenExchange.make({
        tokenUrl: as.tokenUrl,
        clientAuth: gatewayAuth,
        subjectToken: Redacted.make(forged)
      })
      const error = yield* Effect.flip(source.fetch)
      expect(error.reason._tag).toBe("OAuthError")
      expect((error.reason as any).code).toBe("invalid_grant")
      const printed = `${error.message} ${String(error)} ${JSON.stringify(error)}`
      expect(printed).not.toContain(forged)
      expect(printed).not.toContain(secret)
    })))

  it.scopedLive("a failing subject source fails the exchange with its own error, before any exchange request", () =>
    live(Effect.gen(function*() {
      const as = yield* startProvider
      const broken = yield* ClientCredentials.make({
        tokenUrl: as.tokenUrl,
        clientAuth: ClientAuth.clientSecretBasic({ clientId: "frontend", clientSecret: Redacted.make("wrong") })
      })
      const source = yield* TokenExchange.make({
        tokenUrl: as.tokenUrl,
        clientAuth: gatewayAuth,
        subjectToken: broken
      })
      const error = yield* Effect.flip(source.fetch)
      expect(error.operation).toBe("client_credentials grant")
      expect((error.reason as any).code).toBe("invalid_client")
      expect(as.tokenRequests()[grantType]).toBeUndefined()
    })))
})

describe("token exchange answers", () => {
  const exchangeWith = (body: Record<string, unknown>) =>
    Effect.gen(function*() {
      const { client } = yield* fake(() => json(body))
      const source = yield* TokenExchange.make({
        tokenUrl: "https://as.example/token",
        clientAuth: ClientAuth.none({ clientId: "c" }),
        subjectToken: Redacted.make("subject")
      }).pipe(Effect.provideService(HttpClient.HttpClient, client))
      return yield* Effect.either(source.fetch)
    })

  it.effect("N_A is refused when the answer does not say it issued something other than an access token", () =>
    Effect.gen(function*() {
      for (
        const body of [
          { access_token: "t", token_type: "N_A" },
          { access_token: "t", token_type: "N_A", issued_token_type: accessTokenType }
        ]
      ) {
        const result = yield* exchangeWith(body)
        expect(result._tag).toBe("Left")
        if (result._tag === "Left") expect(result.left.reason._tag).toBe("MalformedResponse")
      }
      const accepted = yield* exchangeWith({ access_token: "t", token_type: "n_a", issued_token_type: idTokenType })
      expect(accepted._tag).toBe("Right")
    }))

  it.effect("without subjectKey, two sources with value subjects never share a key", () =>
    Effect.gen(function*() {
      const { client } = yield* fake(() => json({}))
      const make = (subject: string) =>
        TokenExchange.make({
          tokenUrl: "https://as.example/token",
          clientAuth: ClientAuth.none({ clientId: "c" }),
          subjectToken: Redacted.make(subject)
        }).pipe(Effect.provideService(HttpClient.HttpClient, client))
      const a = yield* make("token-of-alice")
      const b = yield* make("token-of-bob")
      expect(a.key).not.toBe(b.key)
      expect(a.key).not.toContain("token-of-alice")
    }))
})
