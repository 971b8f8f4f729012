/**
 * Secrets never reach logs, spans or errors: the suite's flows run with a capturing logger (every level) and a
 * capturing tracer, and no client secret, access token or refresh token appears in anything they recorded, nor in
 * any error the flows produced.
 */
import {
  AccessToken,
  AuthHttpClient,
  ClientAuth,
  ClientCredentials,
  DPoP,
  RefreshToken,
  RefreshTokenStore,
  Revocation,
  TokenCache,
  TokenError,
  TokenSource
} from "@effect-token/core"
import { Advance, Fault, TestAuthorizationServer, TestResourceServer } from "@effect-token/testing"
import { HttpClient, HttpClientError, HttpClientResponse } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import {
  Cause,
  DateTime,
  Duration,
  Effect,
  Exit,
  Fiber,
  FiberRef,
  HashSet,
  Inspectable,
  Logger,
  LogLevel,
  Option,
  Redacted,
  Ref,
  Schedule,
  TestClock
} from "effect"
import * as util from "node:util"
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

describe("no token in what the authenticated client hands back", () => {
  const secret = "SECRET-ACCESS-TOKEN-never-printed"

  /** Every way a value gets printed: inspect, console's format, JSON, String, toJSON, Cause.pretty, Effect's loggers. */
  const printAll = (value: unknown): Array<string> => {
    const out: Array<string> = [
      util.inspect(value, { depth: 20, showHidden: false }),
      util.format("%o", value),
      util.format(value),
      String(value),
      Cause.pretty(Cause.fail(value)),
      Cause.pretty(Cause.die(value)),
      Inspectable.format(value)
    ]
    try {
      out.push(JSON.stringify(value) ?? "")
    } catch {
      // circular: covered by inspect
    }
    const toJSON = (value as { toJSON?: () => unknown } | undefined)?.toJSON
    if (typeof toJSON === "function") out.push(util.inspect(toJSON.call(value), { depth: 20 }))
    return out
  }

  const logged: Array<string> = []
  const everyLogger = Logger.make((options) => {
    logged.push(
      Logger.stringLogger.log(options),
      Logger.logfmtLogger.log(options),
      Logger.jsonLogger.log(options),
      util.inspect(Logger.structuredLogger.log(options), { depth: 20 })
    )
  })

  /** Prints inside the fiber, through the loggers, and outside any fiber (a macrotask). */
  const printEverywhere = (value: unknown) =>
    Effect.gen(function*() {
      const inside = printAll(value)
      yield* Effect.logError("value", value).pipe(
        Effect.zipRight(Effect.logError(Cause.fail(value))),
        Effect.provide(Logger.replace(Logger.defaultLogger, everyLogger))
      )
      const outside = yield* Effect.promise(() =>
        new Promise<Array<string>>((resolve) => setTimeout(() => resolve(printAll(value)), 0))
      )
      return [...inside, ...outside]
    })

  type Answer = Response | "transport-error" | "hang"
  const scripted = (answers: Array<Answer>) =>
    HttpClient.make((request) =>
      Effect.suspend(() => {
        const answer = answers.shift() ?? new Response("{}")
        if (answer === "hang") return Effect.never
        if (answer === "transport-error") {
          return Effect.fail(
            new HttpClientError.RequestError({
              request,
              reason: "Transport",
              description: "ECONNRESET",
              cause: Object.assign(new Error("socket hang up"), { code: "ECONNRESET" })
            })
          )
        }
        return Effect.succeed(HttpClientResponse.fromWeb(request, answer))
      })
    )

  const tokens = Effect.flatMap(Ref.make(0), (n) =>
    TokenCache.make(TokenSource.make({
      key: "leak-test",
      fetch: Effect.gen(function*() {
        const i = yield* Ref.updateAndGet(n, (k) => k + 1)
        const now = yield* DateTime.now
        return AccessToken.make({
          value: Redacted.make(`${secret}-${i}`),
          issuedAt: now,
          expiresAt: Option.some(DateTime.addDuration(now, Duration.minutes(10)))
        })
      })
    })))

  it.scoped("transport failure, timeout, caller's filterStatusOk, 2xx response, 401 rejection, last 503", () =>
    Effect.gen(function*() {
      const cache = yield* tokens
      const client = (answers: Array<Answer>, options: AuthHttpClient.Options = {}) =>
        AuthHttpClient.authenticate(scripted(answers), {
          baseUrl: "https://api.test",
          tokens: cache,
          transientRetry: false,
          ...options
        })
      const values: Array<unknown> = []
      // A transport failure of the API call (platform's RequestError carries the request it was sending).
      values.push(yield* Effect.flip(client(["transport-error"]).get("/a")))
      // The middleware's own timeout.
      const timing = yield* Effect.fork(Effect.flip(client(["hang"], { timeout: "1 second" }).get("/b")))
      yield* TestClock.adjust("1 second")
      values.push(yield* Fiber.join(timing))
      // The caller's own filterStatusOk over the authenticated client.
      values.push(
        yield* Effect.flip(HttpClient.filterStatusOk(client([new Response("nope", { status: 404 })])).get("/c"))
      )
      // A 2xx response, and the request it says it answered.
      const ok = yield* client([new Response("{\"ok\":true}")]).get("/d")
      values.push(ok, ok.request)
      // A 401 twice: TokenRejected.
      values.push(
        yield* Effect.flip(client([new Response(null, { status: 401 }), new Response(null, { status: 401 })]).get("/e"))
      )
      // The last transient answer, handed back when retries end.
      values.push(yield* client([new Response("busy", { status: 503 })]).get("/f"))
      // Failures as causes and exits, as a supervisor would print them.
      values.push(yield* Effect.exit(client(["transport-error"]).get("/g")))

      // A body that does not decode: the read's own ResponseError.
      values.push(yield* Effect.flip(Effect.flatMap(client([new Response("not json")]).get("/h"), (r) => r.json)))

      expect(values).toHaveLength(9)
      const printed: Array<string> = []
      for (const value of values) printed.push(...(yield* printEverywhere(value)))
      printed.push(...logged)
      const leaks = printed.filter((text) => text.includes(secret))
      expect(leaks).toEqual([])
      // The tokens were sent, and the printing did print the requests (URL, method): the check is not vacuous.
      expect(printed.some((text) => text.includes("https://api.test/a"))).toBe(true)
    }))
})

