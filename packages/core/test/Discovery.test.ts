import { ClientAuth, ClientCredentials, Discovery } from "@effect-token/core"
import { OidcProvider } from "@effect-token/testing/oidc-provider"
import { HttpClient } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Option, Redacted, Scope, TestClock } from "effect"
import { forkStarted } from "./support/fibers.js"
import { fake, json, recording } from "./support/http.js"

const live = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.provide(effect, NodeHttpClient.layerUndici)

const clients = [{
  client_id: "svc",
  client_secret: "svc-secret",
  grant_types: ["client_credentials"],
  response_types: [],
  redirect_uris: [],
  scope: "api:read"
}]

const document = (issuer: string, extra: Record<string, unknown> = {}) => ({
  issuer,
  token_endpoint: `${issuer}/token`,
  jwks_uri: `${issuer}/jwks`,
  ...extra
})

describe("Discovery against a real oidc-provider", () => {
  it.scopedLive("reads the metadata, once for many concurrent and later calls", () =>
    live(Effect.gen(function*() {
      const as = yield* OidcProvider.make({ clients })
      const { client, requests } = yield* recording(yield* HttpClient.HttpClient)
      const discovery = yield* Discovery.makeWith(client, { issuer: as.issuer })
      const all = yield* Effect.all(Array.from({ length: 10 }, () => discovery.metadata), { concurrency: "unbounded" })
      yield* discovery.metadata
      const metadata = all[0]!
      expect(metadata.issuer).toBe(as.issuer)
      expect(metadata.token_endpoint).toBe(as.tokenUrl)
      expect(metadata.jwks_uri).toBe(as.jwksUrl)
      expect(metadata.revocation_endpoint).toBe(`${as.issuer}/token/revocation`)
      expect(metadata.token_endpoint_auth_methods_supported).toContain("private_key_jwt")
      expect(yield* discovery.tokenEndpoint).toBe(as.tokenUrl)
      expect((yield* requests).map((r) => r.url)).toEqual([`${as.issuer}/.well-known/openid-configuration`])
    })))

  it.scopedLive("a source takes its token endpoint from discovery; the key names the issuer", () =>
    live(Effect.gen(function*() {
      const as = yield* OidcProvider.make({ clients })
      const discovery = yield* Discovery.make({ issuer: as.issuer })
      const source = yield* ClientCredentials.make({
        tokenUrl: discovery,
        clientAuth: ClientAuth.clientSecretBasic({ clientId: "svc", clientSecret: Redacted.make("svc-secret") }),
        scope: "api:read"
      })
      const token = yield* source.fetch
      expect(Option.getOrThrow(token.scope)).toBe("api:read")
      expect(source.key).toContain(JSON.stringify(["discovery", as.issuer]))
      expect(as.tokenRequests()["client_credentials"]).toBe(1)
    })))

  it.scopedLive("an issuer that differs from the document's (a trailing slash) is Misconfigured", () =>
    live(Effect.gen(function*() {
      const as = yield* OidcProvider.make({ clients })
      const discovery = yield* Discovery.make({ issuer: `${as.issuer}/` })
      const error = yield* Effect.flip(discovery.metadata)
      expect(error.reason._tag).toBe("Misconfigured")
      expect(error.operation).toBe("discovery")
      expect(error.message).toContain("issuer mismatch")
      expect(error.message).toContain(JSON.stringify(as.issuer))
      // A source built on it fails with the same typed error.
      const source = yield* ClientCredentials.make({
        tokenUrl: discovery,
        clientAuth: ClientAuth.none({ clientId: "svc" })
      })
      expect((yield* Effect.flip(source.fetch)).reason._tag).toBe("Misconfigured")
      expect(as.tokenRequests()).toEqual({})
    })))
})

