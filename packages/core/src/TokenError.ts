/**
 * The one error every token acquisition can fail with.
 *
 * Modelled on Effect 4's `HttpClientError`: a single tagged error, `TokenError`, says what was being done
 * (`operation`), and its `reason` is a tagged union of classes, each with only its own fields, that says what went
 * wrong. Catch the error with `Effect.catchTag("TokenError", ...)` and switch on `error.reason._tag`. Messages are
 * built only from values that are safe to log: never a client secret, a token, or a response body.
 *
 * @since 0.1.0
 */
import * as DateTime from "effect/DateTime"
import * as Duration from "effect/Duration"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"
import * as transient from "./internal/transient.js"

const optionalRetryAfter = Schema.optional(Schema.DurationFromSelf)

/**
 * The authorization server answered with an RFC 6749 §5.2 error body (`invalid_client`, `invalid_scope`, ...).
 *
 * @example
 * ```ts
 * import { TokenError } from "@effect-token/core"
 *
 * const reason = new TokenError.OAuthError({ code: "invalid_client", status: 401 })
 * reason.message // "invalid_client (HTTP 401)"
 * ```
 *
 * @since 0.1.0
 * @category reasons
 */
export class OAuthError extends Schema.TaggedError<OAuthError>("@effect-token/core/TokenError/OAuthError")(
  "OAuthError",
  {
    /** The RFC 6749 `error` code. */
    code: Schema.String,
    /** The server's `error_description`. */
    description: Schema.optional(Schema.String),
    /** The server's `error_uri`. */
    uri: Schema.optional(Schema.String),
    status: Schema.Number,
    /** The server's `Retry-After`, when it sent one with the error (429 and 503 answers). */
    retryAfter: optionalRetryAfter
  }
) {
  override get message(): string {
    const description = this.description === undefined ? "" : ` - ${this.description}`
    return `${this.code} (HTTP ${this.status})${description}`
  }
}

/**
 * A `refresh_token` grant failed with `invalid_grant`, or there was no refresh token: the user has to log in again.
 *
 * @example
 * ```ts
 * import { TokenError } from "@effect-token/core"
 *
 * const reason = new TokenError.RefreshTokenRejected({ description: "refresh token expired" })
 * ```
 *
 * @since 0.1.0
 * @category reasons
 */
export class RefreshTokenRejected
  extends Schema.TaggedError<RefreshTokenRejected>("@effect-token/core/TokenError/RefreshTokenRejected")(
    "RefreshTokenRejected",
    {
      /** The server's `error_description`, or why no request was made (an empty store). */
      description: Schema.optional(Schema.String),
      /** The HTTP status of the rejection; absent when the store held no refresh token. */
      status: Schema.optional(Schema.Number),
      /** The OAuth `error` code the server answered (`invalid_grant`); absent when no request was made. */
      code: Schema.optional(Schema.String)
    }
  )
{
  override get message(): string {
    const status = this.status === undefined
      ? ""
      : ` (${this.code === undefined ? "" : `${this.code}, `}HTTP ${this.status})`
    const description = this.description === undefined ? "" : ` - ${this.description}`
    return `the refresh token was rejected${status}${description}`
  }
}

/**
 * The request never got an HTTP answer: connection refused or reset, DNS, TLS.
 *
 * @example
 * ```ts
 * import { TokenError } from "@effect-token/core"
 *
 * const reason = new TokenError.Transport({ description: "ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:1" })
 * ```
 *
 * @since 0.1.0
 * @category reasons
 */
export class Transport extends Schema.TaggedError<Transport>("@effect-token/core/TokenError/Transport")(
  "Transport",
  {
    description: Schema.String,
    /**
     * `true` when the request may have reached the server and sending it again is not safe: set by the refresh grant,
     * whose refresh token the server may already have spent. Such a failure is not transient.
     */
    sent: Schema.optional(Schema.Boolean)
  }
) {
  override get message(): string {
    return this.description
  }
}

/**
 * No answer in time. `bound` says which limit ran out: one request (`attempt`, `attemptTimeout`) or the whole
 * wait for a token, retries included (`acquire`, `acquireTimeout`).
 *
 * @example
 * ```ts
 * import { TokenError } from "@effect-token/core"
 * import { Duration } from "effect"
 *
 * const reason = new TokenError.Timeout({ bound: "acquire", after: Duration.seconds(1) })
 * reason.message // "no token within 1s (acquireTimeout)"
 * ```
 *
 * @since 0.1.0
 * @category reasons
 */