describe("TokenRejected never prints what the API sent back verbatim", () => {
  const printAll = (value: unknown): Array<string> => {
    const out = [
      util.inspect(value, { depth: 20 }),
      util.format(value),
      String(value),
      Cause.pretty(Cause.fail(value)),
      Cause.pretty(Cause.die(value)),
      Inspectable.format(value),
      (value as { message?: string }).message ?? ""
    ]
    try {
      out.push(JSON.stringify(value) ?? "")
    } catch {
      // circular: covered by inspect
    }
    return out
  }
  const logged: Array<string> = []
  const everyLogger = Logger.make((options) => {
    logged.push(
      Logger.stringLogger.log(options),
      Logger.logfmtLogger.log(options),
      Logger.jsonLogger.log(options),
      util.inspect(Logger.structuredLogger.log(options), { depth: 20 })
    )
  })

  it.scoped("an API echoing the Authorization header (bearer) and the DPoP proof: no token, no proof, capped", () =>
    Effect.gen(function*() {
      const key = yield* DPoP.generate()
      const sent: Array<Readonly<Record<string, string>>> = []
      // The API puts what it got into WWW-Authenticate (raw, form- and URL-encoded, JSON-escaped), with an ANSI
      // escape and a long tail, and into the body.
      const echo = HttpClient.make((request) =>
        Effect.sync(() => {
          sent.push(request.headers)
          const got = `${request.headers["authorization"]} ${request.headers["dpop"] ?? ""}`
          const description = `got ${got} \x1b[31m ${encodeURIComponent(got)} ${"x".repeat(2_000)}`
          return HttpClientResponse.fromWeb(
            request,
            new Response(JSON.stringify({ error: "invalid_token", got }), {
              status: 401,
              headers: {
                "www-authenticate": `${request.headers["dpop"] === undefined ? "Bearer" : "DPoP"} ` +
                  `error="invalid_token", error_description="${description.replace(/"/g, "")}", ` +
                  `echo=${request.headers["authorization"]!.split(" ")[1]}`
              }
            })
          )
        })
      )
      const rejections: Array<AuthHttpClient.TokenRejected> = []
      for (const type of ["Bearer", "DPoP"] as const) {
        let n = 0
        const tokens = yield* TokenCache.make(TokenSource.make({
          key: `echo-${type}`,
          fetch: Effect.map(DateTime.now, (now) =>
            AccessToken.make({
              value: Redacted.make(`SECRET-${type}-token-${++n}`),
              type,
              issuedAt: now,
              expiresAt: Option.some(DateTime.addDuration(now, Duration.minutes(10)))
            }))
        }))
        const api = AuthHttpClient.authenticate(echo, {
          baseUrl: "https://api.test",
          tokens,
          ...(type === "DPoP" ? { dpop: key } : {})
        })
        const error = yield* Effect.flip(api.get("/orders"))
        expect(error._tag).toBe("TokenRejected")
        rejections.push(error as AuthHttpClient.TokenRejected)
      }
      const secrets = sent.flatMap((headers) => [
        headers["authorization"]!.split(" ")[1]!,
        ...(headers["dpop"] === undefined ? [] : [headers["dpop"]])
      ])
      expect(secrets).toHaveLength(6)
      const printed: Array<string> = []
      for (const error of rejections) {
        printed.push(...printAll(error), ...printAll(error.response), ...printAll(error.challenges))
        printed.push(yield* error.response.text, JSON.stringify(error.response.headers))
        yield* Effect.logError("rejected", error).pipe(
          Effect.zipRight(Effect.logError(Cause.fail(error))),
          Effect.provide(Logger.replace(Logger.defaultLogger, everyLogger))
        )
        printed.push(
          ...(yield* Effect.promise(() =>
            new Promise<Array<string>>((resolve) => setTimeout(() => resolve(printAll(error)), 0))
          ))
        )
        // What the server meant is still there: its error code, and its description cleaned and capped.
        expect(error.error).toBe("invalid_token")
        expect(error.errorDescription).toMatch(/^got (Bearer|DPoP) <redacted>/)
        expect(error.errorDescription!.length).toBeLessThanOrEqual(257)
        expect(error.message).not.toContain("\x1b")
      }
      printed.push(...logged)
      for (const secret of secrets) {
        expect(printed.filter((text) => text.includes(secret)), secret.slice(0, 20)).toEqual([])
      }
    }))
})

