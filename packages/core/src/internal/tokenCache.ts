import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Metric from "effect/Metric"
import * as MetricLabel from "effect/MetricLabel"
import * as Option from "effect/Option"
import * as Random from "effect/Random"
import * as Ref from "effect/Ref"
import type * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as SynchronizedRef from "effect/SynchronizedRef"
import * as AccessToken from "../AccessToken.js"
import * as Backoff from "../Backoff.js"
import type { Options, TokenCache } from "../TokenCache.js"
import * as TokenError from "../TokenError.js"
import type * as TokenSource from "../TokenSource.js"

/*
 * Why not `Effect.cachedInvalidateWithTTL`: it caches a failed fetch for the whole TTL, its TTL is fixed when the
 * cache is built (a token's lifetime is only known once it arrives), it cannot refresh ahead while handing out the
 * current value, and its invalidation clears whatever is cached (a 401 for an already replaced token would throw
 * away the fresh one). This state machine does all four right.
 */

type Pending = Deferred.Deferred<AccessToken.AccessToken, TokenError.TokenError>

/** Times in epoch milliseconds of the Effect `Clock`. */
interface Valid {
  readonly token: AccessToken.AccessToken
  /** Hand the token out strictly before this instant: its expiry minus the skew. */
  readonly validUntil: number
  /** From this instant on, the first `get` starts a background refresh. */
  readonly refreshAt: number
}

export type State =
  | { readonly _tag: "Empty" }
  | { readonly _tag: "Fetching"; readonly pending: Pending }
  | ({ readonly _tag: "Ready" } & Valid)
  | ({ readonly _tag: "Refreshing"; readonly pending: Pending } & Valid)

export type Trigger = "empty" | "expired" | "refresh_ahead" | "forced"

/** What a caller does once the lock is released, and the state to leave behind. */
type Decision = readonly [Effect.Effect<AccessToken.AccessToken, TokenError.TokenError>, State]

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

const minRefreshRetry = 1_000

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

const expiredOnArrival = (token: AccessToken.AccessToken) =>
  new TokenError.TokenError({
    reason: "MalformedResponse",
    operation: "token cache",
    detail: `the token source returned a token that is already expired (expires at ${
      Option.match(token.expiresAt, { onNone: () => "unknown", onSome: (e) => e.toString() })
    }, received at ${token.issuedAt.toString()})`
  })

