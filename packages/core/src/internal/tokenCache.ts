import * as DateTime from "effect/DateTime"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Metric from "effect/Metric"
import * as MetricLabel from "effect/MetricLabel"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as AccessToken from "../AccessToken.js"
import * as Backoff from "../Backoff.js"
import type { Options, TokenCache } from "../TokenCache.js"
import * as TokenError from "../TokenError.js"
import type * as TokenSource from "../TokenSource.js"
import * as TokenTiming from "../TokenTiming.js"
import * as singleFlight from "./singleFlight.js"
import { b64token } from "./tokenResponse.js"

/*
 * Why not `Effect.cachedInvalidateWithTTL`: it caches a failed fetch for the whole TTL, its TTL is fixed when the
 * cache is built (a token's lifetime is only known once it arrives), it cannot refresh ahead while handing out the
 * current value, and its invalidation clears whatever is cached (a 401 for an already replaced token would throw
 * away the fresh one). The single-flight engine (`singleFlight.ts`) does all four right.
 */

export type State =
  | { readonly _tag: "Empty" }
  | { readonly _tag: "Fetching" }
  | {
    readonly _tag: "Ready" | "Refreshing"
    readonly token: AccessToken.AccessToken
    /** Epoch milliseconds: the token is handed out strictly before this instant (its expiry minus the skew). */
    readonly validUntil: number
    /** Epoch milliseconds: from this instant on, the first `get` starts a background refresh. */
    readonly refreshAt: number
  }

export type Trigger = singleFlight.Trigger

export const defaultRetry: Schedule.Schedule<TokenError.TokenError, TokenError.TokenError> = Backoff.schedule({
  isTransient: TokenError.isTransient,
  retryAfter: TokenError.retryAfter
})

const hits = Metric.counter("effect_token_cache_hits", {
  description: "Token requests answered from the cache without waiting",
  incremental: true
})
const fetches = Metric.counter("effect_token_fetches", {
  description: "Token fetches started by caches",
  incremental: true
})
const failures = Metric.counter("effect_token_fetch_failures", {
  description: "Token fetches that failed after their retries",
  incremental: true
})
const invalidations = Metric.counter("effect_token_invalidations", {
  description: "Cached tokens cleared because a resource server rejected them",
  incremental: true
})

// One tagged hit counter per cache name, shared by every cache of that name (about 0.7 KB each otherwise). Names
// are low-cardinality by contract, like the metric registry they end up in.
const hitCounters = new Map<string, Metric.Metric.Counter<number>>()
const hitCounter = (name: string): Metric.Metric.Counter<number> => {
  let counter = hitCounters.get(name)
  if (counter === undefined) {
    counter = Metric.tagged(hits, "cache", name)
    hitCounters.set(name, counter)
  }
  return counter
}

/**
 * Whether `token` came too late: it had a usable lifetime when its request was sent (`issuedAt`), and that lifetime
 * ran out before it arrived. Such a token is a miss (the cache fetches again), not a failure.
 */
export const lateOnArrival = (options: Options) => {
  const timing = TokenTiming.resolve(options)
  return (token: AccessToken.AccessToken, now: number): boolean => {
    const validUntil = TokenTiming.validUntil(token, timing)
    return validUntil <= now && validUntil > token.issuedAt.epochMillis
  }
}

const expiredOnArrival = (token: AccessToken.AccessToken) =>
  new TokenError.TokenError({
    operation: "token cache",
    reason: new TokenError.MalformedResponse({
      description: `the token source returned a token that is already expired (expires at ${
        Option.match(token.expiresAt, { onNone: () => "unknown", onSome: (e) => e.toString() })
      }, requested at ${token.issuedAt.toString()})`
    })
  })

/**
 * A token no `Authorization` header can carry (empty, a space, a NUL, a non-ASCII character), from a source of the
 * user's own: the token endpoint's decoder refuses such values already, but a custom source is not decoded. Cached,
 * it would fail every request for its whole lifetime as a transport error; sent, it would be `Bearer ` and nothing.
 */
const unsendable = new TokenError.TokenError({
  operation: "token cache",
  reason: new TokenError.MalformedResponse({
    fields: ["value"],
    description: "the token source returned a token that cannot be sent (not an RFC 6750 b64token)"
  })
})

const acquireTimedOut = (after: Duration.Duration) =>
  new TokenError.TokenError({
    operation: "token cache",
    reason: new TokenError.Timeout({ bound: "acquire", after })
  })