describe("no secret in what this issue's fault paths produce", () => {
  const accessToken = "SECRET-AT-from-the-refresh-grant"
  const refreshToken = "SECRET-RT-spent-once"
  const clientSecret = "SECRET-CLIENT-never-shown"

  const printAll = (value: unknown): Array<string> => {
    const out = [util.inspect(value, { depth: 20 }), util.format(value), String(value), Cause.pretty(Cause.fail(value))]
    try {
      out.push(JSON.stringify(value) ?? "")
    } catch {
      // circular
    }
    return out
  }

  it.scoped("refresh timeout and reset (sent), throttled and held failures, failed revocation, bounded 401", () =>
    Effect.gen(function*() {
      type Step = "hang" | "reset" | Response
      const steps: Array<Step> = []
      const client = HttpClient.make((request) =>
        Effect.suspend(() => {
          const step = steps.shift() ?? new Response("{}")
          if (step === "hang") return Effect.never
          if (step === "reset") {
            return Effect.fail(
              new HttpClientError.RequestError({
                request,
                reason: "Transport",
                cause: Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" })
              })
            )
          }
          return Effect.succeed(HttpClientResponse.fromWeb(request, step))
        })
      )
      const store = yield* RefreshTokenStore.make(Redacted.make(refreshToken))
      const clientAuth = ClientAuth.clientSecretPost({ clientId: "app", clientSecret: Redacted.make(clientSecret) })
      const source = yield* RefreshToken.make({
        tokenUrl: "https://as.test/token",
        clientAuth,
        attemptTimeout: "1 second",
        answerTimeout: "2 seconds"
      })
        .pipe(
          Effect.provideService(RefreshTokenStore.RefreshTokenStore, store),
          Effect.provideService(HttpClient.HttpClient, client)
        )
      const cache = yield* TokenCache.make(source)
      const values: Array<unknown> = []
      const json = (body: unknown, status: number, headers: Record<string, string> = {}) =>
        new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } })

      steps.push("hang")
      const timing = yield* Effect.fork(Effect.flip(cache.get))
      yield* TestClock.adjust("1 second")
      values.push(yield* Fiber.join(timing))
      // The hung request is read for its answerTimeout: until then no other refresh spends the token.
      yield* TestClock.adjust("1 second")
      steps.push("reset")
      values.push(yield* Effect.flip(cache.get))
      const throttled = yield* TokenCache.make(source, { retry: Schedule.stop, name: "throttled" })
      steps.push(json({ error: "too_many_requests" }, 429, { "retry-after": "5" }))
      values.push(yield* Effect.flip(throttled.get), yield* Effect.flip(throttled.get))
      yield* TestClock.adjust("5 seconds")
      const held = yield* TokenCache.make(source, { name: "held" })
      steps.push(json({ error: "invalid_client" }, 401))
      values.push(yield* Effect.flip(held.get), yield* Effect.flip(held.get))
      yield* TestClock.adjust("5 seconds")

      steps.push(
        json(
          { access_token: accessToken, token_type: "Bearer", expires_in: 3600, refresh_token: "SECRET-RT-next" },
          200
        )
      )
      const token = yield* cache.get
      steps.push(json({ error: "invalid_client" }, 401))
      const revocation = Revocation.forgetting(
        Revocation.makeWith(client, { revocationUrl: "https://as.test/revoke", clientAuth }),
        cache
      )
      values.push(yield* Effect.flip(revocation.revokeAccessToken(token)))

      const endless = () =>
        new Response(
          new ReadableStream<Uint8Array>({
            pull: (controller) => controller.enqueue(new TextEncoder().encode(`${accessToken} `.repeat(1000)))
          }),
          { status: 401 }
        )
      const api = AuthHttpClient.authenticate(
        HttpClient.make((request) => Effect.succeed(HttpClientResponse.fromWeb(request, endless()))),
        { baseUrl: "https://api.test", tokens: cache }
      )
      // The first token, then the fresh one after the first 401.
      steps.push(
        json({ access_token: accessToken + "-2", token_type: "Bearer", expires_in: 3600 }, 200),
        json({ access_token: accessToken + "-3", token_type: "Bearer", expires_in: 3600 }, 200)
      )
      const rejected = yield* Effect.flip(api.get("/x"))
      values.push(rejected)

      expect(values.map((v) => (v as { reason?: { _tag: string } }).reason?._tag ?? (v as { _tag: string })._tag))
        .toEqual([
          "Timeout",
          "Transport",
          "OAuthError",
          "OAuthError",
          "OAuthError",
          "OAuthError",
          "OAuthError",
          "RejectedAfterRetry"
        ])
      const printed: Array<string> = []
      for (const value of values) {
        printed.push(...printAll(value))
        printed.push(
          ...(yield* Effect.promise(() =>
            new Promise<Array<string>>((resolve) => setTimeout(() => resolve(printAll(value)), 0))
          ))
        )
      }
      for (const secret of [refreshToken, "SECRET-RT-next", clientSecret, accessToken]) {
        expect(printed.filter((text) => text.includes(secret)), secret).toEqual([])
      }
    }))
})
