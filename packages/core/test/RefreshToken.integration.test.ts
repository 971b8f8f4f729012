import { ClientAuth, RefreshToken, RefreshTokenStore } from "@effect-token/core"
import { OidcProvider } from "@effect-token/testing/oidc-provider"
import { NodeHttpClient } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Option, Redacted } from "effect"
import { createRemoteJWKSet, jwtVerify } from "jose"

const secret = "rt-s3cr3t: +/%&="

const clients = [
  {
    client_id: "web",
    client_secret: secret,
    grant_types: ["authorization_code", "refresh_token"],
    response_types: ["code" as const],
    redirect_uris: ["http://127.0.0.1/callback"],
    scope: "openid offline_access api:read api:write",
    token_endpoint_auth_method: "client_secret_basic" as const
  },
  {
    client_id: "cli",
    grant_types: ["authorization_code", "refresh_token"],
    response_types: ["code" as const],
    redirect_uris: ["http://127.0.0.1/callback"],
    scope: "openid offline_access api:read",
    token_endpoint_auth_method: "none" as const
  }
]

const startProvider = OidcProvider.make({ clients, accessTokenTtl: 120, configuration: { rotateRefreshToken: true } })

const webAuth = ClientAuth.clientSecretBasic({ clientId: "web", clientSecret: Redacted.make(secret) })

/** A refresh source over `store`, against the real provider (the HttpClient comes from the test). */
const sourceFor = (
  as: OidcProvider.OidcProvider,
  store: RefreshTokenStore.RefreshTokenStore,
  clientAuth: ClientAuth.ClientAuth = webAuth,
  scope?: string
) =>
  RefreshToken.make({ tokenUrl: as.tokenUrl, clientAuth, scope }).pipe(
    Effect.provideService(RefreshTokenStore.RefreshTokenStore, store)
  )

/** The real Node HTTP client, for the whole test: a source keeps the client it was built with. */
const live = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.provide(effect, NodeHttpClient.layerUndici)

const current = (store: RefreshTokenStore.RefreshTokenStore) =>
  Effect.map(store.get, (token) => Redacted.value(Option.getOrThrow(token)))