/** When a token stops being served and when its refresh starts: `TokenTiming.validity`, with this cache's draw. */
export const validity = (options: Options) => {
  const timing = TokenTiming.resolve(options)
  return (
    token: AccessToken.AccessToken,
    now: number,
    random: number,
    fetchMillis: number
  ): Either.Either<singleFlight.Validity, TokenError.TokenError> => {
    const { refreshAt, validUntil } = TokenTiming.validity(token, timing, now, { random, fetchMillis })
    // A token that is not valid even now (a custom source's, or a server clock far behind) is a failed fetch:
    // handing it out would break the promise that `get` never returns a token past `expiresAt - skew`.
    if (validUntil <= now) return Either.left(expiredOnArrival(token))
    if (!b64token.test(Redacted.value(token.value))) return Either.left(unsendable)
    return Either.right({ validUntil, refreshAt })
  }
}

const permanentCodes: ReadonlySet<string> = new Set(["invalid_client", "unauthorized_client"])

/**
 * The longest a caller waits for a token by default, retries included: the default retries of 10 s attempts take
 * about 41 s at worst, a custom source or a `Retry-After` longer still.
 */
export const defaultAcquireTimeout = Duration.seconds(30)

/** The longest any hold lasts by default: the longest `Retry-After` the retries wait (`Backoff`'s `maxRetryAfter`). */
export const defaultMaxHold = Duration.seconds(60)

/**
 * How long after `error` no new token request may start, never more than `maxHold`: the server's `Retry-After` on a
 * failure that says "later" (`TokenError.isTransient`: it asked for quiet, and sending anyway is what gets a client
 * blocked), or `permanentHold` after a failure that only a human can fix. A `Retry-After` on any other answer (a
 * 400 `invalid_scope`) holds nothing, and no server, nor a gateway in front of it, can stop token requests for
 * longer than `maxHold`: one `Retry-After: 1000000000` stopped them until the process restarted.
 */
export const holdFailure = (permanentHold: number, maxHold: number) => (error: TokenError.TokenError): number => {
  const transient = TokenError.isTransient(error)
  const after = TokenError.retryAfter(error)
  if (transient && Option.isSome(after)) return Math.min(Duration.toMillis(after.value), maxHold)
  const reason = error.reason
  const permanent = reason._tag === "Misconfigured" ||
    (reason._tag === "OAuthError" && permanentCodes.has(reason.code) && !transient)
  return permanent ? Math.min(permanentHold, maxHold) : 0
}

/** The failure as held callers see it: the same, saying when the hold ends. */
const heldUntil = (error: TokenError.TokenError, until: number): TokenError.TokenError =>
  new TokenError.TokenError({
    operation: error.operation,
    reason: error.reason,
    heldUntil: DateTime.unsafeMake(until),
    cause: error.cause
  })

/** Token requests refused because `maxInFlight` keys already had one in flight. */
const refused = Metric.counter("effect_token_fetches_refused", {
  description: "Token fetches not started because the manager's maxInFlight keys already had one in flight",
  incremental: true
})

/** The failure of a call that would start a fetch while `maxInFlight` fetches are in flight. */
export const busy = (name: string, maxInFlight: number): () => TokenError.TokenError => {
  const labels = [MetricLabel.make("cache", name)]
  const error = new TokenError.TokenError({
    operation: "token manager",
    reason: new TokenError.Unavailable({
      description: `${maxInFlight} keys already have a token request in flight (maxInFlight); try again later`
    })
  })
  return () => {
    refused.unsafeUpdate(1, labels)
    return error
  }
}

/**
 * The engine every token cell of one cache or manager shares: timing, retries, metrics, logs, spans; for a manager,
 * the bound on keys with a fetch in flight.
 */
