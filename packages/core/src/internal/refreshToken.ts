/*
 * Spending a refresh token: at most once, and never losing its successor.
 *
 * One fetch, under the store's lock:
 * 1. Wait for this process's own spend of the store that is still unresolved (a caller gave up waiting for its
 *    answer, which may still arrive): its answer is the current state, and its access token, if nobody took it,
 *    is this fetch's answer.
 * 2. Read the token; ask the store to record the spend (`RefreshTokenStore.spend`: atomic, across processes for a
 *    durable store). `Pending`: wait and ask again; `Stale`: read again.
 * 3. Check the clock once more (a process paused between the record and the send would send past its deadline),
 *    then send. The request runs in a daemon fiber, bounded by `answerTimeout`, and resolves the spend itself:
 *    `complete` with the answer, `withdraw` when the request surely did not reach the grant, `reject` on
 *    `invalid_grant`. The caller waits at most `attemptTimeout` for it, even when interrupted.
 */
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import { globalValue } from "effect/GlobalValue"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as AccessToken from "../AccessToken.js"
import * as RefreshTokenStore from "../RefreshTokenStore.js"
import { RefreshTokenRejected, Timeout, TokenError, Transport, Unavailable } from "../TokenError.js"

export const defaults = {
  answerTimeout: Duration.seconds(60)
} as const

const operation = "refresh_token grant"

/** A store answering `Stale` this many times in a row is churning faster than a refresh: give up for now. */
const maxStaleReads = 8

/** RFC 6749 §5.2: `invalid_grant` on a refresh means the refresh token is dead; nothing but a new login helps. */
const refreshRejected = (error: TokenError, provenance: string | undefined): TokenError =>
  error.reason._tag === "OAuthError" && error.reason.code === "invalid_grant"
    ? new TokenError({
      operation: error.operation,
      reason: new RefreshTokenRejected({
        status: error.reason.status,
        code: error.reason.code,
        description: `${
          error.reason.description ??
            "the authorization server rejected the refresh token (expired, revoked or already used)"
        }${provenance === undefined ? "" : `; the token was ${provenance}`}`
      })
    })
    : error

/** Connection failures that happen before a byte of the request leaves: the refresh token surely was not spent. */
const beforeSending = /\b(ECONNREFUSED|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH|UND_ERR_CONNECT_TIMEOUT)\b/

/**
 * Marks a failure after which the server may have spent the refresh token (a timeout, a reset once the request was
 * sent) as `sent`, which makes it not transient: sending the same refresh token again would get `invalid_grant`
 * at best and, on a server with reuse detection, revoke the whole token family (RFC 9700 §4.14.2). What is retried
 * is what the server surely did not use: a connection never made, or an answer (429, 5xx) saying it did not.
 */
const spentOnce = (error: TokenError): TokenError => {
  const reason = error.reason
  if (reason._tag === "Timeout" && reason.bound === "attempt") {
    return new TokenError({
      operation: error.operation,
      reason: new Timeout({ bound: reason.bound, after: reason.after, sent: true })
    })
  }
  if (reason._tag === "Transport" && !beforeSending.test(reason.description)) {
    return new TokenError({
      operation: error.operation,
      reason: new Transport({ description: reason.description, sent: true })
    })
  }
  return error
}

/**
 * What a failed request did to the token: `unspent` when the server surely did not use it (no connection, or an
 * answer refusing the request for another reason than the token), `rejected` on `invalid_grant`, `unknown` when it
 * may have been spent and the answer is lost (a timeout or a reset after sending, a 2xx that does not decode).
 */
const outcomeOf = (error: TokenError): "unspent" | "rejected" | "unknown" => {
  const reason = error.reason
  switch (reason._tag) {
    case "RefreshTokenRejected":
      return "rejected"
    case "Timeout":
    case "Transport":
      return reason.sent === true ? "unknown" : "unspent"
    case "MalformedResponse":
      return reason.status !== undefined && reason.status >= 400 ? "unspent" : "unknown"
    case "OAuthError":
    case "Unavailable":
    case "Misconfigured":
      return "unspent"
  }
}

