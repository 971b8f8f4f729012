/**
 * How a user property-tests their own code with the kit: the code under test gets the in-process servers'
 * HttpClient, and TestClock moves time however fast-check likes, with no socket and no real waiting.
 */
import type { TokenSource } from "@effect-token/core"
import { AccessToken, ClientCredentials } from "@effect-token/core"
import { TestAuthorizationServer, TestResourceServer } from "@effect-token/testing"
import { HttpClient, HttpClientRequest } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { DateTime, Duration, Effect, FastCheck, Option, Redacted, Ref, TestClock } from "effect"

/**
 * The user's code: an API client that keeps its token and fetches a new one once it is expired (`skew` early).
 */
const makeOrdersClient = (options: {
  readonly source: TokenSource.TokenSource
  readonly apiUrl: string
  readonly skew: Duration.DurationInput
}) =>
  Effect.gen(function*() {
    const http = yield* HttpClient.HttpClient
    const current = yield* Ref.make(Option.none<AccessToken.AccessToken>())
    const token = Effect.gen(function*() {
      const now = yield* DateTime.now
      const cached = yield* Ref.get(current)
      if (Option.isSome(cached) && !AccessToken.isExpired(cached.value, now, options.skew)) return cached.value
      const fresh = yield* options.source.fetch
      yield* Ref.set(current, Option.some(fresh))
      return fresh
    })
    const listOrders = Effect.flatMap(token, (t) =>
      http.execute(
        HttpClientRequest.get(`${options.apiUrl}/orders`).pipe(
          HttpClientRequest.setHeader("authorization", Redacted.value(AccessToken.authorization(t)))
        )
      )).pipe(Effect.map((response) => response.status))
    return { listOrders }
  })

// One key for every run: generating an RSA key per server would dominate the run time.
const signingKey = await Effect.runPromise(TestAuthorizationServer.generateSigningKey)

const servers = (lifetimeSeconds: number) =>
  Effect.gen(function*() {
    const as = yield* TestAuthorizationServer.makeInProcess({
      tokenLifetime: Duration.seconds(lifetimeSeconds),
      signingKey
    })
    const api = yield* TestResourceServer.makeInProcess({ authorizationServer: as })
    const source = yield* ClientCredentials.make({ tokenUrl: as.tokenUrl, clientAuth: as.clientAuth() }).pipe(
      Effect.provideService(HttpClient.HttpClient, api.client)
    )
    return { as, api, source }
  })

describe("property test example", () => {
  it.effect.prop(
    "for any token lifetime, skew and sequence of clock advances, every API call succeeds",
    {
      lifetimeSeconds: FastCheck.integer({ min: 1, max: 2 * 3600 }),
      skewSeconds: FastCheck.integer({ min: 0, max: 60 }),
      advancesMillis: FastCheck.array(FastCheck.integer({ min: 0, max: 3 * 3600 * 1000 }), { maxLength: 12 })
    },
    ({ advancesMillis, lifetimeSeconds, skewSeconds }) =>
      Effect.gen(function*() {
        const { api, as, source } = yield* servers(lifetimeSeconds)
        // The user's code gets the in-process client where production would provide NodeHttpClient.
        const client = yield* makeOrdersClient({ source, apiUrl: api.url, skew: Duration.seconds(skewSeconds) }).pipe(
          Effect.provideService(HttpClient.HttpClient, api.client)
        )
        const statuses: Array<number> = [yield* client.listOrders]
        for (const advance of advancesMillis) {
          yield* TestClock.adjust(Duration.millis(advance))
          statuses.push(yield* client.listOrders)
        }
        expect(statuses.every((status) => status === 200)).toBe(true)
        expect(yield* api.counts).toMatchObject({ unauthorized: 0, ok: statuses.length })
        // And it did not fetch a token per call when it did not need to.
        const fetched = (yield* as.requests).client_credentials ?? 0
        expect(fetched).toBeLessThanOrEqual(statuses.length)
      }),
    { fastCheck: { numRuns: 50 } }
  )

  it.effect.prop(
    "the fakes catch the bug: a client that never refreshes is refused exactly from the token's expiry",
    {
      lifetimeSeconds: FastCheck.integer({ min: 1, max: 3600 }),
      elapsedMillis: FastCheck.integer({ min: 0, max: 2 * 3600 * 1000 })
    },
    ({ elapsedMillis, lifetimeSeconds }) =>
      Effect.gen(function*() {
        const { api, source } = yield* servers(lifetimeSeconds)
        const token = yield* source.fetch
        yield* TestClock.adjust(Duration.millis(elapsedMillis))
        const response = yield* api.client.execute(
          HttpClientRequest.get(`${api.url}/orders`).pipe(
            HttpClientRequest.setHeader("authorization", Redacted.value(AccessToken.authorization(token)))
          )
        )
        expect(response.status).toBe(elapsedMillis < lifetimeSeconds * 1000 ? 200 : 401)
      }),
    { fastCheck: { numRuns: 100 } }
  )
})
