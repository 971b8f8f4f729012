import { ClientCredentials, TokenCache, TokenError } from "@effect-token/core"
import type { AccessToken } from "@effect-token/core"
import { TestTokenSource } from "@effect-token/testing"
import { HttpClient, HttpClientResponse } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import {
  Array as Arr,
  DateTime,
  Deferred,
  Duration,
  Effect,
  Exit,
  Fiber,
  Layer,
  Metric,
  Option,
  Redacted,
  Schedule,
  Scope,
  TestClock
} from "effect"
import { forkStarted } from "./support/fibers.js"

const unsignedJwt = (payload: object) =>
  [{ alg: "none" }, payload].map((part) => Buffer.from(JSON.stringify(part)).toString("base64url")).join(".") + "."

/** The scripted source of these tests: tokens live 100 s unless told otherwise. */
const testSource = (options: TestTokenSource.Options = {}) =>
  TestTokenSource.make({ lifetime: "100 seconds", ...options })

const { fail, succeed } = TestTokenSource

const valueOf = (t: AccessToken.AccessToken) => Redacted.value(t.value)

describe("TokenCache", () => {
  it.scoped("10,000 concurrent gets on an empty cache cause exactly one fetch", () =>
    Effect.gen(function*() {
      const test = yield* testSource({ delay: "1 second" })
      const cache = yield* TokenCache.make(test.source)
      const fiber = yield* Effect.fork(Effect.all(Arr.replicate(cache.get, 10_000), { concurrency: "unbounded" }))
      yield* TestClock.adjust("1 second")
      const tokens = yield* Fiber.join(fiber)
      expect(tokens).toHaveLength(10_000)
      expect(new Set(tokens.map(valueOf))).toEqual(new Set(["token-1"]))
      expect(yield* test.fetches).toBe(1)
      expect(yield* test.maxInFlight).toBe(1)
    }))

  it.scoped("a get on a valid token does not wait for a fetch in progress", () =>
    Effect.gen(function*() {
      const test = yield* testSource({ delay: "10 seconds" })
      const cache = yield* TokenCache.make(test.source)
      const first = yield* Effect.fork(cache.get)
      yield* TestClock.adjust("10 seconds")
      expect(valueOf(yield* Fiber.join(first))).toBe("token-1")
      const forced = yield* Effect.fork(cache.refresh)
      yield* test.awaitFetches(2)
      // The forced refresh holds the source for 10 s; the clock does not move, yet gets complete.
      const during = yield* Effect.all(Arr.replicate(cache.get, 100))
      expect(during.map(valueOf)).toEqual(Arr.replicate("token-1", 100))
      expect(yield* test.inFlight).toBe(1)
      yield* TestClock.adjust("10 seconds")
      expect(valueOf(yield* Fiber.join(forced))).toBe("token-2")
      expect(valueOf(yield* cache.get)).toBe("token-2")
    }))

  it.scoped("the token lives until its expiry minus the skew", () =>
    Effect.gen(function*() {
      const test = yield* testSource({ lifetime: "1000 seconds" })
      const cache = yield* TokenCache.make(test.source, { skew: "30 seconds", refreshAhead: 0 })
      expect(valueOf(yield* cache.get)).toBe("token-1")
      yield* TestClock.adjust(Duration.millis(969_999))
      expect(valueOf(yield* cache.get)).toBe("token-1")
      expect(yield* test.fetches).toBe(1)
      yield* TestClock.adjust(Duration.millis(1))
      expect(valueOf(yield* cache.get)).toBe("token-2")
      expect(yield* test.fetches).toBe(2)
    }))

  it.scoped("the skew never takes more than 10 % of the lifetime, so short-lived tokens stay cached", () =>
    Effect.gen(function*() {
      const test = yield* testSource({ lifetime: "10 seconds" })
      const cache = yield* TokenCache.make(test.source, { skew: "30 seconds", refreshAhead: 0 })
      yield* cache.get
      yield* TestClock.adjust(Duration.millis(8_999))
      yield* cache.get
      expect(yield* test.fetches).toBe(1)
      yield* TestClock.adjust(Duration.millis(1))
      yield* cache.get
      expect(yield* test.fetches).toBe(2)
    }))

  it.scoped("a token without expiry lives for the default lifetime", () =>
    Effect.gen(function*() {
      const test = yield* testSource({ lifetime: "unknown" })
      const cache = yield* TokenCache.make(test.source, { defaultLifetime: "2 minutes", skew: 0, refreshAhead: 0 })
      yield* cache.get
      yield* TestClock.adjust(Duration.millis(119_999))
      yield* cache.get
      expect(yield* test.fetches).toBe(1)
      yield* TestClock.adjust(Duration.millis(1))
      yield* cache.get
      expect(yield* test.fetches).toBe(2)
    }))

  describe("lifetime from the token endpoint's answer", () => {
    const endpointSource = (body: Record<string, unknown>) =>
      ClientCredentials.make({
        tokenUrl: "https://as.test/token",
        clientAuth: { _tag: "None", clientId: "c" }
      }).pipe(
        Effect.provide(Layer.succeed(
          HttpClient.HttpClient,
          HttpClient.make((request) =>
            Effect.succeed(HttpClientResponse.fromWeb(request, new Response(JSON.stringify(body))))
          )
        ))
      )

    it.scoped("from expires_in", () =>
      Effect.gen(function*() {
        const source = yield* endpointSource({ access_token: "a", token_type: "Bearer", expires_in: 60 })
        const cache = yield* TokenCache.make(source, { skew: "5 seconds", refreshAhead: 0 })
        const first = yield* cache.get
        expect(Option.map(first.expiresAt, DateTime.toEpochMillis)).toEqual(Option.some(60_000))
        const state = yield* cache.state
        expect(state._tag === "Ready" && state.validUntil).toBe(55_000)
      }))

    it.scoped("from the JWT exp when expires_in is missing", () =>
      Effect.gen(function*() {
        yield* TestClock.setTime(1_000_000)
        const jwt = unsignedJwt({ exp: 1_000 + 90 })
        const source = yield* endpointSource({ access_token: jwt, token_type: "Bearer" })
        const cache = yield* TokenCache.make(source, { skew: "5 seconds", refreshAhead: 0 })
        yield* cache.get
        const state = yield* cache.state
        expect(state._tag === "Ready" && state.validUntil).toBe(1_085_000)
      }))
  })

  it.scoped("a token that is already expired when it arrives is a failed fetch, never handed out", () =>
    Effect.gen(function*() {
      const test = yield* testSource({ script: [succeed({ lifetime: "-1 seconds" }), succeed({ lifetime: 0 })] })
      const cache = yield* TokenCache.make(test.source)
      const first = yield* Effect.flip(cache.get)
      expect(first.reason._tag).toBe("MalformedResponse")
      expect(first.message).toMatch(/already expired/)
      expect((yield* Effect.flip(cache.get)).reason._tag).toBe("MalformedResponse")
      expect(valueOf(yield* cache.get)).toBe("token-3")
      expect(yield* test.fetches).toBe(3)
    }))

  it.scoped("a token whose lifetime ran out on its way is a miss: fetched again, never a failure", () =>
    Effect.gen(function*() {
      // A 10 s token that takes 12 s to arrive (a paused process, a starved CPU), then one on time.
      const test = yield* testSource({ script: [succeed({ lifetime: "10 seconds", delay: "12 seconds" })] })
      const cache = yield* TokenCache.make(test.source, { skew: "1 second" })
      const getting = yield* Effect.fork(cache.get)
      yield* TestClock.adjust("12 seconds")
      expect(valueOf(yield* Fiber.join(getting))).toBe("token-2")
      expect(yield* test.fetches).toBe(2)
    }))

  it.scoped("a source whose every token arrives late fails after a few fetches, each a miss", () =>
    Effect.gen(function*() {
      const test = yield* testSource({ lifetime: "10 seconds", delay: "12 seconds" })
      // Three 12 s fetches outlast the default acquireTimeout (30 s): this caller waits for all of them.
      const cache = yield* TokenCache.make(test.source, { skew: "1 second", acquireTimeout: "1 minute" })
      const getting = yield* Effect.fork(Effect.flip(cache.get))
      for (let i = 0; i < 3; i++) yield* TestClock.adjust("12 seconds")
      const error = yield* Fiber.join(getting)
      expect(error.reason._tag).toBe("MalformedResponse")
      expect(error.message).toMatch(/already expired/)
      expect(yield* test.fetches).toBe(3)
    }))

  it.scoped("refresh ahead: the first get in the window starts one background refresh and returns the old token", () =>
    Effect.gen(function*() {
      const test = yield* testSource({ delay: "5 seconds", lifetime: "100 seconds" })
      const cache = yield* TokenCache.make(test.source, { skew: 0, refreshAhead: 0.1, refreshAheadJitter: 0 })
      const first = yield* Effect.fork(cache.get)
      yield* TestClock.adjust("5 seconds")
      expect(valueOf(yield* Fiber.join(first))).toBe("token-1")
      // token-1 was requested at 0 s (it arrived at 5 s) and expires at 100 s; its refresh window opens at 90 s.
      yield* TestClock.adjust(Duration.millis(84_999))
      expect(valueOf(yield* cache.get)).toBe("token-1")
      expect(yield* test.fetches).toBe(1)
      yield* TestClock.adjust(Duration.millis(1))
      const during = yield* Effect.all(Arr.replicate(cache.get, 50))
      expect(during.map(valueOf)).toEqual(Arr.replicate("token-1", 50))
      expect((yield* cache.state)._tag).toBe("Refreshing")
      yield* test.awaitFetches(2)
      expect(yield* test.fetches).toBe(2)
      yield* TestClock.adjust("5 seconds")
      expect(valueOf(yield* cache.get)).toBe("token-2")
      expect(yield* test.fetches).toBe(2)
    }))

  it.scoped("when the token expires while its refresh is still running, callers wait for the refresh", () =>
    Effect.gen(function*() {
      const test = yield* testSource({ delay: "8 seconds", lifetime: "60 seconds" })
      const cache = yield* TokenCache.make(test.source, { skew: 0, refreshAheadJitter: 0 })
      const first = yield* Effect.fork(cache.get)
      yield* TestClock.adjust("8 seconds")
      yield* Fiber.join(first)
      // token-1: requested at 0 s, valid until 60 s; the refresh takes 8 s, so its window opens 16 s before (at 44 s).
      yield* TestClock.adjust("46 seconds")
      expect(valueOf(yield* cache.get)).toBe("token-1")
      expect((yield* cache.state)._tag).toBe("Refreshing")
      yield* test.awaitFetches(2)
      yield* TestClock.adjust("6 seconds")
      const waiting = yield* forkStarted(cache.get)
      expect(waiting.unsafePoll()).toBeNull()
      // The caller found the token expired and the refresh still running: it waits for the refresh.
      expect((yield* cache.state)._tag).toBe("Fetching")
      yield* TestClock.adjust("2 seconds")
      expect(valueOf(yield* Fiber.join(waiting))).toBe("token-2")
      expect(yield* test.fetches).toBe(2)
    }))

  it.scoped("refresh-ahead jitter spreads the refresh over the last 10% to 5% of the lifetime", () =>
    Effect.gen(function*() {
      const test = yield* testSource({ lifetime: "1000 seconds" })
      const cache = yield* TokenCache.make(test.source, { skew: 0 })
      yield* cache.get
      const state = yield* cache.state
      expect(state._tag).toBe("Ready")
      if (state._tag === "Ready") {
        expect(state.refreshAt).toBeGreaterThanOrEqual(900_000)
        expect(state.refreshAt).toBeLessThanOrEqual(950_000)
      }
    }))

  it.scoped("while refresh ahead fails, callers keep the old token; after expiry they see the error", () =>
    Effect.gen(function*() {
      const test = yield* testSource({ lifetime: "100 seconds" })
      const cache = yield* TokenCache.make(test.source, { skew: 0, refreshAheadJitter: 0 })
      yield* cache.get
      yield* test.script(...Arr.replicate(fail("OAuthError", { code: "invalid_scope", status: 400 }), 10))
      yield* TestClock.adjust("91 seconds")
      expect(valueOf(yield* cache.get)).toBe("token-1")
      yield* test.awaitFinished(2)
      expect(yield* test.fetches).toBe(2)
      // The failed refresh is not retried on every call, only halfway to the expiry (at 95.5 s).
      expect(valueOf(yield* cache.get)).toBe("token-1")
      // A get that started a fetch would have left the cache Refreshing on its way out.
      expect(yield* cache.state).toMatchObject({ _tag: "Ready", refreshAt: 95_500 })
      expect(yield* test.fetches).toBe(2)
      yield* TestClock.adjust("4500 millis")
      expect(valueOf(yield* cache.get)).toBe("token-1")
      expect((yield* cache.state)._tag).toBe("Refreshing")
      yield* test.awaitFinished(3)
      expect(yield* test.fetches).toBe(3)
      yield* TestClock.adjust("5 seconds")
      const error = yield* Effect.flip(cache.get)
      expect((error.reason as any).code).toBe("invalid_scope")
    }))

  it.scoped("invalidate is compare-and-clear: only the cached token is cleared", () =>
    Effect.gen(function*() {
      const test = yield* testSource()
      const cache = yield* TokenCache.make(test.source)
      const first = yield* cache.get
      expect(yield* cache.invalidate(first)).toBe(true)
      const second = yield* cache.get
      expect(valueOf(second)).toBe("token-2")
      expect(yield* cache.invalidate(first)).toBe(false)
      expect(valueOf(yield* cache.get)).toBe("token-2")
      expect(yield* test.fetches).toBe(2)
    }))

  it.scoped("1,000 concurrent rejections of one stale token cause one refresh", () =>
    Effect.gen(function*() {
      const test = yield* testSource({ delay: "200 millis" })
      const cache = yield* TokenCache.make(test.source)
      const warm = yield* Effect.fork(cache.get)
      yield* TestClock.adjust("200 millis")
      const stale = yield* Fiber.join(warm)
      const storm = yield* Effect.fork(
        Effect.all(Arr.replicate(Effect.zipRight(cache.invalidate(stale), cache.get), 1_000), {
          concurrency: "unbounded"
        })
      )
      yield* TestClock.adjust("200 millis")
      const fresh = yield* Fiber.join(storm)
      expect(new Set(fresh.map(valueOf))).toEqual(new Set(["token-2"]))
      expect(yield* test.fetches).toBe(2)
    }))

  it.scoped("a failure is not cached: its waiters see it, the next get fetches again", () =>
    Effect.gen(function*() {
      const test = yield* testSource({ script: [fail("OAuthError", { code: "invalid_scope", status: 400 })] })
      const cache = yield* TokenCache.make(test.source)
      const errors = yield* Effect.all(Arr.replicate(Effect.flip(cache.get), 3), { concurrency: "unbounded" })
      expect(errors.map((e) => (e.reason as any).code)).toEqual(["invalid_scope", "invalid_scope", "invalid_scope"])
      expect(yield* test.fetches).toBe(1)
      // The test source numbers the tokens it issues, not its fetches: the first token comes from the second fetch.
      expect(valueOf(yield* cache.get)).toBe("token-1")
      expect(yield* test.fetches).toBe(2)
    }))

  it.scoped("transient failures are retried with jittered exponential backoff, OAuth errors are not", () =>
    Effect.gen(function*() {
      const test = yield* testSource({ script: [fail("Transport"), fail("Unavailable", { status: 503 })] })
      const cache = yield* TokenCache.make(test.source)
      const fiber = yield* Effect.fork(cache.get)
      yield* test.awaitFinished(1)
      expect(yield* test.fetches).toBe(1)
      // First retry after 100 ms jittered to 80..120 ms, the second 200 ms (160..240 ms) after that.
      yield* TestClock.adjust("79 millis")
      expect(yield* test.fetches).toBe(1)
      yield* TestClock.adjust("41 millis")
      expect(yield* test.fetches).toBe(2)
      const [, second] = (yield* test.fetchStarts).map(DateTime.toEpochMillis)
      yield* TestClock.setTime(second! + 159)
      expect(yield* test.fetches).toBe(2)
      yield* TestClock.setTime(second! + 240)
      expect(yield* test.fetches).toBe(3)
      expect(valueOf(yield* Fiber.join(fiber))).toBe("token-1")
      expect(yield* test.fetches).toBe(3)

      const oauth = yield* testSource({ script: [fail("OAuthError", { code: "invalid_scope", status: 400 })] })
      const oauthCache = yield* TokenCache.make(oauth.source)
      expect(TokenError.oauthCode(yield* Effect.flip(oauthCache.get))).toBe("invalid_scope")
      expect(yield* oauth.fetches).toBe(1)
    }))

  it.scoped("a Retry-After from the token endpoint replaces the backoff delay", () =>
    Effect.gen(function*() {
      const test = yield* testSource({
        script: [fail("Unavailable", { status: 503, retryAfter: Duration.seconds(7) })]
      })
      const cache = yield* TokenCache.make(test.source)
      const fiber = yield* Effect.fork(cache.get)
      yield* TestClock.adjust(Duration.millis(6_999))
      expect(yield* test.fetches).toBe(1)
      yield* TestClock.adjust(Duration.millis(1))
      expect(yield* test.fetches).toBe(2)
      expect(valueOf(yield* Fiber.join(fiber))).toBe("token-1")
    }))

  it.scoped("a 429 with Retry-After 2 s and an unknown error code: callers over 2 s make one token request", () =>
    Effect.gen(function*() {
      // The body's code is none of RFC 6749's: the status alone says "later".
      const throttled = fail("OAuthError", { code: "rate_limited", status: 429, retryAfter: "2 seconds" })
      const test = yield* testSource({ script: Arr.replicate(throttled, 40) })
      const cache = yield* TokenCache.make(test.source)
      const callers: Array<Fiber.RuntimeFiber<unknown>> = []
      for (let i = 0; i < 20; i++) {
        callers.push(yield* Effect.fork(Effect.either(cache.get)))
        yield* TestClock.adjust("99 millis")
      }
      // 1.98 s in: every caller joined the one request; the server's 2 s of quiet were kept.
      yield* test.awaitFinished(1)
      expect(yield* test.fetches).toBe(1)
      yield* TestClock.adjust("20 millis")
      yield* test.awaitFetches(2)
      expect(yield* test.fetches).toBe(2)
    }))

  it.scoped("after a 429 with Retry-After and no retries left, callers until then fail at once with it, then one request", () =>
    Effect.gen(function*() {
      const throttled = fail("OAuthError", { code: "rate_limited", status: 429, retryAfter: "2 seconds" })
      const test = yield* testSource({ script: [throttled] })
      // No retries: the fetch fails with the 429 and the hold alone keeps callers off the server.
      const cache = yield* TokenCache.make(test.source, { retry: Schedule.stop })
      const errors: Array<TokenError.TokenError> = []
      for (let i = 0; i < 20; i++) {
        errors.push(yield* Effect.flip(cache.get))
        yield* TestClock.adjust("99 millis")
      }
      expect(yield* test.fetches).toBe(1)
      expect(new Set(errors.map((e) => TokenError.oauthCode(e)))).toEqual(new Set(["rate_limited"]))
      yield* TestClock.adjust("20 millis")
      expect(valueOf(yield* cache.get)).toBe("token-1")
      expect(yield* test.fetches).toBe(2)
    }))

  it.scoped("over HTTP: a token endpoint answering 429 {error: too_many_requests}, Retry-After: 2 gets one request per 2 s", () =>
    Effect.gen(function*() {
      let requests = 0
      const source = yield* ClientCredentials.make({
        tokenUrl: "https://as.test/token",
        clientAuth: { _tag: "None", clientId: "c" }
      }).pipe(
        Effect.provide(Layer.succeed(
          HttpClient.HttpClient,
          HttpClient.make((request) =>
            Effect.sync(() => {
              requests++
              return HttpClientResponse.fromWeb(
                request,
                new Response(JSON.stringify({ error: "too_many_requests" }), {
                  status: 429,
                  headers: { "content-type": "application/json", "retry-after": "2" }
                })
              )
            })
          )
        ))
      )
      const cache = yield* TokenCache.make(source)
      const callers: Array<Fiber.RuntimeFiber<unknown>> = []
      for (let i = 0; i < 20; i++) {
        callers.push(yield* Effect.fork(Effect.either(cache.get)))
        yield* TestClock.adjust("99 millis")
      }
      expect(requests).toBe(1)
      yield* TestClock.adjust("20 millis")
      expect(requests).toBe(2)
    }))

  it.scoped("while a Retry-After holds fetches back, a token still valid is served and its refresh waits", () =>
    Effect.gen(function*() {
      const test = yield* testSource({ lifetime: "100 seconds" })
      const cache = yield* TokenCache.make(test.source, { skew: 0, refreshAheadJitter: 0, retry: Schedule.stop })
      yield* cache.get
      yield* test.script(fail("OAuthError", { code: "rate_limited", status: 429, retryAfter: "6 seconds" }))
      // 91 s: the refresh window; the refresh gets the 429 and asks for 6 s of quiet (until 97 s).
      yield* TestClock.adjust("91 seconds")
      expect(valueOf(yield* cache.get)).toBe("token-1")
      yield* test.awaitFinished(2)
      // Halfway to the end (95.5 s) would be the usual retry; the server's 97 s wins.
      expect(yield* cache.state).toMatchObject({ _tag: "Ready", refreshAt: 97_000 })
      yield* TestClock.adjust("5 seconds")
      expect(valueOf(yield* cache.get)).toBe("token-1")
      expect(yield* test.fetches).toBe(2)
      yield* TestClock.adjust("1 second")
      expect(valueOf(yield* cache.get)).toBe("token-1")
      yield* test.awaitFinished(3)
      expect(yield* test.fetches).toBe(3)
    }))

  describe("every hold is capped", () => {
    const forever = "1000000000 seconds"

    it.scoped("a 429 with Retry-After: 1000000000 holds token requests back for maxHold (60 s), and says until when", () =>
      Effect.gen(function*() {
        const throttled = fail("OAuthError", { code: "rate_limited", status: 429, retryAfter: forever })
        const test = yield* testSource({ script: [throttled] })
        const cache = yield* TokenCache.make(test.source)
        const first = yield* Effect.flip(cache.get)
        expect(TokenError.oauthCode(first)).toBe("rate_limited")
        // The caller sees when the hold ends: the default cap, 60 s, not the server's 31 years.
        expect(Option.map(TokenError.heldUntil(first), DateTime.toEpochMillis)).toEqual(Option.some(60_000))
        expect(first.message).toContain("1970-01-01T00:01:00.000Z")
        yield* TestClock.adjust(Duration.millis(59_999))
        const held = yield* Effect.flip(cache.get)
        expect(Option.map(TokenError.heldUntil(held), DateTime.toEpochMillis)).toEqual(Option.some(60_000))
        expect(yield* test.fetches).toBe(1)
        yield* TestClock.adjust(Duration.millis(1))
        expect(valueOf(yield* cache.get)).toBe("token-1")
        expect(yield* test.fetches).toBe(2)

        // maxHold is configurable.
        const short = yield* testSource({ script: [throttled] })
        const shortCache = yield* TokenCache.make(short.source, { maxHold: "5 seconds" })
        yield* Effect.flip(shortCache.get)
        yield* TestClock.adjust("5 seconds")
        expect(valueOf(yield* shortCache.get)).toBe("token-1")
      }))

    it.scoped("a Retry-After on an answer that is not a 'later' (400 invalid_scope) holds nothing", () =>
      Effect.gen(function*() {
        const refused = fail("OAuthError", { code: "invalid_scope", status: 400, retryAfter: forever })
        const test = yield* testSource({ script: [refused] })
        const cache = yield* TokenCache.make(test.source)
        const error = yield* Effect.flip(cache.get)
        expect(Option.isNone(TokenError.heldUntil(error))).toBe(true)
        expect(valueOf(yield* cache.get)).toBe("token-1")
        expect(yield* test.fetches).toBe(2)
      }))

    it.scoped("a refresh-ahead answered 503 Retry-After: 1000000000: the token is served, then held until maxHold", () =>
      Effect.gen(function*() {
        const test = yield* testSource({ lifetime: "100 seconds" })
        const cache = yield* TokenCache.make(test.source, { skew: 0, refreshAheadJitter: 0 })
        yield* cache.get
        yield* test.script(fail("Unavailable", { status: 503, retryAfter: forever }))
        yield* TestClock.adjust("91 seconds")
        expect(valueOf(yield* cache.get)).toBe("token-1")
        yield* test.awaitFinished(2)
        // Past the token's end (100 s) the hold goes on until 91 s + 60 s, then a request is made.
        yield* TestClock.adjust("10 seconds")
        const held = yield* Effect.flip(cache.get)
        expect(Option.map(TokenError.heldUntil(held), DateTime.toEpochMillis)).toEqual(Option.some(151_000))
        expect(yield* test.fetches).toBe(2)
        yield* TestClock.adjust("50 seconds")
        expect(valueOf(yield* cache.get)).toBe("token-2")
        expect(yield* test.fetches).toBe(3)
      }))
  })

  it.scoped("after invalid_client, 20 calls within the hold make one token request; after it, one more", () =>
    Effect.gen(function*() {
      const rejected = fail("OAuthError", { code: "invalid_client", status: 401 })
      const test = yield* testSource({ script: Arr.replicate(rejected, 40) })
      const cache = yield* TokenCache.make(test.source)
      for (let i = 0; i < 20; i++) {
        const error = yield* Effect.flip(cache.get)
        expect(TokenError.oauthCode(error)).toBe("invalid_client")
        yield* TestClock.adjust("200 millis")
      }
      expect(yield* test.fetches).toBe(1)
      yield* TestClock.adjust("1 second")
      yield* Effect.flip(cache.get)
      expect(yield* test.fetches).toBe(2)

      const off = yield* testSource({ script: Arr.replicate(rejected, 40) })
      const unheld = yield* TokenCache.make(off.source, { permanentFailureHold: 0 })
      for (let i = 0; i < 20; i++) yield* Effect.flip(unheld.get)
      expect(yield* off.fetches).toBe(20)
    }))

  it.scoped("retries give up after the schedule, and the error reaches the waiters", () =>
    Effect.gen(function*() {
      const test = yield* testSource({ script: Arr.replicate(fail("Timeout"), 10) })
      const cache = yield* TokenCache.make(test.source, { retry: Schedule.recurs(2) })
      const error = yield* Effect.flip(cache.get)
      expect(error.reason._tag).toBe("Timeout")
      expect(yield* test.fetches).toBe(3)
    }))

  it.scoped("an interrupted caller does not cancel the shared fetch", () =>
    Effect.gen(function*() {
      const test = yield* testSource({ delay: "1 second" })
      const cache = yield* TokenCache.make(test.source)
      const first = yield* Effect.fork(cache.get)
      yield* test.awaitFetches(1)
      const second = yield* forkStarted(cache.get)
      expect(second.unsafePoll()).toBeNull()
      yield* Fiber.interrupt(first)
      yield* TestClock.adjust("1 second")
      expect(valueOf(yield* Fiber.join(second))).toBe("token-1")
      expect(yield* test.interruptions).toBe(0)
      expect(yield* test.fetches).toBe(1)
    }))

  it.effect("closing the cache's scope interrupts its background fetch", () =>
    Effect.gen(function*() {
      const test = yield* testSource({ delay: "1 minute" })
      const scope = yield* Scope.make()
      const cache = yield* TokenCache.make(test.source).pipe(Scope.extend(scope))
      const waiter = yield* Effect.fork(cache.get)
      yield* test.awaitFetches(1)
      yield* Scope.close(scope, Exit.void)
      expect(yield* test.interruptions).toBe(1)
      const exit = yield* Fiber.await(waiter)
      expect(Exit.isInterrupted(exit)).toBe(true)
    }))

  it.scoped("a forced refresh joins a fetch in flight", () =>
    Effect.gen(function*() {
      const test = yield* testSource({ delay: "1 second" })
      const cache = yield* TokenCache.make(test.source)
      const get = yield* Effect.fork(cache.get)
      yield* test.awaitFetches(1)
      const forced = yield* forkStarted(cache.refresh)
      expect(forced.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 second")
      expect(valueOf(yield* Fiber.join(get))).toBe("token-1")
      expect(valueOf(yield* Fiber.join(forced))).toBe("token-1")
      expect(yield* test.fetches).toBe(1)
    }))

  it.scoped("counts hits, fetches (by trigger), failures (by reason) and invalidations per cache name", () =>
    Effect.gen(function*() {
      const counter = (name: string, tags: Record<string, string>) =>
        Effect.map(Metric.snapshot, (pairs) => {
          let total = 0
          for (const pair of pairs) {
            const labels = Object.fromEntries(pair.metricKey.tags.map((t) => [t.key, t.value]))
            if (pair.metricKey.name !== name) continue
            if (Object.entries(tags).every(([k, v]) => labels[k] === v)) total += (pair.metricState as any).count
          }
          return total
        })
      const test = yield* testSource({ script: [fail("OAuthError", { code: "invalid_scope" })] })
      const cache = yield* TokenCache.make(test.source, { name: "metrics-test" })
      yield* Effect.either(cache.get)
      const token = yield* cache.get
      yield* cache.get
      yield* cache.invalidate(token)
      expect(yield* counter("effect_token_fetch_failures", { cache: "metrics-test", reason: "OAuthError" })).toBe(1)
      expect(yield* counter("effect_token_fetches", { cache: "metrics-test", trigger: "empty" })).toBe(2)
      expect(yield* counter("effect_token_cache_hits", { cache: "metrics-test" })).toBe(1)
      expect(yield* counter("effect_token_invalidations", { cache: "metrics-test" })).toBe(1)
    }))

  it.scoped("a deferred resolution still reaches callers that arrive while the fetch is running", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const test = yield* testSource({ script: [succeed({ value: "gated", gate: Deferred.await(gate) })] })
      const cache = yield* TokenCache.make(test.source)
      const early = yield* Effect.fork(cache.get)
      yield* test.awaitFetches(1)
      const late = yield* forkStarted(cache.get)
      expect(late.unsafePoll()).toBeNull()
      yield* Deferred.succeed(gate, void 0)
      expect(valueOf(yield* Fiber.join(early))).toBe("gated")
      expect(valueOf(yield* Fiber.join(late))).toBe("gated")
      expect(yield* test.fetches).toBe(1)
    }))
})
