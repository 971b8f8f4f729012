import type { ClientAuth } from "@effect-token/core"
import { KeyRing } from "@effect-token/redis"
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Redacted } from "effect"
import * as AuthServer from "../src/AuthServer.js"
import * as ProtectedApi from "../src/ProtectedApi.js"
import { ApiLive, listInvoices } from "../src/readme/redis.js"
import * as RedisServer from "../src/RedisServer.js"

describe("the README's Redis set-up (examples/src/readme/redis.ts)", () => {
  it.live("two instances configured alike share one token through a real redis-server", () =>
    Effect.gen(function*() {
      const redis = yield* RedisServer.make
      const authServer = yield* AuthServer.make()
      const api = yield* ProtectedApi.make(authServer)
      const secret = (authServer.clientAuth as ClientAuth.ClientSecretBasic).clientSecret
      const environment = ConfigProvider.fromMap(
        new Map([
          ["API_URL", api.url],
          ["TOKEN_URL", authServer.tokenUrl],
          ["CLIENT_ID", authServer.clientId],
          ["CLIENT_SECRET", Redacted.value(secret)],
          ["SCOPE", "api:read"],
          ["REDIS_URL", redis.url],
          ["REDIS_TOKEN_KEYS", Redacted.value(KeyRing.format([yield* KeyRing.generateKey("k1")]))]
        ])
      )
      // Each instance builds its own layer (its own connection and cache), as separate processes would.
      const instance = listInvoices.pipe(Effect.provide(ApiLive), Effect.withConfigProvider(environment))
      const [first, second] = yield* Effect.all([instance, instance], { concurrency: "unbounded" })
      expect(first).toHaveLength(2)
      expect(second).toEqual(first)
      expect(authServer.tokenRequests()["client_credentials"]).toBe(1)
    }).pipe(Effect.scoped))
})
