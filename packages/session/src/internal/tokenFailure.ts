/**
 * The session package's one reading of core's `TokenError`: what a failed token request means for a user's session.
 * Whether a failure is transient is core's table (`TokenError.isTransient`), never decided here again.
 */
import { TokenError } from "@effect-token/core"

/**
 * - `Rejected`: the authorization server refused the session's refresh token (`invalid_grant`): the session is over.
 * - `Transient`: trying again later may work: the user stays signed in (a 503 meanwhile).
 * - `Permanent`: no retry can fix it (a misconfiguration, a malformed answer, an OAuth refusal of the request).
 */
export type Verdict = "Rejected" | "Transient" | "Permanent"

export const classify = (error: TokenError.TokenError): Verdict =>
  error.reason._tag === "RefreshTokenRejected"
    ? "Rejected"
    : TokenError.isTransient(error)
    ? "Transient"
    : "Permanent"
