/**
 * The DPoP proof builder (RFC 9449 §4.2): claims, `htu` normalization, the `ath` vector of the RFC, signatures that
 * verify with the embedded key, and keys that never print their private half. In process, under `TestClock`.
 */
import {
  AccessToken,
  AuthHttpClient,
  ClientAuth,
  ClientCredentials,
  DPoP,
  Password,
  TokenCache,
  TokenExchange,
  TokenManager
} from "@effect-token/core"
import { TestAuthorizationServer } from "@effect-token/testing"
import { HttpClient, HttpClientRequest, HttpClientResponse } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, DateTime, Effect, FastCheck, Inspectable, Redacted, TestClock } from "effect"
import { calculateJwkThumbprint, decodeProtectedHeader, EmbeddedJWK, jwtVerify } from "jose"
import * as util from "node:util"
import { capturingTracer } from "./support/tracer.js"

const verifyProof = (proof: string) =>
  Effect.promise(() => jwtVerify(proof, EmbeddedJWK, { typ: "dpop+jwt", currentDate: new Date(0) }))

describe("DPoP proofs", () => {
  it("proofClaims: htm upper-cased, htu without query and fragment, ath and nonce only when given", () => {
    expect(DPoP.proofClaims({ method: "post", url: "https://as.example/token?x=1#f", jti: "j", iat: 7 })).toEqual({
      jti: "j",
      htm: "POST",
      htu: "https://as.example/token",
      iat: 7
    })
    expect(
      DPoP.proofClaims({ method: "GET", url: "https://api.example/a", jti: "j", iat: 7, ath: "h", nonce: "n" })
    ).toEqual({ jti: "j", htm: "GET", htu: "https://api.example/a", iat: 7, ath: "h", nonce: "n" })
  })

  it("htu normalizes as a URL parser does", () => {
    expect(DPoP.htu("HTTPS://API.Example.com:443/a/../orders?page=2#top")).toBe("https://api.example.com/orders")
    expect(DPoP.htu("http://127.0.0.1:8080")).toBe("http://127.0.0.1:8080/")
    expect(DPoP.htu("https://api.example/x?")).toBe("https://api.example/x")
    // Userinfo is not part of the target URI, and a proof must never carry a password.
    expect(DPoP.htu("https://user:pw@api.example/%7Euser/")).toBe("https://api.example/%7Euser/")
  })

  it("property: htu is idempotent, has no query or fragment, and keeps origin and path", () => {
    FastCheck.assert(
      FastCheck.property(FastCheck.webUrl({ withQueryParameters: true, withFragments: true }), (url) => {
        const once = DPoP.htu(url)
        const parsed = new URL(url)
        expect(DPoP.htu(once)).toBe(once)
        expect(once.includes("?") || once.includes("#")).toBe(false)
        expect(new URL(once).origin).toBe(parsed.origin)
        expect(new URL(once).pathname).toBe(parsed.pathname)
        expect(new URL(once).username + new URL(once).password).toBe("")
      })
    )
  })

  it.effect("ath: the RFC 9449 §7.1 example", () =>
    Effect.gen(function*() {
      // RFC 9449 figure 13: the access token and its `ath`.
      expect(yield* DPoP.ath("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU")).toBe(
        "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
      )
    }))

  it.effect("a proof verifies with its embedded public jwk, whose thumbprint is the key's; a fresh jti each time", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(0)
      const key = yield* DPoP.generate()
      const input = { method: "GET", url: "https://api.example/orders?page=2", accessToken: "tok", nonce: "n1" }
      const first = yield* DPoP.proof(key, input)
      const second = yield* DPoP.proof(key, input)
      expect(first).not.toBe(second)
      const { payload, protectedHeader } = yield* verifyProof(first)
      expect(protectedHeader.typ).toBe("dpop+jwt")
      expect(protectedHeader.alg).toBe("ES256")
      expect(Object.keys(protectedHeader.jwk!).sort()).toEqual(["crv", "kty", "x", "y"])
      expect(yield* Effect.promise(() => calculateJwkThumbprint(protectedHeader.jwk!))).toBe(key.thumbprint)
      expect(payload).toMatchObject({
        htm: "GET",
        htu: "https://api.example/orders",
        iat: 0,
        nonce: "n1",
        ath: yield* DPoP.ath("tok")
      })
      expect(payload.jti).not.toBe((yield* verifyProof(second)).payload.jti)
    }))

  it.effect("other asymmetric algorithms; a key from a private JWK keeps its thumbprint", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(0)
      for (const algorithm of ["ES384", "PS256", "Ed25519"] as const) {
        const key = yield* DPoP.generate({ algorithm, extractable: true })
        const proof = yield* DPoP.proof(key, { method: "POST", url: "https://as.example/token" })
        expect(decodeProtectedHeader(proof).alg).toBe(algorithm)
        yield* verifyProof(proof)
        const again = yield* DPoP.fromPrivateJwk(yield* DPoP.exportPrivateJwk(key))
        expect(again.thumbprint).toBe(key.thumbprint)
      }
    }))

  it.effect("a key never prints its private part; a non-extractable key cannot be exported", () =>
    Effect.gen(function*() {
      const key = yield* DPoP.generate({ extractable: true })
      const jwk = yield* DPoP.exportPrivateJwk(key)
      const d = Redacted.value(jwk).d!
      const printed = [String(key), JSON.stringify(key), util.inspect(key, { depth: 10 }), Inspectable.format(key)]
      for (const text of printed) {
        expect(text).not.toContain(d)
        expect(text).toContain(key.thumbprint)
      }
      expect(`${String(jwk)} ${JSON.stringify(jwk)} ${util.inspect(jwk)}`).not.toContain(d)
      const sealed = yield* DPoP.generate()
      const error = yield* Effect.flip(DPoP.exportPrivateJwk(sealed))
      expect(error.reason._tag).toBe("Misconfigured")
    }))

  it.effect("a grant's key names the DPoP key's thumbprint: a new key, new tokens", () =>
    Effect.gen(function*() {
      const as = yield* TestAuthorizationServer.makeInProcess()
      const one = yield* DPoP.generate()
      const two = yield* DPoP.generate()
      const make = (dpop?: DPoP.DPoPKey) =>
        ClientCredentials.make({ tokenUrl: as.tokenUrl, clientAuth: as.clientAuth(), dpop }).pipe(
          Effect.provideService(HttpClient.HttpClient, as.client)
        )
      const [bearer, a, b] = [yield* make(), yield* make(one), yield* make(two)]
      expect(a.key).toContain(one.thumbprint)
      expect(new Set([bearer.key, a.key, b.key]).size).toBe(3)
      expect(bearer.key).not.toContain("dpop")
    }))

  it.effect("a Bearer answer to a DPoP token request is MalformedResponse naming token_type", () =>
    Effect.gen(function*() {
      const as = yield* TestAuthorizationServer.makeInProcess()
      const key = yield* DPoP.generate()
      const source = yield* ClientCredentials.make({ tokenUrl: as.tokenUrl, clientAuth: as.clientAuth(), dpop: key })
        .pipe(Effect.provideService(HttpClient.HttpClient, as.client))
      const error = yield* Effect.flip(source.fetch)
      expect(error.reason._tag).toBe("MalformedResponse")
      expect((error.reason as any).fields).toEqual(["token_type"])
    }))

  it.effect("a DPoP answer to a bearer token request is MalformedResponse naming token_type, never cached", () =>
    Effect.gen(function*() {
      let requests = 0
      // A year-long DPoP-bound token, to a client that holds no key: every API call would fail for a year.
      const transport = HttpClient.make((request) =>
        Effect.sync(() => {
          requests++
          return HttpClientResponse.fromWeb(
            request,
            new Response(JSON.stringify({ access_token: "bound", token_type: "DPoP", expires_in: 31_536_000 }))
          )
        })
      )
      const source = yield* ClientCredentials.make({
        tokenUrl: "https://as.example/token",
        clientAuth: ClientAuth.none({ clientId: "svc" })
      }).pipe(Effect.provideService(HttpClient.HttpClient, transport))
      const tokens = yield* TokenCache.make(source)
      for (let i = 1; i <= 2; i++) {
        const error = yield* Effect.flip(tokens.get)
        expect(error.reason._tag).toBe("MalformedResponse")
        expect((error.reason as any).fields).toEqual(["token_type"])
        expect(requests).toBe(i)
      }
      expect((yield* tokens.state)._tag).toBe("Empty")
    }).pipe(Effect.scoped))

  it.effect("a DPoP token without a key in the client is Misconfigured, not sent without proof", () =>
    Effect.gen(function*() {
      let sent = 0
      const transport = HttpClient.make((request) =>
        Effect.sync(() => {
          sent++
          return HttpClientResponse.fromWeb(request, new Response("{}", { status: 200 }))
        })
      )
      const now = yield* DateTime.now
      const token = AccessToken.make({ value: Redacted.make("bound"), issuedAt: now, type: "DPoP" })
      const tokens = yield* TokenCache.make({ key: "k", fetch: Effect.succeed(token) })
      const api = AuthHttpClient.authenticate(transport, { baseUrl: "https://api.example", tokens })
      const error = yield* Effect.flip(api.execute(HttpClientRequest.get("/x")))
      expect(error._tag).toBe("TokenError")
      expect((error as any).reason._tag).toBe("Misconfigured")
      expect(sent).toBe(0)
    }).pipe(Effect.scoped))

  it.effect("the DPoP header is redacted in the http.client spans of the token endpoint and of the API", () =>
    Effect.gen(function*() {
      const key = yield* DPoP.generate()
      const proofs: Array<string> = []
      // HttpClient.make opens platform's http.client span around each request, with its headers as attributes.
      const transport = HttpClient.make((request) =>
        Effect.sync(() => {
          proofs.push(request.headers["dpop"]!)
          const body = request.url.endsWith("/token")
            ? { access_token: "bound-token-value", token_type: "DPoP", expires_in: 60 }
            : { ok: true }
          return HttpClientResponse.fromWeb(request, new Response(JSON.stringify(body), { status: 200 }))
        })
      )
      const source = yield* ClientCredentials.make({
        tokenUrl: "https://as.example/token",
        clientAuth: ClientAuth.none({ clientId: "svc" }),
        dpop: key
      }).pipe(Effect.provideService(HttpClient.HttpClient, transport))
      const tokens = yield* TokenCache.make(source)
      const api = AuthHttpClient.authenticate(transport, { baseUrl: "https://api.example", tokens, dpop: key })
      const { spans, tracer } = capturingTracer()
      yield* api.get("/orders").pipe(Effect.withTracer(tracer))
      expect(proofs).toHaveLength(2)
      const httpSpans = spans.filter((span) => span.attributes.has("http.request.method"))
      expect(httpSpans).toHaveLength(2)
      for (const span of httpSpans) {
        expect(span.attributes.get("http.request.header.dpop")).toBe("<redacted>")
        expect(span.attributes.get("http.request.header.authorization") ?? "<redacted>").toBe("<redacted>")
        const attributes = JSON.stringify([...span.attributes])
        for (const proof of proofs) expect(attributes).not.toContain(proof)
        expect(attributes).not.toContain("bound-token-value")
      }
    }).pipe(Effect.scoped))

  it.effect("AuthHttpClient.config reads DPOP (default false)", () =>
    Effect.gen(function*() {
      const base = {
        API_URL: "https://api.example",
        TOKEN_URL: "https://as.example/token",
        CLIENT_ID: "svc",
        CLIENT_SECRET: "s3cr3t"
      }
      const read = (env: Record<string, string>) =>
        Effect.withConfigProvider(AuthHttpClient.config, ConfigProvider.fromMap(new Map(Object.entries(env))))
      expect((yield* read(base)).dpop).toBe(false)
      expect((yield* read({ ...base, DPOP: "true" })).dpop).toBe(true)
    }))

  it.effect("the one-layer set-up with dpop: true sends proofs (a Bearer answer is refused)", () =>
    Effect.gen(function*() {
      const as = yield* TestAuthorizationServer.makeInProcess()
      const requests: Array<HttpClientRequest.HttpClientRequest> = []
      const client = HttpClient.mapRequest(as.client, (request) => {
        requests.push(request)
        return request
      })
      const error = yield* Effect.flip(
        Effect.flatMap(AuthHttpClient.AuthHttpClient, (api) => api.get("/orders")).pipe(
          Effect.provide(
            AuthHttpClient.layerClientCredentials({
              baseUrl: "https://api.example",
              authorizationServer: { tokenUrl: as.tokenUrl },
              clientAuth: as.clientAuth(),
              dpop: true,
              acquireTimeout: "1 second"
            })
          ),
          Effect.provideService(HttpClient.HttpClient, client)
        )
      )
      expect(error._tag === "TokenError" && error.reason._tag).toBe("MalformedResponse")
      expect(requests[0]!.headers["dpop"]).toBeDefined()
    }))

  describe("nonce challenges: exactly one retry, same token", () => {
    /** A transport that records every request and answers with `answer(n)` (n counts from 0). */
    const scripted = (answer: (n: number, request: HttpClientRequest.HttpClientRequest) => Response) => {
      const requests: Array<HttpClientRequest.HttpClientRequest> = []
      const client = HttpClient.make((request) =>
        Effect.sync(() => {
          requests.push(request)
          return HttpClientResponse.fromWeb(request, answer(requests.length - 1, request))
        })
      )
      return { client, requests }
    }
    const json = (body: unknown, status: number, headers: Record<string, string> = {}) =>
      new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } })
    const claimsOf = (request: HttpClientRequest.HttpClientRequest) =>
      JSON.parse(atob(request.headers["dpop"]!.split(".")[1]!.replace(/-/g, "+").replace(/_/g, "/")))

    it.effect("token endpoint: 400 use_dpop_nonce, one retry with the nonce and a new assertion, then success", () =>
      Effect.gen(function*() {
        const key = yield* DPoP.generate()
        const signing = yield* DPoP.generate({ algorithm: "ES256", extractable: true })
        const { client, requests } = scripted((n) =>
          n === 0
            ? json({ error: "use_dpop_nonce" }, 400, { "dpop-nonce": "n-1" })
            : json({ access_token: "bound", token_type: "DPoP", expires_in: 60 }, 200, { "dpop-nonce": "n-2" })
        )
        const source = yield* ClientCredentials.make({
          tokenUrl: "https://as.example/token",
          clientAuth: ClientAuth.privateKeyJwt({
            clientId: "svc",
            privateKey: yield* DPoP.exportPrivateJwk(signing)
          }),
          dpop: key
        }).pipe(Effect.provideService(HttpClient.HttpClient, client))
        const token = yield* source.fetch
        expect(token.type).toBe("DPoP")
        expect(requests.length).toBe(2)
        expect(claimsOf(requests[0]!).nonce).toBeUndefined()
        expect(claimsOf(requests[1]!).nonce).toBe("n-1")
        expect(requests[0]!.headers["dpop"]).not.toBe(requests[1]!.headers["dpop"])
        const assertion = (r: HttpClientRequest.HttpClientRequest) =>
          new URLSearchParams(new TextDecoder().decode((r.body as any).body)).get("client_assertion")
        expect(assertion(requests[0]!)).not.toBe(assertion(requests[1]!))
        // The answer's nonce is remembered for the next request to that origin.
        yield* source.fetch
        expect(claimsOf(requests[2]!).nonce).toBe("n-2")
      }))

    it.effect("password and token exchange grants send a proof too and get DPoP tokens", () =>
      Effect.gen(function*() {
        const key = yield* DPoP.generate()
        const { client, requests } = scripted(() => json({ access_token: "bound", token_type: "DPoP" }, 200))
        const endpoint = {
          tokenUrl: "https://as.example/token",
          clientAuth: ClientAuth.none({ clientId: "svc" }),
          dpop: key
        }
        const password = yield* Password.make({ ...endpoint, username: "alice", password: Redacted.make("pw") }).pipe(
          Effect.provideService(HttpClient.HttpClient, client)
        )
        const exchange = yield* TokenExchange.make({ ...endpoint, subjectToken: Redacted.make("subject") }).pipe(
          Effect.provideService(HttpClient.HttpClient, client)
        )
        for (const source of [password, exchange]) {
          expect((yield* source.fetch).type).toBe("DPoP")
          expect(source.key).toContain(key.thumbprint)
        }
        expect(requests.length).toBe(2)
        for (const request of requests) {
          expect(claimsOf(request)).toMatchObject({ htm: "POST", htu: "https://as.example/token" })
          expect(claimsOf(request).ath).toBeUndefined()
        }
      }))

    it.effect("the key is given once, to the grant: a client over its cache or its shape manager signs with it", () =>
      Effect.gen(function*() {
        const key = yield* DPoP.generate()
        const { client, requests } = scripted((_, request) =>
          request.url.endsWith("/token")
            ? json({ access_token: "bound", token_type: "DPoP", expires_in: 300 }, 200)
            : json({ ok: true }, 200)
        )
        const endpoint = { tokenUrl: "https://as.example/token", clientAuth: ClientAuth.none({ clientId: "svc" }) }
        const source = yield* ClientCredentials.make({ ...endpoint, dpop: key }).pipe(
          Effect.provideService(HttpClient.HttpClient, client)
        )
        expect(source.dpop).toBe(key)
        const cache = yield* TokenCache.make(source)
        expect(cache.dpop).toBe(key)
        const base: ClientCredentials.Options = { ...endpoint, dpop: key }
        const manager = yield* TokenManager.fromShapes(
          base,
          (options: ClientCredentials.Options) =>
            Effect.provideService(ClientCredentials.make(options), HttpClient.HttpClient, client)
        )
        expect(manager.dpop).toBe(key)
        for (const tokens of [cache, manager]) {
          // No `dpop` here: the client takes the key from the tokens it is given.
          const api = AuthHttpClient.authenticate(client, { baseUrl: "https://api.example", tokens })
          expect((yield* api.execute(HttpClientRequest.get("/orders"))).status).toBe(200)
          const sent = requests[requests.length - 1]!
          expect(sent.headers["authorization"]).toBe("DPoP bound")
          expect(claimsOf(sent)).toMatchObject({ htm: "GET", htu: "https://api.example/orders" })
          expect(claimsOf(sent).ath).toBeDefined()
        }
        // A bearer grant leaves no key behind.
        const bearer = yield* ClientCredentials.make(endpoint).pipe(
          Effect.provideService(HttpClient.HttpClient, client)
        )
        expect(bearer.dpop).toBeUndefined()
        expect((yield* TokenCache.make(bearer)).dpop).toBeUndefined()
      }).pipe(Effect.scoped))

    it.effect("token endpoint: a server that asks again gets no third request (OAuthError use_dpop_nonce)", () =>
      Effect.gen(function*() {
        const key = yield* DPoP.generate()
        const { client, requests } = scripted((n) => json({ error: "use_dpop_nonce" }, 400, { "dpop-nonce": `n-${n}` }))
        const source = yield* ClientCredentials.make({
          tokenUrl: "https://as.example/token",
          clientAuth: ClientAuth.none({ clientId: "svc" }),
          dpop: key
        }).pipe(Effect.provideService(HttpClient.HttpClient, client))
        const error = yield* Effect.flip(source.fetch)
        expect((error.reason as any).code).toBe("use_dpop_nonce")
        expect(requests.length).toBe(2)
      }))

    it.effect("resource server: a 401 use_dpop_nonce is retried once with the same token, never invalidated", () =>
      Effect.gen(function*() {
        const key = yield* DPoP.generate()
        let fetches = 0
        const now = yield* DateTime.now
        const tokens = yield* TokenCache.make({
          key: "k",
          fetch: Effect.sync(() => {
            fetches++
            return AccessToken.make({ value: Redacted.make(`bound-${fetches}`), issuedAt: now, type: "DPoP" })
          })
        })
        const challenge = (n: number) =>
          json({ error: "use_dpop_nonce" }, 401, {
            "www-authenticate": `DPoP error="use_dpop_nonce", error_description="nonce required"`,
            "dpop-nonce": `r-${n}`
          })
        // First call: challenged once, then accepted. Second call: challenged on every attempt.
        const { client, requests } = scripted((n) => n === 1 ? json({ ok: true }, 200) : challenge(n))
        const api = AuthHttpClient.authenticate(client, { baseUrl: "https://api.example", tokens, dpop: key })
        const ok = yield* api.execute(HttpClientRequest.get("/orders"))
        expect(ok.status).toBe(200)
        expect(requests.length).toBe(2)
        expect(claimsOf(requests[1]!).nonce).toBe("r-0")
        expect(requests[1]!.headers["authorization"]).toBe("DPoP bound-1")
        const rejected = yield* Effect.flip(api.execute(HttpClientRequest.get("/orders")))
        expect(rejected._tag === "TokenRejected" && rejected.reason._tag).toBe("NonceRefused")
        expect(requests.length).toBe(4)
        expect(fetches).toBe(1)
        expect(requests.map((r) => r.headers["authorization"])).toEqual(Array(4).fill("DPoP bound-1"))
        expect(new Set(requests.map((r) => r.headers["dpop"])).size).toBe(4)
      }).pipe(Effect.scoped))
  })
})
