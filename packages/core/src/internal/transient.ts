/*
 * What is worth trying again: one table for every part that retries or holds back (token endpoint, cache, authenticated
 * client, the session's refresh and login). `TokenError.isTransient` and `TokenError.isTransientStatus` are its public
 * face; nothing else decides it.
 */
import type { TokenError } from "../TokenError.js"

/** 408 Request Timeout, 429 Too Many Requests, and the 5xx that mean "overloaded or down". */
const transientStatuses: ReadonlySet<number> = new Set([408, 429, 500, 502, 503, 504])

export const isTransientStatus = (status: number): boolean => transientStatuses.has(status)

/** RFC 6749 §5.2 / RFC 8628 codes that say "later" rather than "no". */
const transientOAuthCodes: ReadonlySet<string> = new Set(["temporarily_unavailable", "slow_down", "server_error"])

export const isTransientOAuthCode = (code: string): boolean => transientOAuthCodes.has(code)

/**
 * Statuses that say "later" whatever an OAuth error body's code says (RFC 6585 §4, RFC 9110 §15.6.4): a server that
 * throttles with an error code of its own must not be taken for a permanent refusal and hammered by every caller.
 */
const laterStatuses: ReadonlySet<number> = new Set([429, 503])

/** The one classifier: whether trying `error` again later may succeed. */
export const isTransient = (error: TokenError): boolean => {
  const reason = error.reason
  switch (reason._tag) {
    case "Transport":
      // A request that may have spent a one-time credential (a rotated refresh token) is never sent again.
      return reason.sent !== true
    case "Unavailable":
      return true
    case "Timeout":
      // The whole wait is over: retrying inside it would outlive the caller's own bound.
      return reason.bound === "attempt" && reason.sent !== true
    case "OAuthError":
      return laterStatuses.has(reason.status) || isTransientOAuthCode(reason.code)
    case "RefreshTokenRejected":
    case "MalformedResponse":
    case "Misconfigured":
      return false
  }
}