export const make = (
  source: TokenSource.TokenSource,
  options: Options = {}
): Effect.Effect<TokenCache, never, Scope.Scope> =>
  Effect.gen(function*() {
    const scope = yield* Effect.scope
    // The cache keeps the clock it was made with: reading it per `get` is most of the hot path's cost.
    const clock = yield* Effect.clock
    const name = options.name ?? "default"
    const skewMillis = Duration.toMillis(options.skew ?? Duration.seconds(30))
    const refreshAhead = options.refreshAhead ?? 0.1
    const jitter = options.refreshAheadJitter ?? 0.5
    const defaultLifetimeMillis = Duration.toMillis(options.defaultLifetime ?? Duration.minutes(5))
    const retry = options.retry ?? defaultRetry
    const cacheLabel = [MetricLabel.make("cache", name)]
    const cacheHits = hitCounter(name)

    const ref = yield* SynchronizedRef.make<State>({ _tag: "Empty" })

    const validity = (token: AccessToken.AccessToken, random: number): Valid => {
      const issuedAt = token.issuedAt.epochMillis
      const expiresAt = Option.match(token.expiresAt, {
        onNone: () => issuedAt + defaultLifetimeMillis,
        onSome: (expiry) => expiry.epochMillis
      })
      const lifetime = expiresAt - issuedAt
      // A skew longer than half the lifetime would make short-lived tokens uncacheable (the prior art fetches on
      // every call when tokens live less than its fixed 300 s buffer).
      const validUntil = expiresAt - Math.min(skewMillis, Math.max(0, lifetime) / 2)
      const usable = Math.max(0, validUntil - issuedAt)
      const refreshAt = validUntil - usable * refreshAhead * (1 - jitter * random)
      return { token, validUntil, refreshAt }
    }

    const fetchOnce = (trigger: Trigger) =>
      source.fetch.pipe(
        Effect.retry(retry),
        Effect.tapError((error) => {
          failures.unsafeUpdate(1, [...cacheLabel, MetricLabel.make("reason", error.reason)])
          // Nobody waits on a background refresh: without this line its failure would go unseen.
          return trigger === "refresh_ahead"
            ? Effect.logWarning("effect-token: background token refresh failed; serving the current token").pipe(
              Effect.annotateLogs({ cache: name, reason: error.reason, detail: error.message })
            )
            : Effect.void
        }),
        Effect.withSpan("effect-token/TokenCache.fetch", {
          attributes: { "effect_token.cache": name, "effect_token.trigger": trigger }
        })
      )

    /** Settles a fetch: moves the state on if it still waits for this fetch, then wakes the waiters. */
    const settle = (pending: Pending, exit: Exit.Exit<AccessToken.AccessToken, TokenError.TokenError>) =>
      Effect.gen(function*() {
        const now = yield* clock.currentTimeMillis
        const random = yield* Random.next
        // A token that is not valid even now (a custom source's, or a server clock far behind) is a failed fetch:
        // handing it out would break the promise that `get` never returns a token past `expiresAt - skew`.
        const outcome = Exit.flatMap(exit, (token) => {
          const valid = validity(token, random)
          return valid.validUntil > now ? Exit.succeed(valid) : Exit.fail(expiredOnArrival(token))
        })
        yield* SynchronizedRef.update(ref, (state): State => {
          if ((state._tag !== "Fetching" && state._tag !== "Refreshing") || state.pending !== pending) return state
          if (Exit.isSuccess(outcome)) return { _tag: "Ready", ...outcome.value }
          if (state._tag === "Refreshing" && now < state.validUntil) {
            // Keep serving the current token; try again halfway to its end, not on the very next call.
            const retryAt = Math.min(state.validUntil, now + Math.max(minRefreshRetry, (state.validUntil - now) / 2))
            return { _tag: "Ready", token: state.token, validUntil: state.validUntil, refreshAt: retryAt }
          }
          return { _tag: "Empty" }
        })
        yield* Deferred.done(pending, Exit.map(outcome, (valid) => valid.token))
      })

    /** Starts the one fetch, in the cache's scope so that no caller's interruption cancels it. */
    const startFetch = (trigger: Trigger): Effect.Effect<Pending> =>
      Effect.gen(function*() {
        const pending = yield* Deferred.make<AccessToken.AccessToken, TokenError.TokenError>()
        fetches.unsafeUpdate(1, [...cacheLabel, MetricLabel.make("trigger", trigger)])
        yield* fetchOnce(trigger).pipe(
          // Forked from the uninterruptible decision; the fetch itself must stay interruptible by the scope.
          Effect.interruptible,
          Effect.onExit((exit) => settle(pending, exit)),
          Effect.forkIn(scope)
        )
        return pending
      })

    const served = (token: AccessToken.AccessToken): Effect.Effect<AccessToken.AccessToken> => {
      cacheHits.unsafeUpdate(1, [])
      return Effect.succeed(token)
    }

    /** The slow path: decides under the lock, then waits (if it must) outside it. */
    const acquire = Effect.flatten(
      SynchronizedRef.modifyEffect(ref, (state) =>
        Effect.flatMap(clock.currentTimeMillis, (now): Effect.Effect<Decision> => {
          switch (state._tag) {
            case "Ready": {
              if (now < state.refreshAt) {
                return Effect.succeed([served(state.token), state] as const)
              }
              if (now < state.validUntil) {
                return Effect.map(startFetch("refresh_ahead"), (pending) =>
                  [served(state.token), { ...state, _tag: "Refreshing", pending }] as const)
              }
              return Effect.map(startFetch("expired"), (pending) =>
                [Deferred.await(pending), { _tag: "Fetching", pending }] as const)
            }
            case "Refreshing":
              return Effect.succeed(
                now < state.validUntil
                  ? [served(state.token), state] as const
                  : [Deferred.await(state.pending), { _tag: "Fetching", pending: state.pending }] as const
              )
            case "Fetching":
              return Effect.succeed([Deferred.await(state.pending), state] as const)
            case "Empty":
              return Effect.map(startFetch("empty"), (pending) =>
                [Deferred.await(pending), { _tag: "Fetching", pending }] as const)
          }
        })).pipe(Effect.uninterruptible)
    )

    // The hot path: one read of the state and the clock, no lock.
    const get = Effect.flatMap(
      Ref.get(ref),
      (state): Effect.Effect<AccessToken.AccessToken, TokenError.TokenError> => {
        if (state._tag === "Ready" || state._tag === "Refreshing") {
          const now = clock.unsafeCurrentTimeMillis()
          if (now < (state._tag === "Ready" ? state.refreshAt : state.validUntil)) {
            return served(state.token)
          }
        }
        // Joining the fetch in flight needs no decision either: a cold start's callers do not queue on the lock.
        if (state._tag === "Fetching") {
          return Deferred.await(state.pending)
        }
        return acquire
      }
    )

    const invalidate = (token: AccessToken.AccessToken) =>
      SynchronizedRef.modify(ref, (state): readonly [boolean, State] => {
        if ((state._tag !== "Ready" && state._tag !== "Refreshing") || !AccessToken.sameValue(state.token, token)) {
          return [false, state]
        }
        invalidations.unsafeUpdate(1, cacheLabel)
        // A refresh already under way brings the replacement: wait for it rather than starting another.
        return [true, state._tag === "Refreshing" ? { _tag: "Fetching", pending: state.pending } : { _tag: "Empty" }]
      })

    const refresh = Effect.flatten(
      SynchronizedRef.modifyEffect(ref, (state): Effect.Effect<Decision> => {
        switch (state._tag) {
          case "Fetching":
          case "Refreshing":
            return Effect.succeed([Deferred.await(state.pending), state] as const)
          case "Ready":
            // Others keep the current token until the new one is in.
            return Effect.map(startFetch("forced"), (pending) =>
              [Deferred.await(pending), { ...state, _tag: "Refreshing", pending }] as const)
          case "Empty":
            return Effect.map(startFetch("forced"), (pending) =>
              [Deferred.await(pending), { _tag: "Fetching", pending }] as const)
        }
      }).pipe(Effect.uninterruptible)
    )

    return { key: source.key, get, invalidate, refresh, state: Ref.get(ref) } satisfies TokenCache
  })
