import { AuthHttpClient, ClientAuth, ClientCredentials } from "@effect-token/core"
import { OidcProvider } from "@effect-token/testing/oidc-provider"
import type { HttpClientResponse } from "@effect/platform"
import { NodeFileSystem, NodeHttpClient } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Context, Deferred, Effect, Either, Exit, Fiber, Layer, Redacted } from "effect"
import type * as jose from "jose"
import { exportJWK, generateKeyPair, SignJWT } from "jose"
import * as fs from "node:fs"
import * as http from "node:http"
import * as os from "node:os"
import * as path from "node:path"

/** An API on 127.0.0.1:0 that records the Authorization header of each request; stops with the scope. */
const recordingApi = Effect.gen(function*() {
  const seen: Array<string | undefined> = []
  const server = http.createServer((request, response) => {
    seen.push(request.headers["authorization"])
    response.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify([{ id: 1 }]))
  })
  yield* Effect.acquireRelease(
    Effect.async<void>((resume) => void server.listen(0, "127.0.0.1", () => resume(Effect.void))),
    () => Effect.async<void>((resume) => void server.close(() => resume(Effect.void)))
  )
  const address = server.address() as { port: number }
  return { url: `http://127.0.0.1:${address.port}`, seen: Effect.sync(() => [...seen]) }
})

const secret = "one-layer-secret"
const secretClient = {
  client_id: "one-layer",
  client_secret: secret,
  grant_types: ["client_credentials"],
  response_types: [],
  redirect_uris: [],
  scope: "api:read"
}

const callApi = Effect.flatMap(
  AuthHttpClient.AuthHttpClient,
  (api) => Effect.flatMap(api.get("/invoices"), (r) => r.json)
)

