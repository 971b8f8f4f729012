/**
 * The per-session refresh engine: single flight per session and resource in this process (core's `SingleFlight`),
 * the store's lock across processes (re-read after acquiring it), and a grace window in which a request that still
 * holds the spent refresh token gets the rotation's result instead of spending the token again.
 */
import type { ClientAuth, Discovery } from "@effect-token/core"
import {
  AccessToken,
  DPoP,
  RefreshToken,
  RefreshTokenStore,
  SingleFlight,
  TokenEndpoint,
  TokenError,
  TokenTiming
} from "@effect-token/core"
import type * as HttpClient from "@effect/platform/HttpClient"
import * as Cause from "effect/Cause"
import * as DateTime from "effect/DateTime"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Ref from "effect/Ref"
import type * as Scope from "effect/Scope"
import { NotSignedIn, SessionError, SessionRejected, Unavailable } from "../SessionError.js"
import * as UserTokenStore from "../UserTokenStore.js"
import { randomToken } from "./protocol.js"
import { classify } from "./tokenFailure.js"

export interface Settings {
  readonly discovery: Discovery.Discovery
  readonly clientAuth: ClientAuth.ClientAuth
  /** When a token is due and when it is expired: `TokenTiming`, resolved once. */
  readonly timing: TokenTiming.Resolved
  readonly graceWindow: Duration.Duration
  readonly idleTimeout: Duration.Duration
  readonly absoluteTimeout: Duration.Duration
  readonly touchInterval: Duration.Duration
  readonly attemptTimeout: Duration.Duration | undefined
  /** The ID token to keep after a refresh (see `idToken.refreshed`); a failure ends the session. */
  readonly refreshedIdToken: (
    record: UserTokenStore.SessionRecord,
    answer: AccessToken.AccessToken
  ) => Effect.Effect<Option.Option<Redacted.Redacted<string>>, SessionError>
}

/** What a refresh leaves for the grace window: the result, and the refresh token it spent. */
interface Settled {
  readonly spent: string
  readonly result: UserTokenStore.Versioned
  readonly until: number
}

const operation = "session refresh"

const refreshes = Metric.counter("effect_token_session_refreshes", {
  description: "Session token refreshes, by outcome (refreshed, rejected, unavailable, interrupted)",
  incremental: true
})

const outcomeOf = (exit: Exit.Exit<unknown, SessionError>): string => {
  if (Exit.isSuccess(exit)) return "refreshed"
  const failure = Cause.failureOption(exit.cause)
  if (Option.isNone(failure)) return "interrupted"
  return failure.value.reason._tag === "SessionRejected" ? "rejected" : "unavailable"
}
const fail = (reason: SessionError["reason"], op = operation) => new SessionError({ operation: op, reason })

export const tokenOf = (
  record: UserTokenStore.SessionRecord,
  resource: string | undefined
): Option.Option<AccessToken.AccessToken> =>
  resource === undefined ? Option.some(record.accessToken) : Option.fromNullable(record.resourceTokens[resource])

export const freshnessOf = (
  token: AccessToken.AccessToken,
  now: number,
  settings: Settings
): TokenTiming.Validity => TokenTiming.validity(token, settings.timing, now)

export interface Engine {
  readonly create: (input: {
    readonly subject: string
    readonly token: AccessToken.AccessToken
    readonly idToken: Option.Option<Redacted.Redacted<string>>
    readonly dpopKey?: Option.Option<Redacted.Redacted<string>> | undefined
  }) => Effect.Effect<Redacted.Redacted<string>, SessionError>
  /** The session's DPoP key, when its tokens are DPoP-bound. */
  readonly dpopKey: (id: Redacted.Redacted<string>) => Effect.Effect<Option.Option<DPoP.DPoPKey>, SessionError>
  readonly load: (id: Redacted.Redacted<string>) => Effect.Effect<UserTokenStore.Versioned, SessionError>
  readonly accessTokenOf: (
    id: Redacted.Redacted<string>,
    loaded: UserTokenStore.Versioned,
    resource: string | undefined
  ) => Effect.Effect<AccessToken.AccessToken, SessionError>
  readonly accessToken: (
    id: Redacted.Redacted<string>,
    resource: string | undefined
  ) => Effect.Effect<AccessToken.AccessToken, SessionError>
  readonly invalidate: (
    id: Redacted.Redacted<string>,
    resource: string | undefined,
    token: AccessToken.AccessToken
  ) => Effect.Effect<boolean>
  readonly end: (
    id: Redacted.Redacted<string>
  ) => Effect.Effect<Option.Option<UserTokenStore.SessionRecord>, SessionError>
}

