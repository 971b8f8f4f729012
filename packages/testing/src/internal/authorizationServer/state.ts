/*
 * What the test authorization server remembers between requests, and the OAuth error every handler fails with.
 * One `Ref` holds it all, so that a test reading `requests` or `issuedTokens` sees one consistent moment.
 */
import * as Duration from "effect/Duration"
import type * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import type { IssuedToken } from "../../TestAuthorizationServer.js"

export interface RefreshGrant {
  readonly clientId: string
  readonly scope: Option.Option<string>
  readonly state: "active" | "rotated" | "revoked"
  /** The user it was issued for (a code grant's); the client itself when absent. */
  readonly subject?: string | undefined
}

/** An authorization code not yet redeemed: what the authorization request asked for. */
export interface PendingCode {
  readonly clientId: string
  readonly redirectUri: string
  readonly codeChallenge: string
  readonly subject: string
  readonly scope: Option.Option<string>
  readonly nonce: string | undefined
}

export interface State {
  readonly requests: Readonly<Record<string, number>>
  readonly issued: ReadonlyArray<IssuedToken>
  readonly lifetime: Duration.Duration
  readonly nextLifetimes: ReadonlyArray<Duration.Duration>
  readonly revoked: ReadonlySet<string>
  readonly refreshTokens: ReadonlyMap<string, RefreshGrant>
  readonly codes: ReadonlyMap<string, PendingCode>
}

export type ServerState = Ref.Ref<State>

export const make = (tokenLifetime: Duration.DurationInput) =>
  Ref.make<State>({
    requests: {},
    issued: [],
    lifetime: Duration.decode(tokenLifetime),
    nextLifetimes: [],
    revoked: new Set(),
    refreshTokens: new Map(),
    codes: new Map()
  })

/** An RFC 6749 §5.2 error, before it becomes a response. */
export interface OAuthFailure {
  readonly error: string
  readonly description: string
  readonly status: number
}

export const oauthFailure = (error: string, description: string, status = 400): OAuthFailure => ({
  error,
  description,
  status
})

/** RFC 6749 §5.1: token responses must not be cached by intermediaries. */
export const noStore = { "cache-control": "no-store", pragma: "no-cache" }
