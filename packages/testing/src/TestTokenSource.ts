/**
 * A scripted `TokenSource` for testing what sits above a source (caches, middleware, your own code) without any
 * HTTP at all.
 *
 * Each fetch takes the next scripted outcome (a token with a chosen lifetime, a `TokenError`, either after a
 * delay or a gate); with the script empty it succeeds with `token-1`, `token-2`, ... of the configured lifetime.
 * It records what a test asserts on: how many fetches, when each started (on the Effect `Clock`), how many ran
 * at once, how many were interrupted; and a test can wait until a number of fetches have started or finished
 * instead of yielding and hoping the fibers got that far.
 *
 * @since 0.1.0
 */
import { AccessToken, TokenError, TokenSource } from "@effect-token/core"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as DateTime from "effect/DateTime"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Ref from "effect/Ref"

/**
 * A lifetime, or `"unknown"` for a token without `expiresAt` (a server that sent neither `expires_in` nor a JWT).
 *
 * @since 0.1.0
 * @category models
 */
export type Lifetime = Duration.DurationInput | "unknown"

/**
 * What one fetch does. `delay` waits on the Effect `Clock` (`TestClock` decides); `gate` waits for an effect,
 * e.g. `Deferred.await(release)`, so a test can hold a fetch in flight as long as it likes.
 *
 * @example
 * ```ts
 * import { TestTokenSource } from "@effect-token/testing"
 * import { Deferred, Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const release = yield* Deferred.make<void>()
 *   const test = yield* TestTokenSource.make()
 *   yield* test.script(
 *     TestTokenSource.succeed({ gate: Deferred.await(release) }),
 *     TestTokenSource.fail("Timeout", { delay: "10 seconds" })
 *   )
 * })
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export type Outcome =
  | {
    readonly _tag: "Succeed"
    readonly value: Option.Option<string>
    readonly lifetime: Option.Option<Lifetime>
    /** A fixed expiry, which takes the place of `lifetime`. */
    readonly expiresAt: Option.Option<DateTime.Utc>
    readonly scope: Option.Option<string>
    readonly refreshToken: Option.Option<string>
    readonly delay: Option.Option<Duration.Duration>
    readonly gate: Option.Option<Effect.Effect<void>>
  }
  | {
    readonly _tag: "Fail"
    readonly error: TokenError.TokenError
    readonly delay: Option.Option<Duration.Duration>
    readonly gate: Option.Option<Effect.Effect<void>>
  }

/**
 * @since 0.1.0
 * @category models
 */
export interface Timing {
  readonly delay?: Duration.DurationInput | undefined
  readonly gate?: Effect.Effect<void> | undefined
}