/**
 * This process's spend of a store still in flight after its caller stopped waiting: `settled` is done when the
 * request has ended and the spend is resolved, with the answer's access token if its caller never took it.
 */
interface InFlight {
  readonly settled: Deferred.Deferred<Option.Option<AccessToken.AccessToken>>
  /** Epoch milliseconds: the request's own bound; nobody waits for it longer. */
  readonly until: number
}

// Per store object, as `RefreshTokenStore.withLock`'s fallback: every source over the store sees the same spend.
const inFlight = globalValue(
  "@effect-token/core/RefreshToken/inFlight",
  () => new WeakMap<RefreshTokenStore.RefreshTokenStore, InFlight>()
)

/** The spend of a store that fences nothing across processes: its `set` keeps the rotated token. */
const localSpend = (store: RefreshTokenStore.RefreshTokenStore): RefreshTokenStore.Spend => ({
  takeover: false,
  complete: (answer) => Option.match(answer.refreshToken, { onNone: () => Effect.void, onSome: store.set }),
  withdraw: Effect.void,
  reject: Effect.void
})

export interface Settings {
  readonly store: RefreshTokenStore.RefreshTokenStore
  /** Sends the grant with `refreshToken`, its answer bounded by `attemptTimeout`. */
  readonly send: (
    refreshToken: Redacted.Redacted<string>,
    attemptTimeout: Duration.Duration
  ) => Effect.Effect<AccessToken.AccessToken, TokenError>
  /** How long a caller waits for the answer. */
  readonly attemptTimeout: Duration.Duration
  /** How long the answer is read at all. */
  readonly answerTimeout: Duration.Duration
}

