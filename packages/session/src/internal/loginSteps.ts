/**
 * The steps of an OpenID Connect code login (with PKCE, `state`, `nonce`, RFC 9207 `iss`), each a pure function of
 * its inputs: build the authorization URL, read the callback's query, check the callback against the pending login,
 * the code grant's parameters, what a failed exchange means, which earlier logins a new one retires, the logout URL.
 * No I/O and no clock: `OidcLogin`'s handlers read the request, the clock, the cookie and the issuer, and call these,
 * so that each rule a login must keep is tested on its own (test/loginSteps.test.ts).
 */
import { TokenError } from "@effect-token/core"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { AuthorizationDenied, CodeExchangeFailed, LoginStateInvalid } from "../SessionError.js"
import * as protocol from "./protocol.js"
import { classify } from "./tokenFailure.js"

/** What an authorization request carries (RFC 6749 §4.1.1, RFC 7636 §4.3, OpenID Connect Core §3.1.2.1). */
export interface AuthorizationRequest {
  readonly authorizationEndpoint: string
  readonly clientId: string
  readonly redirectUri: string
  readonly scope: string
  readonly state: string
  readonly nonce: string
  readonly codeChallenge: string
  /** RFC 8707. */
  readonly resource?: string | undefined
  /** RFC 9449 §10: the code is bound to this key's thumbprint; the exchange must prove the key. */
  readonly dpopJkt?: string | undefined
  /** The application's own parameters (`prompt`, `ui_locales`, ...); never one of the protocol's. */
  readonly extraParams?: Readonly<Record<string, string>> | undefined
}

/**
 * The URL the browser is sent to. The application's parameters go in first and the protocol's after, so that no
 * configured parameter can replace `state`, `redirect_uri` or the PKCE challenge. Parameters the endpoint URL
 * already has (a tenant, a policy) stay unless the login sets them.
 */
export const authorizationUrl = (request: AuthorizationRequest): string => {
  const url = new URL(request.authorizationEndpoint)
  for (const [key, value] of Object.entries(request.extraParams ?? {})) url.searchParams.set(key, value)
  const protocolParams: Record<string, string | undefined> = {
    response_type: "code",
    client_id: request.clientId,
    redirect_uri: request.redirectUri,
    scope: request.scope,
    state: request.state,
    nonce: request.nonce,
    code_challenge: request.codeChallenge,
    code_challenge_method: "S256",
    resource: request.resource,
    dpop_jkt: request.dpopJkt
  }
  for (const [key, value] of Object.entries(protocolParams)) {
    if (value !== undefined) url.searchParams.set(key, value)
  }
  return url.toString()
}

/** `openid` first when the configured scope lacks it: without it there is no ID token and so no login. */
export const withOpenid = (scope: string): string => {
  const scopes = scope.split(" ").filter((s) => s.length > 0)
  return (scopes.includes("openid") ? scopes : ["openid", ...scopes]).join(" ")
}

/** The longest request URL whose query is read; a longer one is refused before any parsing. */
export const maxUrlLength = 8192

/** The query of a request URL (a path and query, as a server sees it), or none when overlong or unparsable. */
export const queryOf = (url: string): Option.Option<URLSearchParams> => {
  if (url.length > maxUrlLength) return Option.none()
  const base = "http://request.invalid"
  return URL.canParse(url, base) ? Option.some(new URL(url, base).searchParams) : Option.none()
}

/** A single, bounded, printable parameter: a repeated, empty or overlong one, or one with control bytes, is none. */
export const param = (query: URLSearchParams, name: string, max: number): Option.Option<string> => {
  const all = query.getAll(name)
  if (all.length !== 1) return Option.none()
  const value = all[0]!
  return value.length === 0 || value.length > max || !/^[\x20-\x7e]+$/.test(value) ? Option.none() : Option.some(value)
}

/** Bounds of the callback's parameters: far above what issuers send, far below what could cost anything. */
export const maxStateLength = 512
export const maxCodeLength = 2048
const maxErrorCodeLength = 64

/** The pending login as the callback needs it (sealed in the login cookie by `/login`). */
export interface PendingLogin {
  readonly state: Redacted.Redacted<string>
  /** Epoch milliseconds. */
  readonly createdAt: number
}

/** What the callback is checked against, besides the pending login. */
export interface CallbackContext {
  /** Our issuer, as discovery names it. */
  readonly issuer: string
  /** The issuer says it always names itself in the answer (`authorization_response_iss_parameter_supported`). */
  readonly issParameterSupported: boolean
  /** Epoch milliseconds, now. */
  readonly now: number
  readonly loginTimeoutMillis: number
}

/**
 * Checks an authorization response (the callback's query) against the login this browser started, and gives its
 * code. The order matters: nothing in the answer is believed before its `state` matches the pending login's (in
 * constant time), and an `error` is reported only for an answer from our issuer to a login still in time.
 *
 * - RFC 9207: an answer that names an issuer (errors included) must name ours, once (mix-up defence); an issuer that
 *   says it always names itself must have (§2.4).
 * - The login cookie's `Max-Age` is the browser's bound on a login's time; this one holds whatever the browser kept.
 */
