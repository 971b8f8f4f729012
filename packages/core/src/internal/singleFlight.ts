/*
 * One engine for every value that is fetched once for many callers and kept while it is valid: a token cache, each
 * key of a token manager, discovery metadata.
 *
 * A cell is a plain mutable object, not a `SynchronizedRef`: JavaScript runs one fiber at a time, and every state
 * change below happens inside one synchronous step (`Effect.suspend` with no effect in between), so no other fiber
 * can observe a half-made change. That is what keeps an idle cell small (a token manager holds 100,000 of them) and
 * the hot path to one clock read and two comparisons.
 *
 * States: Empty → Fetching → Ready → (refresh window) Refreshing → Ready.
 * - Ready before `refreshAt`: the value is served, nothing else happens.
 * - Ready from `refreshAt` to `validUntil`: the first caller starts one fetch (Refreshing); everyone keeps getting
 *   the current value until it arrives or `validUntil` passes.
 * - Empty, or past `validUntil`: one fetch (Fetching); callers wait for it, bounded by `acquireTimeout`.
 * - A fetch runs in the owner's scope, so that no caller's interruption cancels it and closing the scope does. A
 *   failure is not kept as a value: the waiters see it, and the next call starts afresh, unless the policy's
 *   `holdFailure` says the server must not be asked again yet (`Retry-After`, a permanent failure): until then
 *   callers that would start a fetch fail at once with that failure, so a throttled or misconfigured client sends
 *   one request per hold rather than one per caller.
 */
import * as Cause from "effect/Cause"
import type * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as Option from "effect/Option"
import type * as Random from "effect/Random"
import type * as Scope from "effect/Scope"

export const EMPTY = 0
export const FETCHING = 1
export const READY = 2
export const REFRESHING = 3

export type StateCode = typeof EMPTY | typeof FETCHING | typeof READY | typeof REFRESHING

/** Times are epoch milliseconds of the owner's `Clock`. */
export interface Cell<A, E> {
  state: StateCode
  /** The value while Ready or Refreshing. */
  value: A | undefined
  /** Serve the value strictly before this instant. */
  validUntil: number
  /** From this instant on, the first caller starts a background refresh. */
  refreshAt: number
  /** The fetch in flight while Fetching or Refreshing. */
  pending: Deferred.Deferred<A, E> | undefined
  /** Epoch milliseconds: no fetch starts before this instant (a `Retry-After`, a permanent failure's hold). */
  notBefore: number
  /** The failure callers get while `notBefore` holds fetches back. */
  failure: E | undefined
}

export const makeCell = <A, E>(): Cell<A, E> => ({
  state: EMPTY,
  value: undefined,
  validUntil: 0,
  refreshAt: 0,
  pending: undefined,
  notBefore: 0,
  failure: undefined
})

export type Trigger = "empty" | "expired" | "refresh_ahead" | "forced"

export interface Validity {
  readonly validUntil: number
  readonly refreshAt: number
}

export interface Policy<A, E> {
  readonly clock: Clock.Clock
  readonly random: Random.Random
  readonly scope: Scope.Scope
  /**
   * When a value just fetched stops being served and when its refresh starts; `Left` when it cannot be served at
   * all (a token expired on arrival): a `validUntil` must be after `now`. `fetchMillis` is how long fetches have been taking lately.
   */
  readonly validity: (value: A, now: number, random: number, fetchMillis: number) => Either.Either<Validity, E>
  /**
   * Whether a value that just arrived came too late to be served (a token whose usable lifetime ran out while it was
   * on its way: a slow server, a paused process, a starved CPU). A late value is a miss: the engine fetches again
   * (up to {@link maxLateFetches} times in a row) instead of handing callers a failure.
   */
  readonly late?: ((value: A, now: number) => boolean) | undefined
  /** Bound on a caller's wait for a fetch, retries included. */
  readonly acquireTimeout?: Duration.Duration | undefined
  readonly onAcquireTimeout?: ((after: Duration.Duration) => E) | undefined
  /** Called once per fetch started. */
  readonly onFetch?: ((trigger: Trigger) => void) | undefined
  /** Called for every value served without waiting. */
  readonly onHit?: (() => void) | undefined
  /** Runs after a fetch failed (for logs and metrics). */
  readonly onFailure?: ((error: E, trigger: Trigger) => Effect.Effect<void>) | undefined
  /** Whether two values are the same (a refresh that brings the same value back must not loop). */
  readonly same?: ((a: A, b: A) => boolean) | undefined
  /**
   * How long (milliseconds) after a failed fetch no new fetch may start; callers that would start one fail at once
   * with that failure instead (a value still valid keeps being served). A server's `Retry-After`, or a short hold
   * after a failure no retry can fix. 0 or undefined: the next caller fetches again.
   */
  readonly holdFailure?: ((error: E) => number) | undefined
  /**
   * The failure as callers see it while it holds fetches back until `until` (epoch milliseconds): the fetch's
   * waiters and every held caller get it, so each can tell when the hold ends. Default: the failure as it is.
   */
  readonly held?: ((error: E, until: number) => E) | undefined
  /**
   * The most fetches in flight at once across the engine's cells. At the bound, a caller that would start a fetch
   * fails at once with `busy()` (a refresh-ahead is simply not started: the current value is served), so a hung
   * server cannot make fibers, waiters and memory pile up per key. Default: no bound.
   */
  readonly maxInFlight?: number | undefined
  readonly busy?: (() => E) | undefined
}

