import { AuthHttpClient, TokenCache, TokenSource } from "@effect-token/core"
import { HttpClient } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import { Effect, Layer } from "effect"

// Reads TOKEN_URL, CLIENT_ID, CLIENT_SECRET (kept Redacted) and SCOPE from the environment.
const ApiClientLive = AuthHttpClient.layer().pipe(
  Layer.provide(TokenCache.layer()),
  Layer.provide(TokenSource.layerConfig()),
  Layer.provide(NodeHttpClient.layerUndici)
)

export const listInvoices = Effect.gen(function*() {
  const client = yield* HttpClient.HttpClient // every request carries a fresh token
  const response = yield* client.get("https://api.example.com/invoices")
  return yield* response.json
}).pipe(Effect.provide(ApiClientLive))