/** The fetch of a refresh source; run it under the store's lock. */
export const fetch = (settings: Settings): Effect.Effect<AccessToken.AccessToken, TokenError> => {
  const { answerTimeout, attemptTimeout, store } = settings
  const attemptMillis = Duration.toMillis(attemptTimeout)
  const answerMillis = Duration.toMillis(answerTimeout)

  /** Waits for this process's unresolved spend of the store; its late answer's access token, if nobody took it. */
  const settledSpend: Effect.Effect<Option.Option<AccessToken.AccessToken>> = Effect.suspend(() => {
    const current = inFlight.get(store)
    if (current === undefined) return Effect.succeed(Option.none())
    return Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Deferred.await(current.settled).pipe(
        Effect.timeout(Duration.millis(Math.max(0, current.until - now))),
        Effect.orElseSucceed(() => Option.none<AccessToken.AccessToken>()),
        // Taken once: the next fetch spends the successor.
        Effect.ensuring(Effect.sync(() => {
          if (inFlight.get(store) === current) inFlight.delete(store)
        }))
      ))
  })

  /**
   * Sends `refreshToken` and resolves `spend` with what happened, in a daemon fiber that outlives the caller. The
   * caller waits at most `attemptTimeout`, uninterruptibly: an interrupted caller (an application shutting down)
   * still lets the answer in, so the rotation is stored before it goes.
   */
  const send = (
    refreshToken: Redacted.Redacted<string>,
    spend: RefreshTokenStore.Spend,
    remainingMillis: number
  ): Effect.Effect<AccessToken.AccessToken, TokenError> =>
    Effect.gen(function*() {
      const answered = yield* Deferred.make<AccessToken.AccessToken, TokenError>()
      const settled = yield* Deferred.make<Option.Option<AccessToken.AccessToken>>()
      const now = yield* Clock.currentTimeMillis
      const entry: InFlight = { settled, until: now + remainingMillis }
      inFlight.set(store, entry)
      const exchange = settings.send(refreshToken, Duration.millis(remainingMillis)).pipe(
        Effect.mapError((error) => spentOnce(refreshRejected(error, spend.provenance))),
        Effect.tapBoth({
          onSuccess: spend.complete,
          onFailure: (error) => {
            switch (outcomeOf(error)) {
              case "unspent":
                return Effect.ignore(spend.withdraw)
              case "rejected":
                return Effect.ignore(spend.reject)
              case "unknown":
                // The store's deadline decides: until it passes, nobody spends this token.
                return Effect.logWarning(
                  "effect-token: a refresh request's answer was lost after it was sent; the spend stays unresolved " +
                    "until its deadline"
                ).pipe(Effect.annotateLogs({ reason: error.reason._tag }))
            }
          }
        }),
        Effect.map((token) => AccessToken.without(token, "refreshToken")),
        Effect.exit,
        Effect.flatMap((exit) =>
          Effect.flatMap(Deferred.done(answered, exit), (caught) =>
            // Nobody took the answer (its caller timed out): the next fetch of this process can.
            Deferred.succeed(settled, !caught && Exit.isSuccess(exit) ? Option.some(exit.value) : Option.none()))
        ),
        Effect.ensuring(Deferred.succeed(settled, Option.none()))
      )
      yield* Effect.forkDaemon(exchange)
      const timer = yield* Effect.forkDaemon(
        Effect.zipRight(
          Effect.sleep(attemptTimeout),
          Deferred.fail(
            answered,
            new TokenError({ operation, reason: new Timeout({ bound: "attempt", after: attemptTimeout, sent: true }) })
          )
        )
      )
      return yield* Effect.uninterruptible(Deferred.await(answered)).pipe(
        // Not waited for: a sleeping timer has nothing to clean up.
        Effect.ensuring(Fiber.interruptFork(timer))
      )
    })

  const noToken = new TokenError({
    operation,
    reason: new RefreshTokenRejected({
      description: "there is no refresh token in the store: the user has to log in first"
    })
  })

  return Effect.gen(function*() {
    const late = yield* settledSpend
    if (Option.isSome(late)) return late.value
    let staleReads = 0
    let rejectedOnce = false
    // After a rejection: the sibling's newer token, which the next round spends without reading the store again.
    let next: Option.Option<Redacted.Redacted<string>> | undefined
    while (true) {
      const current = next ?? (yield* store.get)
      next = undefined
      if (Option.isNone(current)) return yield* noToken
      const startedAt = yield* Clock.currentTimeMillis
      const decision = store.spend === undefined
        ? RefreshTokenStore.granted(localSpend(store))
        : yield* store.spend(current.value, { answerTimeout })
      if (decision._tag === "Stale") {
        if (++staleReads > maxStaleReads) {
          return yield* new TokenError({
            operation: RefreshTokenStore.operation,
            reason: new Unavailable({ description: "the stored refresh token keeps changing; try again later" })
          })
        }
        continue
      }
      if (decision._tag === "Answered") return decision.token
      if (decision._tag === "Pending") {
        yield* Effect.sleep(decision.retryAfter)
        continue
      }
      const spend = decision.spend
      // The spend keeps the others off the token for `answerTimeout` from when it was asked for; a process paused
      // since then may have less left than a request can take: it must not send.
      const remaining = startedAt + answerMillis - (yield* Clock.currentTimeMillis)
      if (remaining < attemptMillis) {
        yield* Effect.ignore(spend.withdraw)
        yield* Effect.logWarning("effect-token: a refresh was held up between its record and its send; not sent")
        continue
      }
      if (spend.takeover) {
        yield* Effect.logWarning(
          "effect-token: another holder's refresh of this token stayed unresolved past its deadline; sending the " +
            "token again (an authorization server without a reuse interval may revoke the grant)"
        )
      }
      const result = yield* Effect.either(send(current.value, spend, remaining))
      if (Either.isRight(result)) return result.right
      const error = result.left
      // A store shared without fencing (a custom one) may have been rotated by a sibling while this request was on
      // its way: its newer token is still good. Spending that one, once, is what the sibling's rotation left for
      // this source; failing would log the user out for nothing.
      if (error.reason._tag === "RefreshTokenRejected" && !rejectedOnce) {
        rejectedOnce = true
        const now = yield* store.get
        if (Option.isSome(now) && Redacted.value(now.value) !== Redacted.value(current.value)) {
          next = now
          continue
        }
      }
      return yield* Effect.fail(error)
    }
  })
}
