import { AuthHttpClient, ClientAuth, ClientCredentials, DPoP, TokenCache } from "@effect-token/core"
import { HttpClient } from "@effect/platform"
import { Effect, Redacted } from "effect"

export const api = Effect.gen(function*() {
  const key = yield* DPoP.generate() // ES256, one per instance; the private key never prints
  const source = yield* ClientCredentials.make({
    tokenUrl: "https://auth.example.com/oauth/token",
    clientAuth: ClientAuth.clientSecretBasic({ clientId: "billing", clientSecret: Redacted.make("s3cr3t") }),
    dpop: key
  })
  const tokens = yield* TokenCache.make(source)
  const http = yield* HttpClient.HttpClient
  return AuthHttpClient.authenticate(http, { baseUrl: "https://api.example.com", tokens, dpop: key })
})