export class Timeout extends Schema.TaggedError<Timeout>("@effect-token/core/TokenError/Timeout")("Timeout", {
  bound: Schema.Literal("attempt", "acquire"),
  after: Schema.DurationFromSelf,
  /** As {@link Transport}'s `sent`: the request may have been used by the server; not transient. */
  sent: Schema.optional(Schema.Boolean)
}) {
  override get message(): string {
    return this.bound === "attempt"
      ? `no answer within ${Duration.format(this.after)} (attemptTimeout)`
      : `no token within ${Duration.format(this.after)} (acquireTimeout)`
  }
}

/**
 * The server is overloaded or down: HTTP 408, 429, 500, 502, 503 or 504 without an OAuth error body.
 *
 * @example
 * ```ts
 * import { TokenError } from "@effect-token/core"
 * import { Duration } from "effect"
 *
 * const reason = new TokenError.Unavailable({ status: 503, retryAfter: Duration.seconds(2) })
 * ```
 *
 * @since 0.1.0
 * @category reasons
 */
export class Unavailable extends Schema.TaggedError<Unavailable>("@effect-token/core/TokenError/Unavailable")(
  "Unavailable",
  {
    /** The HTTP status; absent when a store (not an HTTP server) was unavailable. */
    status: Schema.optional(Schema.Number),
    retryAfter: optionalRetryAfter,
    description: Schema.optional(Schema.String)
  }
) {
  override get message(): string {
    const status = this.status === undefined ? "unavailable" : `HTTP ${this.status}`
    const after = this.retryAfter === undefined ? "" : `, retry after ${Duration.format(this.retryAfter)}`
    const description = this.description === undefined ? "" : ` - ${this.description}`
    return `${status}${after}${description}`
  }
}

/**
 * An answer that cannot be used: not JSON, an HTML page, a token response with invalid fields (named in `fields`,
 * never quoted), a status no rule covers.
 *
 * @example
 * ```ts
 * import { TokenError } from "@effect-token/core"
 *
 * const reason = new TokenError.MalformedResponse({
 *   fields: ["expires_in"],
 *   description: "invalid token response field(s): expires_in"
 * })
 * ```
 *
 * @since 0.1.0
 * @category reasons
 */
export class MalformedResponse
  extends Schema.TaggedError<MalformedResponse>("@effect-token/core/TokenError/MalformedResponse")(
    "MalformedResponse",
    {
      description: Schema.String,
      /** The offending fields of the answer, when it was a JSON body. */
      fields: Schema.optionalWith(Schema.Array(Schema.String), { default: () => [] }),
      status: Schema.optional(Schema.Number)
    }
  )
{
  override get message(): string {
    return this.status === undefined ? this.description : `HTTP ${this.status}: ${this.description}`
  }
}

/**
 * The client's own settings cannot work: an unusable signing key, an invalid URL, an issuer that does not match.
 *
 * @example
 * ```ts
 * import { TokenError } from "@effect-token/core"
 *
 * const reason = new TokenError.Misconfigured({ description: "the token endpoint URL is invalid" })
 * ```
 *
 * @since 0.1.0
 * @category reasons
 */
export class Misconfigured extends Schema.TaggedError<Misconfigured>("@effect-token/core/TokenError/Misconfigured")(
  "Misconfigured",
  { description: Schema.String }
) {
  override get message(): string {
    return this.description
  }
}

/**
 * Why a token could not be had.
 *
 * @since 0.1.0
 * @category models
 */
export const TokenErrorReason = Schema.Union(
  OAuthError,
  RefreshTokenRejected,
  Transport,
  Timeout,
  Unavailable,
  MalformedResponse,
  Misconfigured
)

/**
 * @since 0.1.0
 * @category models
 */
export type TokenErrorReason = typeof TokenErrorReason.Type

/**
 * @example
 * ```ts
 * import { TokenError } from "@effect-token/core"
 * import { Effect } from "effect"
 *
 * declare const fetchToken: Effect.Effect<string, TokenError.TokenError>
 *
 * const handled = fetchToken.pipe(
 *   Effect.catchTag("TokenError", (error) =>
 *     error.reason._tag === "OAuthError" && error.reason.code === "invalid_client"
 *       ? Effect.die("misconfigured client")
 *       : Effect.fail(error))
 * )
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class TokenError extends Schema.TaggedError<TokenError>("@effect-token/core/TokenError")("TokenError", {
  /** What was being done, e.g. `client_credentials grant`. */
  operation: Schema.String,
  reason: TokenErrorReason,
  /**
   * Set when a cache holds new token requests back after this failure (a server's `Retry-After`, a failure only a
   * human can fix): no token request starts before this instant, and calls that would start one fail at once with
   * this error until then. See {@link heldUntil}.
   */
  heldUntil: Schema.optional(Schema.DateTimeUtcFromSelf),
  /**
   * The failure this one stands for, when it came from elsewhere: a session's `SessionError` behind a session's
   * token cache, carried as it is so that it comes back out unchanged (never its text).
   */
  cause: Schema.optional(Schema.Defect)
}) {
  /**
   * @since 0.1.0
   */
  override get message(): string {
    const held = this.heldUntil === undefined
      ? ""
      : `; no new token request before ${DateTime.formatIso(this.heldUntil)}`
    return `${this.operation} failed (${this.reason._tag}): ${this.reason.message}${held}`
  }
}