/**
 * A successful fetch. Unset fields take the source's defaults (next `token-N` value, configured lifetime, configured
 * delay). `expiresAt` fixes the expiry instead of a lifetime from the fetch: a server that keeps handing back the
 * token it issued before.
 *
 * @example
 * ```ts
 * import { TestTokenSource } from "@effect-token/testing"
 *
 * const outcome = TestTokenSource.succeed({ lifetime: "10 seconds", delay: "1 second" })
 * const same = TestTokenSource.succeed({ value: "same", expiresAt: 100_000 })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const succeed = (
  options: Timing & {
    readonly value?: string | undefined
    readonly lifetime?: Lifetime | undefined
    readonly expiresAt?: DateTime.DateTime.Input | undefined
    readonly scope?: string | undefined
    readonly refreshToken?: string | undefined
  } = {}
): Outcome => ({
  _tag: "Succeed",
  value: Option.fromNullable(options.value),
  lifetime: Option.fromNullable(options.lifetime),
  expiresAt: Option.map(Option.fromNullable(options.expiresAt), (at) => DateTime.toUtc(DateTime.unsafeMake(at))),
  scope: Option.fromNullable(options.scope),
  refreshToken: Option.fromNullable(options.refreshToken),
  delay: Option.map(Option.fromNullable(options.delay), Duration.decode),
  gate: Option.fromNullable(options.gate)
})

const reasonOf = (
  tag: TokenError.TokenErrorReason["_tag"],
  options: {
    readonly status?: number | undefined
    readonly code?: string | undefined
    readonly retryAfter?: Duration.DurationInput | undefined
  }
): TokenError.TokenErrorReason => {
  const status = options.status === undefined ? {} : { status: options.status }
  const retryAfter = options.retryAfter === undefined ? {} : { retryAfter: Duration.decode(options.retryAfter) }
  switch (tag) {
    case "OAuthError":
      return new TokenError.OAuthError({
        code: options.code ?? "invalid_request",
        status: 400,
        ...status,
        ...retryAfter
      })
    case "RefreshTokenRejected":
      return new TokenError.RefreshTokenRejected({ description: "rejected by the test token source", ...status })
    case "Transport":
      return new TokenError.Transport({ description: "test transport failure" })
    case "Timeout":
      return new TokenError.Timeout({ bound: "attempt", after: Duration.seconds(10) })
    case "Unavailable":
      return new TokenError.Unavailable({ ...status, ...retryAfter })
    case "MalformedResponse":
      return new TokenError.MalformedResponse({ description: "malformed test response", ...status })
    case "Misconfigured":
      return new TokenError.Misconfigured({ description: "misconfigured test source" })
  }
}

/**
 * A failed fetch: a `TokenError`, a reason, or a reason's tag to build one from (with the status, OAuth `code` and
 * `Retry-After` given in the options, and test defaults for the rest).
 *
 * @example
 * ```ts
 * import { TestTokenSource } from "@effect-token/testing"
 *
 * const outcome = TestTokenSource.fail("Unavailable", { status: 503, retryAfter: "2 seconds" })
 * const rejected = TestTokenSource.fail("OAuthError", { code: "invalid_client", status: 401 })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const fail = (
  error: TokenError.TokenError | TokenError.TokenErrorReason | TokenError.TokenErrorReason["_tag"],
  options: Timing & {
    readonly status?: number | undefined
    readonly code?: string | undefined
    readonly retryAfter?: Duration.DurationInput | undefined
  } = {}
): Outcome => ({
  _tag: "Fail",
  error: TokenError.isTokenError(error)
    ? error
    : new TokenError.TokenError({
      operation: "test token source",
      reason: typeof error === "string" ? reasonOf(error, options) : error
    }),
  delay: Option.map(Option.fromNullable(options.delay), Duration.decode),
  gate: Option.fromNullable(options.gate)
})

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The source's cache key. Default `"test-token-source"`. */
  readonly key?: string | undefined
  /** Lifetime of default tokens and of scripted ones that set none. Default 5 minutes. */
  readonly lifetime?: Lifetime | undefined
  /** How long each fetch takes whose outcome sets no `delay` of its own, on the Effect `Clock`. Default: none. */
  readonly delay?: Duration.DurationInput | undefined
  /** Default token values are `${prefix}-1`, `${prefix}-2`, ... Default `"token"`. */
  readonly prefix?: string | undefined
  /** Outcomes of the first fetches. */
  readonly script?: ReadonlyArray<Outcome> | undefined
}

/**
 * @example
 * ```ts
 * import { TestTokenSource } from "@effect-token/testing"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const test = yield* TestTokenSource.make()
 *   yield* Effect.all([test.source.fetch, test.source.fetch], { concurrency: "unbounded" })
 *   const most = yield* test.maxInFlight // 2: no single flight without a cache
 *   yield* Effect.fork(test.source.fetch)
 *   yield* test.awaitFetches(3) // the forked fetch has started
 * })
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface TestTokenSource {
  /** The `TokenSource` to hand to the code under test. */
  readonly source: TokenSource.TokenSource
  /** Appends outcomes for the next fetches. */
  readonly script: (...outcomes: ReadonlyArray<Outcome>) => Effect.Effect<void>
  /** Outcomes scripted but not yet used. */
  readonly pending: Effect.Effect<number>
  /** Sets the lifetime of default tokens from now on. */
  readonly setLifetime: (lifetime: Lifetime) => Effect.Effect<void>
  /** Fetches started. */
  readonly fetches: Effect.Effect<number>
  /** When each fetch started, on the Effect `Clock`. */
  readonly fetchStarts: Effect.Effect<ReadonlyArray<DateTime.Utc>>
  /** Fetches running now. */
  readonly inFlight: Effect.Effect<number>
  /** The most fetches that ever ran at once: 1 for a single-flight cache. */
  readonly maxInFlight: Effect.Effect<number>
  /** Fetches interrupted before they finished. */
  readonly interruptions: Effect.Effect<number>
  /**
   * Waits until `n` fetches (in all) have started, at once if they have: e.g. until a cache has started its
   * background refresh, which runs in a fiber of its own.
   */
  readonly awaitFetches: (n: number) => Effect.Effect<void>
  /** Waits until `n` fetches (in all) have finished: succeeded, failed or been interrupted. */
  readonly awaitFinished: (n: number) => Effect.Effect<void>
  /** Tokens handed out, oldest first. */
  readonly issued: Effect.Effect<ReadonlyArray<AccessToken.AccessToken>>
}