/**
 * Late values fetched again in a row before the last one's `validity` decides (and fails it as expired): a source
 * whose every answer arrives expired has a clock or lifetime problem that fetching again cannot fix.
 */
export const maxLateFetches = 3

/** A failed refresh keeps the current value and tries again halfway to its end, but not sooner than this. */
const minRefreshRetryMillis = 1_000

/**
 * Fetches a new value for `cell`; told what started the fetch (for spans and logs). One function can serve many
 * cells (a keyed manager's cells carry their own parameters), so no cell has to keep a closure of its own.
 */
export type Fetch<A, E, C extends Cell<A, E> = Cell<A, E>> = (trigger: Trigger, cell: C) => Effect.Effect<A, E>

export interface Engine<A, E> {
  /** A valid value: served at once, or after the one fetch. `fetch` is used only if a fetch has to start. */
  readonly get: <C extends Cell<A, E>>(cell: C, fetch: Fetch<A, E, C>) => Effect.Effect<A, E>
  /** {@link get} with the clock already read by the caller (a keyed manager reads it once per call). */
  readonly getAt: <C extends Cell<A, E>>(cell: C, fetch: Fetch<A, E, C>, now: number) => Effect.Effect<A, E>
  /** Fetches now (joining a fetch in flight); others keep the current value until the new one arrives. */
  readonly refresh: <C extends Cell<A, E>>(cell: C, fetch: Fetch<A, E, C>) => Effect.Effect<A, E>
  /** Clears the value if `matches` says it is the one to clear (compare-and-clear). Synchronous. */
  readonly invalidate: (cell: Cell<A, E>, matches: (value: A) => boolean) => boolean
  /** Whether the cell can be dropped without anyone noticing: no fetch in flight. */
  readonly isIdle: (cell: Cell<A, E>) => boolean
  /** How long recent fetches took (a quickly rising, slowly falling average), in milliseconds. */
  readonly fetchMillis: () => number
  /** Whether a new fetch would be refused now (`maxInFlight` reached). */
  readonly isBusy: () => boolean
}

