import { AccessToken, AuthHttpClient, TokenCache, TokenError, TokenManager, TokenSource } from "@effect-token/core"
import { TestTokenSource } from "@effect-token/testing"
import { HttpBody, HttpClient, HttpClientError, HttpClientRequest, HttpClientResponse } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import {
  Array as Arr,
  Cause,
  ConfigProvider,
  DateTime,
  Duration,
  Effect,
  Exit,
  Fiber,
  Inspectable,
  Layer,
  Option,
  Redacted,
  Ref,
  Stream,
  TestClock
} from "effect"
import * as util from "node:util"

interface Seen {
  readonly method: string
  readonly url: string
  readonly authorization: string | undefined
}

type Answer = Response | "transport-error" | "hang"

/**
 * A scripted API: each request takes the next answer (then 200). It records what it saw, and can run a side
 * effect per request (e.g. invalidate from the outside).
 */
const fakeApi = (answers: ReadonlyArray<Answer | ((request: HttpClientRequest.HttpClientRequest) => Answer)>) =>
  Effect.gen(function*() {
    const script = yield* Ref.make(answers)
    const seen = yield* Ref.make<ReadonlyArray<Seen>>([])
    const client = HttpClient.make((request) =>
      Effect.gen(function*() {
        yield* Ref.update(
          seen,
          Arr.append({ method: request.method, url: request.url, authorization: request.headers["authorization"] })
        )
        const next = yield* Ref.modify(script, (s) =>
          s.length === 0 ? [undefined, s] as const : [s[0], s.slice(1)] as const)
        const answer = typeof next === "function" ? next(request) : next ?? new Response("{\"ok\":true}")
        if (answer === "hang") {
          return yield* Effect.never
        }
        if (answer === "transport-error") {
          return yield* new HttpClientError.RequestError({ request, reason: "Transport", description: "ECONNRESET" })
        }
        return HttpClientResponse.fromWeb(request, answer)
      })
    )
    return { client, seen: Ref.get(seen) }
  })

const status = (code: number, headers: Record<string, string> = {}) => new Response(null, { status: code, headers })

/** A cache over the published `TestTokenSource`: tokens `token-1`, `token-2`, ... living 10 minutes, or failing. */
const countingCache = (options: { readonly fail?: TokenError.TokenError } = {}) =>
  Effect.gen(function*() {
    const test = yield* TestTokenSource.make({
      key: "api",
      lifetime: "10 minutes",
      script: options.fail === undefined ? [] : Arr.replicate(TestTokenSource.fail(options.fail), 100)
    })
    const cache = yield* TokenCache.make(test.source)
    return { cache, fetches: test.fetches }
  })

const valueOfState = (state: TokenCache.State) =>
  state._tag === "Ready" || state._tag === "Refreshing" ? Redacted.value(state.token.value) : state._tag

const get = (client: HttpClient.HttpClient.With<any, never>, url = "https://api.test/invoices") => client.get(url)

/** The client under test: bound to the fake API's origin. */
const auth = <E>(
  client: HttpClient.HttpClient.With<E>,
  cache: TokenCache.TokenCache,
  options: AuthHttpClient.Options = {}
) => AuthHttpClient.authenticate(client, { baseUrl: "https://api.test", tokens: cache, ...options })

