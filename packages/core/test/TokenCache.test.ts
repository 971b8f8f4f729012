import { AccessToken, ClientCredentials, TokenCache, TokenError, TokenSource } from "@effect-token/core"
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
  Ref,
  Schedule,
  Scope,
  TestClock
} from "effect"

const unsignedJwt = (payload: object) =>
  [{ alg: "none" }, payload].map((part) => Buffer.from(JSON.stringify(part)).toString("base64url")).join(".") + "."

type Outcome =
  | { readonly _tag: "Token"; readonly lifetime: Duration.DurationInput | null }
  | { readonly _tag: "Fail"; readonly error: TokenError.TokenError }

const token = (lifetime: Duration.DurationInput | null = "100 seconds"): Outcome => ({ _tag: "Token", lifetime })
const fail = (
  tag: "OAuthError" | "Transport" | "Timeout" | "Unavailable",
  extra: { readonly code?: string; readonly status?: number; readonly retryAfter?: Duration.Duration } = {}
): Outcome => ({
  _tag: "Fail",
  error: new TokenError.TokenError({
    operation: "test grant",
    reason: tag === "OAuthError"
      ? new TokenError.OAuthError({ code: extra.code ?? "invalid_request", status: extra.status ?? 400 })
      : tag === "Transport"
      ? new TokenError.Transport({ description: "ECONNRESET" })
      : tag === "Timeout"
      ? new TokenError.Timeout({ bound: "attempt", after: Duration.seconds(10) })
      : new TokenError.Unavailable({
        ...(extra.status === undefined ? {} : { status: extra.status }),
        ...(extra.retryAfter === undefined ? {} : { retryAfter: extra.retryAfter })
      })
  })
})

/**
 * A source whose fetches take `delay` of TestClock and follow a script (then succeed with `fallback`); it counts
 * fetches, tracks concurrency and notices interruption.
 */
const fakeSource = (options: {
  readonly delay?: Duration.DurationInput
  readonly script?: ReadonlyArray<Outcome>
  readonly fallback?: Outcome
} = {}) =>
  Effect.gen(function*() {
    const script = yield* Ref.make<ReadonlyArray<Outcome>>(options.script ?? [])
    const fetches = yield* Ref.make(0)
    const inFlight = yield* Ref.make(0)
    const maxInFlight = yield* Ref.make(0)
    const interrupted = yield* Ref.make(0)
    const fetchTimes = yield* Ref.make<ReadonlyArray<number>>([])
    const fetch = Effect.gen(function*() {
      const n = yield* Ref.updateAndGet(fetches, (k) => k + 1)
      yield* Ref.update(fetchTimes, Arr.append(yield* TestClock.currentTimeMillis))
      const now = yield* Ref.updateAndGet(inFlight, (k) => k + 1)
      yield* Ref.update(maxInFlight, (k) => Math.max(k, now))
      yield* Effect.sleep(options.delay ?? Duration.zero)
      const outcome = yield* Ref.modify(script, (s) =>
        s.length === 0
          ? [options.fallback ?? token(), s] as const
          : [s[0]!, s.slice(1)] as const)
      if (outcome._tag === "Fail") return yield* outcome.error
      const issuedAt = yield* DateTime.now
      return AccessToken.make({
        value: Redacted.make(`token-${n}`),
        issuedAt,
        expiresAt: outcome.lifetime === null
          ? Option.none()
          : Option.some(DateTime.addDuration(issuedAt, outcome.lifetime))
      })
    }).pipe(
      Effect.ensuring(Ref.update(inFlight, (k) => k - 1)),
      Effect.onInterrupt(() => Ref.update(interrupted, (k) => k + 1))
    )
    return {
      source: TokenSource.make({ key: "fake", fetch }),
      fetches: Ref.get(fetches),
      maxInFlight: Ref.get(maxInFlight),
      interrupted: Ref.get(interrupted),
      fetchTimes: Ref.get(fetchTimes),
      script: (outcomes: ReadonlyArray<Outcome>) => Ref.set(script, outcomes)
    }
  })

