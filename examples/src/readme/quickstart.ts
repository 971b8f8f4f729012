import { AuthHttpClient } from "@effect-token/core"
import { NodeHttpClient } from "@effect/platform-node"
import { Effect, Layer } from "effect"

// Reads API_URL, TOKEN_URL (or ISSUER), CLIENT_ID, CLIENT_SECRET (kept Redacted) and SCOPE from the environment.
export const ApiLive = AuthHttpClient.layerConfig().pipe(Layer.provide(NodeHttpClient.layerUndici))

export const listInvoices = Effect.gen(function*() {
  const api = yield* AuthHttpClient.AuthHttpClient // bound to API_URL: only its requests carry the token
  const response = yield* api.get("/invoices")
  return yield* response.json
})

export const main = listInvoices.pipe(Effect.provide(ApiLive)) // the token cache lives as long as the layer