describe("AuthHttpClient", () => {
  it.scoped("attaches the cached token as a Bearer header", () =>
    Effect.gen(function*() {
      const api = yield* fakeApi([])
      const { cache, fetches } = yield* countingCache()
      const client = auth(api.client, cache)
      yield* get(client)
      yield* get(client)
      expect((yield* api.seen).map((s) => s.authorization)).toEqual(["Bearer token-1", "Bearer token-1"])
      expect(yield* fetches).toBe(1)
    }))

  it.scoped("leaves a request with its own Authorization header alone", () =>
    Effect.gen(function*() {
      const api = yield* fakeApi([status(401)])
      const { cache, fetches } = yield* countingCache()
      const client = auth(api.client, cache)
      const response = yield* client.execute(
        HttpClientRequest.get("https://api.test/x").pipe(HttpClientRequest.basicAuth("me", "pw"))
      )
      expect(response.status).toBe(401)
      expect(yield* fetches).toBe(0)
      expect((yield* api.seen)[0]!.authorization).toMatch(/^Basic /)
    }))

  it.scoped("a 401 invalidates exactly the sent token and retries once with a fresh one", () =>
    Effect.gen(function*() {
      const api = yield* fakeApi([status(401, { "www-authenticate": "Bearer error=\"invalid_token\"" })])
      const { cache, fetches } = yield* countingCache()
      const client = auth(api.client, cache)
      const response = yield* get(client)
      expect(response.status).toBe(200)
      expect((yield* api.seen).map((s) => s.authorization)).toEqual(["Bearer token-1", "Bearer token-2"])
      expect(yield* fetches).toBe(2)
    }))

  it.scoped("a second 401 surfaces as TokenRejected with the parsed challenge", () =>
    Effect.gen(function*() {
      const challenge = "Bearer realm=\"api\", error=\"invalid_token\", error_description=\"The token was revoked\""
      const api = yield* fakeApi([
        status(401, { "www-authenticate": challenge }),
        status(401, { "www-authenticate": challenge })
      ])
      const { cache } = yield* countingCache()
      const error = yield* Effect.flip(get(auth(api.client, cache)))
      expect(error._tag).toBe("TokenRejected")
      if (error._tag !== "TokenRejected") return
      expect(error.status).toBe(401)
      expect(error.reason._tag).toBe("RejectedAfterRetry")
      expect(error.retried).toBe(true)
      expect(error.message).toBe(
        "GET https://api.test/invoices was rejected with HTTP 401: invalid_token - The token was revoked " +
          "(a fresh token was rejected too)"
      )
      expect(error.error).toBe("invalid_token")
      expect(error.errorDescription).toBe("The token was revoked")
      expect(error.challenges[0]!.params.realm).toBe("api")
      expect(error.request.headers["authorization"]).toBeUndefined()
      expect(error.message).not.toContain("token-")
      expect(yield* api.seen).toHaveLength(2)
    }))

  it.scoped("one endpoint that rejects every token cannot starve the others: one token request per rejectionHold", () =>
    Effect.gen(function*() {
      // Two endpoints of one API over one cache: /bad rejects every token, /good accepts any.
      const api = yield* fakeApi(
        Arr.replicate((request) => request.url.endsWith("/bad") ? status(401) : new Response("{}"), 1_000)
      )
      const { cache, fetches } = yield* countingCache()
      const client = auth(api.client, cache)
      // The first call: the rejected token is thrown away, and the fresh one is rejected too.
      const first = yield* Effect.flip(get(client, "https://api.test/bad"))
      expect(first._tag === "TokenRejected" && first.reason._tag).toBe("RejectedAfterRetry")
      expect(yield* fetches).toBe(2)
      // 100 calls to /bad over 20 s: the fresh token is kept (no invalidation, no retry); /good is served with it.
      for (let i = 0; i < 100; i++) {
        const error = yield* Effect.flip(get(client, "https://api.test/bad"))
        expect(error._tag === "TokenRejected" && error.reason._tag).toBe("Held")
        expect((yield* get(client, "https://api.test/good")).status).toBe(200)
        yield* TestClock.adjust("200 millis")
      }
      expect(yield* fetches).toBe(2)
      // Past the hold (30 s by default) a rejection throws the token away again, once.
      yield* TestClock.adjust("10 seconds")
      yield* Effect.flip(get(client, "https://api.test/bad"))
      yield* Effect.flip(get(client, "https://api.test/bad"))
      expect(yield* fetches).toBe(3)
      const seen = (yield* api.seen).filter((s) => s.url.endsWith("/bad")).map((s) => s.authorization)
      expect(seen.slice(0, 3)).toEqual(["Bearer token-1", "Bearer token-2", "Bearer token-2"])
      expect(seen.slice(-3)).toEqual(["Bearer token-2", "Bearer token-3", "Bearer token-3"])

      // A token revoked right after it replaced a revoked one (its retry succeeded) is replaced as usual.
      const revoked = yield* fakeApi([status(401), new Response("{}"), status(401), new Response("{}")])
      const twice = yield* countingCache()
      const recovering = auth(revoked.client, twice.cache)
      expect((yield* get(recovering)).status).toBe(200)
      yield* TestClock.adjust("1 second")
      expect((yield* get(recovering)).status).toBe(200)
      expect((yield* revoked.seen).map((s) => s.authorization)).toEqual([
        "Bearer token-1",
        "Bearer token-2",
        "Bearer token-2",
        "Bearer token-3"
      ])

      // rejectionHold: 0 brings back one token request per call.
      const off = yield* countingCache()
      const unheld = auth(api.client, off.cache, { rejectionHold: 0 })
      for (let i = 0; i < 5; i++) yield* Effect.flip(get(unheld, "https://api.test/bad"))
      expect(yield* off.fetches).toBe(6)
    }))

  it.scoped("a raw body that is a stream is not replayed either", () =>
    Effect.gen(function*() {
      const api = yield* fakeApi([status(401)])
      const { cache } = yield* countingCache()
      const raw = HttpClientRequest.post("https://api.test/upload").pipe(
        HttpClientRequest.setBody(HttpBody.raw(new ReadableStream()))
      )
      const error = yield* Effect.flip(auth(api.client, cache).execute(raw))
      expect(error._tag === "TokenRejected" && error.reason._tag).toBe("NotReplayable")
      expect(yield* api.seen).toHaveLength(1)
    }))

  it.scoped("403 is returned as it is, never retried", () =>
    Effect.gen(function*() {
      const api = yield* fakeApi([status(403)])
      const { cache, fetches } = yield* countingCache()
      const response = yield* get(auth(api.client, cache))
      expect(response.status).toBe(403)
      expect(yield* api.seen).toHaveLength(1)
      expect(yield* fetches).toBe(1)
    }))

  it.scoped("transient statuses are retried with jittered exponential backoff", () =>
    Effect.gen(function*() {
      const api = yield* fakeApi([status(503), status(502)])
      const { cache } = yield* countingCache()
      const fiber = yield* Effect.fork(get(auth(api.client, cache)))
      yield* TestClock.adjust("79 millis")
      expect(yield* api.seen).toHaveLength(1)
      yield* TestClock.adjust("41 millis")
      expect(yield* api.seen).toHaveLength(2)
      yield* TestClock.adjust("240 millis")
      expect((yield* Fiber.join(fiber)).status).toBe(200)
      expect(yield* api.seen).toHaveLength(3)
    }))

  it.scoped("a 503 with Retry-After: 7 waits 7 s of TestClock, not the backoff", () =>
    Effect.gen(function*() {
      const api = yield* fakeApi([status(503, { "retry-after": "7" })])
      const { cache } = yield* countingCache()
      const fiber = yield* Effect.fork(get(auth(api.client, cache)))
      yield* TestClock.adjust(Duration.millis(6_999))
      expect(yield* api.seen).toHaveLength(1)
      yield* TestClock.adjust(Duration.millis(1))
      expect((yield* Fiber.join(fiber)).status).toBe(200)
      expect(yield* api.seen).toHaveLength(2)
    }))

  it.scoped("a 429 with an HTTP-date Retry-After waits until that date", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(Date.UTC(2026, 0, 1, 12, 0, 0))
      const api = yield* fakeApi([status(429, { "retry-after": "Thu, 01 Jan 2026 12:00:30 GMT" })])
      const { cache } = yield* countingCache()
      const fiber = yield* Effect.fork(get(auth(api.client, cache)))
      yield* TestClock.adjust("29 seconds")
      expect(yield* api.seen).toHaveLength(1)
      yield* TestClock.adjust("1 second")
      expect((yield* Fiber.join(fiber)).status).toBe(200)
    }))

  it.scoped("a Retry-After beyond the cap is not waited for: the response comes back", () =>
    Effect.gen(function*() {
      const api = yield* fakeApi([status(503, { "retry-after": "3600" })])
      const { cache } = yield* countingCache()
      const response = yield* get(auth(api.client, cache))
      expect(response.status).toBe(503)
      expect(yield* api.seen).toHaveLength(1)
    }))

  it.scoped("when retries are exhausted the last transient response is returned", () =>
    Effect.gen(function*() {
      const api = yield* fakeApi(Arr.replicate(status(500), 10))
      const { cache } = yield* countingCache()
      const fiber = yield* Effect.fork(
        get(auth(api.client, cache, { transientRetry: { maxRetries: 2 } }))
      )
      yield* TestClock.adjust("1 minute")
      expect((yield* Fiber.join(fiber)).status).toBe(500)
      expect(yield* api.seen).toHaveLength(3)
    }))

  it.scoped("transport errors are retried, and the token is read again on every attempt", () =>
    Effect.gen(function*() {
      const { cache } = yield* countingCache()
      const api = yield* fakeApi([
        "transport-error",
        (request) => {
          // Between attempts the token is replaced (e.g. another request saw a 401 for it).
          Effect.runSync(
            cache.invalidate(
              AccessToken.make({ value: Redacted.make("token-1"), issuedAt: DateTime.unsafeMake(0) })
            )
          )
          void request
          return status(503)
        }
      ])
      const fiber = yield* Effect.fork(get(auth(api.client, cache)))
      yield* TestClock.adjust("1 minute")
      expect((yield* Fiber.join(fiber)).status).toBe(200)
      expect((yield* api.seen).map((s) => s.authorization)).toEqual([
        "Bearer token-1",
        "Bearer token-1",
        "Bearer token-2"
      ])
    }))

  describe("defaults that bound every call", () => {
    it.scoped("an API that never answers: each attempt fails after 30 s by default; longer or off when set", () =>
      Effect.gen(function*() {
        const api = yield* fakeApi(["hang", "hang", "hang"])
        const { cache } = yield* countingCache()
        const bounded = yield* Effect.fork(Effect.flip(get(auth(api.client, cache, { transientRetry: false }))))
        yield* TestClock.adjust(Duration.millis(29_999))
        expect(bounded.unsafePoll()).toBeNull()
        yield* TestClock.adjust(Duration.millis(1))
        const error = yield* Fiber.join(bounded)
        expect(error._tag === "RequestError" && error.reason).toBe("Transport")
        expect(error.message).toContain("30s")

        const longer = yield* Effect.fork(get(auth(api.client, cache, { transientRetry: false, timeout: "2 minutes" })))
        yield* TestClock.adjust("1 minute")
        expect(longer.unsafePoll()).toBeNull()
        yield* TestClock.adjust("1 minute")
        expect(Exit.isFailure(yield* Fiber.await(longer))).toBe(true)

        const unbounded = yield* Effect.fork(
          get(auth(api.client, cache, { transientRetry: false, timeout: Duration.infinity }))
        )
        yield* TestClock.adjust("1 hour")
        expect(unbounded.unsafePoll()).toBeNull()
        yield* Fiber.interrupt(unbounded)
      }))

    it.effect("the one-layer configuration reads both bounds: REQUEST_TIMEOUT and ACQUIRE_TIMEOUT", () =>
      Effect.gen(function*() {
        const env = {
          API_URL: "https://api.example",
          TOKEN_URL: "https://as.example/token",
          CLIENT_ID: "svc",
          CLIENT_SECRET: "s3cr3t"
        }
        const read = (more: Record<string, string>) =>
          Effect.withConfigProvider(
            AuthHttpClient.config,
            ConfigProvider.fromMap(new Map(Object.entries({ ...env, ...more })))
          )
        const defaults = yield* read({})
        expect([defaults.timeout, defaults.acquireTimeout]).toEqual([undefined, undefined])
        const set = yield* read({ REQUEST_TIMEOUT: "5 seconds", ACQUIRE_TIMEOUT: "2 seconds" })
        expect(Duration.toMillis(set.timeout!)).toBe(5_000)
        expect(Duration.toMillis(set.acquireTimeout!)).toBe(2_000)
      }))

    it.scoped("a token source that never answers: callers fail after 30 s (acquireTimeout) by default", () =>
      Effect.gen(function*() {
        const test = yield* TestTokenSource.make({ delay: "1 hour" })
        const cache = yield* TokenCache.make(test.source)
        const waiting = yield* Effect.fork(Effect.flip(cache.get))
        yield* TestClock.adjust(Duration.millis(29_999))
        expect(waiting.unsafePoll()).toBeNull()
        yield* TestClock.adjust(Duration.millis(1))
        const error = yield* Fiber.join(waiting)
        expect(error.reason).toMatchObject({ _tag: "Timeout", bound: "acquire" })

        const patient = yield* TokenCache.make(test.source, { acquireTimeout: Duration.infinity })
        const still = yield* Effect.fork(patient.get)
        yield* TestClock.adjust("30 minutes")
        expect(still.unsafePoll()).toBeNull()
        yield* Fiber.interrupt(still)
      }))
  })

  it.scoped("a per-attempt timeout is a transient fault", () =>
    Effect.gen(function*() {
      const api = yield* fakeApi(["hang"])
      const { cache } = yield* countingCache()
      const fiber = yield* Effect.fork(get(auth(api.client, cache, { timeout: "5 seconds" })))
      yield* TestClock.adjust("5 seconds")
      yield* TestClock.adjust("1 second")
      expect((yield* Fiber.join(fiber)).status).toBe(200)
      expect(yield* api.seen).toHaveLength(2)
    }))

  it.scoped("POST is not retried on transient faults unless enabled, but is replayed after a 401", () =>
    Effect.gen(function*() {
      const { cache } = yield* countingCache()
      const post = HttpClientRequest.post("https://api.test/orders").pipe(HttpClientRequest.bodyText("{}"))

      const once = yield* fakeApi([status(503)])
      expect((yield* auth(once.client, cache).execute(post)).status).toBe(503)
      expect(yield* once.seen).toHaveLength(1)

      const enabled = yield* fakeApi([status(503)])
      const fiber = yield* Effect.fork(
        auth(enabled.client, cache, { retryNonIdempotent: true }).execute(post)
      )
      yield* TestClock.adjust("1 second")
      expect((yield* Fiber.join(fiber)).status).toBe(200)
      expect(yield* enabled.seen).toHaveLength(2)

      const unauthorized = yield* fakeApi([status(401)])
      expect((yield* auth(unauthorized.client, cache).execute(post)).status).toBe(200)
      expect(yield* unauthorized.seen).toHaveLength(2)
    }))

  it.scoped("a stream body is never replayed: the 401 surfaces, a 503 comes back", () =>
    Effect.gen(function*() {
      const { cache, fetches } = yield* countingCache()
      const streamed = HttpClientRequest.put("https://api.test/upload").pipe(
        HttpClientRequest.bodyStream(Stream.make(new Uint8Array([1, 2, 3])))
      )
      const api = yield* fakeApi([status(401), status(503)])
      const client = auth(api.client, cache)
      const error = yield* Effect.flip(client.execute(streamed))
      expect(error._tag === "TokenRejected" && error.reason._tag).toBe("NotReplayable")
      expect(error._tag === "TokenRejected" && error.retried).toBe(false)
      // The rejected token is still invalidated, so the next request gets a fresh one.
      expect(yield* fetches).toBe(1)
      expect((yield* client.execute(streamed)).status).toBe(503)
      expect(yield* fetches).toBe(2)
      expect(yield* api.seen).toHaveLength(2)
    }))

  it.scoped("fails closed: without a token nothing is sent", () =>
    Effect.gen(function*() {
      const api = yield* fakeApi([])
      const { cache } = yield* countingCache({
        fail: new TokenError.TokenError({
          operation: "client_credentials grant",
          reason: new TokenError.OAuthError({ code: "invalid_client", status: 401 })
        })
      })
      const error = yield* Effect.flip(get(auth(api.client, cache)))
      expect(error._tag).toBe("TokenError")
      expect(yield* api.seen).toHaveLength(0)
    }))

  describe("redirects", () => {
    const redirect = (location: string, code = 302) => status(code, { location })

    it.scoped("the token follows same-origin redirects only", () =>
      Effect.gen(function*() {
        const api = yield* fakeApi([
          redirect("/moved"),
          redirect("https://elsewhere.test/steal", 307)
        ])
        const { cache } = yield* countingCache()
        const client = auth(api.client, cache, { followRedirects: 5 })
        const response = yield* get(client, "https://api.test/start")
        expect(response.status).toBe(200)
        expect(yield* api.seen).toEqual([
          { method: "GET", url: "https://api.test/start", authorization: "Bearer token-1" },
          { method: "GET", url: "https://api.test/moved", authorization: "Bearer token-1" },
          { method: "GET", url: "https://elsewhere.test/steal", authorization: undefined }
        ])
      }))

    it.scoped("a 401 from another origin is not about the token: no invalidation, no retry", () =>
      Effect.gen(function*() {
        const api = yield* fakeApi([redirect("https://elsewhere.test/login"), status(401)])
        const { cache, fetches } = yield* countingCache()
        const response = yield* get(
          auth(api.client, cache, { followRedirects: 1 }),
          "https://api.test/a"
        )
        expect(response.status).toBe(401)
        expect(yield* fetches).toBe(1)
        expect(yield* api.seen).toHaveLength(2)
        expect(valueOfState(yield* cache.state)).toBe("token-1")
      }))

    it.scoped("platform's followRedirects keeps the header, which is why the option exists", () =>
      Effect.gen(function*() {
        const api = yield* fakeApi([redirect("https://elsewhere.test/steal")])
        const { cache } = yield* countingCache()
        const leaky = auth(HttpClient.followRedirects(api.client), cache)
        yield* get(leaky, "https://api.test/start")
        expect((yield* api.seen)[1]!.authorization).toBe("Bearer token-1")
      }))

    it.scoped("without followRedirects a 3xx is returned as it is", () =>
      Effect.gen(function*() {
        const api = yield* fakeApi([redirect("/moved")])
        const { cache } = yield* countingCache()
        expect((yield* get(auth(api.client, cache))).status).toBe(302)
      }))
  })

  it.scoped("through its layer, token failures keep their types: catchTag works on TokenError", () =>
    Effect.gen(function*() {
      const api = yield* fakeApi([])
      const { cache } = yield* countingCache({
        fail: new TokenError.TokenError({
          operation: "client_credentials grant",
          reason: new TokenError.OAuthError({ code: "invalid_client", status: 401 })
        })
      })
      const code = yield* AuthHttpClient.AuthHttpClient.pipe(
        Effect.flatMap((client) => client.get("/orders")),
        Effect.as("sent"),
        Effect.catchTag("TokenError", (error) => Effect.succeed(TokenError.oauthCode(error))),
        Effect.provide(
          AuthHttpClient.layer({ baseUrl: "https://api.test", transientRetry: false }).pipe(
            Layer.provide(Layer.succeed(HttpClient.HttpClient, api.client)),
            Layer.provide(Layer.succeed(TokenCache.TokenCache, cache))
          )
        )
      )
      expect(code).toBe("invalid_client")
      expect(yield* api.seen).toEqual([])
    }))

  it("a TokenRejected serializes without the token, even outside any fiber", async () => {
    const exit = await Effect.runPromiseExit(
      Effect.gen(function*() {
        const api = yield* fakeApi([status(401), status(401)])
        const { cache } = yield* countingCache()
        return yield* auth(api.client, cache).get("https://api.test/x?api_key=k")
      }).pipe(Effect.scoped)
    )
    expect(Exit.isFailure(exit)).toBe(true)
    const error = Exit.isFailure(exit) ? Cause.squash(exit.cause) : undefined
    const printed = [
      JSON.stringify(error),
      String(error),
      Inspectable.format(error),
      util.inspect(error, { depth: 10 })
    ]
      .join("\n")
    expect(printed).toContain("401")
    expect(printed).not.toContain("token-")
    // The error prints the URL without its query, which may carry an API key.
    expect(printed).not.toContain("api_key")
    expect(JSON.stringify((error as any).response)).not.toContain("token-")
  })

  describe("bound to its API", () => {
    it.scoped("a request to another origin is sent untouched and fetches no token", () =>
      Effect.gen(function*() {
        const api = yield* fakeApi([])
        const { cache, fetches } = yield* countingCache()
        const client = auth(api.client, cache)
        yield* client.get("https://payments.example/charge")
        yield* client.get("https://api.test.evil.example/x")
        yield* client.get("https://api.test@evil.example/x")
        yield* client.get("http://api.test/x")
        expect((yield* api.seen).map((seen) => seen.authorization)).toEqual([
          undefined,
          undefined,
          undefined,
          undefined
        ])
        expect(yield* fetches).toBe(0)
        yield* client.get("https://api.test/x")
        expect((yield* api.seen)[4]?.authorization).toBe("Bearer token-1")
      }))

    it.scoped("a 401 from another origin is an ordinary response", () =>
      Effect.gen(function*() {
        const api = yield* fakeApi([status(401)])
        const { cache, fetches } = yield* countingCache()
        expect((yield* auth(api.client, cache).get("https://webhooks.example/x")).status).toBe(401)
        expect(yield* fetches).toBe(0)
      }))

    it.scoped("relative URLs resolve against the base URL; a list of origins binds each of them", () =>
      Effect.gen(function*() {
        const api = yield* fakeApi([])
        const { cache } = yield* countingCache()
        yield* AuthHttpClient.authenticate(api.client, { baseUrl: "https://api.test/v2/", tokens: cache }).get("orders")
        yield* AuthHttpClient.authenticate(api.client, { baseUrl: "https://api.test/v2", tokens: cache }).get("/orders")
        const regions = AuthHttpClient.authenticate(api.client, {
          origins: ["https://eu.api.test", "https://us.api.test"],
          tokens: cache
        })
        yield* regions.get("https://eu.api.test/a")
        yield* regions.get("https://us.api.test/b")
        yield* regions.get("https://api.test/c")
        expect((yield* api.seen).map((seen) => [seen.url, seen.authorization])).toEqual([
          ["https://api.test/v2/orders", "Bearer token-1"],
          ["https://api.test/v2/orders", "Bearer token-1"],
          ["https://eu.api.test/a", "Bearer token-1"],
          ["https://us.api.test/b", "Bearer token-1"],
          ["https://api.test/c", undefined]
        ])
      }))

    it.scoped("an empty path, a query or a fragment alone stay on the base URL (no trailing slash added)", () =>
      Effect.gen(function*() {
        const api = yield* fakeApi([])
        const { cache } = yield* countingCache()
        const client = AuthHttpClient.authenticate(api.client, { baseUrl: "https://api.test/v2", tokens: cache })
        yield* client.get("")
        yield* client.get("?page=2")
        expect((yield* api.seen).map((seen) => seen.url)).toEqual([
          "https://api.test/v2",
          "https://api.test/v2?page=2"
        ])
      }))

    it.scoped("an unusable binding fails every request with Misconfigured, sending nothing", () =>
      Effect.gen(function*() {
        const api = yield* fakeApi([])
        const { cache } = yield* countingCache()
        const error = yield* Effect.flip(
          AuthHttpClient.authenticate(api.client, { baseUrl: "not a url", tokens: cache }).get("/x")
        )
        expect(error._tag === "TokenError" && error.reason._tag).toBe("Misconfigured")
        expect(yield* api.seen).toEqual([])
      }))
  })

  describe("per-request token parameters", () => {
    it.scoped("a request may ask a TokenManager for another scope or audience; each shape has its own token", () =>
      Effect.gen(function*() {
        const api = yield* fakeApi([])
        const fetched: Array<TokenSource.TokenShape> = []
        const grant = (shape: TokenSource.TokenShape) =>
          Effect.succeed(TokenSource.make({
            key: JSON.stringify(shape),
            fetch: Effect.map(DateTime.now, (issuedAt) => {
              fetched.push(shape)
              return AccessToken.make({
                value: Redacted.make(`token-${shape.scope}-${shape.audience ?? "none"}`),
                issuedAt,
                expiresAt: Option.some(DateTime.addDuration(issuedAt, Duration.minutes(10)))
              })
            })
          }))
        const tokens = yield* TokenManager.fromShapes({ scope: "read" }, grant)
        const client = AuthHttpClient.authenticate(api.client, { baseUrl: "https://api.test", tokens })
        yield* client.get("/a")
        yield* client.pipe(AuthHttpClient.withTokenParams({ scope: "write" })).get("/b")
        yield* client.pipe(AuthHttpClient.withTokenParams({ audience: "reports" })).get("/c")
        yield* client.get("/d")
        expect((yield* api.seen).map((seen) => seen.authorization)).toEqual([
          "Bearer token-read-none",
          "Bearer token-write-none",
          "Bearer token-read-reports",
          "Bearer token-read-none"
        ])
        expect(fetched).toEqual([{ scope: "read" }, { scope: "write" }, { scope: "read", audience: "reports" }])
      }))

    it.scoped("a client over one TokenCache refuses per-request parameters instead of sending the wrong token", () =>
      Effect.gen(function*() {
        const api = yield* fakeApi([])
        const { cache } = yield* countingCache()
        const error = yield* Effect.flip(
          auth(api.client, cache).pipe(AuthHttpClient.withTokenParams({ scope: "admin" })).get("https://api.test/x")
        )
        expect(error._tag === "TokenError" && error.reason._tag).toBe("Misconfigured")
        expect(yield* api.seen).toEqual([])
      }))
  })
})

