/**
 * The kit driving core's own building blocks: the refresh-token source against the TestAuthorizationServer, and
 * TokenCache over a TestTokenSource. These are usage examples as much as checks of the fakes.
 */
import { RefreshToken, RefreshTokenStore, TokenCache } from "@effect-token/core"
import { TestAuthorizationServer, TestTokenSource } from "@effect-token/testing"
import { HttpClient } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Option, Redacted } from "effect"

describe("RefreshToken.make against the TestAuthorizationServer", () => {
  it.effect("rotation is followed through the store; a reused or revoked refresh token is RefreshTokenRejected", () =>
    Effect.gen(function*() {
      const as = yield* TestAuthorizationServer.makeInProcess({ tokenLifetime: "1 minute" })
      const login = yield* as.issueRefreshToken()
      const store = yield* RefreshTokenStore.make(login)
      const source = yield* RefreshToken.make({ tokenUrl: as.tokenUrl, clientAuth: as.clientAuth() }).pipe(
        Effect.provideService(HttpClient.HttpClient, as.client),
        Effect.provideService(RefreshTokenStore.RefreshTokenStore, store)
      )
      yield* source.fetch
      const rotated = Option.getOrThrow(yield* store.get)
      expect(Redacted.value(rotated)).not.toBe(Redacted.value(login))
      yield* source.fetch
      expect(yield* as.requests).toEqual({ refresh_token: 2 })

      // A stale copy of the first refresh token (another instance, a restored backup) is spent already.
      yield* store.set(login)
      const reused = yield* Effect.flip(source.fetch)
      expect(reused).toMatchObject({ reason: { _tag: "RefreshTokenRejected", status: 400 } })

      const fresh = yield* as.issueRefreshToken()
      yield* store.set(fresh)
      yield* as.revokeRefreshToken(fresh)
      expect(yield* Effect.flip(source.fetch)).toMatchObject({ reason: { _tag: "RefreshTokenRejected" } })
    }))
})

describe("TokenCache over a TestTokenSource", () => {
  it.scoped("many concurrent callers share one fetch: maxInFlight stays 1", () =>
    Effect.gen(function*() {
      const release = yield* Deferred.make<void>()
      const test = yield* TestTokenSource.make({ lifetime: "1 hour" })
      yield* test.script(TestTokenSource.succeed({ gate: Deferred.await(release) }))
      const cache = yield* TokenCache.make(test.source)
      const callers = yield* Effect.forkAll(Array.from({ length: 20 }, () => cache.get))
      yield* test.awaitFetches(1)
      yield* Deferred.succeed(release, void 0)
      const tokens = yield* Fiber.join(callers)
      expect(new Set(tokens.map((t) => Redacted.value(t.value)))).toEqual(new Set(["token-1"]))
      expect(yield* test.fetches).toBe(1)
      expect(yield* test.maxInFlight).toBe(1)
    }))
})