export const checkCallback = (
  query: URLSearchParams,
  pending: PendingLogin,
  context: CallbackContext
): Either.Either<{ readonly code: string }, LoginStateInvalid | AuthorizationDenied> => {
  const invalid = (description: string) => Either.left(new LoginStateInvalid({ description }))
  const state = param(query, "state", maxStateLength)
  if (Option.isNone(state)) return invalid("the callback has no state")
  if (!protocol.constantTimeEqual(state.value, Redacted.value(pending.state))) return invalid("state mismatch")
  const iss = query.getAll("iss")
  if (iss.length > 1 || (iss.length === 1 && iss[0] !== context.issuer)) {
    return invalid("the answer names another issuer")
  }
  if (iss.length === 0 && context.issParameterSupported) return invalid("the answer does not name its issuer")
  if (context.now - pending.createdAt > context.loginTimeoutMillis) return invalid("the login took too long")
  if (query.has("error")) {
    // The code is shown to the user and logged: only an OAuth-shaped word passes, anything else is `invalid_error`.
    const code = Option.getOrElse(
      Option.filter(param(query, "error", maxErrorCodeLength), (c) => /^[a-z_]+$/.test(c)),
      () => "invalid_error"
    )
    return Either.left(new AuthorizationDenied({ code }))
  }
  const code = param(query, "code", maxCodeLength)
  return Option.isNone(code) ? invalid("no authorization code") : Either.right({ code: code.value })
}

/** The code grant's parameters (RFC 6749 §4.1.3 with RFC 7636 §4.5's verifier and RFC 8707's resource). */
export const codeGrant = (options: {
  readonly code: string
  readonly codeVerifier: Redacted.Redacted<string>
  readonly redirectUri: string
  readonly resource?: string | undefined
}) => ({
  grant_type: "authorization_code" as const,
  code: Redacted.make(options.code),
  redirect_uri: options.redirectUri,
  code_verifier: options.codeVerifier,
  resource: options.resource
})

/**
 * What a failed code exchange means: trying again may work (`Unavailable`: the issuer is down or slow), or this
 * login is over (the code was refused, the client is misconfigured, the answer is malformed).
 */
export const exchangeFailure = (
  error: TokenError.TokenError
): { readonly _tag: "Transient"; readonly description: string } | CodeExchangeFailed =>
  classify(error) === "Transient"
    ? { _tag: "Transient", description: `the code exchange: ${error.reason._tag}` }
    : new CodeExchangeFailed({ code: TokenError.oauthCode(error), detail: error.reason._tag })

/** A login cookie the browser sent, as `/login` finds it. */
export interface EarlierLogin {
  readonly name: string
  /** Epoch milliseconds; none when the cookie does not open (forged, sealed under another key, damaged). */
  readonly createdAt: Option.Option<number>
}

/**
 * The login cookies a new login expires: unreadable ones, those past the login timeout, and all but the newest
 * `keep` of the rest (the new login is one more), so that a site sending the browser to `/login` again and again
 * cannot fill its cookie jar, while a few tabs can sign in in parallel.
 */
export const loginsToExpire = (
  earlier: ReadonlyArray<EarlierLogin>,
  options: { readonly now: number; readonly loginTimeoutMillis: number; readonly keep: number }
): ReadonlyArray<string> => {
  const live: Array<{ readonly name: string; readonly createdAt: number }> = []
  const stale: Array<string> = []
  for (const login of earlier) {
    if (Option.isSome(login.createdAt) && options.now - login.createdAt.value <= options.loginTimeoutMillis) {
      live.push({ name: login.name, createdAt: login.createdAt.value })
    } else {
      stale.push(login.name)
    }
  }
  live.sort((a, b) => b.createdAt - a.createdAt)
  return [...stale, ...live.slice(Math.max(0, options.keep)).map((login) => login.name)]
}

/**
 * Where logout sends the browser: the issuer's `end_session_endpoint` (OpenID Connect RP-Initiated Logout 1.0) with
 * our `client_id`, the session's ID token as `id_token_hint` and the registered return URI, or the application's
 * own page when the issuer has none.
 */
export const logoutLocation = (options: {
  readonly endSessionEndpoint: string | undefined
  readonly clientId: string
  readonly idTokenHint: Option.Option<Redacted.Redacted<string>>
  readonly postLogoutRedirectUri: string | undefined
  readonly afterLogout: string
}): string => {
  if (options.endSessionEndpoint === undefined) return options.afterLogout
  const url = new URL(options.endSessionEndpoint)
  url.searchParams.set("client_id", options.clientId)
  if (Option.isSome(options.idTokenHint)) {
    url.searchParams.set("id_token_hint", Redacted.value(options.idTokenHint.value))
  }
  if (options.postLogoutRedirectUri !== undefined) {
    url.searchParams.set("post_logout_redirect_uri", options.postLogoutRedirectUri)
  }
  return url.toString()
}
