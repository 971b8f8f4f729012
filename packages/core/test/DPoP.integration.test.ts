/**
 * DPoP end to end: a real `oidc-provider` with `features.dPoP` issues the tokens, the testing kit's
 * `DPoPResourceServer` verifies every proof, and requests are counted on both sides.
 */
import {
  AuthHttpClient,
  ClientAuth,
  ClientCredentials,
  DPoP,
  RefreshToken,
  RefreshTokenStore,
  TokenCache
} from "@effect-token/core"
import { DPoPResourceServer } from "@effect-token/testing"
import { OidcProvider } from "@effect-token/testing/oidc-provider"
import { HttpClient, HttpClientRequest } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Inspectable, Redacted } from "effect"
import { decodeJwt } from "jose"
import * as util from "node:util"

const secret = "dpop-s3cr3t"

const clients = [
  {
    client_id: "svc",
    client_secret: secret,
    grant_types: ["client_credentials"],
    response_types: [],
    redirect_uris: [],
    scope: "api:read",
    token_endpoint_auth_method: "client_secret_basic" as const
  },
  {
    client_id: "web",
    client_secret: secret,
    grant_types: ["authorization_code", "refresh_token"],
    response_types: ["code" as const],
    redirect_uris: ["http://127.0.0.1/callback"],
    scope: "openid offline_access api:read",
    token_endpoint_auth_method: "client_secret_basic" as const
  }
]

const startProvider = (requireNonce: boolean) =>
  OidcProvider.make({ clients, accessTokenTtl: 120, dpop: { requireNonce } })

/** The real HTTP client, counting requests by path. */
const counting = Effect.map(HttpClient.HttpClient, (client) => {
  const seen: Array<HttpClientRequest.HttpClientRequest> = []
  const counted = HttpClient.mapRequest(client, (request) => {
    seen.push(request)
    return request
  })
  const count = (path: string) => seen.filter((r) => new URL(r.url).pathname === path).length
  return { client: counted, seen, count }
})

const setup = (options: { readonly asNonce: boolean; readonly rsNonce: boolean }) =>
  Effect.gen(function*() {
    const as = yield* startProvider(options.asNonce)
    const rs = yield* DPoPResourceServer.make({
      jwks: as.jwks,
      issuer: as.issuer,
      audience: as.audience,
      requireNonce: options.rsNonce
    })
    const http = yield* counting
    const key = yield* DPoP.generate()
    return { as, rs, http, key }
  })

const clientAuth = (clientId: string) => ClientAuth.clientSecretBasic({ clientId, clientSecret: Redacted.make(secret) })

const live = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.provide(effect, NodeHttpClient.layerUndici)

