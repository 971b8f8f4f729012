import { AuthHttpClient, ClientCredentials, TokenCache } from "@effect-token/core"
import { HttpClient } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import { Effect, Layer } from "effect"

// Reads TOKEN_URL, CLIENT_ID, CLIENT_SECRET (kept Redacted) and SCOPE from the environment.
export const ApiClientLive = AuthHttpClient.layer().pipe(
  Layer.provide(TokenCache.layer()),
  Layer.provide(ClientCredentials.layerConfig()),
  Layer.provide(NodeHttpClient.layerUndici)
)

export const listInvoices = (baseUrl: string) =>
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient // every request carries a valid token
    const response = yield* client.get(`${baseUrl}/invoices`)
    return yield* response.json
  })

// Provide the layer once, at the edge of the application: the cache lives as long as the layer.
export const main = listInvoices("https://api.example.com").pipe(Effect.provide(ApiClientLive))