const valueOf = (t: AccessToken.AccessToken) => Redacted.value(t.value)

/** Yields until forked fibers have run as far as they can at the current TestClock time. */
const settle = Effect.repeatN(Effect.yieldNow(), 50)

describe("TokenCache", () => {
  it.scoped("10,000 concurrent gets on an empty cache cause exactly one fetch", () =>
    Effect.gen(function*() {
      const fake = yield* fakeSource({ delay: "1 second" })
      const cache = yield* TokenCache.make(fake.source)
      const fiber = yield* Effect.fork(Effect.all(Arr.replicate(cache.get, 10_000), { concurrency: "unbounded" }))
      yield* TestClock.adjust("1 second")
      const tokens = yield* Fiber.join(fiber)
      expect(tokens).toHaveLength(10_000)
      expect(new Set(tokens.map(valueOf))).toEqual(new Set(["token-1"]))
      expect(yield* fake.fetches).toBe(1)
      expect(yield* fake.maxInFlight).toBe(1)
    }))

  it.scoped("a get on a valid token does not wait for a fetch in progress", () =>
    Effect.gen(function*() {
      const fake = yield* fakeSource({ delay: "10 seconds" })
      const cache = yield* TokenCache.make(fake.source)
      const first = yield* Effect.fork(cache.get)
      yield* TestClock.adjust("10 seconds")
      expect(valueOf(yield* Fiber.join(first))).toBe("token-1")
      const forced = yield* Effect.fork(cache.refresh)
      yield* settle
      // The forced refresh holds the source for 10 s; the clock does not move, yet gets complete.
      const during = yield* Effect.all(Arr.replicate(cache.get, 100))
      expect(during.map(valueOf)).toEqual(Arr.replicate("token-1", 100))
      yield* TestClock.adjust("10 seconds")
      expect(valueOf(yield* Fiber.join(forced))).toBe("token-2")
      expect(valueOf(yield* cache.get)).toBe("token-2")
    }))

  it.scoped("the token lives until its expiry minus the skew", () =>
    Effect.gen(function*() {
      const fake = yield* fakeSource({ fallback: token("1000 seconds") })
      const cache = yield* TokenCache.make(fake.source, { skew: "30 seconds", refreshAhead: 0 })
      expect(valueOf(yield* cache.get)).toBe("token-1")
      yield* TestClock.adjust(Duration.millis(969_999))
      expect(valueOf(yield* cache.get)).toBe("token-1")
      expect(yield* fake.fetches).toBe(1)
      yield* TestClock.adjust(Duration.millis(1))
      expect(valueOf(yield* cache.get)).toBe("token-2")
      expect(yield* fake.fetches).toBe(2)
    }))

  it.scoped("the skew never takes more than 10 % of the lifetime, so short-lived tokens stay cached", () =>
    Effect.gen(function*() {
      const fake = yield* fakeSource({ fallback: token("10 seconds") })
      const cache = yield* TokenCache.make(fake.source, { skew: "30 seconds", refreshAhead: 0 })
      yield* cache.get
      yield* TestClock.adjust(Duration.millis(8_999))
      yield* cache.get
      expect(yield* fake.fetches).toBe(1)
      yield* TestClock.adjust(Duration.millis(1))
      yield* cache.get
      expect(yield* fake.fetches).toBe(2)
    }))

  it.scoped("a token without expiry lives for the default lifetime", () =>
    Effect.gen(function*() {
      const fake = yield* fakeSource({ fallback: token(null) })
      const cache = yield* TokenCache.make(fake.source, { defaultLifetime: "2 minutes", skew: 0, refreshAhead: 0 })
      yield* cache.get
      yield* TestClock.adjust(Duration.millis(119_999))
      yield* cache.get
      expect(yield* fake.fetches).toBe(1)
      yield* TestClock.adjust(Duration.millis(1))
      yield* cache.get
      expect(yield* fake.fetches).toBe(2)
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
      const fake = yield* fakeSource({ script: [token("-1 seconds"), token(0)] })
      const cache = yield* TokenCache.make(fake.source)
      const first = yield* Effect.flip(cache.get)
      expect(first.reason._tag).toBe("MalformedResponse")
      expect(first.message).toMatch(/already expired/)
      expect((yield* Effect.flip(cache.get)).reason._tag).toBe("MalformedResponse")
      expect(valueOf(yield* cache.get)).toBe("token-3")
      expect(yield* fake.fetches).toBe(3)
    }))

  it.scoped("refresh ahead: the first get in the window starts one background refresh and returns the old token", () =>
    Effect.gen(function*() {
      const fake = yield* fakeSource({ delay: "5 seconds", fallback: token("100 seconds") })
      const cache = yield* TokenCache.make(fake.source, { skew: 0, refreshAhead: 0.1, refreshAheadJitter: 0 })
      const first = yield* Effect.fork(cache.get)
      yield* TestClock.adjust("5 seconds")
      expect(valueOf(yield* Fiber.join(first))).toBe("token-1")
      // token-1 was issued at 5 s and expires at 105 s; its refresh window opens at 95 s.
      yield* TestClock.adjust(Duration.millis(89_999))
      expect(valueOf(yield* cache.get)).toBe("token-1")
      expect(yield* fake.fetches).toBe(1)
      yield* TestClock.adjust(Duration.millis(1))
      const during = yield* Effect.all(Arr.replicate(cache.get, 50))
      expect(during.map(valueOf)).toEqual(Arr.replicate("token-1", 50))
      yield* settle
      expect(yield* fake.fetches).toBe(2)
      yield* TestClock.adjust("5 seconds")
      expect(valueOf(yield* cache.get)).toBe("token-2")
      expect(yield* fake.fetches).toBe(2)
    }))

  it.scoped("when the token expires while its refresh is still running, callers wait for the refresh", () =>
    Effect.gen(function*() {
      const fake = yield* fakeSource({ delay: "8 seconds", fallback: token("60 seconds") })
      const cache = yield* TokenCache.make(fake.source, { skew: 0, refreshAheadJitter: 0 })
      const first = yield* Effect.fork(cache.get)
      yield* TestClock.adjust("8 seconds")
      yield* Fiber.join(first)
      // token-1: issued at 8 s, valid until 68 s, refresh from 62 s; the refresh takes 8 s.
      yield* TestClock.adjust("54 seconds")
      expect(valueOf(yield* cache.get)).toBe("token-1")
      yield* TestClock.adjust("6 seconds")
      const waiting = yield* Effect.fork(cache.get)
      yield* settle
      expect(waiting.unsafePoll()).toBeNull()
      yield* TestClock.adjust("2 seconds")
      expect(valueOf(yield* Fiber.join(waiting))).toBe("token-2")
      expect(yield* fake.fetches).toBe(2)
    }))

  it.scoped("refresh-ahead jitter spreads the refresh over the last 10% to 5% of the lifetime", () =>
    Effect.gen(function*() {
      const fake = yield* fakeSource({ fallback: token("1000 seconds") })
      const cache = yield* TokenCache.make(fake.source, { skew: 0 })
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
      const fake = yield* fakeSource({ fallback: token("100 seconds") })
      const cache = yield* TokenCache.make(fake.source, { skew: 0, refreshAheadJitter: 0 })
      yield* cache.get
      yield* fake.script(Arr.replicate(fail("OAuthError", { code: "invalid_client", status: 401 }), 10))
      yield* TestClock.adjust("91 seconds")
      expect(valueOf(yield* cache.get)).toBe("token-1")
      yield* settle
      expect(yield* fake.fetches).toBe(2)
      // The failed refresh is not retried on every call, only halfway to the expiry (at 95.5 s).
      expect(valueOf(yield* cache.get)).toBe("token-1")
      yield* settle
      expect(yield* fake.fetches).toBe(2)
      yield* TestClock.adjust("4500 millis")
      expect(valueOf(yield* cache.get)).toBe("token-1")
      yield* settle
      expect(yield* fake.fetches).toBe(3)
      yield* TestClock.adjust("5 seconds")
      const error = yield* Effect.flip(cache.get)
      expect((error.reason as any).code).toBe("invalid_client")
    }))

  it.scoped("invalidate is compare-and-clear: only the cached token is cleared", () =>
    Effect.gen(function*() {
      const fake = yield* fakeSource()
      const cache = yield* TokenCache.make(fake.source)
      const first = yield* cache.get
      expect(yield* cache.invalidate(first)).toBe(true)
      const second = yield* cache.get
      expect(valueOf(second)).toBe("token-2")
      expect(yield* cache.invalidate(first)).toBe(false)
      expect(valueOf(yield* cache.get)).toBe("token-2")
      expect(yield* fake.fetches).toBe(2)
    }))

  it.scoped("1,000 concurrent rejections of one stale token cause one refresh", () =>
    Effect.gen(function*() {
      const fake = yield* fakeSource({ delay: "200 millis" })
      const cache = yield* TokenCache.make(fake.source)
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
      expect(yield* fake.fetches).toBe(2)
    }))

  it.scoped("a failure is not cached: its waiters see it, the next get fetches again", () =>
    Effect.gen(function*() {
      const fake = yield* fakeSource({ script: [fail("OAuthError", { code: "invalid_client", status: 401 })] })
      const cache = yield* TokenCache.make(fake.source)
      const errors = yield* Effect.all(Arr.replicate(Effect.flip(cache.get), 3), { concurrency: "unbounded" })
      expect(errors.map((e) => (e.reason as any).code)).toEqual(["invalid_client", "invalid_client", "invalid_client"])
      expect(yield* fake.fetches).toBe(1)
      expect(valueOf(yield* cache.get)).toBe("token-2")
      expect(yield* fake.fetches).toBe(2)
    }))

  it.scoped("transient failures are retried with jittered exponential backoff, OAuth errors are not", () =>
    Effect.gen(function*() {
      const fake = yield* fakeSource({ script: [fail("Transport"), fail("Unavailable", { status: 503 })] })
      const cache = yield* TokenCache.make(fake.source)
      const fiber = yield* Effect.fork(cache.get)
      yield* settle
      expect(yield* fake.fetches).toBe(1)
      // First retry after 100 ms jittered to 80..120 ms, the second 200 ms (160..240 ms) after that.
      yield* TestClock.adjust("79 millis")
      expect(yield* fake.fetches).toBe(1)
      yield* TestClock.adjust("41 millis")
      expect(yield* fake.fetches).toBe(2)
      const [, second] = yield* fake.fetchTimes
      yield* TestClock.setTime(second! + 159)
      expect(yield* fake.fetches).toBe(2)
      yield* TestClock.setTime(second! + 240)
      expect(yield* fake.fetches).toBe(3)
      expect(valueOf(yield* Fiber.join(fiber))).toBe("token-3")

      const oauth = yield* fakeSource({ script: [fail("OAuthError", { code: "invalid_scope", status: 400 })] })
      const oauthCache = yield* TokenCache.make(oauth.source)
      expect(TokenError.oauthCode(yield* Effect.flip(oauthCache.get))).toBe("invalid_scope")
      expect(yield* oauth.fetches).toBe(1)
    }))

  it.scoped("a Retry-After from the token endpoint replaces the backoff delay", () =>
    Effect.gen(function*() {
      const fake = yield* fakeSource({
        script: [fail("Unavailable", { status: 503, retryAfter: Duration.seconds(7) })]
      })
      const cache = yield* TokenCache.make(fake.source)
      const fiber = yield* Effect.fork(cache.get)
      yield* TestClock.adjust(Duration.millis(6_999))
      expect(yield* fake.fetches).toBe(1)
      yield* TestClock.adjust(Duration.millis(1))
      expect(yield* fake.fetches).toBe(2)
      expect(valueOf(yield* Fiber.join(fiber))).toBe("token-2")
    }))

  it.scoped("retries give up after the schedule, and the error reaches the waiters", () =>
    Effect.gen(function*() {
      const fake = yield* fakeSource({ script: Arr.replicate(fail("Timeout"), 10) })
      const cache = yield* TokenCache.make(fake.source, { retry: Schedule.recurs(2) })
      const error = yield* Effect.flip(cache.get)
      expect(error.reason._tag).toBe("Timeout")
      expect(yield* fake.fetches).toBe(3)
    }))

  it.scoped("an interrupted caller does not cancel the shared fetch", () =>
    Effect.gen(function*() {
      const fake = yield* fakeSource({ delay: "1 second" })
      const cache = yield* TokenCache.make(fake.source)
      const first = yield* Effect.fork(cache.get)
      yield* settle
      const second = yield* Effect.fork(cache.get)
      yield* settle
      yield* Fiber.interrupt(first)
      yield* TestClock.adjust("1 second")
      expect(valueOf(yield* Fiber.join(second))).toBe("token-1")
      expect(yield* fake.interrupted).toBe(0)
      expect(yield* fake.fetches).toBe(1)
    }))

  it.effect("closing the cache's scope interrupts its background fetch", () =>
    Effect.gen(function*() {
      const fake = yield* fakeSource({ delay: "1 minute" })
      const scope = yield* Scope.make()
      const cache = yield* TokenCache.make(fake.source).pipe(Scope.extend(scope))
      const waiter = yield* Effect.fork(cache.get)
      yield* settle
      yield* Scope.close(scope, Exit.void)
      expect(yield* fake.interrupted).toBe(1)
      const exit = yield* Fiber.await(waiter)
      expect(Exit.isInterrupted(exit)).toBe(true)
    }))

  it.scoped("a forced refresh joins a fetch in flight", () =>
    Effect.gen(function*() {
      const fake = yield* fakeSource({ delay: "1 second" })
      const cache = yield* TokenCache.make(fake.source)
      const get = yield* Effect.fork(cache.get)
      yield* settle
      const forced = yield* Effect.fork(cache.refresh)
      yield* TestClock.adjust("1 second")
      expect(valueOf(yield* Fiber.join(get))).toBe("token-1")
      expect(valueOf(yield* Fiber.join(forced))).toBe("token-1")
      expect(yield* fake.fetches).toBe(1)
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
      const fake = yield* fakeSource({ script: [fail("OAuthError", { code: "invalid_client" })] })
      const cache = yield* TokenCache.make(fake.source, { name: "metrics-test" })
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
      const fetches = yield* Ref.make(0)
      const source = TokenSource.make({
        key: "gated",
        fetch: Effect.gen(function*() {
          yield* Ref.update(fetches, (n) => n + 1)
          yield* Deferred.await(gate)
          return AccessToken.make({ value: Redacted.make("gated"), issuedAt: yield* DateTime.now })
        })
      })
      const cache = yield* TokenCache.make(source)
      const early = yield* Effect.fork(cache.get)
      yield* settle
      const late = yield* Effect.fork(cache.get)
      yield* settle
      yield* Deferred.succeed(gate, void 0)
      expect(valueOf(yield* Fiber.join(early))).toBe("gated")
      expect(valueOf(yield* Fiber.join(late))).toBe("gated")
      expect(yield* Ref.get(fetches)).toBe(1)
    }))
})
