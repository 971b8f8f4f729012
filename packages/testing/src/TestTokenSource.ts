/**
 * A scripted `TokenSource` for testing what sits above a source (caches, middleware, your own code) without any
 * HTTP at all.
 *
 * Each fetch takes the next scripted outcome (a token with a chosen lifetime, a `TokenError`, either after a
 * delay or a gate); with the script empty it succeeds with `token-1`, `token-2`, ... of the configured lifetime.
 * It records what a test asserts on: how many fetches, when each started (on the Effect `Clock`), how many ran
 * at once, how many were interrupted.
 *
 * @since 0.1.0
 */
import { AccessToken, TokenError, TokenSource } from "@effect-token/core"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as DateTime from "effect/DateTime"
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
 * A successful fetch. Unset fields take the source's defaults (next `token-N` value, configured lifetime).
 *
 * @example
 * ```ts
 * import { TestTokenSource } from "@effect-token/testing"
 *
 * const outcome = TestTokenSource.succeed({ lifetime: "10 seconds", delay: "1 second" })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const succeed = (
  options: Timing & {
    readonly value?: string | undefined
    readonly lifetime?: Lifetime | undefined
    readonly scope?: string | undefined
    readonly refreshToken?: string | undefined
  } = {}
): Outcome => ({
  _tag: "Succeed",
  value: Option.fromNullable(options.value),
  lifetime: Option.fromNullable(options.lifetime),
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
  readonly inFlight: number
  readonly maxInFlight: number
  readonly interruptions: number
  readonly issued: ReadonlyArray<AccessToken.AccessToken>
  readonly defaultValues: number
}

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
    const state = yield* Ref.make<State>({
      script: options.script ?? [],
      lifetime: options.lifetime ?? Duration.minutes(5),
      fetchStarts: [],
      inFlight: 0,
      maxInFlight: 0,
      interruptions: 0,
      issued: [],
      defaultValues: 0
    })

    const start = Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Ref.modify(state, (s): [Outcome, State] => {
        const [next, ...rest] = s.script
        const inFlight = s.inFlight + 1
        return [next ?? defaultOutcome, {
          ...s,
          script: next === undefined ? s.script : rest,
          fetchStarts: [...s.fetchStarts, DateTime.unsafeMake(now)],
          inFlight,
          maxInFlight: Math.max(s.maxInFlight, inFlight)
        }]
      }))

    const run = (outcome: Outcome): Effect.Effect<AccessToken.AccessToken, TokenError.TokenError> =>
      Effect.gen(function*() {
        if (Option.isSome(outcome.delay)) yield* Effect.sleep(outcome.delay.value)
        if (Option.isSome(outcome.gate)) yield* outcome.gate.value
        if (outcome._tag === "Fail") return yield* Effect.fail(outcome.error)
        const now = yield* DateTime.now
        const token = yield* Ref.modify(state, (s): [AccessToken.AccessToken, State] => {
          const defaultValues = Option.isNone(outcome.value) ? s.defaultValues + 1 : s.defaultValues
          const lifetime = Option.getOrElse(outcome.lifetime, () => s.lifetime)
          const token = AccessToken.make({
            value: Redacted.make(Option.getOrElse(outcome.value, () => `${prefix}-${defaultValues}`)),
            issuedAt: now,
            expiresAt: lifetime === "unknown" ? Option.none() : Option.some(DateTime.addDuration(now, lifetime)),
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
        Ref.update(state, (s) => ({
          ...s,
          inFlight: s.inFlight - 1,
          interruptions: Exit.isInterrupted(exit) ? s.interruptions + 1 : s.interruptions
        }))
    )

    return {
      source: TokenSource.make({ key: options.key ?? "test-token-source", fetch }),
      script: (...outcomes) => Ref.update(state, (s) => ({ ...s, script: [...s.script, ...outcomes] })),
      pending: Effect.map(Ref.get(state), (s) => s.script.length),
      setLifetime: (lifetime) => Ref.update(state, (s) => ({ ...s, lifetime })),
      fetches: Effect.map(Ref.get(state), (s) => s.fetchStarts.length),
      fetchStarts: Effect.map(Ref.get(state), (s) => s.fetchStarts),
      inFlight: Effect.map(Ref.get(state), (s) => s.inFlight),
      maxInFlight: Effect.map(Ref.get(state), (s) => s.maxInFlight),
      interruptions: Effect.map(Ref.get(state), (s) => s.interruptions),
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