export const make = (
  settings: Settings
): Effect.Effect<Engine, never, UserTokenStore.UserTokenStore | HttpClient.HttpClient | Scope.Scope> =>
  Effect.gen(function*() {
    const store = yield* UserTokenStore.UserTokenStore
    const scope = yield* Effect.scope
    const context = yield* Effect.context<HttpClient.HttpClient>()
    const flights = yield* SingleFlight.make<UserTokenStore.Versioned, SessionError>()
    const settled = new Map<string, Settled>()
    const now = Effect.clockWith((clock) => clock.currentTimeMillis)
    const waitBound = settings.attemptTimeout ?? TokenEndpoint.defaultTimeout

    /**
     * Imported DPoP keys by session id, so a request does not import the key again (and the key's nonce memory
     * lasts). Bounded: the least recently imported goes first; a dropped one is imported again when needed.
     */
    const keys = new Map<string, { readonly jwk: string; readonly key: DPoP.DPoPKey }>()
    const dpopKeyOf = (
      id: Redacted.Redacted<string>,
      record: UserTokenStore.SessionRecord
    ): Effect.Effect<Option.Option<DPoP.DPoPKey>, SessionError> => {
      if (Option.isNone(record.dpopKey)) return Effect.succeed(Option.none())
      const jwk = Redacted.value(record.dpopKey.value)
      const cached = keys.get(Redacted.value(id))
      if (cached !== undefined && cached.jwk === jwk) return Effect.succeed(Option.some(cached.key))
      return Effect.try({
        try: () => JSON.parse(jwk) as Record<string, unknown>,
        catch: () => fail(new SessionRejected({ description: "the session's DPoP key is unreadable" }), "session")
      }).pipe(
        Effect.flatMap((parsed) =>
          Effect.mapError(
            DPoP.fromPrivateJwk(Redacted.make(parsed)),
            () => fail(new SessionRejected({ description: "the session's DPoP key is unreadable" }), "session")
          )
        ),
        Effect.map((key) => {
          keys.set(Redacted.value(id), { jwk, key })
          if (keys.size > maxCachedKeys) keys.delete(keys.keys().next().value!)
          return Option.some(key)
        })
      )
    }

    const ttlOf = (record: UserTokenStore.SessionRecord, at: number) =>
      UserTokenStore.timeToLive(record, DateTime.unsafeMake(at), settings)

    const create: Engine["create"] = (input) =>
      Effect.gen(function*() {
        const at = yield* now
        const record = UserTokenStore.SessionRecord.make({
          subject: input.subject,
          accessToken: withoutRefreshToken(input.token),
          refreshToken: input.token.refreshToken,
          idToken: input.idToken,
          resourceTokens: {},
          createdAt: DateTime.unsafeMake(at),
          lastSeenAt: DateTime.unsafeMake(at),
          dpopKey: input.dpopKey ?? Option.none()
        })
        // A new id for every login (session fixation): 32 random bytes, never one the browser brought.
        for (let attempt = 0; attempt < 3; attempt++) {
          const id = Redacted.make(randomToken(32))
          const written = yield* store.set(id, record, { expectedVersion: undefined, timeToLive: ttlOf(record, at) })
          if (Option.isSome(written)) return id
        }
        return yield* fail(new Unavailable({ description: "no free session id" }), "login callback")
      })

    /** The record if it is within its idle and absolute expiry; an expired one is deleted. */
    const read = (id: Redacted.Redacted<string>, op: string) =>
      Effect.gen(function*() {
        const found = yield* store.get(id)
        if (Option.isNone(found)) {
          return yield* fail(new NotSignedIn({ description: "unknown or expired session" }), op)
        }
        const at = yield* now
        if (Duration.toMillis(ttlOf(found.value.record, at)) <= 0) {
          yield* store.delete(id)
          return yield* fail(new NotSignedIn({ description: "the session has expired" }), op)
        }
        return found.value
      })

    /** Deletes the session: its refresh token is dead, so are its tokens. */
    const reject = (id: Redacted.Redacted<string>, description: string) =>
      Effect.zipRight(
        Effect.ignore(store.delete(id)),
        Effect.fail(fail(new SessionRejected({ description })))
      )

    /**
     * The session's refresh token as core's `RefreshTokenStore`, fenced by a spend marker in the record itself: the
     * marker is written (compare-and-set) before the token is sent, so no other request, in any instance, sends it
     * again while the answer may still arrive; the answer, whenever it comes (its request may have given up), is
     * written with the new tokens and the marker cleared. `written` receives what `complete` stored.
     */
    const spendingStore = (
      id: Redacted.Redacted<string>,
      resource: string | undefined,
      rejected: AccessToken.AccessToken | undefined,
      written: Ref.Ref<Option.Option<UserTokenStore.Versioned>>,
      ended: Ref.Ref<Option.Option<string>>
    ): RefreshTokenStore.RefreshTokenStore => {
      const storeFailure = (error: SessionError) =>
        error.reason._tag === "NotSignedIn" || error.reason._tag === "SessionRejected"
          ? new TokenError.TokenError({
            operation: RefreshTokenStore.operation,
            reason: new TokenError.RefreshTokenRejected({ description: "the session has ended" })
          })
          : RefreshTokenStore.unavailable(error.reason.message)
      const readNow = Effect.mapError(read(id, operation), storeFailure)
      /** Writes `change(record)` over the current record while `stillOurs(record)`; retried over touches. */
      const update = (
        stillOurs: (record: UserTokenStore.SessionRecord) => boolean,
        change: (record: UserTokenStore.SessionRecord) => UserTokenStore.SessionRecord
      ): Effect.Effect<Option.Option<UserTokenStore.Versioned>, TokenError.TokenError> =>
        Effect.gen(function*() {
          for (let attempt = 0; attempt < 5; attempt++) {
            const current = yield* readNow
            if (!stillOurs(current.record)) return Option.none()
            const record = change(current.record)
            const at = yield* now
            const version = yield* store.set(id, record, {
              expectedVersion: current.version,
              timeToLive: ttlOf(record, at)
            }).pipe(Effect.mapError(storeFailure))
            // A request touched the record meanwhile (its idle expiry): merge into the newer one.
            if (Option.isSome(version)) return Option.some({ record, version: version.value })
          }
          return yield* Effect.fail(RefreshTokenStore.unavailable("the session record keeps changing"))
        })
      return {
        get: Effect.map(readNow, (current) => current.record.refreshToken),
        set: () => Effect.void,
        clear: Effect.void,
        withLock: (effect) => effect,
        spend: (token, spendOptions) =>
          Effect.gen(function*() {
            const current = yield* readNow
            const refreshToken = current.record.refreshToken
            const at = yield* now
            // Another refresh was answered meanwhile (perhaps one whose request had given up): its token will do.
            const latest = tokenOf(current.record, resource)
            if (
              Option.isSome(latest) && (rejected === undefined || !AccessToken.sameValue(latest.value, rejected)) &&
              isUsable(freshnessOf(latest.value, at, settings))
            ) {
              yield* Ref.set(written, Option.some(current))
              return RefreshTokenStore.answered(latest.value)
            }
            if (Option.isNone(refreshToken) || Redacted.value(refreshToken.value) !== Redacted.value(token)) {
              return RefreshTokenStore.stale
            }
            const marker = current.record.spend
            if (Option.isSome(marker) && DateTime.toEpochMillis(marker.value.until) > at) {
              return RefreshTokenStore.pending(Math.min(1_000, DateTime.toEpochMillis(marker.value.until) - at))
            }
            const spendId = randomToken(16)
            const answerMillis = Duration.toMillis(spendOptions.answerTimeout)
            const until = DateTime.unsafeMake(at + answerMillis + Math.max(1_000, answerMillis * 0.1))
            const record = UserTokenStore.SessionRecord.make({
              ...current.record,
              spend: Option.some({ id: spendId, until })
            })
            const version = yield* store.set(id, record, {
              expectedVersion: current.version,
              timeToLive: ttlOf(record, at)
            }).pipe(Effect.mapError(storeFailure))
            if (Option.isNone(version)) return RefreshTokenStore.stale
            const ours = (candidate: UserTokenStore.SessionRecord) =>
              Option.isSome(candidate.spend) && candidate.spend.value.id === spendId
            const end = Effect.asVoid(
              update(ours, (latest) => UserTokenStore.SessionRecord.make({ ...latest, spend: Option.none() }))
            )
            return RefreshTokenStore.granted({
              takeover: Option.isSome(marker),
              provenance: "the session's refresh token",
              complete: (answer) =>
                Effect.flatMap(
                  // A refreshed ID token must name the same user, issuer and client as the login's; when it does
                  // not, the session ends (the refresh's caller, if still there, is told why).
                  Effect.either(settings.refreshedIdToken(current.record, answer)),
                  (idToken) =>
                    idToken._tag === "Left"
                      ? Effect.zipRight(
                        Ref.set(ended, Option.some(idToken.left.reason.message)),
                        Effect.ignore(store.delete(id))
                      )
                      : Effect.flatMap(
                        update(ours, (latest) =>
                          UserTokenStore.SessionRecord.make({
                            ...latest,
                            idToken: idToken.right,
                            accessToken: resource === undefined ? withoutRefreshToken(answer) : latest.accessToken,
                            resourceTokens: resource === undefined
                              ? latest.resourceTokens
                              : { ...latest.resourceTokens, [resource]: withoutRefreshToken(answer) },
                            // Duende's rule: an answer without a refresh token keeps the old one.
                            refreshToken: Option.orElse(answer.refreshToken, () => latest.refreshToken),
                            spend: Option.none()
                          })),
                        (result) => Ref.set(written, result)
                      )
                ),
              withdraw: end,
              reject: end
            })
          })
      }
    }

    /** One refresh under the store's lock, with a re-read: another instance may have refreshed already. */
    const refreshLocked = (
      id: Redacted.Redacted<string>,
      observed: UserTokenStore.Versioned,
      resource: string | undefined,
      rejected: AccessToken.AccessToken | undefined
    ): Effect.Effect<
      { readonly result: UserTokenStore.Versioned; readonly spent: Option.Option<string> },
      SessionError
    > =>
      store.withLock(
        id,
        Effect.gen(function*() {
          const current = yield* read(id, operation)
          const at = yield* now
          if (current.version !== observed.version) {
            const token = tokenOf(current.record, resource)
            if (
              Option.isSome(token) &&
              (rejected === undefined || !AccessToken.sameValue(token.value, rejected)) &&
              isUsable(freshnessOf(token.value, at, settings))
            ) return { result: current, spent: Option.none() }
          }
          const refreshToken = current.record.refreshToken
          if (Option.isNone(refreshToken)) {
            return yield* reject(id, "the access token has expired and the session has no refresh token")
          }
          const written = yield* Ref.make(Option.none<UserTokenStore.Versioned>())
          const ended = yield* Ref.make(Option.none<string>())
          // A DPoP session refreshes with its own key: the new tokens stay bound to it.
          const dpop = yield* dpopKeyOf(id, current.record)
          // Core's refresh grant over the fenced record: it maps `invalid_grant` to `RefreshTokenRejected`, records the
          // spend before sending, and writes the answer's tokens whenever it arrives.
          const source = yield* RefreshToken.make({
            tokenUrl: settings.discovery,
            clientAuth: settings.clientAuth,
            resource,
            attemptTimeout: settings.attemptTimeout,
            dpop: Option.getOrUndefined(dpop)
          }).pipe(
            Effect.provideService(
              RefreshTokenStore.RefreshTokenStore,
              spendingStore(id, resource, rejected, written, ended)
            ),
            Effect.provide(context)
          )
          yield* source.fetch.pipe(
            Effect.catchTag("TokenError", (error) => {
              const verdict = classify(error)
              // Only a rejected refresh token ends a session: a failure of ours or the server's never logs anyone out.
              return verdict === "Rejected"
                ? reject(id, "the refresh token was rejected: the user has to log in again")
                : Effect.fail(fail(
                  new Unavailable({
                    description: `the refresh failed: ${error.reason._tag}${
                      verdict === "Transient" ? "" : " (not transient)"
                    }`,
                    retryAfter: Option.getOrUndefined(TokenError.retryAfter(error))
                  })
                ))
            })
          )
          const idTokenRefused = yield* Ref.get(ended)
          if (Option.isSome(idTokenRefused)) {
            return yield* reject(id, `the refresh answer's ID token: ${idTokenRefused.value}`)
          }
          const result = yield* Ref.get(written)
          // Another holder took the spend over: what is stored now is what the next request uses.
          const next = Option.isSome(result) ? result.value : yield* read(id, operation)
          return { result: next, spent: Option.some(Redacted.value(refreshToken.value)) }
        })
      )

    /**
     * The single flight of one session (and resource) in this process. A request that read the record before a
     * rotation finished, and so still holds the spent refresh token, gets the rotation's result for `graceWindow`.
     */
    const refresh = (
      id: Redacted.Redacted<string>,
      observed: UserTokenStore.Versioned,
      resource: string | undefined,
      rejected: AccessToken.AccessToken | undefined
    ): Effect.Effect<UserTokenStore.Versioned, SessionError> =>
      Effect.gen(function*() {
        const key = flightKey(id, resource)
        const at = yield* now
        const observedRefresh = Option.map(observed.record.refreshToken, Redacted.value)
        const recent = settled.get(key)
        if (recent !== undefined) {
          if (recent.until <= at) settled.delete(key)
          else if (Option.contains(observedRefresh, recent.spent)) return recent.result
        }
        // The refresh runs in the engine's scope, not the request's: a browser that goes away mid-refresh does not
        // cancel a request that may already have spent the refresh token.
        return yield* flights.run(key)(
          refreshLocked(id, observed, resource, rejected).pipe(
            Effect.withSpan("effect-token/UserSession.refresh", { attributes: { "session.resource": resource ?? "" } }),
            Effect.onExit((exit) =>
              Effect.flatMap(now, (end) => {
                rememberOutcome(key, exit, end)
                if (Exit.isSuccess(exit) && Option.isSome(exit.value.spent)) {
                  // Re-inserted at the end: every entry has the same window, so the map stays in expiry order and
                  // the expired ones are pruned from its front, which bounds it by the refreshes of one window.
                  settled.delete(key)
                  settled.set(key, {
                    spent: exit.value.spent.value,
                    result: exit.value.result,
                    until: end + Duration.toMillis(settings.graceWindow)
                  })
                }
                for (const [settledKey, entry] of settled) {
                  if (entry.until > end) break
                  settled.delete(settledKey)
                }
                return Metric.increment(
                  Metric.tagged(refreshes, "outcome", Exit.isSuccess(exit) ? "refreshed" : outcomeOf(exit))
                )
              })
            ),
            Effect.map((refreshed) => refreshed.result)
          )
        )
      })

    /**
     * Failed refreshes per session and resource: no new attempt before `until` (the server's `Retry-After`, else a
     * backoff doubling from 1 s to 30 s), so a degraded authorization server gets one refresh per period from a
     * session, not one per request.
     */
    const held = new Map<string, { readonly until: number; readonly failures: number; readonly error: SessionError }>()
    const rememberOutcome = (
      key: string,
      exit: Exit.Exit<{ readonly result: UserTokenStore.Versioned }, SessionError>,
      at: number
    ) => {
      if (Exit.isSuccess(exit)) {
        held.delete(key)
        return
      }
      const failure = Cause.failureOption(exit.cause)
      if (Option.isNone(failure) || failure.value.reason._tag !== "Unavailable") return
      const failures = (held.get(key)?.failures ?? 0) + 1
      const backoff = Math.min(maxBackoffMillis, 1_000 * 2 ** (failures - 1))
      const asked = failure.value.reason.retryAfter
      const hold = Math.min(maxHoldMillis, Math.max(backoff, asked === undefined ? 0 : Duration.toMillis(asked)))
      held.delete(key)
      held.set(key, { until: at + hold, failures, error: failure.value })
      // Oldest first: past their hold, or beyond the bound, they go.
      for (const [heldKey, entry] of held) {
        if (entry.until > at && held.size <= maxHeld) break
        held.delete(heldKey)
      }
    }

    /** The token for `resource`, refreshed when due; a transient failure serves a still-valid token. */
    const ensure = (
      id: Redacted.Redacted<string>,
      versioned: UserTokenStore.Versioned,
      resource: string | undefined
    ): Effect.Effect<AccessToken.AccessToken, SessionError> =>
      Effect.gen(function*() {
        const at = yield* now
        const token = tokenOf(versioned.record, resource)
        const validity = Option.map(token, (t) => freshnessOf(t, at, settings))
        const state = Option.map(validity, (v) => v._tag)
        if (Option.isSome(token) && Option.isSome(validity)) {
          if (validity.value._tag === "Fresh") return token.value
          if (Option.isNone(versioned.record.refreshToken)) {
            // Duende's rule: without a refresh token the access token is served until it expires; an expiry that is
            // only assumed (`TokenTiming`'s `defaultLifetime`) ends nothing, since nothing could replace the token.
            if (validity.value._tag === "RefreshDue" || !validity.value.expiryKnown) return token.value
          }
        }
        if (Option.isNone(token) && Option.isNone(versioned.record.refreshToken)) {
          return yield* fail(
            new NotSignedIn({ description: "no token for this resource, and no refresh token to get one" }),
            "session"
          )
        }
        const key = flightKey(id, resource)
        const hold = held.get(key)
        const stillValid = Option.isSome(token) && Option.contains(state, "RefreshDue")
        if (hold !== undefined && hold.until > at) {
          if (stillValid) return (token as Option.Some<AccessToken.AccessToken>).value
          return yield* fail(
            new Unavailable({
              description: `${hold.error.reason.message} (not tried again yet)`,
              retryAfter: Duration.millis(hold.until - at)
            })
          )
        }
        if (stillValid) {
          // In the refresh window the current token is still good: refresh behind it, never in the request's way.
          yield* Effect.forkIn(Effect.ignore(refresh(id, versioned, resource, undefined)), scope)
          return (token as Option.Some<AccessToken.AccessToken>).value
        }
        const refreshed = yield* waitForRefresh(refresh(id, versioned, resource, undefined))
        const next = tokenOf(refreshed.record, resource)
        if (Option.isNone(next)) {
          return yield* fail(new Unavailable({ description: "the refresh brought no token for this resource" }))
        }
        return next.value
      })

    /** A request waits for a refresh at most `attemptTimeout`; the refresh goes on without it. */
    const waitForRefresh = <A>(refreshing: Effect.Effect<A, SessionError>) =>
      Effect.timeoutFail(refreshing, {
        duration: waitBound,
        onTimeout: () =>
          fail(new Unavailable({ description: "the refresh is taking too long", retryAfter: Duration.seconds(1) }))
      })

    const load: Engine["load"] = (id) =>
      Effect.gen(function*() {
        const found = yield* read(id, "session")
        const at = yield* now
        // The idle expiry moves with use, written at most once per `touchInterval` so that requests stay reads.
        if (at - DateTime.toEpochMillis(found.record.lastSeenAt) < Duration.toMillis(settings.touchInterval)) {
          return found
        }
        const record = UserTokenStore.SessionRecord.make({ ...found.record, lastSeenAt: DateTime.unsafeMake(at) })
        const version = yield* store.set(id, record, { expectedVersion: found.version, timeToLive: ttlOf(record, at) })
        // A concurrent writer (a refresh) won: its record is as good, and it is newer.
        return Option.isSome(version) ? { record, version: version.value } : yield* read(id, "session")
      })

    const accessToken: Engine["accessToken"] = (id, resource) =>
      Effect.flatMap(read(id, "session"), (versioned) => ensure(id, versioned, resource))

    const invalidate: Engine["invalidate"] = (id, resource, token) =>
      Effect.gen(function*() {
        const versioned = yield* read(id, "session")
        const current = tokenOf(versioned.record, resource)
        // Compare-and-refresh: a 401 for a token already replaced changes nothing.
        if (Option.isNone(current) || !AccessToken.sameValue(current.value, token)) return false
        yield* waitForRefresh(refresh(id, versioned, resource, token))
        return true
      }).pipe(Effect.orElseSucceed(() => false))

    const end: Engine["end"] = (id) =>
      Effect.gen(function*() {
        const found = yield* store.get(id)
        yield* store.delete(id)
        keys.delete(Redacted.value(id))
        return Option.map(found, (v) => v.record)
      })

    const dpopKey: Engine["dpopKey"] = (id) =>
      Effect.flatMap(read(id, "session"), (found) => dpopKeyOf(id, found.record))

    return { create, dpopKey, load, accessTokenOf: ensure, accessToken, invalidate, end }
  })

const flightKey = (id: Redacted.Redacted<string>, resource: string | undefined) =>
  `${Redacted.value(id)}\u0000${resource ?? ""}`

/** The longest backoff after failed refreshes of one session, and the longest any hold lasts (`Retry-After` too). */
const maxBackoffMillis = 30_000
const maxHoldMillis = 5 * 60_000

/** Sessions whose failures are remembered at once, at most (the oldest holds are dropped first). */
const maxHeld = 10_000

/** Imported DPoP keys kept per process: one per active DPoP session, up to this many. */
const maxCachedKeys = 10_000

const isUsable = (validity: TokenTiming.Validity) => validity._tag === "Fresh"

/** The record keeps the refresh token and the ID token in fields of their own, once. */
const withoutRefreshToken = (token: AccessToken.AccessToken): AccessToken.AccessToken =>
  AccessToken.without(token, "refreshToken", "idToken")
