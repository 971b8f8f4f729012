/*
 * What is worth trying again: one table for every part that retries (token endpoint, cache, authenticated client).
 */

/** 408 Request Timeout, 429 Too Many Requests, and the 5xx that mean "overloaded or down". */
const transientStatuses: ReadonlySet<number> = new Set([408, 429, 500, 502, 503, 504])

export const isTransientStatus = (status: number): boolean => transientStatuses.has(status)

/** RFC 6749 §5.2 / RFC 8628 codes that say "later" rather than "no". */
const transientOAuthCodes: ReadonlySet<string> = new Set(["temporarily_unavailable", "slow_down", "server_error"])

export const isTransientOAuthCode = (code: string): boolean => transientOAuthCodes.has(code)