describe("one layer to start", () => {
  it.scopedLive("layerConfig with TOKEN_URL or ISSUER: the token goes to API_URL and nowhere else", () =>
    Effect.gen(function*() {
      const as = yield* OidcProvider.make({ clients: [secretClient] })
      const api = yield* recordingApi
      const other = yield* recordingApi
      for (const server of [["TOKEN_URL", as.tokenUrl], ["ISSUER", as.issuer]] as const) {
        const environment = ConfigProvider.fromMap(
          new Map([
            ["API_URL", api.url],
            server,
            ["CLIENT_ID", "one-layer"],
            ["CLIENT_SECRET", secret],
            ["SCOPE", "api:read"],
            ["ACQUIRE_TIMEOUT", "5 seconds"]
          ])
        )
        const [invoices] = yield* Effect.all([
          callApi,
          Effect.flatMap(AuthHttpClient.AuthHttpClient, (client) => client.get(`${other.url}/webhook`))
        ]).pipe(
          Effect.provide(AuthHttpClient.layerConfig().pipe(Layer.provide(NodeHttpClient.layerUndici))),
          Effect.withConfigProvider(environment)
        )
        expect(invoices).toEqual([{ id: 1 }])
      }
      const seen = yield* api.seen
      expect(seen).toHaveLength(2)
      expect(seen.every((header) => header?.startsWith("Bearer "))).toBe(true)
      expect(yield* other.seen).toEqual([undefined, undefined])
      expect(as.tokenRequests()["client_credentials"]).toBe(2)
    }))

  it.effect("the configuration needs exactly one of TOKEN_URL and ISSUER", () =>
    Effect.gen(function*() {
      const read = (entries: ReadonlyArray<readonly [string, string]>) =>
        Effect.either(
          Effect.withConfigProvider(AuthHttpClient.config, ConfigProvider.fromMap(new Map(entries)))
        )
      const base = [["API_URL", "https://api.example"], ["CLIENT_ID", "c"], ["CLIENT_SECRET", "s"]] as const
      expect(Either.isLeft(yield* read(base))).toBe(true)
      expect(
        Either.isLeft(
          yield* read([...base, ["TOKEN_URL", "https://as.example/token"], ["ISSUER", "https://as.example"]])
        )
      ).toBe(true)
      const ok = yield* read([...base, ["ISSUER", "https://as.example"], ["ACQUIRE_TIMEOUT", "2 seconds"]])
      expect(Either.isRight(ok) && ok.right.authorizationServer).toEqual({ issuer: "https://as.example" })
      expect(String(Either.isRight(ok) && ok.right.clientAuth._tag)).toBe("ClientSecretBasic")
    }))

  it.scopedLive("REQUEST_TIMEOUT bounds each attempt at an API that never answers (the live clock's timer)", () =>
    Effect.gen(function*() {
      const as = yield* OidcProvider.make({ clients: [secretClient] })
      // Accepts each request and never answers it; counts the requests and the connections the client gave up.
      let requests = 0
      let abandoned = 0
      const allAbandoned = yield* Deferred.make<void>()
      const fifthRequest = yield* Deferred.make<void>()
      const fifthAbandoned = yield* Deferred.make<void>()
      const silent = http.createServer((request) => {
        if (++requests === 5) Deferred.unsafeDone(fifthRequest, Exit.void)
        request.socket.on("close", () => {
          if (++abandoned === 4) Deferred.unsafeDone(allAbandoned, Exit.void)
          if (abandoned === 5) Deferred.unsafeDone(fifthAbandoned, Exit.void)
        })
      })
      yield* Effect.acquireRelease(
        Effect.async<void>((resume) => void silent.listen(0, "127.0.0.1", () => resume(Effect.void))),
        () =>
          Effect.async<void>((resume) => {
            silent.closeAllConnections()
            silent.close(() => resume(Effect.void))
          })
      )
      const environment = (timeout: string) =>
        ConfigProvider.fromMap(
          new Map([
            ["API_URL", `http://127.0.0.1:${(silent.address() as { port: number }).port}`],
            ["TOKEN_URL", as.tokenUrl],
            ["CLIENT_ID", "one-layer"],
            ["CLIENT_SECRET", secret],
            ["REQUEST_TIMEOUT", timeout]
          ])
        )
      const layer = AuthHttpClient.layerConfig().pipe(Layer.provide(NodeHttpClient.layerUndici))
      const error = yield* Effect.flip(callApi).pipe(
        Effect.provide(layer),
        Effect.withConfigProvider(environment("300 millis"))
      )
      expect(error._tag === "RequestError" && error.reason).toBe("Transport")
      expect(error.message).toContain("no response within 300ms")
      // A GET: the first attempt and 3 retries, each given up (its connection closed) after 300 ms.
      expect(requests).toBe(4)
      yield* Deferred.await(allAbandoned).pipe(Effect.timeout("5 seconds"))
      expect(abandoned).toBe(4)
      // A caller interrupted while its attempt waits: the attempt is interrupted too, and its connection closed.
      const waiting = yield* Effect.fork(
        callApi.pipe(Effect.provide(layer), Effect.withConfigProvider(environment("1 minute")))
      )
      yield* Deferred.await(fifthRequest).pipe(Effect.timeout("5 seconds"))
      yield* Fiber.interrupt(waiting)
      yield* Deferred.await(fifthAbandoned).pipe(Effect.timeout("5 seconds"))
      expect(abandoned).toBe(5)
    }))

  it.scopedLive("layerClientCredentials under an application's own Tag, from options", () =>
    Effect.gen(function*() {
      class BillingApi extends Context.Tag("BillingApi")<BillingApi, AuthHttpClient.AuthHttpClient>() {}
      const as = yield* OidcProvider.make({ clients: [secretClient] })
      const api = yield* recordingApi
      const status = yield* Effect.flatMap(BillingApi, (billing) => billing.get("/invoices")).pipe(
        Effect.map((response: HttpClientResponse.HttpClientResponse) => response.status),
        Effect.provide(
          AuthHttpClient.layerClientCredentials({
            tag: BillingApi,
            baseUrl: api.url,
            authorizationServer: { tokenUrl: as.tokenUrl },
            clientAuth: ClientAuth.clientSecretBasic({ clientId: "one-layer", clientSecret: Redacted.make(secret) }),
            scope: "api:read"
          }).pipe(Layer.provide(NodeHttpClient.layerUndici))
        )
      )
      expect(status).toBe(200)
      expect((yield* api.seen)[0]).toMatch(/^Bearer /)
    }))
})