export const makeEngine = (
  options: Options,
  name: string,
  bound?: { readonly maxInFlight: number; readonly busy: () => TokenError.TokenError }
): Effect.Effect<singleFlight.Engine<AccessToken.AccessToken, TokenError.TokenError>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const scope = yield* Effect.scope
    // The engine keeps the clock it was made with: reading it per `get` is most of the hot path's cost.
    const clock = yield* Effect.clock
    const random = yield* Effect.random
    const cacheLabel = [MetricLabel.make("cache", name)]
    const cacheHits = hitCounter(name)
    const acquire = Duration.decode(options.acquireTimeout ?? defaultAcquireTimeout)
    // `Duration.infinity` turns the bound off.
    const acquireTimeout = Duration.isFinite(acquire) ? acquire : undefined
    const permanentHold = Duration.toMillis(options.permanentFailureHold ?? Duration.seconds(5))
    const maxHold = Duration.toMillis(options.maxHold ?? defaultMaxHold)
    return singleFlight.makeEngine<AccessToken.AccessToken, TokenError.TokenError>({
      clock,
      random,
      scope,
      validity: validity(options),
      late: lateOnArrival(options),
      acquireTimeout,
      onAcquireTimeout: acquireTimedOut,
      same: AccessToken.sameValue,
      holdFailure: holdFailure(permanentHold, maxHold),
      held: heldUntil,
      maxInFlight: bound?.maxInFlight,
      busy: bound?.busy,
      onHit: () => cacheHits.unsafeUpdate(1, []),
      onFetch: (trigger) => fetches.unsafeUpdate(1, [...cacheLabel, MetricLabel.make("trigger", trigger)]),
      onFailure: (error, trigger) => {
        failures.unsafeUpdate(1, [...cacheLabel, MetricLabel.make("reason", error.reason._tag)])
        // Nobody waits on a background refresh: without this line its failure would go unseen.
        return trigger === "refresh_ahead"
          ? Effect.logWarning("effect-token: background token refresh failed; serving the current token").pipe(
            Effect.annotateLogs({ cache: name, reason: error.reason._tag, detail: error.message })
          )
          : Effect.void
      }
    })
  })

/** A source's fetch with the cache's retries and span. */
export const fetcher = (
  source: TokenSource.TokenSource,
  options: Options,
  name: string
): singleFlight.Fetch<AccessToken.AccessToken, TokenError.TokenError> => {
  const retry = options.retry ?? defaultRetry
  const fetch = Effect.retry(source.fetch, retry)
  return (trigger) =>
    Effect.withSpan(fetch, "effect-token/TokenCache.fetch", {
      attributes: { "effect_token.cache": name, "effect_token.trigger": trigger }
    })
}

export const countInvalidation = (name: string): void =>
  invalidations.unsafeUpdate(1, [MetricLabel.make("cache", name)])

/** Compare-and-clear of `token` in `cell`, then of the source's own shared copy (a cluster store), if it has one. */
export const invalidate = (
  engine: singleFlight.Engine<AccessToken.AccessToken, TokenError.TokenError>,
  cell: singleFlight.Cell<AccessToken.AccessToken, TokenError.TokenError>,
  source: TokenSource.TokenSource | undefined,
  name: string,
  token: AccessToken.AccessToken
): Effect.Effect<boolean> =>
  Effect.suspend(() => {
    if (!engine.invalidate(cell, (cached) => AccessToken.sameValue(cached, token))) return Effect.succeed(false)
    countInvalidation(name)
    return source?.invalidate === undefined ? Effect.succeed(true) : Effect.as(source.invalidate(token), true)
  })

export const stateOf = (cell: singleFlight.Cell<AccessToken.AccessToken, TokenError.TokenError>): State => {
  switch (cell.state) {
    case singleFlight.EMPTY:
      return { _tag: "Empty" }
    case singleFlight.FETCHING:
      return { _tag: "Fetching" }
    case singleFlight.READY:
    case singleFlight.REFRESHING:
      return {
        _tag: cell.state === singleFlight.READY ? "Ready" : "Refreshing",
        token: cell.value!,
        validUntil: cell.validUntil,
        refreshAt: cell.refreshAt
      }
  }
}

export const make = (
  source: TokenSource.TokenSource,
  options: Options = {}
): Effect.Effect<TokenCache, never, Scope.Scope> =>
  Effect.map(makeEngine(options, options.name ?? "default"), (engine) => {
    const name = options.name ?? "default"
    const cell = singleFlight.makeCell<AccessToken.AccessToken, TokenError.TokenError>()
    const fetch = fetcher(source, options, name)
    return {
      key: source.key,
      get: Effect.suspend(() => engine.get(cell, fetch)),
      invalidate: (token) => invalidate(engine, cell, source, name, token),
      refresh: Effect.suspend(() => engine.refresh(cell, fetch)),
      state: Effect.sync(() => stateOf(cell)),
      ...(source.dpop === undefined ? {} : { dpop: source.dpop })
    } satisfies TokenCache
  })
