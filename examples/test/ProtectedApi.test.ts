import { AccessToken, ClientCredentials } from "@effect-token/core"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option, Redacted } from "effect"
import { decodeJwt } from "jose"
import * as AuthServer from "../src/AuthServer.js"
import * as ProtectedApi from "../src/ProtectedApi.js"
import { callApi } from "../src/stories/clientCredentials.js"

const setup = (apiAudience?: string) =>
  Effect.gen(function*() {
    const authServer = yield* AuthServer.make()
    const api = yield* ProtectedApi.make({
      issuer: authServer.issuer,
      jwksUrl: authServer.jwksUrl,
      audience: apiAudience ?? authServer.audience
    })
    const source = yield* ClientCredentials.make({
      tokenUrl: authServer.tokenUrl,
      clientAuth: authServer.clientAuth,
      scope: "api:read"
    })
    return { api, source }
  })

describe("ProtectedApi", () => {
  it.scopedLive("rejectToken(jti) makes the API answer 401 invalid_token to that token only", () =>
    Effect.gen(function*() {
      const { api, source } = yield* setup()
      const first = yield* source.fetch
      const second = yield* source.fetch
      const invoices = `${api.url}/invoices`
      expect((yield* callApi("GET", invoices, Option.some(first))).status).toBe(200)

      yield* api.rejectToken(decodeJwt(Redacted.value(first.value)).jti!)
      const rejected = yield* callApi("GET", invoices, Option.some(first))
      expect(rejected.status).toBe(401)
      expect(rejected.wwwAuthenticate).toContain("error=\"invalid_token\"")
      expect((yield* callApi("GET", invoices, Option.some(second))).status).toBe(200)
    }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

  it.scopedLive("rejectAcceptedTokens revokes every token used so far; a new token works", () =>
    Effect.gen(function*() {
      const { api, source } = yield* setup()
      const used = yield* source.fetch
      const invoices = `${api.url}/invoices`
      expect((yield* callApi("GET", invoices, Option.some(used))).status).toBe(200)
      expect(yield* api.rejectAcceptedTokens).toBe(1)
      expect((yield* callApi("GET", invoices, Option.some(used))).status).toBe(401)
      expect((yield* callApi("GET", invoices, Option.some(yield* source.fetch))).status).toBe(200)
      const stats = yield* api.stats
      expect(stats.byStatus).toEqual({ 200: 2, 401: 1 })
    }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

  it.scopedLive("rejects a token for another audience, a tampered token and a malformed header", () =>
    Effect.gen(function*() {
      const { api, source } = yield* setup("urn:example:another-api")
      const token = yield* source.fetch
      const invoices = `${api.url}/invoices`
      const wrongAudience = yield* callApi("GET", invoices, Option.some(token))
      expect(wrongAudience.status).toBe(401)
      expect(wrongAudience.wwwAuthenticate).toContain("error=\"invalid_token\"")

      const [header, payload, signature] = Redacted.value(token.value).split(".")
      const claims = JSON.parse(Buffer.from(payload!, "base64url").toString())
      const forged = [
        header,
        Buffer.from(JSON.stringify({ ...claims, aud: "urn:example:another-api" })).toString("base64url"),
        signature
      ].join(".")
      const tampered = yield* callApi(
        "GET",
        invoices,
        Option.some(AccessToken.make({ value: Redacted.make(forged), issuedAt: token.issuedAt }))
      )
      expect(tampered.status).toBe(401)
      expect(tampered.body).toMatchObject({
        error: "invalid_token",
        error_description: "ERR_JWS_SIGNATURE_VERIFICATION_FAILED"
      })

      const malformed = yield* HttpClient.execute(
        HttpClientRequest.get(invoices).pipe(HttpClientRequest.setHeader("authorization", "Basic dXNlcjpwYXNz"))
      )
      expect(malformed.status).toBe(401)
      expect(malformed.headers["www-authenticate"]).toContain("error=\"invalid_request\"")
    }).pipe(Effect.provide(NodeHttpClient.layerUndici)))
})
