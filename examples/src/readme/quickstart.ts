import { AuthHttpClient } from "@effect-token/core"
import { NodeHttpClient } from "@effect/platform-node"
import { Effect, Layer } from "effect"

// One layer: reads API_URL, TOKEN_URL (or ISSUER), CLIENT_ID, CLIENT_SECRET (kept Redacted) and SCOPE.
// Every call is bounded by default; these settings change the bounds (e.g. REQUEST_TIMEOUT="2 minutes"):
//   REQUEST_TIMEOUT  30 s  each attempt at the API (idempotent requests retried 3 times on transient faults)
//   ACQUIRE_TIMEOUT  30 s  a caller's whole wait for a token, retries included
//   ATTEMPT_TIMEOUT  10 s  each request to the token endpoint
export const ApiLive = AuthHttpClient.layerConfig().pipe(Layer.provide(NodeHttpClient.layerUndici))

export const listInvoices = Effect.gen(function*() {
  const api = yield* AuthHttpClient.AuthHttpClient // bound to API_URL: only its requests carry the token
  const response = yield* api.get("/invoices")
  return yield* response.json
})

// Provide the layer once, at the edge of the application: the token cache lives as long as the layer.
export const main = listInvoices.pipe(Effect.provide(ApiLive))
