import { AccessToken, ClientCredentials } from "@effect-token/core"
import { Expiry, Fault, TestAuthorizationServer, TestResourceServer } from "@effect-token/testing"
import { HttpClient, HttpClientRequest } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Redacted, TestClock } from "effect"

const setup = (options: { readonly requiredScope?: string; readonly audience?: string } = {}) =>
  Effect.gen(function*() {
    const as = yield* TestAuthorizationServer.makeInProcess({ tokenLifetime: "5 minutes" })
    const api = yield* TestResourceServer.makeInProcess({ authorizationServer: as, ...options })
    const source = yield* ClientCredentials.make({ tokenUrl: as.tokenUrl, clientAuth: as.clientAuth() }).pipe(
      Effect.provideService(HttpClient.HttpClient, api.client)
    )
    return { as, api, source }
  })

const call = (
  api: TestResourceServer.TestResourceServer,
  token?: AccessToken.AccessToken | string,
  path = "/orders"
) =>
  Effect.gen(function*() {
    let request = HttpClientRequest.get(`${api.url}${path}`)
    if (token !== undefined) {
      request = HttpClientRequest.setHeader(
        request,
        "authorization",
        typeof token === "string" ? token : Redacted.value(AccessToken.authorization(token))
      )
    }
    const response = yield* api.client.execute(request)
    const body = yield* Effect.orElseSucceed(response.json, () => null)
    return { status: response.status, headers: response.headers, body: body as any }
  })

describe("TestResourceServer (in process, TestClock)", () => {
  it.effect("accepts a valid token with 200 JSON naming the caller", () =>
    Effect.gen(function*() {
      const { api, source } = yield* setup()
      const token = yield* source.fetch
      const answer = yield* call(api, token, "/orders?page=2")
      expect(answer.status).toBe(200)
      expect(answer.body).toEqual({
        ok: true,
        method: "GET",
        path: "/orders",
        clientId: "test-client",
        jti: "at-1",
        scope: null
      })
      expect(yield* api.counts).toEqual({ total: 1, ok: 1, unauthorized: 0, forbidden: 0, faulted: 0 })
    }))

  it.effect("no token: 401 with a bare Bearer challenge (RFC 6750 §3.1)", () =>
    Effect.gen(function*() {
      const { api } = yield* setup()
      for (const header of [undefined, "Basic dXNlcjpwYXNz", "Bearer"]) {
        const answer = yield* call(api, header)
        expect(answer.status).toBe(401)
        expect(answer.headers["www-authenticate"]).toBe(`Bearer realm="test-api"`)
      }
    }))

  it.effect("an expired token gets 401 invalid_token exactly from its expiry on TestClock", () =>
    Effect.gen(function*() {
      const { api, source } = yield* setup()
      yield* TestClock.adjust("17 minutes")
      const token = yield* source.fetch
      yield* Expiry.adjustToJustBefore(token)
      expect((yield* call(api, token)).status).toBe(200)
      yield* Expiry.adjustToJustAfter(token)
      const answer = yield* call(api, token)
      expect(answer.status).toBe(401)
      expect(answer.headers["www-authenticate"]).toBe(
        `Bearer realm="test-api", error="invalid_token", error_description="the access token expired"`
      )
      expect(answer.body).toEqual({ error: "invalid_token", error_description: "the access token expired" })
      expect(yield* api.counts).toMatchObject({ total: 2, ok: 1, unauthorized: 1 })
    }))

  it.effect("a token revoked at the authorization server is rejected", () =>
    Effect.gen(function*() {
      const { api, as, source } = yield* setup()
      const token = yield* source.fetch
      yield* as.revoke(token)
      const answer = yield* call(api, token)
      expect(answer.status).toBe(401)
      expect(answer.headers["www-authenticate"]).toContain(`error_description="the access token was revoked"`)
    }))

  it.effect("rejectToken rejects that token only, given as the token or its jti", () =>
    Effect.gen(function*() {
      const { api, source } = yield* setup()
      const [a, b, c] = yield* Effect.all([source.fetch, source.fetch, source.fetch])
      yield* api.rejectToken(a!)
      yield* api.rejectToken("at-2")
      expect((yield* call(api, a)).status).toBe(401)
      expect((yield* call(api, b)).status).toBe(401)
      expect((yield* call(api, c)).status).toBe(200)
    }))

  it.effect("rejectIssuedBeforeNow rejects every token issued so far and accepts later ones", () =>
    Effect.gen(function*() {
      const { api, source } = yield* setup()
      const old = yield* source.fetch
      yield* api.rejectIssuedBeforeNow
      const fresh = yield* source.fetch
      expect((yield* call(api, old)).status).toBe(401)
      expect((yield* call(api, fresh)).status).toBe(200)
    }))

  it.effect("tokens for another audience or from another server are rejected", () =>
    Effect.gen(function*() {
      const { api: otherAudience, source } = yield* setup({ audience: "urn:other-api" })
      const token = yield* source.fetch
      const answer = yield* call(otherAudience, token)
      expect(answer.status).toBe(401)
      expect(answer.body.error_description).toBe("the access token is for another audience")

      const { api } = yield* setup()
      const forged = yield* call(api, token)
      expect(forged.body.error_description).toBe("the signature does not verify")
      expect((yield* call(api, "Bearer not.a.jwt")).body.error_description).toBe(
        "the access token is not a valid JWT"
      )
    }))

  it.effect("a token without the required scope gets 403 insufficient_scope", () =>
    Effect.gen(function*() {
      const as = yield* TestAuthorizationServer.makeInProcess({
        clients: [{ ...TestAuthorizationServer.defaultClient, scopes: ["orders:read", "orders:write"] }]
      })
      const api = yield* TestResourceServer.makeInProcess({ authorizationServer: as, requiredScope: "orders:write" })
      const fetchScope = (scope: string) =>
        ClientCredentials.make({ tokenUrl: as.tokenUrl, clientAuth: as.clientAuth(), scope }).pipe(
          Effect.flatMap((source) => source.fetch),
          Effect.provideService(HttpClient.HttpClient, api.client)
        )
      const readOnly = yield* fetchScope("orders:read")
      const answer = yield* call(api, readOnly)
      expect(answer.status).toBe(403)
      expect(answer.headers["www-authenticate"]).toBe(
        `Bearer realm="test-api", error="insufficient_scope", ` +
          `error_description="the access token lacks a required scope", scope="orders:write"`
      )
      expect((yield* call(api, yield* fetchScope("orders:read orders:write"))).status).toBe(200)
      yield* api.requireScope(undefined)
      expect((yield* call(api, readOnly)).status).toBe(200)
      expect(yield* api.counts).toMatchObject({ forbidden: 1, ok: 2 })
    }))

  it.effect("scripted faults answer before authentication, in order", () =>
    Effect.gen(function*() {
      const { api, source } = yield* setup()
      const token = yield* source.fetch
      yield* api.failNext(Fault.unavailable({ retryAfter: "7 seconds" }))
      yield* api.failNext(Fault.tooManyRequests({ retryAfter: "1 second" }))
      yield* api.failNext(Fault.serverError)
      const answers = yield* Effect.all(Array.from({ length: 4 }, () => call(api, token)))
      expect(answers.map((a) => [a.status, a.headers["retry-after"]])).toEqual([
        [503, "7"],
        [429, "1"],
        [500, undefined],
        [200, undefined]
      ])
      expect(yield* api.counts).toEqual({ total: 4, ok: 1, unauthorized: 0, forbidden: 0, faulted: 3 })
    }))

  it.effect("a slow answer waits for TestClock", () =>
    Effect.gen(function*() {
      const { api, source } = yield* setup()
      const token = yield* source.fetch
      yield* api.failNext(Fault.slow("3 seconds"))
      const fiber = yield* Effect.fork(call(api, token))
      yield* TestClock.adjust("3 seconds")
      expect((yield* fiber.await)._tag).toBe("Success")
    }))

  it.effect("layers: the resource server, its authorization server and one HttpClient for both", () =>
    Effect.gen(function*() {
      const api = yield* TestResourceServer.TestResourceServer
      const as = yield* TestAuthorizationServer.TestAuthorizationServer
      const client = yield* HttpClient.HttpClient
      const source = yield* ClientCredentials.make({ tokenUrl: as.tokenUrl, clientAuth: as.clientAuth() })
      const token = yield* source.fetch
      const response = yield* client.execute(
        HttpClientRequest.get(`${api.url}/x`).pipe(
          HttpClientRequest.setHeader("authorization", Redacted.value(AccessToken.authorization(token)))
        )
      )
      expect(response.status).toBe(200)
    }).pipe(
      Effect.provide(
        TestResourceServer.layerClient.pipe(
          Layer.provideMerge(TestResourceServer.layerInProcess()),
          Layer.provideMerge(TestAuthorizationServer.layerInProcess())
        )
      )
    ))
})

