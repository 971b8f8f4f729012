/**
 * A token cache whose lifetime follows each token: single flight without serializing callers, refresh ahead so
 * the hot path never waits, compare-and-clear invalidation, and failures that are never cached.
 *
 * States (a cell of the single-flight engine): `Empty` → `Fetching` → `Ready` → (refresh window) `Refreshing` →
 * `Ready`. A `get` on a `Ready` token reads the state and the clock and returns: it takes no lock, so a fetch in
 * progress never delays it. Every other `get` decides in one synchronous step, starts at most one fetch (in the
 * cache's own scope, so that no caller's interruption cancels it) and waits for it.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import type * as AccessToken from "./AccessToken.js"
import type * as DPoP from "./DPoP.js"
import * as internal from "./internal/tokenCache.js"
import type * as TokenError from "./TokenError.js"
import * as TokenSource from "./TokenSource.js"
import * as TokenTiming from "./TokenTiming.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface TokenCache {
  /** The source's key: identifies the token this cache holds. */
  readonly key: string
  /**
   * A token valid for at least the skew. Waits only when no valid token is cached; then joins the fetch in flight
   * or starts the one fetch.
   */
  readonly get: Effect.Effect<AccessToken.AccessToken, TokenError.TokenError>
  /**
   * Clears the cached token only if it is `token` (compare-and-clear), e.g. after a 401 for it. Returns whether
   * it did. Rejections of an already replaced token change nothing, so a burst of 401s causes one refresh.
   */
  readonly invalidate: (token: AccessToken.AccessToken) => Effect.Effect<boolean>
  /** Fetches a new token now (joining a fetch in flight); others keep the current token until it arrives. */
  readonly refresh: Effect.Effect<AccessToken.AccessToken, TokenError.TokenError>
  /** The state machine's current state, for diagnostics and tests. */
  readonly state: Effect.Effect<State>
  /** The source's DPoP key, when its tokens are bound to one: an authenticated client over the cache uses it. */
  readonly dpop?: DPoP.DPoPKey | undefined
}

/**
 * The cache's state. Times are epoch milliseconds of the Effect `Clock`.
 *
 * @since 0.1.0
 * @category models
 */
export type State = internal.State

/**
 * What started a fetch (the `trigger` label of the `effect_token_fetches` counter).
 *
 * @since 0.1.0
 * @category models
 */
export type Trigger = internal.Trigger

/**
 * @since 0.1.0
 * @category models
 */
export interface Options extends TokenTiming.Timing {
  /** Low-cardinality name for metrics, spans and logs. Default `"default"`. */
  readonly name?: string | undefined
  // Timing (`skew`, `refreshAhead`, `refreshAheadJitter`, `refreshBefore`, `defaultLifetime`): see `TokenTiming`,
  // whose defaults apply. The refresh window is also never shorter than twice the time recent fetches took, so that a
  // slow authorization server's answer still arrives before the current token goes.
  /** Retries of a failed fetch before its waiters see the error. Default {@link defaultRetry}. */
  readonly retry?: Schedule.Schedule<unknown, TokenError.TokenError> | undefined
  /**
   * The longest a caller waits for a token, retries included; then it fails with reason `Timeout` (bound
   * `acquire`) while the fetch goes on for later callers. Each request to the token endpoint has its own bound, the
   * source's `attemptTimeout`. Default 30 seconds ({@link defaultAcquireTimeout}); `Duration.infinity` turns it off.
   */
  readonly acquireTimeout?: Duration.DurationInput | undefined
  /**
   * After a failure no retry can fix (`invalid_client`, `unauthorized_client`, `Misconfigured`), calls within this
   * time fail at once with the same error instead of each asking the authorization server. Default 5 seconds; 0
   * turns it off. (A `Retry-After` on a failure that says "later", such as a 429 or 503, holds calls back the same
   * way, for the time the server asked, up to {@link Options.maxHold}.) Held calls' errors say when the hold ends
   * (`TokenError.heldUntil`).
   */
  readonly permanentFailureHold?: Duration.DurationInput | undefined
  /**
   * The longest any hold lasts, whatever a server's `Retry-After` asks for: past it the next call asks the
   * authorization server again. Default 60 seconds, the longest `Retry-After` the default retries wait.
   */
  readonly maxHold?: Duration.DurationInput | undefined
}