/**
 * @example
 * ```ts
 * import { TestTokenSource } from "@effect-token/testing"
 * import { Effect } from "effect"
 *
 * const fetches = Effect.flatMap(TestTokenSource.TestTokenSource, (test) => test.fetches).pipe(
 *   Effect.provide(TestTokenSource.layer())
 * )
 * ```
 *
 * @since 0.1.0
 * @category tags
 */
export const TestTokenSource: Context.Tag<TestTokenSource, TestTokenSource> = Context.GenericTag<TestTokenSource>(
  "@effect-token/testing/TestTokenSource"
)

interface State {
  readonly script: ReadonlyArray<Outcome>
  readonly lifetime: Lifetime
  readonly fetchStarts: ReadonlyArray<DateTime.Utc>
  readonly finished: number
  readonly inFlight: number
  readonly maxInFlight: number
  readonly interruptions: number
  readonly issued: ReadonlyArray<AccessToken.AccessToken>
  readonly defaultValues: number
  readonly waiters: ReadonlyArray<Waiter>
}

/** A test waiting for a count of started or finished fetches. */
interface Waiter {
  readonly counts: "started" | "finished"
  readonly n: number
  readonly deferred: Deferred.Deferred<void>
}

const countOf = (s: State, counts: Waiter["counts"]): number => counts === "started" ? s.fetchStarts.length : s.finished

/** Takes the waiters whose count is reached out of the state; the caller wakes them. */
const reached = (s: State): [ReadonlyArray<Deferred.Deferred<void>>, State] => {
  const ready: Array<Deferred.Deferred<void>> = []
  const waiting: Array<Waiter> = []
  for (const waiter of s.waiters) {
    if (countOf(s, waiter.counts) >= waiter.n) ready.push(waiter.deferred)
    else waiting.push(waiter)
  }
  return [ready, { ...s, waiters: waiting }]
}

const wake = (ready: ReadonlyArray<Deferred.Deferred<void>>): Effect.Effect<void> =>
  Effect.forEach(ready, (deferred) => Deferred.succeed(deferred, undefined), { discard: true })

const defaultOutcome: Outcome = succeed()

