/**
 * ID token validation (OpenID Connect Core §3.1.3.7) with `jose`, against the issuer's JWKS fetched through the
 * application's `HttpClient`: bounded in size and time, kept, and fetched again on an unknown `kid` at most once per
 * `refetchInterval` (a key rotation at the provider), so that tokens with made-up `kid`s cannot make us hammer it.
 * One fetch at a time: concurrent callers await the one in flight, and a failed fetch is remembered for 5 seconds
 * (callers fail at once with it), so callbacks do not queue behind a slow or dead endpoint one timeout each.
 */
import { ServerRequest } from "@effect-token/core"
import type * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as jose from "jose"
import { IdTokenInvalid, SessionError, Unavailable } from "../SessionError.js"
import { constantTimeEqual } from "./protocol.js"

const operation = "login callback"

/** Asymmetric algorithms only: never `none`, never HS* (a symmetric key would be the client secret, shared). */
export const defaultAlgorithms: ReadonlyArray<string> = [
  "RS256",
  "RS384",
  "RS512",
  "PS256",
  "PS384",
  "PS512",
  "ES256",
  "ES384",
  "ES512",
  "EdDSA"
]

/** The configured allow-list with `none` and every HS* removed, whatever the configuration says. */
export const allowedAlgorithms = (configured: ReadonlyArray<string> | undefined): Array<string> =>
  (configured ?? defaultAlgorithms).filter((alg) => alg !== "none" && !/^HS/i.test(alg))

export interface Options {
  readonly issuer: string
  readonly clientId: string
  readonly jwksUri: Effect.Effect<string, SessionError>
  readonly algorithms?: ReadonlyArray<string> | undefined
  readonly refetchInterval: Duration.Duration
  readonly timeout: Duration.Duration
  readonly maxBytes: number
  readonly clockTolerance: Duration.Duration
}

export interface Claims {
  readonly subject: string
  readonly payload: jose.JWTPayload
}

/** What the token must carry besides the issuer's signature, `iss`, `aud`, `azp`, `exp` and `iat`. */
export interface Expected {
  /** The login's nonce (a login's ID token). */
  readonly nonce?: string | undefined
  /** The session's subject (a refresh answer's ID token, OpenID Connect Core §12.2). */
  readonly subject?: string | undefined
}

export interface Verifier {
  readonly verify: (idToken: string, expected: Expected) => Effect.Effect<Claims, SessionError>
}

const Jwks = Schema.Struct({
  keys: Schema.Array(Schema.Record({ key: Schema.String, value: Schema.Unknown })).pipe(Schema.maxItems(100))
})

const unavailable = (description: string) => new SessionError({ operation, reason: new Unavailable({ description }) })
const invalid = (check: string, description: string) =>
  new SessionError({ operation, reason: new IdTokenInvalid({ check, description }) })

/**
 * The key set, through core's `ServerRequest`: never redirected (a redirected JWKS would be keys from somewhere else),
 * bounded in size and time. Any failure is `Unavailable`, saying what core's error says.
 */
const fetchJwks = (client: HttpClient.HttpClient, url: string, options: Options) =>
  Effect.gen(function*() {
    const answer = yield* ServerRequest.execute(client, HttpClientRequest.get(url, { acceptJson: true }), {
      operation,
      endpoint: "JWKS endpoint",
      timeout: options.timeout,
      maxResponseBytes: options.maxBytes
    }).pipe(
      Effect.mapError((error) => unavailable(`the JWKS could not be fetched: ${error.reason.message}`))
    )
    if (answer.status !== 200) return yield* unavailable(`the JWKS endpoint answered HTTP ${answer.status}`)
    const json = yield* Effect.try({
      try: () => JSON.parse(answer.text) as unknown,
      catch: () => unavailable("the JWKS is not JSON")
    })
    const jwks = yield* Schema.decodeUnknown(Jwks)(json).pipe(
      Effect.mapError(() => unavailable("the JWKS is not a key set"))
    )
    return yield* Effect.try({
      try: () => jose.createLocalJWKSet({ keys: jwks.keys as Array<jose.JWK> }),
      catch: () => unavailable("the JWKS is not a key set")
    })
  })