describe("refresh_token grant against a real oidc-provider", () => {
  it.scopedLive("fetches a verifiable token and stores the rotated refresh token", () =>
    live(Effect.gen(function*() {
      const as = yield* startProvider
      const first = yield* as.issueRefreshToken({ clientId: "web", accountId: "alice" })
      const store = yield* RefreshTokenStore.make(Redacted.make(first))
      const source = yield* sourceFor(as, store)

      const token = yield* source.fetch
      const { payload } = yield* Effect.promise(() =>
        jwtVerify(Redacted.value(token.value), createRemoteJWKSet(new URL(as.jwksUrl)), {
          issuer: as.issuer,
          audience: as.audience
        })
      )
      expect(payload.sub).toBe("alice")
      expect(payload.client_id).toBe("web")
      // The rotated refresh token went to the store, not into the token handed out.
      const second = yield* current(store)
      expect(second).not.toBe(first)
      expect(Option.isNone(token.refreshToken)).toBe(true)

      // The stored one works, and is rotated in turn.
      yield* source.fetch
      const third = yield* current(store)
      expect(third).not.toBe(second)
      expect(as.tokenRequests()["refresh_token"]).toBe(2)
    })))

  it.scopedLive("an already used (rotated) refresh token is RefreshTokenRejected, without the token in the error", () =>
    live(Effect.gen(function*() {
      const as = yield* startProvider
      const first = yield* as.issueRefreshToken({ clientId: "web" })
      const store = yield* RefreshTokenStore.make(Redacted.make(first))
      const source = yield* sourceFor(as, store)
      yield* source.fetch

      // Replay the spent token, as a second process with a stale copy would.
      yield* store.set(Redacted.make(first))
      const error = yield* Effect.flip(source.fetch)
      expect(error.reason._tag).toBe("RefreshTokenRejected")
      expect(error.reason).toMatchObject({ _tag: "RefreshTokenRejected", status: 400, code: "invalid_grant" })
      expect((error.reason as any).status).toBe(400)
      const printed = `${error.message} ${String(error)} ${JSON.stringify(error)}`
      expect(printed).not.toContain(first)
      expect(printed).not.toContain(secret)
    })))

  it.scopedLive("an empty store is RefreshTokenRejected without a request", () =>
    live(Effect.gen(function*() {
      const as = yield* startProvider
      const store = yield* RefreshTokenStore.make()
      const source = yield* sourceFor(as, store)
      const error = yield* Effect.flip(source.fetch)
      expect(error.reason._tag).toBe("RefreshTokenRejected")
      expect(error.message).toContain("no refresh token in the store")
      expect(as.tokenRequests()).toEqual({})
    })))

  it.scopedLive("concurrent fetches of one source never spend the same refresh token", () =>
    live(Effect.gen(function*() {
      const as = yield* startProvider
      const store = yield* RefreshTokenStore.make(Redacted.make(yield* as.issueRefreshToken({ clientId: "web" })))
      const source = yield* sourceFor(as, store)
      // With rotation and reuse detection, a second use of a spent token would revoke the whole grant.
      const tokens = yield* Effect.all(Array.from({ length: 8 }, () => source.fetch), { concurrency: "unbounded" })
      expect(new Set(tokens.map((t) => Redacted.value(t.value))).size).toBe(8)
      expect(as.tokenRequests()["refresh_token"]).toBe(8)
      expect(as.tokenRequests()["refresh_token:error"]).toBeUndefined()
    })))

  it.scopedLive("a public client (ClientAuth.none) refreshes with only its client_id", () =>
    live(Effect.gen(function*() {
      const as = yield* startProvider
      const store = yield* RefreshTokenStore.make(Redacted.make(yield* as.issueRefreshToken({ clientId: "cli" })))
      const source = yield* sourceFor(as, store, ClientAuth.none({ clientId: "cli" }), "api:read")
      const token = yield* source.fetch
      expect(Option.getOrThrow(token.scope)).toBe("api:read")
      // A public client cannot pose as a confidential one.
      const other = yield* RefreshTokenStore.make(Redacted.make(yield* as.issueRefreshToken({ clientId: "web" })))
      const error = yield* Effect.flip(
        Effect.flatMap(sourceFor(as, other, ClientAuth.none({ clientId: "web" })), (s) => s.fetch)
      )
      expect(error.reason._tag).toBe("OAuthError")
      expect((error.reason as any).code).toBe("invalid_client")
    })))

  it.scopedLive("the rotated refresh token is stored before the access token is handed out, even if interrupted", () =>
    live(Effect.gen(function*() {
      const as = yield* startProvider
      const first = yield* as.issueRefreshToken({ clientId: "web" })
      const inner = yield* RefreshTokenStore.make(Redacted.make(first))
      const setCalled = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      // A slow durable store: `set` waits until the test lets it finish.
      const slow: RefreshTokenStore.RefreshTokenStore = {
        ...inner,
        set: (token) =>
          Deferred.succeed(setCalled, undefined).pipe(
            Effect.zipRight(Deferred.await(release)),
            Effect.zipRight(inner.set(token))
          )
      }
      const source = yield* sourceFor(as, slow)
      const fiber = yield* Effect.fork(source.fetch)
      yield* Deferred.await(setCalled)
      expect(Option.isNone(yield* Fiber.poll(fiber))).toBe(true)
      // The caller gives up while the new refresh token is being written: the write still completes.
      const interrupting = yield* Effect.fork(Fiber.interrupt(fiber))
      yield* Effect.sleep("50 millis")
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(interrupting)
      const stored = yield* current(inner)
      expect(stored).not.toBe(first)
      // And it is the valid one.
      const fresh = yield* sourceFor(as, inner)
      yield* fresh.fetch
    })))

  it.scopedLive("scope narrower than the grant is sent and honoured; wider is OAuthError invalid_scope", () =>
    live(Effect.gen(function*() {
      const as = yield* startProvider
      const store = yield* RefreshTokenStore.make(
        Redacted.make(yield* as.issueRefreshToken({ clientId: "web", scope: "openid offline_access api:read" }))
      )
      const narrow = yield* sourceFor(as, store, webAuth, "api:read")
      expect(Option.getOrThrow((yield* narrow.fetch).scope)).toBe("api:read")
      const wide = yield* sourceFor(as, store, webAuth, "api:read api:write")
      const error = yield* Effect.flip(wide.fetch)
      expect(error.reason._tag).toBe("OAuthError")
      expect((error.reason as any).code).toBe("invalid_scope")
    })))
})

describe("RefreshTokenStore", () => {
  it.effect("memory store: get, set, clear", () =>
    Effect.gen(function*() {
      const store = yield* RefreshTokenStore.make()
      expect(Option.isNone(yield* store.get)).toBe(true)
      yield* store.set(Redacted.make("a"))
      expect(yield* current(store)).toBe("a")
      yield* store.clear
      expect(Option.isNone(yield* store.get)).toBe(true)
    }))

  it.effect("layerMemory seeds the store", () =>
    Effect.gen(function*() {
      const store = yield* RefreshTokenStore.RefreshTokenStore
      expect(yield* current(store)).toBe("seed")
    }).pipe(Effect.provide(RefreshTokenStore.layerMemory(Redacted.make("seed")))))
})
