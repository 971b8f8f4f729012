import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Redacted } from "effect"
import * as AuthServer from "../src/AuthServer.js"
import * as ProtectedApi from "../src/ProtectedApi.js"
import { ApiLive, listInvoices } from "../src/readme/quickstart.js"

describe("the README's example", () => {
  it.scopedLive("works as written against a real authorization server and API, configured from the environment", () =>
    Effect.gen(function*() {
      const as = yield* AuthServer.make()
      const api = yield* ProtectedApi.make({ issuer: as.issuer, jwksUrl: as.jwksUrl, audience: as.audience })
      if (as.clientAuth._tag !== "ClientSecretBasic") return yield* Effect.dieMessage("expected a basic client")
      const environment = ConfigProvider.fromMap(
        new Map([
          ["API_URL", api.url],
          ["TOKEN_URL", as.tokenUrl],
          ["CLIENT_ID", as.clientId],
          ["CLIENT_SECRET", Redacted.value(as.clientAuth.clientSecret)],
          ["SCOPE", "api:read"]
        ])
      )
      const [first, second] = yield* Effect.all([listInvoices, listInvoices]).pipe(
        Effect.provide(ApiLive),
        Effect.withConfigProvider(environment)
      )
      expect(first).toHaveLength(2)
      expect(second).toEqual(first)
      expect(as.tokenRequests()["client_credentials"]).toBe(1)
    }))
})
