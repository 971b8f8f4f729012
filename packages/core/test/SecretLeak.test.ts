/**
 * Secrets never reach logs, spans or errors: the suite's flows run with a capturing logger (every level) and a
 * capturing tracer, and no client secret, access token or refresh token appears in anything they recorded, nor in
 * any error the flows produced.
 */
import {
  AuthHttpClient,
  ClientCredentials,
  RefreshToken,
  RefreshTokenStore,
  TokenCache,
  TokenError
} from "@effect-token/core"
import { Advance, Fault, TestAuthorizationServer, TestResourceServer } from "@effect-token/testing"
import { HttpClient } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, FiberRef, HashSet, Inspectable, Logger, LogLevel, Option, Redacted } from "effect"
import { capturingTracer } from "./support/tracer.js"

const recorded: Array<string> = []
const record = (...values: ReadonlyArray<unknown>) => {
  for (const value of values) {
    recorded.push(typeof value === "string" ? value : Inspectable.format(value))
    try {
      recorded.push(JSON.stringify(value) ?? "")
    } catch {
      // circular values are covered by Inspectable.format
    }
  }
}

const capturingLogger = Logger.make(({ annotations, cause, message, spans }) => {
  record(message, cause, Cause.pretty(cause), [...annotations], [...spans])
})

const { spans, tracer } = capturingTracer()

const observed = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  effect.pipe(
    Effect.tapErrorCause((cause) => Effect.sync(() => record(cause, Cause.pretty(cause), Cause.squash(cause)))),
    Effect.withSpan("test-flow"),
    Effect.withTracer(tracer),
    Effect.provide(Logger.replace(Logger.defaultLogger, capturingLogger)),
    Logger.withMinimumLogLevel(LogLevel.All),
    Effect.locally(FiberRef.currentMinimumLogLevel, LogLevel.All)
  )

const signingKey = await Effect.runPromise(TestAuthorizationServer.generateSigningKey)

describe("no secret in logs, spans or errors", () => {
  it.scoped("client credentials, cache, middleware, faults, rotation and rejection", () =>
    Effect.gen(function*() {
      const clientSecret = "client-secret-that-must-never-show-1234"
      const as = yield* TestAuthorizationServer.makeInProcess({
        signingKey,
        clients: [{ clientId: "svc", clientSecret: Redacted.make(clientSecret) }]
      })
      const api = yield* TestResourceServer.makeInProcess({ authorizationServer: as })
      const provideClient = Effect.provideService(HttpClient.HttpClient, api.client)

      for (const method of ["client_secret_basic", "client_secret_post"] as const) {
        const source = yield* provideClient(
          ClientCredentials.make({
            tokenUrl: as.tokenUrl,
            clientAuth: as.clientAuth({ clientId: "svc", method })
          })
        )
        const cache = yield* TokenCache.make(source, { name: method })
        const client = AuthHttpClient.authenticate(api.client, { baseUrl: api.url, tokens: cache })
        const call = observed(Advance.untilDone(client.get(`${api.url}/orders`)))

        expect((yield* call).status).toBe(200)
        // 401 then recovery, and a 401 that persists.
        yield* api.rejectToken(yield* cache.get)
        expect((yield* call).status).toBe(200)
        yield* api.failNext(
          Fault.response({ status: 401, headers: { "www-authenticate": "Bearer error=\"invalid_token\"" } }),
          2
        )
        yield* api.rejectToken(yield* cache.get)
        yield* Effect.either(call)
        // Transient faults at the API and the authorization server, and bodies that carry a token but are invalid.
        yield* api.failNext(Fault.unavailable({ retryAfter: "1 second" }))
        yield* call
        yield* as.failNext(Fault.unavailable(), 2)
        yield* as.failNext(
          Fault.response({
            status: 200,
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ access_token: "leaky-token-in-malformed-body", token_type: "mac" })
          })
        )
        yield* as.failNext(Fault.oauthError("invalid_client"))
        yield* cache.refresh.pipe(Effect.either, Advance.untilDone, observed)
        yield* cache.refresh.pipe(Effect.either, Advance.untilDone, observed)

        // A wrong secret.
        const wrong = yield* provideClient(
          ClientCredentials.make({
            tokenUrl: as.tokenUrl,
            clientAuth: {
              _tag: "ClientSecretPost",
              clientId: "svc",
              clientSecret: Redacted.make("wrong-secret-value-5678")
            }
          })
        )
        const error = yield* observed(Effect.flip(wrong.fetch))
        expect((error.reason as any).code).toBe("invalid_client")
      }

      // Refresh token rotation, then reuse of a rotated token.
      const first = yield* as.issueRefreshToken({ clientId: "svc" })
      const store = yield* RefreshTokenStore.make(first)
      const refreshing = yield* RefreshToken.make({
        tokenUrl: as.tokenUrl,
        clientAuth: as.clientAuth({ clientId: "svc" })
      }).pipe(provideClient, Effect.provideService(RefreshTokenStore.RefreshTokenStore, store))
      yield* observed(refreshing.fetch)
      yield* observed(refreshing.fetch)
      yield* store.set(first)
      const rejected = yield* observed(Effect.flip(refreshing.fetch))
      expect(rejected.reason._tag).toBe("RefreshTokenRejected")

      // What must not appear anywhere.
      const issued = yield* as.issuedTokens
      const secrets = HashSet.fromIterable([
        clientSecret,
        "wrong-secret-value-5678",
        "leaky-token-in-malformed-body",
        Redacted.value(first),
        ...issued.map((t) => Redacted.value(t.value)),
        ...issued.flatMap((t) => Option.toArray(Option.map(t.refreshToken, Redacted.value)))
      ])
      // What exporters keep of a span: attributes, events, and the failure of a failed one (not success values).
      for (const span of spans) {
        const exit = span.exit as Exit.Exit<unknown, unknown> | undefined
        record(span.name, [...span.attributes], span.events)
        if (exit !== undefined && Exit.isFailure(exit)) record(Cause.pretty(exit.cause), Cause.squash(exit.cause))
      }
      const haystack = recorded
      expect(issued.length).toBeGreaterThan(4)
      expect(haystack.length).toBeGreaterThan(50)
      expect(haystack.some((line) => line.includes("TokenError"))).toBe(true)
      for (const secret of secrets) {
        const leak = haystack.find((line) => line.includes(secret))
        expect(
          leak === undefined
            ? undefined
            : `${secret.slice(0, 12)}... found in: ${
              leak.slice(Math.max(0, leak.indexOf(secret) - 600), leak.indexOf(secret) + 100)
            }`
        ).toBeUndefined()
      }
    }))

  it("TokenError never prints more than its safe fields", () => {
    const error = new TokenError.TokenError({
      operation: "client_credentials grant",
      reason: new TokenError.OAuthError({ code: "invalid_client", status: 401 })
    })
    expect(Inspectable.format(error)).not.toContain("secret")
  })
})