/**
 * @example
 * ```ts
 * import { TestTokenSource } from "@effect-token/testing"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const test = yield* TestTokenSource.make({ lifetime: "1 minute" })
 *   yield* test.script(TestTokenSource.fail("Unavailable"))
 *   const first = yield* Effect.either(test.source.fetch) // Left(TokenError Unavailable)
 *   const second = yield* test.source.fetch // token-1, expires in 1 minute
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options = {}): Effect.Effect<TestTokenSource> =>
  Effect.gen(function*() {
    const prefix = options.prefix ?? "token"
    const defaultDelay = Option.map(Option.fromNullable(options.delay), Duration.decode)
    const state = yield* Ref.make<State>({
      script: options.script ?? [],
      lifetime: options.lifetime ?? Duration.minutes(5),
      fetchStarts: [],
      finished: 0,
      inFlight: 0,
      maxInFlight: 0,
      interruptions: 0,
      issued: [],
      defaultValues: 0,
      waiters: []
    })

    const start = Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Ref.modify(state, (s): [[Outcome, ReadonlyArray<Deferred.Deferred<void>>], State] => {
        const [next, ...rest] = s.script
        const inFlight = s.inFlight + 1
        const [ready, started] = reached({
          ...s,
          script: next === undefined ? s.script : rest,
          fetchStarts: [...s.fetchStarts, DateTime.unsafeMake(now)],
          inFlight,
          maxInFlight: Math.max(s.maxInFlight, inFlight)
        })
        return [[next ?? defaultOutcome, ready], started]
      }).pipe(Effect.flatMap(([outcome, ready]) =>
        Effect.as(wake(ready), outcome)
      )))

    const run = (outcome: Outcome): Effect.Effect<AccessToken.AccessToken, TokenError.TokenError> =>
      Effect.gen(function*() {
        // As a token endpoint's: the lifetime counts from when the request went out, not from when it arrived.
        const now = yield* DateTime.now
        const delay = Option.orElse(outcome.delay, () => defaultDelay)
        if (Option.isSome(delay)) yield* Effect.sleep(delay.value)
        if (Option.isSome(outcome.gate)) yield* outcome.gate.value
        if (outcome._tag === "Fail") return yield* Effect.fail(outcome.error)
        const token = yield* Ref.modify(state, (s): [AccessToken.AccessToken, State] => {
          const defaultValues = Option.isNone(outcome.value) ? s.defaultValues + 1 : s.defaultValues
          const lifetime = Option.getOrElse(outcome.lifetime, () => s.lifetime)
          const token = AccessToken.make({
            value: Redacted.make(Option.getOrElse(outcome.value, () => `${prefix}-${defaultValues}`)),
            issuedAt: now,
            expiresAt: Option.isSome(outcome.expiresAt)
              ? outcome.expiresAt
              : lifetime === "unknown"
              ? Option.none()
              : Option.some(DateTime.addDuration(now, lifetime)),
            scope: outcome.scope,
            refreshToken: Option.map(outcome.refreshToken, Redacted.make)
          })
          return [token, { ...s, defaultValues, issued: [...s.issued, token] }]
        })
        return token
      })

    const fetch = Effect.acquireUseRelease(
      start,
      run,
      (_, exit) =>
        Ref.modify(state, (s) =>
          reached({
            ...s,
            finished: s.finished + 1,
            inFlight: s.inFlight - 1,
            interruptions: Exit.isInterrupted(exit) ? s.interruptions + 1 : s.interruptions
          })).pipe(Effect.flatMap(wake))
    )

    const awaitCount = (counts: Waiter["counts"]) => (n: number): Effect.Effect<void> =>
      Effect.flatMap(Deferred.make<void>(), (deferred) =>
        Effect.flatten(Ref.modify(state, (s): [Effect.Effect<void>, State] =>
          countOf(s, counts) >= n
            ? [Effect.void, s]
            : [Deferred.await(deferred), { ...s, waiters: [...s.waiters, { counts, n, deferred }] }])))

    return {
      source: TokenSource.make({ key: options.key ?? "test-token-source", fetch }),
      script: (...outcomes) =>
        Ref.update(state, (s) => ({ ...s, script: [...s.script, ...outcomes] })),
      pending: Effect.map(Ref.get(state), (s) =>
        s.script.length),
      setLifetime: (lifetime) =>
        Ref.update(state, (s) => ({ ...s, lifetime })),
      fetches: Effect.map(Ref.get(state), (s) => s.fetchStarts.length),
      fetchStarts: Effect.map(Ref.get(state), (s) => s.fetchStarts),
      inFlight: Effect.map(Ref.get(state), (s) => s.inFlight),
      maxInFlight: Effect.map(Ref.get(state), (s) => s.maxInFlight),
      interruptions: Effect.map(Ref.get(state), (s) => s.interruptions),
      awaitFetches: awaitCount("started"),
      awaitFinished: awaitCount("finished"),
      issued: Effect.map(Ref.get(state), (s) => s.issued)
    } satisfies TestTokenSource
  })

/**
 * Provides a {@link TestTokenSource} and its `source` as the default `TokenSource`.
 *
 * @example
 * ```ts
 * import { TokenSource } from "@effect-token/core"
 * import { TestTokenSource } from "@effect-token/testing"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const source = yield* TokenSource.TokenSource
 *   yield* source.fetch
 *   const test = yield* TestTokenSource.TestTokenSource
 *   return yield* test.fetches // 1
 * }).pipe(Effect.provide(TestTokenSource.layer()))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Options = {}
): Layer.Layer<TestTokenSource | TokenSource.TokenSource> =>
  Layer.effectContext(
    Effect.map(make(options), (test) =>
      Context.make(TestTokenSource, test).pipe(Context.add(TokenSource.TokenSource, test.source)))
  )