/** jose's failures, as the check that failed; its messages name claims, never values of the token. */
const fromJose = (error: unknown): SessionError => {
  if (error instanceof jose.errors.JWTExpired) return invalid("exp", "the ID token has expired")
  if (error instanceof jose.errors.JWTClaimValidationFailed) {
    return invalid(error.claim, `the ID token's "${error.claim}" claim is not the expected one`)
  }
  if (error instanceof jose.errors.JOSEAlgNotAllowed) return invalid("alg", "the ID token's algorithm is not allowed")
  if (error instanceof jose.errors.JWSSignatureVerificationFailed) {
    return invalid("signature", "the ID token's signature does not verify")
  }
  if (error instanceof jose.errors.JWKSNoMatchingKey) return invalid("kid", "no key of the issuer matches the ID token")
  return invalid("format", "the ID token is not a valid signed JWT")
}

/** How long a failed JWKS fetch answers for itself: callers meanwhile fail at once with it. */
const failureMemoryMillis = 5_000

export const make = (client: HttpClient.HttpClient, options: Options): Effect.Effect<Verifier, never, Scope.Scope> =>
  Effect.gen(function*() {
    const algorithms = allowedAlgorithms(options.algorithms)
    const scope = yield* Effect.scope
    type KeySet = ReturnType<typeof jose.createLocalJWKSet>
    let keys: Option.Option<{ readonly keySet: KeySet; readonly at: number }> = Option.none()
    /** The fetch in flight, which every caller that needs the keys meanwhile awaits (one fetch, not a queue). */
    let inFlight: Deferred.Deferred<KeySet, SessionError> | undefined
    /** The last failed fetch, remembered until `until`: callers fail at once rather than each trying again. */
    let failed: { readonly error: SessionError; readonly until: number } | undefined

    /** The key set, fetched if there is none, or if `stale` and the last fetch is older than the interval. */
    const keySet = (stale: boolean): Effect.Effect<readonly [KeySet, boolean], SessionError> =>
      Effect.gen(function*() {
        const now = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
        if (
          Option.isSome(keys) &&
          (!stale || now - keys.value.at < Duration.toMillis(options.refetchInterval))
        ) return [keys.value.keySet, false] as const
        if (failed !== undefined && now < failed.until) {
          const reason = failed.error.reason
          return yield* new SessionError({
            operation,
            reason: new Unavailable({
              description: `${reason.message} (a moment ago; not tried again yet)`,
              retryAfter: Duration.millis(failed.until - now)
            })
          })
        }
        if (inFlight === undefined) {
          const deferred = yield* Deferred.make<KeySet, SessionError>()
          inFlight = deferred
          // Forked in the verifier's scope: a caller that goes away does not cancel the fetch the others await.
          yield* Effect.flatMap(options.jwksUri, (url) => fetchJwks(client, url, options)).pipe(
            Effect.onExit((exit) =>
              Effect.flatMap(Effect.clockWith((clock) => clock.currentTimeMillis), (end) => {
                inFlight = undefined
                if (Exit.isSuccess(exit)) {
                  keys = Option.some({ keySet: exit.value, at: end })
                  failed = undefined
                } else {
                  const error = Cause.failureOption(exit.cause)
                  if (Option.isSome(error)) failed = { error: error.value, until: end + failureMemoryMillis }
                }
                return Deferred.done(deferred, exit)
              })
            ),
            Effect.forkIn(scope)
          )
        }
        return [yield* Deferred.await(inFlight), true] as const
      })

    const verifyWith = (idToken: string, keySet: ReturnType<typeof jose.createLocalJWKSet>, now: number) =>
      Effect.tryPromise({
        try: () =>
          jose.jwtVerify(idToken, keySet, {
            issuer: options.issuer,
            audience: options.clientId,
            algorithms,
            currentDate: new Date(now),
            clockTolerance: Math.floor(Duration.toSeconds(options.clockTolerance)),
            requiredClaims: ["iss", "sub", "aud", "exp", "iat"]
          }),
        catch: (error) => error
      })

    const verify = (idToken: string, expected: Expected) =>
      Effect.gen(function*() {
        if (idToken.length > 16_384) return yield* invalid("format", "the ID token is too large")
        const now = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
        const [first, fresh] = yield* keySet(false)
        const result = yield* verifyWith(idToken, first, now).pipe(
          Effect.catchIf(
            (error) => error instanceof jose.errors.JWKSNoMatchingKey && !fresh,
            () =>
              // An unknown kid: the provider may have rotated its keys. Fetch again, at most once per interval.
              Effect.flatMap(keySet(true), ([again]) => verifyWith(idToken, again, now))
          ),
          Effect.mapError((error) => error instanceof SessionError ? error : fromJose(error))
        )
        const payload = result.payload
        // OIDC Core §3.1.3.7 (6): several audiences require an `azp`, and an `azp` must be this client.
        const audiences = Array.isArray(payload.aud) ? payload.aud : [payload.aud]
        if (audiences.length > 1 && payload.azp === undefined) {
          return yield* invalid("azp", "an ID token for several audiences must name its authorized party")
        }
        if (payload.azp !== undefined && payload.azp !== options.clientId) {
          return yield* invalid("azp", "the ID token was issued to another client")
        }
        // jose checks `iat` only against a maximum age; one from the future is as wrong as an `exp` in the past.
        if (typeof payload.iat !== "number" || payload.iat * 1000 > now + Duration.toMillis(options.clockTolerance)) {
          return yield* invalid("iat", "the ID token is issued in the future")
        }
        if (
          expected.nonce !== undefined &&
          (typeof payload.nonce !== "string" || !constantTimeEqual(payload.nonce, expected.nonce))
        ) {
          return yield* invalid("nonce", "the ID token's nonce is not this login's")
        }
        if (typeof payload.sub !== "string" || payload.sub.length === 0 || payload.sub.length > 255) {
          return yield* invalid("sub", "the ID token's subject is missing or too long")
        }
        if (expected.subject !== undefined && payload.sub !== expected.subject) {
          return yield* invalid("sub", "the ID token names another subject than the session's")
        }
        return { subject: payload.sub, payload }
      })

    return { verify }
  })