describe("TestResourceServer (port 0)", () => {
  it.scopedLive("verifies tokens over a real socket", () =>
    Effect.gen(function*() {
      const as = yield* TestAuthorizationServer.make()
      const api = yield* TestResourceServer.make({ authorizationServer: as })
      expect(api.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
      const token = yield* ClientCredentials.make({ tokenUrl: as.tokenUrl, clientAuth: as.clientAuth() }).pipe(
        Effect.flatMap((source) => source.fetch)
      )
      const get = (authorization?: string) =>
        HttpClient.execute(
          authorization === undefined
            ? HttpClientRequest.get(`${api.url}/orders`)
            : HttpClientRequest.get(`${api.url}/orders`).pipe(
              HttpClientRequest.setHeader("authorization", authorization)
            )
        )
      const ok = yield* get(Redacted.value(AccessToken.authorization(token)))
      expect(ok.status).toBe(200)
      expect(yield* ok.json).toMatchObject({ ok: true, path: "/orders", clientId: "test-client" })
      yield* api.rejectToken(token)
      const rejected = yield* get(Redacted.value(AccessToken.authorization(token)))
      expect(rejected.status).toBe(401)
      expect(rejected.headers["www-authenticate"]).toContain(`error="invalid_token"`)
      yield* api.failNext(Fault.unavailable({ retryAfter: "2 seconds" }))
      const unavailable = yield* get()
      expect([unavailable.status, unavailable.headers["retry-after"]]).toEqual([503, "2"])
      expect(yield* api.counts).toEqual({ total: 3, ok: 1, unauthorized: 1, forbidden: 0, faulted: 1 })
    }).pipe(Effect.provide(NodeHttpClient.layerUndici)))
})
