/**
 * The one error of a web session: `SessionError`, whose `reason` is a tagged union of classes (as core's
 * `TokenError`), each with only its own fields. Every reason but `Unavailable` means "send the user to log in";
 * {@link status} says which HTTP answer each deserves. Messages never contain a code, a token, a state or an id.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"

/**
 * No signed-in user: no session cookie, a malformed or unknown one, or a session past its idle or absolute expiry.
 *
 * @example
 * ```ts
 * import { SessionError } from "@effect-token/session"
 *
 * const reason = new SessionError.NotSignedIn({ description: "no session cookie" })
 * ```
 *
 * @since 0.1.0
 * @category reasons
 */
export class NotSignedIn extends Schema.TaggedError<NotSignedIn>("@effect-token/session/SessionError/NotSignedIn")(
  "NotSignedIn",
  { description: Schema.String }
) {
  override get message(): string {
    return this.description
  }
}

/**
 * The session was ended because its refresh token was rejected (`invalid_grant`: expired, revoked, reused): its
 * tokens are gone and the user has to log in again.
 *
 * @example
 * ```ts
 * import { SessionError } from "@effect-token/session"
 *
 * const reason = new SessionError.SessionRejected({ description: "the refresh token was rejected" })
 * ```
 *
 * @since 0.1.0
 * @category reasons
 */
export class SessionRejected
  extends Schema.TaggedError<SessionRejected>("@effect-token/session/SessionError/SessionRejected")(
    "SessionRejected",
    { description: Schema.String }
  )
{
  override get message(): string {
    return this.description
  }
}

/**
 * The callback does not belong to a login this server started: no pending-login cookie, an unknown or already used
 * login, a `state` that does not match, a login that took too long.
 *
 * @example
 * ```ts
 * import { SessionError } from "@effect-token/session"
 *
 * const reason = new SessionError.LoginStateInvalid({ description: "state mismatch" })
 * ```
 *
 * @since 0.1.0
 * @category reasons
 */
export class LoginStateInvalid
  extends Schema.TaggedError<LoginStateInvalid>("@effect-token/session/SessionError/LoginStateInvalid")(
    "LoginStateInvalid",
    { description: Schema.String }
  )
{
  override get message(): string {
    return this.description
  }
}

/**
 * The authorization server answered the login with an error (RFC 6749 §4.1.2.1), e.g. `access_denied` when the user
 * declined. Only the code is kept: the description is the server's text.
 *
 * @example
 * ```ts
 * import { SessionError } from "@effect-token/session"
 *
 * const reason = new SessionError.AuthorizationDenied({ code: "access_denied" })
 * reason.message // "the authorization server answered access_denied"
 * ```
 *
 * @since 0.1.0
 * @category reasons
 */
export class AuthorizationDenied
  extends Schema.TaggedError<AuthorizationDenied>("@effect-token/session/SessionError/AuthorizationDenied")(
    "AuthorizationDenied",
    { code: Schema.String }
  )
{
  override get message(): string {
    return `the authorization server answered ${this.code}`
  }
}

/**
 * The authorization code could not be exchanged: expired or reused code (`invalid_grant`), wrong client settings,
 * a malformed answer. `operation` and `detail` come from core's `TokenError`, whose messages carry no secret.
 *
 * @example
 * ```ts
 * import { SessionError } from "@effect-token/session"
 *
 * const reason = new SessionError.CodeExchangeFailed({ code: "invalid_grant", detail: "invalid_grant (HTTP 400)" })
 * ```
 *
 * @since 0.1.0
 * @category reasons
 */
export class CodeExchangeFailed
  extends Schema.TaggedError<CodeExchangeFailed>("@effect-token/session/SessionError/CodeExchangeFailed")(
    "CodeExchangeFailed",
    {
      /** The OAuth error code, when the server sent one. */
      code: Schema.optional(Schema.String),
      detail: Schema.String
    }
  )
{
  override get message(): string {
    return `the authorization code exchange failed: ${this.detail}`
  }
}

/**
 * The ID token failed a check (signature, `iss`, `aud`, `azp`, `exp`, `nonce`, algorithm); `check` names which.
 *
 * @example
 * ```ts
 * import { SessionError } from "@effect-token/session"
 *
 * const reason = new SessionError.IdTokenInvalid({ check: "nonce", description: "nonce mismatch" })
 * ```
 *
 * @since 0.1.0
 * @category reasons
 */
