import { AuthHttpClient, ClientCredentials, TokenCache } from "@effect-token/core"
import { RedisTokenStore } from "@effect-token/redis"
import { RedisIoredis } from "@effect-token/redis/ioredis"
import { NodeHttpClient } from "@effect/platform-node"
import { Config, Effect, Layer } from "effect"

// This instance's cache, in front of a client-credentials source whose tokens every instance shares through Redis.
// Reads TOKEN_URL, CLIENT_ID, CLIENT_SECRET, SCOPE; REDIS_URL (or REDIS_CLUSTER_NODES); REDIS_TOKEN_KEYS (the
// AES-GCM keys that encrypt tokens at rest, kept Redacted) and REDIS_TOKEN_PREFIX.
const TokensLive = TokenCache.layer().pipe(
  Layer.provide(RedisTokenStore.layerShared()),
  Layer.provide(ClientCredentials.layerConfig()),
  Layer.provide(RedisTokenStore.layerConfig()),
  Layer.provide(RedisIoredis.layerConfig())
)

// The same client as in the quick start, over the shared tokens.
export const ApiLive = Layer.unwrapEffect(
  Effect.map(Config.string("API_URL"), (baseUrl) => AuthHttpClient.layer({ baseUrl }))
).pipe(Layer.provide(TokensLive), Layer.provide(NodeHttpClient.layerUndici))

export const listInvoices = Effect.gen(function*() {
  const api = yield* AuthHttpClient.AuthHttpClient
  return yield* Effect.flatMap(api.get("/invoices"), (response) => response.json)
})