describe("bounded reads of the answers the middleware consumes", () => {
  /** A 401 whose body never ends (16 MB would be the "end" of it, so the old code fails rather than hangs). */
  const endless401 = () => {
    const pulled = { bytes: 0, cancelled: false }
    const chunk = new Uint8Array(16 * 1024).fill(120)
    const body = () =>
      new ReadableStream<Uint8Array>({
        pull(controller) {
          if (pulled.bytes >= 16 * 1024 * 1024) return controller.close()
          pulled.bytes += chunk.length
          controller.enqueue(chunk)
        },
        cancel() {
          pulled.cancelled = true
        }
      })
    return { pulled, answer: () => new Response(body(), { status: 401 }) }
  }

  it.scoped("a never-ending 401 body: at most 64 KB kept, reading stops and the stream is released", () =>
    Effect.gen(function*() {
      const { answer, pulled } = endless401()
      const api = yield* fakeApi([answer, answer])
      const { cache } = yield* countingCache()
      const error = yield* Effect.flip(get(auth(api.client, cache)))
      expect(error._tag).toBe("TokenRejected")
      // Two 401s read; each read stops within a few chunks of the cap (the stream's read-ahead), never 16 MB.
      expect(pulled.bytes).toBeLessThanOrEqual(2 * (64 + 3 * 16) * 1024)
      const body = yield* (error as AuthHttpClient.TokenRejected).response.arrayBuffer
      expect(body.byteLength).toBe(64 * 1024)
      expect(pulled.cancelled).toBe(true)
    }))

  it.scoped("a 401 body that stalls is bounded by the client's timeout", () =>
    Effect.gen(function*() {
      const stalled = () =>
        new Response(new ReadableStream<Uint8Array>({ pull: () => new Promise<void>(() => {}) }), { status: 401 })
      const api = yield* fakeApi([stalled, stalled])
      const { cache } = yield* countingCache()
      const fiber = yield* Effect.fork(Effect.flip(get(auth(api.client, cache, { timeout: "1 second" }))))
      // Each of the two reads gives up after 1 s of TestClock.
      let rounds = 0
      while (Option.isNone(yield* Fiber.poll(fiber)) && rounds < 10) {
        yield* TestClock.adjust("500 millis")
        rounds++
      }
      expect(Option.isSome(yield* Fiber.poll(fiber))).toBe(true)
      expect(rounds).toBeLessThanOrEqual(5)
      expect((yield* Fiber.join(fiber))._tag).toBe("TokenRejected")
    }))
})

