/**
 * The one error every token acquisition can fail with.
 *
 * Modelled on `@effect/platform`'s `HttpClientError`: a single tagged error whose `reason` says what went wrong,
 * so callers can `catchTag("TokenError")` and then switch on the reason. The message is built only from values
 * that are safe to log: never a client secret, a token, or a response body.
 *
 * @since 0.1.0
 */
import type * as Duration from "effect/Duration"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"

/**
 * Why a token could not be had.
 *
 * - `OAuthError`: the authorization server answered with an RFC 6749 §5.2 error body (`invalid_client`, ...).
 * - `RefreshTokenRejected`: a `refresh_token` grant failed with `invalid_grant`; the user has to log in again.
 * - `Transport`: the request never got an HTTP answer (connection refused, reset, DNS).
 * - `Timeout`: no answer within the configured timeout.
 * - `MalformedResponse`: an answer that is not a valid token response (HTML page, wrong JSON, bad `expires_in`).
 * - `Unavailable`: the server is overloaded or down (HTTP 408, 429 or 5xx without an OAuth error body).
 * - `Misconfigured`: the client's own settings cannot work (an unusable signing key, an invalid URL).
 *
 * @since 0.1.0
 * @category models
 */
export const TokenErrorReason = Schema.Literal(
  "OAuthError",
  "RefreshTokenRejected",
  "Transport",
  "Timeout",
  "MalformedResponse",
  "Unavailable",
  "Misconfigured"
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
 *     error.reason === "OAuthError" && error.error === "invalid_client"
 *       ? Effect.die("misconfigured client")
 *       : Effect.fail(error))
 * )
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class TokenError extends Schema.TaggedError<TokenError>("@effect-token/core/TokenError")("TokenError", {
  reason: TokenErrorReason,
  /** What was being done, e.g. `client_credentials grant`. */
  operation: Schema.String,
  /** A safe, human-readable detail (never a secret or a response body). */
  detail: Schema.optional(Schema.String),
  /** The HTTP status, when an answer was received. */
  status: Schema.optional(Schema.Number),
  /** The RFC 6749 `error` code, for `OAuthError` and `RefreshTokenRejected`. */
  error: Schema.optional(Schema.String),
  errorDescription: Schema.optional(Schema.String),
  errorUri: Schema.optional(Schema.String),
  /** The server's `Retry-After`, when it sent one. */
  retryAfter: Schema.optional(Schema.DurationFromSelf)
}) {
  /**
   * @since 0.1.0
   */
  override get message(): string {
    const parts: Array<string> = [`${this.operation} failed (${this.reason})`]
    if (this.error !== undefined) parts.push(this.error)
    if (this.status !== undefined) parts.push(`HTTP ${this.status}`)
    let message = parts.join(": ")
    if (this.errorDescription !== undefined) message += ` - ${this.errorDescription}`
    if (this.detail !== undefined) message += ` - ${this.detail}`
    return message
  }
}

/**
 * @since 0.1.0
 * @category refinements
 */
export const isTokenError = (u: unknown): u is TokenError => Predicate.isTagged(u, "TokenError")

const transientOAuthErrors = new Set(["temporarily_unavailable", "slow_down", "server_error"])

/**
 * Whether trying again later may succeed. Only such failures are retried: a retry cannot fix `invalid_client`.
 *
 * @example
 * ```ts
 * import { TokenError } from "@effect-token/core"
 *
 * const error = new TokenError.TokenError({ reason: "Timeout", operation: "client_credentials grant" })
 * TokenError.isTransient(error) // true
 * ```
 *
 * @since 0.1.0
 * @category predicates
 */
export const isTransient = (error: TokenError): boolean => {
  switch (error.reason) {
    case "Transport":
    case "Timeout":
    case "Unavailable":
      return true
    case "OAuthError":
      return error.error !== undefined && transientOAuthErrors.has(error.error)
    case "RefreshTokenRejected":
    case "MalformedResponse":
    case "Misconfigured":
      return false
  }
}

/**
 * The server's requested delay before a retry, if it sent one.
 *
 * @since 0.1.0
 * @category accessors
 */
export const retryAfter = (error: TokenError): Option.Option<Duration.Duration> => Option.fromNullable(error.retryAfter)