describe("DPoP against oidc-provider and a verifying resource server", () => {
  it.scopedLive("client credentials: a DPoP-bound token (cnf.jkt) and verified proofs on every call", () =>
    live(Effect.gen(function*() {
      const { as, rs, http, key } = yield* setup({ asNonce: false, rsNonce: false })
      const source = yield* ClientCredentials.make({
        tokenUrl: as.tokenUrl,
        clientAuth: clientAuth("svc"),
        scope: "api:read",
        dpop: key
      }).pipe(Effect.provideService(HttpClient.HttpClient, http.client))
      const tokens = yield* TokenCache.make(source)
      const api = AuthHttpClient.authenticate(http.client, { baseUrl: rs.url, tokens, dpop: key })
      for (let i = 0; i < 3; i++) {
        const response = yield* api.get(`/orders?page=${i}`)
        expect(response.status).toBe(200)
        expect((yield* response.json as Effect.Effect<any>).clientId).toBe("svc")
      }
      const token = yield* tokens.get
      expect(token.type).toBe("DPoP")
      expect((decodeJwt(Redacted.value(token.value)).cnf as any).jkt).toBe(key.thumbprint)
      expect(http.count("/token")).toBe(1)
      expect(yield* rs.counts).toEqual({ total: 3, ok: 3, unauthorized: 0, nonceChallenges: 0 })
      // A new token: the proofs' ath follows it (the server checks ath against the token it got).
      yield* tokens.invalidate(token)
      expect((yield* api.get("/orders")).status).toBe(200)
      expect(http.count("/token")).toBe(2)
      expect(yield* rs.counts).toEqual({ total: 4, ok: 4, unauthorized: 0, nonceChallenges: 0 })
    })))

  it.scopedLive("refresh token grant: the refreshed access token is DPoP-bound and accepted", () =>
    live(Effect.gen(function*() {
      const { as, rs, http, key } = yield* setup({ asNonce: false, rsNonce: false })
      const store = yield* RefreshTokenStore.make(Redacted.make(yield* as.issueRefreshToken({ clientId: "web" })))
      const source = yield* RefreshToken.make({ tokenUrl: as.tokenUrl, clientAuth: clientAuth("web"), dpop: key }).pipe(
        Effect.provideService(RefreshTokenStore.RefreshTokenStore, store),
        Effect.provideService(HttpClient.HttpClient, http.client)
      )
      const tokens = yield* TokenCache.make(source)
      const api = AuthHttpClient.authenticate(http.client, { baseUrl: rs.url, tokens, dpop: key })
      const response = yield* api.get("/profile")
      expect(response.status).toBe(200)
      expect((yield* response.json as Effect.Effect<any>).sub).toBe("alice")
      const token = yield* tokens.get
      expect(token.type).toBe("DPoP")
      expect((decodeJwt(Redacted.value(token.value)).cnf as any).jkt).toBe(key.thumbprint)
    })))

  it.scopedLive("nonces on both sides: one retry each, with the nonce; no extra token; then remembered", () =>
    live(Effect.gen(function*() {
      const { as, rs, http, key } = yield* setup({ asNonce: true, rsNonce: true })
      const source = yield* ClientCredentials.make({
        tokenUrl: as.tokenUrl,
        clientAuth: clientAuth("svc"),
        scope: "api:read",
        dpop: key
      }).pipe(Effect.provideService(HttpClient.HttpClient, http.client))
      const tokens = yield* TokenCache.make(source)
      const api = AuthHttpClient.authenticate(http.client, { baseUrl: rs.url, tokens, dpop: key })

      const first = yield* api.get("/orders")
      expect(first.status).toBe(200)
      // Token endpoint: 400 use_dpop_nonce, then the retry with the nonce. One token issued.
      expect(http.count("/token")).toBe(2)
      expect(as.tokenRequests()["client_credentials"]).toBe(1)
      // Resource server: 401 use_dpop_nonce, then the retry with its nonce and the same token.
      expect(yield* rs.counts).toEqual({ total: 2, ok: 1, unauthorized: 1, nonceChallenges: 1 })
      const sent = http.seen.filter((r) => new URL(r.url).pathname === "/orders")
      expect(sent[0]!.headers["authorization"]).toBe(sent[1]!.headers["authorization"])

      // The nonce is remembered: no challenge now.
      expect((yield* api.get("/orders")).status).toBe(200)
      expect((yield* rs.counts).total).toBe(3)

      // A new server nonce: one challenge again, still the same token and no token request.
      yield* rs.rotateNonce
      expect((yield* api.get("/orders")).status).toBe(200)
      expect(yield* rs.counts).toEqual({ total: 5, ok: 3, unauthorized: 2, nonceChallenges: 2 })
      expect(http.count("/token")).toBe(2)
    })))

  it.scopedLive("a replayed proof and a proof for another URL are rejected; errors print no key, proof or token", () =>
    live(Effect.gen(function*() {
      const as = yield* startProvider(false)
      const rs = yield* DPoPResourceServer.make({ jwks: as.jwks, issuer: as.issuer, audience: as.audience })
      const http = yield* counting
      const key = yield* DPoP.generate({ extractable: true })
      const privateD = Redacted.value(yield* DPoP.exportPrivateJwk(key)).d!
      const source = yield* ClientCredentials.make({
        tokenUrl: as.tokenUrl,
        clientAuth: clientAuth("svc"),
        scope: "api:read",
        dpop: key
      }).pipe(Effect.provideService(HttpClient.HttpClient, http.client))
      const tokens = yield* TokenCache.make(source)
      const api = AuthHttpClient.authenticate(http.client, { baseUrl: rs.url, tokens, dpop: key })
      expect((yield* api.get("/orders")).status).toBe(200)
      const original = http.seen.find((r) => r.url.endsWith("/orders"))!
      const proof = original.headers["dpop"]!
      const token = Redacted.value((yield* tokens.get).value)

      const replay = (path: string) =>
        Effect.flatMap(HttpClient.HttpClient, (client) =>
          client.execute(
            HttpClientRequest.get(`${rs.url}${path}`).pipe(
              HttpClientRequest.setHeaders({ authorization: `DPoP ${token}`, dpop: proof })
            )
          ))
      expect((yield* replay("/orders")).status).toBe(401)
      expect((yield* replay("/invoices")).status).toBe(401)
      expect(yield* rs.rejections).toEqual(["DPoP proof jti was used before", "DPoP proof htu mismatch"])

      // The key is given once, to the grant: a client over its cache signs with it.
      const keyFromTokens = AuthHttpClient.authenticate(http.client, { baseUrl: rs.url, tokens })
      expect((yield* keyFromTokens.get("/orders")).status).toBe(200)
      // A DPoP token from a source that does not say its key is never sent without proof (every resource server
      // would reject it), and the client's own error for a rejected DPoP token prints none of the secrets.
      const keyless = yield* TokenCache.make({ key: source.key, fetch: source.fetch })
      const bare = AuthHttpClient.authenticate(http.client, { baseUrl: rs.url, tokens: keyless })
      const misconfigured = yield* Effect.flip(bare.get("/orders"))
      expect(misconfigured._tag === "TokenError" && misconfigured.reason._tag).toBe("Misconfigured")
      const otherKey = yield* DPoP.generate()
      const wrongKey = AuthHttpClient.authenticate(http.client, { baseUrl: rs.url, tokens, dpop: otherKey })
      const rejected = yield* Effect.flip(wrongKey.get("/orders"))
      expect(rejected._tag).toBe("TokenRejected")
      expect((yield* rs.rejections).at(-1)).toContain("cnf.jkt")
      const tokenError = yield* Effect.flip(
        ClientCredentials.make({ tokenUrl: as.tokenUrl, clientAuth: clientAuth("nobody"), dpop: key }).pipe(
          Effect.flatMap((s) => s.fetch),
          Effect.provideService(HttpClient.HttpClient, http.client)
        )
      )
      for (const error of [misconfigured, rejected, tokenError, key]) {
        const printed = [
          String(error),
          JSON.stringify(error),
          util.inspect(error, { depth: 20 }),
          Inspectable.format(error)
        ]
          .join("\n")
        expect(printed).not.toContain(privateD)
        expect(printed).not.toContain(token)
        for (const sent of http.seen) {
          if (sent.headers["dpop"] !== undefined) expect(printed).not.toContain(sent.headers["dpop"])
        }
      }
    })))
})