export const makeEngine = <A, E>(policy: Policy<A, E>): Engine<A, E> => {
  const { clock, scope } = policy
  const onHit = policy.onHit
  const same = policy.same ?? ((a: A, b: A) => a === b)
  let fetchMillis = 0
  let inFlight = 0
  const maxInFlight = policy.maxInFlight ?? Number.POSITIVE_INFINITY
  const busy = policy.busy
  const isBusy = () => inFlight >= maxInFlight && busy !== undefined

  const hit = (value: A): Effect.Effect<A, E> => {
    if (onHit !== undefined) onHit()
    return Effect.succeed(value)
  }

  const acquireTimeout = policy.acquireTimeout
  const onAcquireTimeout = policy.onAcquireTimeout
  const wait = acquireTimeout === undefined || onAcquireTimeout === undefined
    ? (pending: Deferred.Deferred<A, E>): Effect.Effect<A, E> => Deferred.await(pending)
    : (pending: Deferred.Deferred<A, E>): Effect.Effect<A, E> =>
      Effect.timeoutFail(Deferred.await(pending), {
        duration: acquireTimeout,
        onTimeout: () => onAcquireTimeout(acquireTimeout)
      })

  /** Settles a fetch: moves the cell on if it still waits for this fetch, then wakes the waiters. */
  const settle = (
    cell: Cell<A, E>,
    pending: Deferred.Deferred<A, E>,
    startedAt: number,
    trigger: Trigger,
    exit: Exit.Exit<A, E>
  ): Effect.Effect<void> =>
    Effect.flatMap(policy.random.next, (random) =>
      Effect.suspend(() => {
        inFlight--
        const now = clock.unsafeCurrentTimeMillis()
        if (Exit.isSuccess(exit)) {
          const took = Math.max(0, now - startedAt)
          // Rises at once with a slow fetch and forgets it gradually, so one fast answer does not shrink the window.
          fetchMillis = Math.max(took, fetchMillis * 0.75 + took * 0.25)
        }
        const result: Exit.Exit<Validity & { readonly value: A }, E> = Exit.isFailure(exit) ?
          Exit.failCause(exit.cause) :
          Either.match(
            policy.validity(exit.value, now, random, fetchMillis),
            {
              onLeft: (error) => Exit.fail(error),
              onRight: (valid) => Exit.succeed({ ...valid, value: exit.value })
            }
          )
        const current = cell.pending === pending && (cell.state === FETCHING || cell.state === REFRESHING)
        let outcome = result
        if (current && Exit.isFailure(result) && policy.holdFailure !== undefined) {
          const failure = Cause.failureOption(result.cause)
          const hold = Option.isSome(failure) ? policy.holdFailure(failure.value) : 0
          if (hold > 0) {
            cell.notBefore = now + hold
            const seen = policy.held === undefined
              ? (failure as Option.Some<E>).value
              : policy.held((failure as Option.Some<E>).value, cell.notBefore)
            cell.failure = seen
            outcome = Exit.fail(seen)
          }
        }
        if (current) {
          if (Exit.isSuccess(outcome)) {
            const next = outcome.value
            let refreshAt = next.refreshAt
            if (
              cell.state === REFRESHING && cell.value !== undefined &&
              (same(cell.value, next.value) || next.validUntil <= cell.validUntil)
            ) {
              // A refresh that brought back the same value, or one that expires no later, would start the next
              // refresh on the very next call: wait as after a failed refresh instead.
              refreshAt = Math.max(refreshAt, retryAt(now, next.validUntil))
            }
            cell.state = READY
            cell.value = next.value
            cell.validUntil = next.validUntil
            cell.refreshAt = Math.min(refreshAt, next.validUntil)
          } else if (cell.state === REFRESHING && now < cell.validUntil) {
            // Keep serving the current value; try again halfway to its end, not on the very next call (nor while
            // the server asked for quiet).
            cell.state = READY
            cell.refreshAt = Math.min(cell.validUntil, Math.max(retryAt(now, cell.validUntil), cell.notBefore))
          } else {
            cell.state = EMPTY
            cell.value = undefined
          }
          cell.pending = undefined
        }
        Deferred.unsafeDone(pending, Exit.map(outcome, (valid) => valid.value))
        if (Exit.isSuccess(outcome) || policy.onFailure === undefined) return Effect.void
        const failure = Cause.failureOption(outcome.cause)
        return Option.isSome(failure) ? policy.onFailure(failure.value, trigger) : Effect.void
      }))

  /** Marks the cell as fetching and returns the effect that forks the one fetch (run it uninterruptibly). */
  const start = <C extends Cell<A, E>>(
    cell: C,
    state: typeof FETCHING | typeof REFRESHING,
    trigger: Trigger,
    fetch: Fetch<A, E, C>
  ): Effect.Effect<Deferred.Deferred<A, E>> => {
    const pending = Deferred.unsafeMake<A, E>(FiberId.none)
    inFlight++
    cell.state = state
    cell.pending = pending
    if (policy.onFetch !== undefined) policy.onFetch(trigger)
    const startedAt = clock.unsafeCurrentTimeMillis()
    const late = policy.late
    const arrive = late === undefined ? fetch(trigger, cell) : fetchUntilOnTime(fetch(trigger, cell), late, 1)
    return arrive.pipe(
      // Forked from an uninterruptible decision; the fetch itself must stay interruptible by the scope.
      Effect.interruptible,
      Effect.onExit((exit) => settle(cell, pending, startedAt, trigger, exit)),
      Effect.forkIn(scope),
      Effect.as(pending)
    )
  }

  const fetchUntilOnTime = (
    fetch: Effect.Effect<A, E>,
    late: (value: A, now: number) => boolean,
    attempt: number
  ): Effect.Effect<A, E> =>
    Effect.flatMap(fetch, (value) =>
      attempt < maxLateFetches && late(value, clock.unsafeCurrentTimeMillis())
        ? Effect.zipRight(
          Effect.logDebug("effect-token: a value arrived too late to be served; fetching again"),
          fetchUntilOnTime(fetch, late, attempt + 1)
        )
        : Effect.succeed(value))

  const startAndWait = <C extends Cell<A, E>>(
    cell: C,
    trigger: Trigger,
    fetch: Fetch<A, E, C>
  ): Effect.Effect<Effect.Effect<A, E>> => Effect.map(start(cell, FETCHING, trigger, fetch), wait)

  /**
   * While a failure holds fetches back, callers that would start one get that failure at once; while `maxInFlight`
   * fetches are running, they get `busy()`.
   */
  const held = (cell: Cell<A, E>, now: number): Effect.Effect<Effect.Effect<A, E>> | undefined =>
    now < cell.notBefore && cell.failure !== undefined
      ? Effect.succeed(Effect.fail(cell.failure))
      : isBusy()
      ? Effect.succeed(Effect.fail(busy!()))
      : undefined

  /** The slow path: decides in one synchronous step, forks at most one fetch, then waits (if it must). */
  const decide = <C extends Cell<A, E>>(cell: C, fetch: Fetch<A, E, C>): Effect.Effect<A, E> =>
    Effect.flatten(Effect.uninterruptible(Effect.suspend((): Effect.Effect<Effect.Effect<A, E>> => {
      const now = clock.unsafeCurrentTimeMillis()
      switch (cell.state) {
        case READY: {
          if (now < cell.refreshAt) return Effect.succeed(hit(cell.value as A))
          if (now < cell.validUntil) {
            const value = cell.value as A
            if (now < cell.notBefore || isBusy()) return Effect.succeed(hit(value))
            return Effect.as(start(cell, REFRESHING, "refresh_ahead", fetch), hit(value))
          }
          return held(cell, now) ?? startAndWait(cell, "expired", fetch)
        }
        case REFRESHING: {
          if (now < cell.validUntil) return Effect.succeed(hit(cell.value as A))
          // The refresh did not make it in time: everyone now waits for it.
          cell.state = FETCHING
          cell.value = undefined
          return Effect.succeed(wait(cell.pending!))
        }
        case FETCHING:
          return Effect.succeed(wait(cell.pending!))
        case EMPTY:
          return held(cell, now) ?? startAndWait(cell, "empty", fetch)
      }
    })))

  const getAt = <C extends Cell<A, E>>(cell: C, fetch: Fetch<A, E, C>, now: number): Effect.Effect<A, E> => {
    // The hot path: no lock, no fiber, one clock read (the caller's).
    const state = cell.state
    if (state === READY || state === REFRESHING) {
      if (now < (state === READY ? cell.refreshAt : cell.validUntil)) {
        return hit(cell.value as A)
      }
    } else if (state === FETCHING) {
      // Joining the fetch in flight needs no decision either: a cold start's callers do not queue.
      return wait(cell.pending!)
    }
    return decide(cell, fetch)
  }

  const get = <C extends Cell<A, E>>(cell: C, fetch: Fetch<A, E, C>): Effect.Effect<A, E> =>
    getAt(cell, fetch, clock.unsafeCurrentTimeMillis())

  const refresh = <C extends Cell<A, E>>(cell: C, fetch: Fetch<A, E, C>): Effect.Effect<A, E> =>
    Effect.flatten(Effect.uninterruptible(Effect.suspend((): Effect.Effect<Effect.Effect<A, E>> => {
      switch (cell.state) {
        case FETCHING:
        case REFRESHING:
          return Effect.succeed(wait(cell.pending!))
        case READY:
          // Others keep the current value until the new one is in.
          return held(cell, clock.unsafeCurrentTimeMillis()) ??
            Effect.map(start(cell, REFRESHING, "forced", fetch), wait)
        case EMPTY:
          return held(cell, clock.unsafeCurrentTimeMillis()) ?? startAndWait(cell, "forced", fetch)
      }
    })))

  const invalidate = (cell: Cell<A, E>, matches: (value: A) => boolean): boolean => {
    if ((cell.state !== READY && cell.state !== REFRESHING) || !matches(cell.value as A)) return false
    if (cell.state === REFRESHING) {
      // A refresh already under way brings the replacement: wait for it rather than starting another.
      cell.state = FETCHING
    } else {
      cell.state = EMPTY
    }
    cell.value = undefined
    return true
  }

  return {
    get,
    getAt,
    refresh,
    invalidate,
    isIdle: (cell) => cell.state === EMPTY || cell.state === READY,
    fetchMillis: () => fetchMillis,
    isBusy
  }
}

const retryAt = (now: number, validUntil: number): number =>
  Math.min(validUntil, now + Math.max(minRefreshRetryMillis, (validUntil - now) / 2))