/**
 * The default cache of an application.
 *
 * @since 0.1.0
 * @category tags
 */
export const TokenCache: Context.Tag<TokenCache, TokenCache> = Context.GenericTag<TokenCache>(
  "@effect-token/core/TokenCache"
)

/**
 * The longest a caller waits for a token by default (`acquireTimeout`): 30 seconds.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultAcquireTimeout: Duration.Duration = internal.defaultAcquireTimeout

/**
 * The longest any hold lasts by default (`maxHold`): 60 seconds.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultMaxHold: Duration.Duration = internal.defaultMaxHold

/**
 * The default fetch retry: transient failures only (`TokenError.isTransient`), 3 retries with jittered exponential
 * backoff from 100 ms, honouring `Retry-After` up to 60 s. `invalid_client` and friends fail at once.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultRetry: Schedule.Schedule<TokenError.TokenError, TokenError.TokenError> = internal.defaultRetry

/**
 * A cache over `source`, living as long as the scope. Build one per API, scope or audience and give each its own
 * Tag when an application has several.
 *
 * @example
 * ```ts
 * import { TokenCache, TokenSource } from "@effect-token/core"
 * import { Context, Effect, Layer } from "effect"
 *
 * class BillingTokens extends Context.Tag("BillingTokens")<BillingTokens, TokenCache.TokenCache>() {}
 *
 * declare const billingSource: TokenSource.TokenSource
 *
 * const BillingTokensLive = Layer.scoped(BillingTokens, TokenCache.make(billingSource, { name: "billing" }))
 *
 * const program = Effect.gen(function*() {
 *   const cache = yield* BillingTokens
 *   const token = yield* cache.get
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: (
  source: TokenSource.TokenSource,
  options?: Options
) => Effect.Effect<TokenCache, never, Scope.Scope> = internal.make

/**
 * Provides the default `TokenCache` over the default `TokenSource`.
 *
 * @example
 * ```ts
 * import { ClientCredentials, TokenCache } from "@effect-token/core"
 * import { NodeHttpClient } from "@effect/platform-node"
 * import { Layer } from "effect"
 *
 * const TokensLive = TokenCache.layer({ skew: "10 seconds" }).pipe(
 *   Layer.provide(ClientCredentials.layerConfig()),
 *   Layer.provide(NodeHttpClient.layerUndici)
 * )
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options?: Options): Layer.Layer<TokenCache, never, TokenSource.TokenSource> =>
  Layer.scoped(TokenCache, Effect.flatMap(TokenSource.TokenSource, (source) => internal.make(source, options)))

/**
 * When a cache with these options stops handing out `token` (epoch milliseconds): its expiry (or `issuedAt` plus
 * `defaultLifetime` when it has none) minus the skew, where the skew takes at most 10 % of the lifetime but at least
 * one second of it where the lifetime allows (never more than half). A shared store uses the same arithmetic, so
 * that every layer agrees on when a token ends.
 *
 * @example
 * ```ts
 * import { AccessToken, TokenCache } from "@effect-token/core"
 * import { DateTime, Option, Redacted } from "effect"
 *
 * const issuedAt = DateTime.unsafeMake(0)
 * const token = AccessToken.make({
 *   value: Redacted.make("t"),
 *   issuedAt,
 *   expiresAt: Option.some(DateTime.addDuration(issuedAt, "2 seconds"))
 * })
 * TokenCache.validUntil(token) // 1000: a 2 s token is served for 1 s
 * ```
 *
 * @since 0.1.0
 * @category utils
 */
export const validUntil = (
  token: AccessToken.AccessToken,
  options: Pick<Options, "skew" | "defaultLifetime"> = {}
): number => TokenTiming.validUntil(token, TokenTiming.resolve(options))
