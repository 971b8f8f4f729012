/**
 * Story: the same service, now through `TokenCache` + `AuthHttpClient`. Concurrent calls share one token, and when
 * the API starts rejecting it (revoked, as after a key rotation), the client recovers with one new token however
 * many requests hit the rejection at once.
 */
import { AuthHttpClient, ClientCredentials, TokenCache } from "@effect-token/core"
import * as HttpClient from "@effect/platform/HttpClient"
import { Array as Arr, Effect } from "effect"
import type { Scope } from "effect"
import type { DemoEnv } from "../DemoProgram.js"
import * as Story from "../Story.js"

type Client = HttpClient.HttpClient.With<unknown>

const statusCount = (statuses: ReadonlyArray<number>) => {
  const counts = new Map<number, number>()
  for (const status of statuses) counts.set(status, (counts.get(status) ?? 0) + 1)
  return [...counts].map(([status, n]) => `${n} x ${status}`).join(", ")
}

const tokensIssued = ({ authServer }: DemoEnv) => authServer.tokenRequests()["client_credentials"] ?? 0
const unauthorizedSoFar = (env: DemoEnv) => Effect.map(env.api.stats, (s) => s.byStatus[401] ?? 0)

/** `n` concurrent GET /invoices through the authenticated client; their statuses. */
const concurrentCalls = (client: Client, url: string, n: number) =>
  Effect.all(
    Arr.replicate(Effect.map(client.get(`${url}/invoices`), (response) => response.status), n),
    { concurrency: "unbounded" }
  )

export const setUp = Story.step<DemoEnv, Client, HttpClient.HttpClient | Scope.Scope>(
  "authenticated client",
  ({ api, authServer }) =>
    Effect.gen(function*() {
      const source = yield* ClientCredentials.make({
        tokenUrl: authServer.tokenUrl,
        clientAuth: authServer.clientAuth,
        scope: "api:read"
      })
      const cache = yield* TokenCache.make(source, { name: "invoices" })
      const client = AuthHttpClient.authenticate(yield* HttpClient.HttpClient, { baseUrl: api.url, tokens: cache })
      return {
        summary:
          "Bound an AuthHttpClient to the invoices API over a TokenCache: only requests to its origin get the token (none fetched yet)",
        value: client as Client
      }
    })
)

export const sharedToken = Story.step<DemoEnv, ReadonlyArray<number>, never>(
  "concurrent calls share one token",
  (env, results) =>
    Effect.gen(function*() {
      const before = tokensIssued(env)
      const statuses = yield* concurrentCalls(results.get(setUp), env.api.url, 50)
      const issued = tokensIssued(env) - before
      yield* Story.expect(statuses.every((s) => s === 200), `expected 200s, got ${statusCount(statuses)}`)
      yield* Story.expect(issued === 1, `expected 1 token request, saw ${issued}`)
      return {
        summary: `50 concurrent GET /invoices on a cold cache -> ${statusCount(statuses)}, ${issued} token request`,
        value: statuses
      }
    })
)

export const recoverOne = Story.step<DemoEnv, { unauthorized: number; issued: number }, never>(
  "one call after the API revokes the token",
  (env, results) =>
    Effect.gen(function*() {
      const revoked = yield* env.api.rejectAcceptedTokens
      const before = tokensIssued(env)
      const unauthorizedBefore = yield* unauthorizedSoFar(env)
      const response = yield* results.get(setUp).get(`${env.api.url}/invoices`)
      const unauthorized = (yield* unauthorizedSoFar(env)) - unauthorizedBefore
      const issued = tokensIssued(env) - before
      yield* Story.expect(response.status === 200, `expected 200, got ${response.status}`)
      yield* Story.expect(unauthorized === 1 && issued === 1, `expected one 401 and one new token`)
      return {
        summary: `The API revokes the ${revoked} token(s) it accepted; the next GET -> ${unauthorized} x 401, ` +
          `${issued} new token, retried -> ${response.status}`,
        value: { unauthorized, issued }
      }
    })
)

export const recoverStorm = Story.step<DemoEnv, { unauthorized: number; issued: number }, never>(
  "200 concurrent calls hit the same revocation",
  (env, results) =>
    Effect.gen(function*() {
      const client = results.get(setUp)
      yield* env.api.rejectAcceptedTokens
      const before = tokensIssued(env)
      const unauthorizedBefore = yield* unauthorizedSoFar(env)
      const statuses = yield* concurrentCalls(client, env.api.url, 200)
      const unauthorized = (yield* unauthorizedSoFar(env)) - unauthorizedBefore
      const issued = tokensIssued(env) - before
      yield* Story.expect(statuses.every((s) => s === 200), `expected 200s, got ${statusCount(statuses)}`)
      yield* Story.expect(issued === 1, `expected 1 token request, saw ${issued}`)
      return {
        summary: `Revoked again; 200 concurrent GET /invoices -> ${unauthorized} x 401 for the stale token, ` +
          `${issued} token request, then ${statusCount(statuses)}`,
        value: { unauthorized, issued }
      }
    })
)

export const recovery: Story.Story<DemoEnv, HttpClient.HttpClient | Scope.Scope> = {
  title: "TokenCache + AuthHttpClient: one token for many calls, one refresh for many rejections",
  steps: [setUp, sharedToken, recoverOne, recoverStorm]
}
