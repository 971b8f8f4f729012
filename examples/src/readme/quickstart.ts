import { AuthHttpClient } from "@effect-token/core"
import { NodeHttpClient } from "@effect/platform-node"
import { Effect, Layer } from "effect"

// One layer: reads API_URL, TOKEN_URL (or ISSUER), CLIENT_ID, CLIENT_SECRET (kept Redacted) and SCOPE.
export const ApiLive = AuthHttpClient.layerConfig().pipe(Layer.provide(NodeHttpClient.layerUndici))

export const listInvoices = Effect.gen(function*() {
  const api = yield* AuthHttpClient.AuthHttpClient // bound to API_URL: only its requests carry the token
  const response = yield* api.get("/invoices")
  return yield* response.json
})

// Provide the layer once, at the edge of the application: the token cache lives as long as the layer.
export const main = listInvoices.pipe(Effect.provide(ApiLive))