/**
 * @since 0.1.0
 * @category refinements
 */
export const isTokenError = (u: unknown): u is TokenError => Predicate.isTagged(u, "TokenError")

/**
 * Whether trying again later may succeed. Only such failures are retried: a retry cannot fix `invalid_client`.
 * The rule is one table (`Transport`, `Timeout`, `Unavailable`, any OAuth error answered with 429 or 503, and the
 * OAuth codes `temporarily_unavailable`, `slow_down`, `server_error`), shared by the token endpoint, the cache, the authenticated client and the session package (`internal/transient.ts`).
 *
 * @example
 * ```ts
 * import { TokenError } from "@effect-token/core"
 * import { Duration } from "effect"
 *
 * const error = new TokenError.TokenError({
 *   operation: "client_credentials grant",
 *   reason: new TokenError.Timeout({ bound: "attempt", after: Duration.seconds(10) })
 * })
 * TokenError.isTransient(error) // true
 * ```
 *
 * @since 0.1.0
 * @category predicates
 */
export const isTransient: (error: TokenError) => boolean = transient.isTransient

/**
 * The server's requested delay before a retry, if it sent one.
 *
 * @example
 * ```ts
 * import { TokenError } from "@effect-token/core"
 * import { Option } from "effect"
 *
 * declare const error: TokenError.TokenError
 * const wait = Option.getOrUndefined(TokenError.retryAfter(error))
 * ```
 *
 * @since 0.1.0
 * @category accessors
 */
export const retryAfter = (error: TokenError): Option.Option<Duration.Duration> =>
  error.reason._tag === "Unavailable" || error.reason._tag === "OAuthError"
    ? Option.fromNullable(error.reason.retryAfter)
    : Option.none()

/**
 * When the hold this failure started ends: until then a cache starts no token request and fails the calls that would
 * with this error. Every hold is capped (`TokenCache`'s `maxHold`, 60 s by default), whatever the server asked for.
 *
 * @example
 * ```ts
 * import { TokenError } from "@effect-token/core"
 * import { DateTime, Option } from "effect"
 *
 * declare const error: TokenError.TokenError
 * const until = Option.map(TokenError.heldUntil(error), DateTime.formatIso) // e.g. Some("2025-01-01T00:01:00.000Z")
 * ```
 *
 * @since 0.1.0
 * @category accessors
 */
export const heldUntil = (error: TokenError): Option.Option<DateTime.Utc> => Option.fromNullable(error.heldUntil)

/**
 * The RFC 6749 `error` code the server answered: an `OAuthError`'s, or a `RefreshTokenRejected`'s (`invalid_grant`).
 *
 * @example
 * ```ts
 * import { TokenError } from "@effect-token/core"
 *
 * declare const error: TokenError.TokenError
 * if (TokenError.oauthCode(error) === "invalid_scope") {
 *   // ask for fewer scopes
 * }
 * ```
 *
 * @since 0.1.0
 * @category accessors
 */
export const oauthCode = (error: TokenError): string | undefined =>
  error.reason._tag === "OAuthError" || error.reason._tag === "RefreshTokenRejected" ? error.reason.code : undefined

/**
 * Whether an HTTP status means "overloaded or down, try again later": 408, 429, 500, 502, 503, 504. The same table
 * decides `Unavailable` at the token endpoint and the transient retries of the authenticated client (501 and 505
 * are not on it: no retry makes a server implement a method or a protocol version).
 *
 * @example
 * ```ts
 * import { TokenError } from "@effect-token/core"
 *
 * TokenError.isTransientStatus(503) // true
 * TokenError.isTransientStatus(501) // false
 * ```
 *
 * @since 0.1.0
 * @category predicates
 */
export const isTransientStatus: (status: number) => boolean = transient.isTransientStatus
