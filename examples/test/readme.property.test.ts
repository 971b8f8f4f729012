import { AuthHttpClient, ClientCredentials, TokenCache } from "@effect-token/core"
import { Advance, Fault, TestAuthorizationServer, TestResourceServer } from "@effect-token/testing"
import { HttpClient } from "@effect/platform"
import { expect, it } from "@effect/vitest"
import { Duration, Effect, FastCheck as fc, TestClock } from "effect"

// Your service: it works with any HttpClient it is given.
const countOrders = <E>(http: HttpClient.HttpClient.With<E>, apiUrl: string) =>
  Effect.map(http.get(`${apiUrl}/orders`), (response) => response.status)

const signingKey = await Effect.runPromise(TestAuthorizationServer.generateSigningKey)

it.scoped.prop(
  "orders can be counted whatever the clock, the API and the authorization server do",
  {
    lifetimeSeconds: fc.integer({ min: 1, max: 3600 }),
    steps: fc.array(
      fc.record({
        advanceMillis: fc.integer({ min: 0, max: 2 * 3600 * 1000 }),
        trouble: fc.constantFrom("none", "api-503", "token-revoked", "as-503")
      }),
      { maxLength: 8 }
    )
  },
  ({ lifetimeSeconds, steps }) =>
    Effect.gen(function*() {
      const as = yield* TestAuthorizationServer.makeInProcess({
        tokenLifetime: `${lifetimeSeconds} seconds`,
        signingKey
      })
      const api = yield* TestResourceServer.makeInProcess({ authorizationServer: as })
      const source = yield* ClientCredentials.make({ tokenUrl: as.tokenUrl, clientAuth: as.clientAuth() }).pipe(
        Effect.provideService(HttpClient.HttpClient, api.client) // in-process: no sockets, TestClock rules
      )
      const cache = yield* TokenCache.make(source)
      const client = AuthHttpClient.authenticate(api.client, { baseUrl: api.url, tokens: cache })

      for (const { advanceMillis, trouble } of steps) {
        yield* TestClock.adjust(Duration.millis(advanceMillis))
        yield* Effect.all([as.clearFaults, api.clearFaults]) // at most two failures in a row: within the retries
        if (trouble === "api-503") yield* api.failNext(Fault.unavailable({ retryAfter: "2 seconds" }))
        if (trouble === "as-503") yield* as.failNext(Fault.unavailable(), 2)
        if (trouble === "token-revoked") {
          const state = yield* cache.state
          if (state._tag === "Ready") yield* api.rejectToken(state.token)
        }
        // Retries sleep on the TestClock: move it along until the call is done.
        const status = yield* Advance.untilDone(countOrders(client, api.url))
        expect(status).toBe(200)
      }
      expect((yield* api.counts).ok).toBe(steps.length)
    }),
  { fastCheck: { numRuns: 25 } }
)