/**
 * The ID token a session keeps after a refresh (OpenID Connect Core §12.2): the answer's, once verified as the
 * login's was (same `iss` and `aud`, checked by the verifier, and the session's `sub`), so that logout sends the
 * current `id_token_hint`; the stored one when the answer has none. An answer whose ID token fails a check fails
 * (the caller ends the session: its tokens belong to someone else, or to another issuer); when the keys cannot be
 * fetched just now, the stored one is kept (the refresh token was spent: its successor must still be stored).
 */
export const refreshed = (
  verifier: Verifier,
  previous: Option.Option<Redacted.Redacted<string>>,
  subject: string,
  answer: Option.Option<Redacted.Redacted<string>>
): Effect.Effect<Option.Option<Redacted.Redacted<string>>, SessionError> =>
  Option.match(answer, {
    onNone: () => Effect.succeed(previous),
    onSome: (idToken) =>
      verifier.verify(Redacted.value(idToken), { subject }).pipe(
        Effect.as(Option.some(idToken)),
        Effect.catchIf(
          (error) => error.reason._tag === "Unavailable",
          (error) =>
            Effect.as(
              Effect.logWarning(
                `a refresh answer's ID token could not be checked, the previous one is kept: ${error.message}`
              ),
              previous
            )
        )
      )
  })
