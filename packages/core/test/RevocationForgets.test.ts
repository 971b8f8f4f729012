/**
 * Revoking a token through the library also forgets it in the cache that holds it.
 */
import { ClientAuth, Revocation, TokenCache } from "@effect-token/core"
import { TestTokenSource } from "@effect-token/testing"
import { HttpClient } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { fake } from "./support/http.js"

const revocationUrl = "https://as.example/revoke"
const clientAuth = ClientAuth.none({ clientId: "cli" })

describe("revocation forgets", () => {
  it.scoped("revokeAccessToken through forgetting(cache): the server is told and the cache hands out a new token", () =>
    Effect.gen(function*() {
      const { client, requests } = yield* fake(() => new Response(null, { status: 200 }))
      const test = yield* TestTokenSource.make({ lifetime: "1 hour" })
      const cache = yield* TokenCache.make(test.source)
      const revocation = Revocation.forgetting(Revocation.makeWith(client, { revocationUrl, clientAuth }), cache)
      const first = yield* cache.get
      yield* revocation.revokeAccessToken(first)
      expect((yield* requests).map((r) => [r.form.get("token"), r.form.get("token_type_hint")])).toEqual([
        ["token-1", "access_token"]
      ])
      expect((yield* cache.state)._tag).toBe("Empty")
      expect(Redacted.value((yield* cache.get).value)).toBe("token-2")
      expect(yield* test.fetches).toBe(2)
    }))

  it.scoped("Revocation.make and its layers forget in the TokenCache in context, without being told to", () =>
    Effect.gen(function*() {
      const { client, requests } = yield* fake(() => new Response(null, { status: 200 }))
      const test = yield* TestTokenSource.make({ lifetime: "1 hour" })
      const cache = yield* TokenCache.make(test.source)
      const revocation = yield* Revocation.make({ revocationUrl, clientAuth }).pipe(
        Effect.provideService(HttpClient.HttpClient, client),
        Effect.provideService(TokenCache.TokenCache, cache)
      )
      yield* revocation.revokeAccessToken(yield* cache.get)
      expect((yield* requests).length).toBe(1)
      expect(Redacted.value((yield* cache.get).value)).toBe("token-2")
      // Through the layer, too.
      const viaLayer = yield* Revocation.Revocation.pipe(
        Effect.provide(Revocation.layer({ revocationUrl, clientAuth })),
        Effect.provideService(HttpClient.HttpClient, client),
        Effect.provideService(TokenCache.TokenCache, cache)
      )
      yield* viaLayer.revoke((yield* cache.get).value)
      expect(Redacted.value((yield* cache.get).value)).toBe("token-3")
      // Without a cache in context it only revokes.
      const alone = yield* Revocation.make({ revocationUrl, clientAuth }).pipe(
        Effect.provideService(HttpClient.HttpClient, client)
      )
      yield* alone.revokeAccessToken(yield* cache.get)
      expect(Redacted.value((yield* cache.get).value)).toBe("token-3")
      expect(yield* test.fetches).toBe(3)
    }))

  it.scoped("revoke(value) forgets it too; another token (already replaced) is left alone; a failed revocation still forgets", () =>
    Effect.gen(function*() {
      const { client } = yield* fake(() => new Response("{\"error\":\"invalid_client\"}", { status: 401 }))
      const test = yield* TestTokenSource.make({ lifetime: "1 hour" })
      const cache = yield* TokenCache.make(test.source)
      const revocation = Revocation.forgetting(Revocation.makeWith(client, { revocationUrl, clientAuth }), cache)
      const first = yield* cache.get
      yield* Effect.either(revocation.revoke(Redacted.make("not-the-cached-one")))
      expect((yield* cache.state)._tag).toBe("Ready")
      const failed = yield* Effect.either(revocation.revoke(first.value))
      expect(failed._tag).toBe("Left")
      expect((yield* cache.state)._tag).toBe("Empty")
    }))
})