export class IdTokenInvalid
  extends Schema.TaggedError<IdTokenInvalid>("@effect-token/session/SessionError/IdTokenInvalid")(
    "IdTokenInvalid",
    { check: Schema.String, description: Schema.String }
  )
{
  override get message(): string {
    return `ID token rejected (${this.check}): ${this.description}`
  }
}

/**
 * Trying again later may work: the authorization server or the session store is down or slow, and no usable access
 * token is at hand. Never a reason to log the user out.
 *
 * @example
 * ```ts
 * import { SessionError } from "@effect-token/session"
 * import { Duration } from "effect"
 *
 * const reason = new SessionError.Unavailable({ description: "HTTP 503", retryAfter: Duration.seconds(5) })
 * ```
 *
 * @since 0.1.0
 * @category reasons
 */
export class Unavailable extends Schema.TaggedError<Unavailable>("@effect-token/session/SessionError/Unavailable")(
  "Unavailable",
  { description: Schema.String, retryAfter: Schema.optional(Schema.DurationFromSelf) }
) {
  override get message(): string {
    const after = this.retryAfter === undefined ? "" : `, retry after ${Duration.format(this.retryAfter)}`
    return `${this.description}${after}`
  }
}

/**
 * Why a session could not be had.
 *
 * @example
 * ```ts
 * import { SessionError } from "@effect-token/session"
 *
 * const describe = (reason: SessionError.SessionErrorReason): string =>
 *   reason._tag === "AuthorizationDenied" ? `denied: ${reason.code}` : reason.message
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export const SessionErrorReason = Schema.Union(
  NotSignedIn,
  SessionRejected,
  LoginStateInvalid,
  AuthorizationDenied,
  CodeExchangeFailed,
  IdTokenInvalid,
  Unavailable
)

/**
 * @since 0.1.0
 * @category models
 */
export type SessionErrorReason = typeof SessionErrorReason.Type

/**
 * @example
 * ```ts
 * import { SessionError, UserSession } from "@effect-token/session"
 * import { Effect } from "effect"
 *
 * const token = UserSession.accessToken().pipe(
 *   Effect.catchTag("SessionError", (error) =>
 *     error.reason._tag === "Unavailable" ? Effect.succeed(undefined) : Effect.fail(error))
 * )
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class SessionError extends Schema.TaggedError<SessionError>("@effect-token/session/SessionError")(
  "SessionError",
  {
    /** What was being done, e.g. `login callback`, `session refresh`. */
    operation: Schema.String,
    reason: SessionErrorReason
  }
) {
  override get message(): string {
    return `${this.operation} failed (${this.reason._tag}): ${this.reason.message}`
  }
}

/**
 * @example
 * ```ts
 * import { SessionError } from "@effect-token/session"
 *
 * SessionError.isSessionError(new Error("x")) // false
 * ```
 *
 * @since 0.1.0
 * @category refinements
 */
export const isSessionError = (u: unknown): u is SessionError => Predicate.isTagged(u, "SessionError")

/**
 * Whether trying again later may work (reason `Unavailable`). Every other reason sends the user to log in.
 *
 * @example
 * ```ts
 * import { SessionError } from "@effect-token/session"
 *
 * declare const error: SessionError.SessionError
 * const logInAgain = !SessionError.isTransient(error)
 * ```
 *
 * @since 0.1.0
 * @category predicates
 */
export const isTransient = (error: SessionError): boolean => error.reason._tag === "Unavailable"

/**
 * The HTTP status an API answer gets: 503 for `Unavailable`, 401 for everything else (the user must log in).
 *
 * @example
 * ```ts
 * import { SessionError } from "@effect-token/session"
 *
 * declare const error: SessionError.SessionError
 * const status = SessionError.status(error) // 401 or 503
 * ```
 *
 * @since 0.1.0
 * @category accessors
 */
export const status = (error: SessionError): 401 | 503 => isTransient(error) ? 503 : 401

/**
 * Builds a `SessionError`.
 *
 * @example
 * ```ts
 * import { SessionError } from "@effect-token/session"
 *
 * const error = SessionError.make("session", new SessionError.NotSignedIn({ description: "no session cookie" }))
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (operation: string, reason: SessionErrorReason): SessionError =>
  new SessionError({ operation, reason })