describe("client assertions that come from elsewhere (RFC 7523 client_assertion)", () => {
  const workload = Effect.promise(async () => {
    const { privateKey, publicKey } = await generateKeyPair("ES256", { extractable: true })
    const publicJwk: jose.JWK = { ...await exportJWK(publicKey), alg: "ES256", kid: "workload", use: "sig" }
    return { privateKey, publicJwk }
  })
  const assertionFor = (privateKey: CryptoKey, audience: string) =>
    new SignJWT({})
      .setProtectedHeader({ alg: "ES256", kid: "workload" })
      .setIssuer("federated")
      .setSubject("federated")
      .setAudience(audience)
      .setJti(crypto.randomUUID())
      .setIssuedAt()
      .setExpirationTime("2 minutes")
      .sign(privateKey)
  const federatedClient = (publicJwk: jose.JWK) => ({
    client_id: "federated",
    grant_types: ["client_credentials"],
    response_types: [],
    redirect_uris: [],
    scope: "api:read",
    token_endpoint_auth_method: "private_key_jwt" as const,
    jwks: { keys: [publicJwk] }
  })

  it.scopedLive("an assertion from an Effect is read anew for every token request", () =>
    Effect.gen(function*() {
      const { privateKey, publicJwk } = yield* workload
      const as = yield* OidcProvider.make({ clients: [federatedClient(publicJwk)] })
      let reads = 0
      const assertion = Effect.promise(() => {
        reads++
        return assertionFor(privateKey, as.tokenUrl)
      }).pipe(Effect.map(Redacted.make))
      const source = yield* ClientCredentials.make({
        tokenUrl: as.tokenUrl,
        clientAuth: ClientAuth.clientAssertion({ clientId: "federated", assertion }),
        scope: "api:read"
      })
      yield* source.fetch
      yield* source.fetch
      expect(reads).toBe(2)
      expect(as.tokenRequests()["client_credentials"]).toBe(2)
    }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

  it.scopedLive("an assertion file (a projected service-account token) is read at each request; a missing one is Misconfigured", () =>
    Effect.gen(function*() {
      const { privateKey, publicJwk } = yield* workload
      const as = yield* OidcProvider.make({ clients: [federatedClient(publicJwk)] })
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "effect-token-assertion-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true })))
      const file = path.join(dir, "token")
      const fromFile = yield* ClientAuth.assertionFile(file).pipe(Effect.provide(NodeFileSystem.layer))
      const source = yield* ClientCredentials.make({
        tokenUrl: as.tokenUrl,
        clientAuth: ClientAuth.clientAssertion({ clientId: "federated", assertion: fromFile }),
        scope: "api:read"
      })

      const missing = yield* Effect.flip(source.fetch)
      expect(missing.reason._tag).toBe("Misconfigured")
      expect(missing.message).toContain(file)
      expect(as.tokenRequests()["client_credentials"] ?? 0).toBe(0)

      // The file's owner rotates it; each request reads what is there now.
      for (let i = 0; i < 2; i++) {
        const jwt = yield* Effect.promise(() => assertionFor(privateKey, as.tokenUrl))
        fs.writeFileSync(file, `${jwt}\n`)
        yield* source.fetch
      }
      expect(as.tokenRequests()["client_credentials"]).toBe(2)

      fs.writeFileSync(file, "")
      const empty = yield* Effect.flip(source.fetch)
      expect(empty.reason._tag).toBe("Misconfigured")
      expect(empty.message).toContain("empty")
    }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

  it("an assertion never prints", () => {
    const auth = ClientAuth.clientAssertion({
      clientId: "federated",
      assertion: Effect.succeed(Redacted.make("eyJ.assertion.value"))
    })
    expect(ClientAuth.method(auth)).toBe("private_key_jwt")
    expect(JSON.stringify(auth) + String(auth)).not.toContain("assertion.value")
  })
})