describe("caller credentials on redirects", () => {
  interface Sent {
    readonly url: string
    readonly authorization: string | undefined
    readonly cookie: string | undefined
    readonly proxy: string | undefined
  }
  /** Answers the first request with a redirect to `location`, then 200; records the credential headers. */
  const redirectingTo = (location: string) =>
    Effect.gen(function*() {
      const sent = yield* Ref.make<ReadonlyArray<Sent>>([])
      const client = HttpClient.make((request) =>
        Effect.gen(function*() {
          const all = yield* Ref.updateAndGet(sent, (s) => [...s, {
            url: request.url,
            authorization: request.headers["authorization"],
            cookie: request.headers["cookie"],
            proxy: request.headers["proxy-authorization"]
          }])
          const answer = all.length === 1 ? status(307, { location }) : new Response("{}")
          return HttpClientResponse.fromWeb(request, answer)
        })
      )
      return { client, sent: Ref.get(sent) }
    })

  const withCredentials = (url: string, authorization: boolean) =>
    HttpClientRequest.get(url).pipe(
      HttpClientRequest.setHeaders({
        cookie: "session=caller-cookie",
        "proxy-authorization": "Basic cHJveHk6cHc=",
        ...(authorization ? { authorization: "Basic Y2FsbGVyOnB3" } : {})
      })
    )

  const cases = [
    { name: "the bound API, caller's own Authorization", from: "https://api.test/a", own: true },
    { name: "the bound API, the token", from: "https://api.test/a", own: false },
    { name: "another origin", from: "https://other.test/a", own: true }
  ] as const
  const targets = [
    { name: "another origin", to: "https://elsewhere.test/b" },
    { name: "https -> http", to: "http://api.test/b" }
  ] as const

  for (const c of cases) {
    for (const t of targets) {
      it.scoped(`${c.name}, redirected to ${t.name}: Authorization, Proxy-Authorization and Cookie are dropped`, () =>
        Effect.gen(function*() {
          const api = yield* redirectingTo(t.to)
          const { cache } = yield* countingCache()
          const client = auth(api.client, cache, { followRedirects: 3 })
          const response = yield* client.execute(withCredentials(c.from, c.own))
          expect(response.status).toBe(200)
          const [first, second] = yield* api.sent
          expect(first!.cookie).toBe("session=caller-cookie")
          expect(first!.proxy).toBe("Basic cHJveHk6cHc=")
          expect(first!.authorization).toBe(c.own ? "Basic Y2FsbGVyOnB3" : "Bearer token-1")
          expect(second).toEqual({ url: t.to, authorization: undefined, cookie: undefined, proxy: undefined })
        }))
    }
  }

  it.scoped("a same-origin redirect keeps the caller's own credentials", () =>
    Effect.gen(function*() {
      const api = yield* redirectingTo("https://api.test/b")
      const { cache } = yield* countingCache()
      yield* auth(api.client, cache, { followRedirects: 3 }).execute(withCredentials("https://api.test/a", true))
      const [, second] = yield* api.sent
      expect(second).toEqual({
        url: "https://api.test/b",
        authorization: "Basic Y2FsbGVyOnB3",
        cookie: "session=caller-cookie",
        proxy: "Basic cHJveHk6cHc="
      })
    }))
})