describe("Discovery with an in-process server", () => {
  it.scoped("falls back to RFC 8414 on 404, inserting the well-known path before the issuer's path", () =>
    Effect.gen(function*() {
      const issuer = "https://as.example/tenant1"
      const { client, requests } = yield* fake((request) =>
        request.url === "https://as.example/.well-known/oauth-authorization-server/tenant1"
          ? json(document(issuer))
          : json({ error: "not_found" }, 404)
      )
      const discovery = yield* Discovery.makeWith(client, { issuer })
      expect(yield* discovery.tokenEndpoint).toBe(`${issuer}/token`)
      expect((yield* requests).map((r) => r.url)).toEqual([
        "https://as.example/tenant1/.well-known/openid-configuration",
        "https://as.example/.well-known/oauth-authorization-server/tenant1"
      ])
    }))

  it.scoped("a failure is not cached: the next call fetches again, and a success then is kept", () =>
    Effect.gen(function*() {
      const issuer = "https://as.example"
      let calls = 0
      const { client, requests } = yield* fake(() => {
        calls++
        return calls === 1 ? json({}, 503, { "retry-after": "7" }) : json(document(issuer))
      })
      const discovery = yield* Discovery.makeWith(client, { issuer })
      const error = yield* Effect.flip(discovery.metadata)
      expect(error.reason._tag).toBe("Unavailable")
      expect((error.reason as any).status).toBe(503)
      expect((error.reason as any).retryAfter).toBeDefined()
      expect((yield* discovery.metadata).issuer).toBe(issuer)
      yield* discovery.metadata
      yield* discovery.revocationEndpoint.pipe(Effect.flip)
      expect((yield* requests).length).toBe(2)
    }))

  it.scoped("callers that share a failed attempt all see it; only one new attempt follows", () =>
    Effect.gen(function*() {
      const issuer = "https://as.example"
      let calls = 0
      const release = yield* Deferred.make<void>()
      // The first attempt fails, but only when the test says so: every caller has joined it by then.
      const { client, requests } = yield* fake(() =>
        ++calls === 1
          ? Effect.as(Deferred.await(release), new Response("down", { status: 502 }))
          : Effect.succeed(json(document(issuer)))
      )
      const discovery = yield* Discovery.makeWith(client, { issuer })
      const waiting = yield* Effect.forEach(Array.from({ length: 5 }), () => forkStarted(discovery.metadata))
      expect(waiting.every((caller) => caller.unsafePoll() === null)).toBe(true)
      yield* Deferred.succeed(release, undefined)
      const first = yield* Effect.forEach(waiting, (caller) => Effect.either(Fiber.join(caller)))
      expect(first.every((r) => r._tag === "Left")).toBe(true)
      yield* Effect.all(Array.from({ length: 5 }, () => discovery.metadata), { concurrency: "unbounded" })
      expect((yield* requests).length).toBe(2)
    }))

  /** A Discovery whose document request is answered only once `release` completes. */
  const held = Effect.gen(function*() {
    const issuer = "https://as.example"
    const requested = yield* Deferred.make<void>()
    const release = yield* Deferred.make<void>()
    const { client, requests } = yield* fake(() =>
      Deferred.succeed(requested, undefined).pipe(
        Effect.zipRight(Deferred.await(release)),
        Effect.as(json(document(issuer)))
      )
    )
    const discovery = yield* Discovery.makeWith(client, { issuer })
    return { discovery, issuer, release, requested, requests }
  })

  it.scoped("an interrupted caller is not a failure: the memo of a fetch that succeeds is kept", () =>
    Effect.gen(function*() {
      const { discovery, issuer, release, requested, requests } = yield* held
      const first = yield* Effect.fork(discovery.metadata)
      yield* Deferred.await(requested)
      // A second caller waits for the same fetch, then gives up (its request was cancelled, say).
      const waiter = yield* forkStarted(discovery.metadata)
      expect(waiter.unsafePoll()).toBeNull()
      yield* Fiber.interrupt(waiter)
      yield* Deferred.succeed(release, undefined)
      expect((yield* Fiber.join(first)).issuer).toBe(issuer)
      // The document fetched once is kept: no second request.
      expect((yield* discovery.metadata).issuer).toBe(issuer)
      expect((yield* requests).length).toBe(1)
    }))

  it.scoped("the caller that started the fetch is interrupted: the fetch goes on and its document is kept", () =>
    Effect.gen(function*() {
      const { discovery, issuer, release, requested, requests } = yield* held
      const first = yield* Effect.fork(discovery.metadata)
      yield* Deferred.await(requested)
      yield* Fiber.interrupt(first)
      const second = yield* Effect.fork(discovery.metadata)
      yield* Deferred.succeed(release, undefined)
      expect((yield* Fiber.join(second)).issuer).toBe(issuer)
      expect((yield* discovery.metadata).issuer).toBe(issuer)
      expect((yield* requests).length).toBe(1)
    }))

  it.effect("closing the scope the Discovery was made in interrupts its fetch in flight; nothing outlives it", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const { discovery, requested, requests } = yield* Scope.extend(held, scope)
      const caller = yield* Effect.fork(discovery.metadata)
      yield* Deferred.await(requested)
      yield* Scope.close(scope, Exit.void)
      expect(Exit.isInterrupted(yield* Fiber.await(caller))).toBe(true)
      expect((yield* requests).length).toBe(1)
    }))

  it.scoped("typed errors: no document at all, an invalid document, a bad issuer, a missing endpoint", () =>
    Effect.gen(function*() {
      const issuer = "https://as.example"
      const notFound = yield* fake(() => new Response("", { status: 404 }))
      const missing = yield* Effect.flip(
        Effect.flatMap(Discovery.makeWith(notFound.client, { issuer }), (d) => d.metadata)
      )
      expect(missing.reason._tag).toBe("Misconfigured")
      expect(missing.message).toContain("no metadata")

      const invalid = yield* fake(() => json({ issuer, token_endpoint: "not a url", scopes_supported: "openid" }))
      const malformed = yield* Effect.flip(
        Effect.flatMap(Discovery.makeWith(invalid.client, { issuer }), (d) => d.metadata)
      )
      expect(malformed.reason._tag).toBe("MalformedResponse")
      expect(malformed.message).toContain("token_endpoint")
      expect(malformed.message).toContain("scopes_supported")
      expect(malformed.message).not.toContain("not a url")

      const html = yield* fake(() => new Response("<html>", { status: 200, headers: { "content-type": "text/html" } }))
      const notJson = yield* Effect.flip(
        Effect.flatMap(Discovery.makeWith(html.client, { issuer }), (d) => d.metadata)
      )
      expect(notJson.reason._tag).toBe("MalformedResponse")

      const never = yield* fake(() => json(document(issuer)))
      const badIssuer = yield* Effect.flip(
        Effect.flatMap(Discovery.makeWith(never.client, { issuer: "not a url" }), (d) => d.metadata)
      )
      expect(badIssuer.reason._tag).toBe("Misconfigured")
      expect((yield* never.requests).length).toBe(0)

      const noRevocation = yield* Effect.flip(
        Effect.flatMap(Discovery.makeWith(never.client, { issuer }), (d) => d.revocationEndpoint)
      )
      expect(noRevocation.reason._tag).toBe("Misconfigured")
      expect(noRevocation.message).toContain("revocation_endpoint")
    }))

  it("documentUrls follows OIDC Discovery and RFC 8414 §3.1", () => {
    expect(Discovery.documentUrls("https://as.example")).toEqual(
      Option.some([
        "https://as.example/.well-known/openid-configuration",
        "https://as.example/.well-known/oauth-authorization-server"
      ])
    )
    expect(Discovery.documentUrls("https://as.example/realms/main/")).toEqual(
      Option.some([
        "https://as.example/realms/main/.well-known/openid-configuration",
        "https://as.example/.well-known/oauth-authorization-server/realms/main"
      ])
    )
    expect(Discovery.documentUrls("https://as.example/?tenant=1")).toEqual(Option.none())
  })

  it.effect("the Discovery layer provides the service", () =>
    Effect.gen(function*() {
      const { client } = yield* fake(() => json({}))
      const discovery = yield* Discovery.Discovery.pipe(
        Effect.provide(Discovery.layer({ issuer: "https://as.example" })),
        Effect.provideService(HttpClient.HttpClient, client)
      )
      expect(discovery.issuer).toBe("https://as.example")
      expect(Discovery.isDiscovery(discovery)).toBe(true)
      expect(Discovery.isDiscovery("https://as.example")).toBe(false)
    }))
})

describe("Discovery timeout", () => {
  it.scoped("a server that never answers fails with Timeout after the document timeout, not never", () =>
    Effect.gen(function*() {
      const silent = HttpClient.make(() => Effect.never)
      const discovery = yield* Discovery.makeWith(silent, { issuer: "https://as.test", timeout: "5 seconds" })
      const fiber = yield* Effect.fork(Effect.flip(discovery.metadata))
      yield* TestClock.adjust("5 seconds")
      expect((yield* Fiber.join(fiber)).reason._tag).toBe("Timeout")
    }))
})
