/**
 * OpenID Connect login for a web application (authorization code flow with PKCE S256, `state` and `nonce`), its
 * callback and its logout, as `@effect/platform` HTTP handlers and an `HttpRouter`.
 *
 * - `/login` stores nothing on the server: the pending login (state, nonce, code verifier, return path, start time)
 *   is sealed (AES-256-GCM, a key derived from {@link Options.secret}) into a short-lived `HttpOnly` cookie named
 *   after its `state`, and the browser is sent to the issuer. Each login has its own cookie (tabs in parallel), a few
 *   per browser at most.
 * - `/callback` opens the cookie of the `state` it carries (a callback with another state, from another site,
 *   touches no login), compares `state` in constant time, expires that cookie (the login is used once in this
 *   browser; the code itself is single-use at the issuer), exchanges the code through core's `TokenEndpoint`,
 *   verifies the ID token with `jose` against the issuer's JWKS, and starts a session under a new id. Any failure
 *   answers with a way back to login, never a half-made session.
 * - `/logout` ends the session, revokes its refresh token (best effort: a failure never blocks the logout) and, when
 *   the issuer offers it, sends the browser to its `end_session_endpoint` (RP-initiated logout).
 *
 * @since 0.1.0
 */
import { ClientAuth, Discovery, DPoP, Revocation, TokenEndpoint, TokenError } from "@effect-token/core"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as cookies from "./internal/cookies.js"
import * as loginCookie from "./internal/loginCookie.js"
import * as pages from "./internal/pages.js"
import * as protocol from "./internal/protocol.js"
import { classify } from "./internal/tokenFailure.js"
import {
  AuthorizationDenied,
  CodeExchangeFailed,
  IdTokenInvalid,
  LoginStateInvalid,
  SessionError,
  Unavailable
} from "./SessionError.js"
import * as UserSession from "./UserSession.js"
import type * as UserTokenStore from "./UserTokenStore.js"

/**
 * @example
 * ```ts
 * import type { OidcLogin } from "@effect-token/session"
 *
 * const paths: OidcLogin.Paths = { login: "/auth/login", callback: "/auth/callback", logout: "/auth/logout" }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Paths {
  /** Default `/login`. Takes `?returnTo=/same/origin/path`. */
  readonly login?: string | undefined
  /** Default `/callback`: the path of `redirectUri`. */
  readonly callback?: string | undefined
  /** Default `/logout`. */
  readonly logout?: string | undefined
}

/**
 * @example
 * ```ts
 * import { ClientAuth } from "@effect-token/core"
 * import type { OidcLogin } from "@effect-token/session"
 * import { Redacted } from "effect"
 *
 * const options: OidcLogin.Options = {
 *   clientAuth: ClientAuth.clientSecretBasic({ clientId: "web", clientSecret: Redacted.make("s3cr3t") }),
 *   redirectUri: "https://app.example.com/callback",
 *   scope: "openid offline_access orders:read",
 *   authorizationParams: { prompt: "consent" }
 * }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly clientAuth: ClientAuth.ClientAuth
  /** The callback's absolute URL, as registered at the issuer. */
  readonly redirectUri: string
  /** Default `openid offline_access` (`openid` is added when missing; `offline_access` asks for a refresh token). */
  readonly scope?: string | undefined
  /** RFC 8707 resource indicator for the access token. */
  readonly resource?: string | undefined
  /** Where the issuer sends the browser after an RP-initiated logout (registered at the issuer). */
  readonly postLogoutRedirectUri?: string | undefined
  /** Where the browser goes after logout when the issuer has no `end_session_endpoint`. Default `/`. */
  readonly afterLogout?: string | undefined
  readonly paths?: Paths | undefined
  /** More authorization request parameters, e.g. `{ prompt: "consent" }`. Protocol parameters cannot be overridden. */
  readonly authorizationParams?: Readonly<Record<string, string>> | undefined
  /** How long a login may take between `/login` and `/callback`. Default 10 minutes. */
  readonly loginTimeout?: Duration.DurationInput | undefined
  /**
   * The secret the sign-in cookie's key is derived from (HKDF-SHA-256, for AES-256-GCM): at least 32 characters,
   * and the same on every instance a callback may reach. Default: a random key per process, which suits a single
   * instance (a login started on one instance then fails on another, and a restart fails the logins in progress).
   */
  readonly secret?: Redacted.Redacted<string> | undefined
  /** Time allowed for the code exchange and for a logout's revocation, each. Default 10 seconds. */
  readonly timeout?: Duration.DurationInput | undefined
  /**
   * DPoP (RFC 9449): each login gets its own key pair (`true`: ES256, or an algorithm), named by `dpop_jkt` on the
   * authorization request; the code exchange and every refresh send proofs, the session keeps the private key
   * (encrypted with the record by a durable store), and `UserSession.client` signs with it. Default: bearer tokens.
   */
  readonly dpop?: boolean | DPoP.Algorithm | undefined
}

/**
 * The login, callback and logout handlers, and a router serving them at their paths.
 *
 * @example
 * ```ts
 * import { OidcLogin } from "@effect-token/session"
 * import { Effect } from "effect"
 *
 * const loginPath = Effect.map(OidcLogin.OidcLogin, (login) => login.paths.login)
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface OidcLogin {
  readonly paths: Required<{ readonly [K in keyof Paths]: string }>
  readonly login: Effect.Effect<HttpServerResponse.HttpServerResponse, never, HttpServerRequest.HttpServerRequest>
  readonly callback: Effect.Effect<HttpServerResponse.HttpServerResponse, never, HttpServerRequest.HttpServerRequest>
  readonly logout: Effect.Effect<HttpServerResponse.HttpServerResponse, never, HttpServerRequest.HttpServerRequest>
  /** `GET login`, `GET callback`, `POST logout` (a GET logout would let any site log the user out). */
  readonly router: HttpRouter.HttpRouter
}

/**
 * @example
 * ```ts
 * import { OidcLogin } from "@effect-token/session"
 * import { Effect } from "effect"
 *
 * const routes = Effect.map(OidcLogin.OidcLogin, (login) => login.router)
 * ```
 *
 * @since 0.1.0
 * @category tags
 */
export const OidcLogin: Context.Tag<OidcLogin, OidcLogin> = Context.GenericTag<OidcLogin>(
  "@effect-token/session/OidcLogin"
)

/** The shortest `secret` accepted: 32 characters (256 bits of a random base64 or hex string). */
const minSecretLength = 32
/** Logins in progress kept per browser (tabs in parallel), and the most login cookies a request's are read. */
const maxParallelLogins = 4
const maxCookiesRead = 16
/** Logout revocations running in the background at once, at most. */
const maxBackgroundRevocations = 256

/** The request's URL, parsed with a bound: an overlong callback URL is refused before any parsing. */
const maxUrlLength = 8192
const queryOf = (request: HttpServerRequest.HttpServerRequest): Option.Option<URLSearchParams> => {
  if (request.url.length > maxUrlLength) return Option.none()
  const url = URL.canParse(request.url, "http://request.invalid") ?
    new URL(request.url, "http://request.invalid") :
    undefined
  return url === undefined ? Option.none() : Option.some(url.searchParams)
}

/** A bounded, printable single parameter: a repeated or overlong parameter is refused. */
const param = (query: URLSearchParams, name: string, max: number): Option.Option<string> => {
  const all = query.getAll(name)
  if (all.length !== 1) return Option.none()
  const value = all[0]!
  return value.length === 0 || value.length > max || !/^[\x20-\x7e]+$/.test(value) ? Option.none() : Option.some(value)
}

/** A configured path as the router's type; one that does not start with `/` is a programming error. */
const routePath = (path: string): HttpRouter.PathInput => {
  if (!path.startsWith("/")) throw new Error(`OidcLogin: the path ${JSON.stringify(path)} must start with "/"`)
  return path as HttpRouter.PathInput
}

const isLoopbackHttp = (url: string): boolean =>
  URL.canParse(url) && new URL(url).protocol === "http:" && Discovery.isSecureUrl(url)

const withOpenid = (scope: string) => {
  const scopes = scope.split(" ").filter((s) => s.length > 0)
  return (scopes.includes("openid") ? scopes : ["openid", ...scopes]).join(" ")
}

/**
 * The login handlers over the `Discovery`, `UserSessions` and `HttpClient` in context; logout revocations run in
 * the background in the scope.
 *
 * @example
 * ```ts
 * import { ClientAuth } from "@effect-token/core"
 * import { OidcLogin } from "@effect-token/session"
 * import { Redacted } from "effect"
 *
 * const login = OidcLogin.make({
 *   clientAuth: ClientAuth.clientSecretBasic({ clientId: "web", clientSecret: Redacted.make("s3cr3t") }),
 *   redirectUri: "https://app.example.com/callback"
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: Options
): Effect.Effect<
  OidcLogin,
  never,
  Discovery.Discovery | UserSession.UserSessions | HttpClient.HttpClient | Scope.Scope
> =>
  Effect.gen(function*() {
    const discovery = yield* Discovery.Discovery
    const sessions = yield* UserSession.UserSessions
    const client = yield* HttpClient.HttpClient
    const clientId = options.clientAuth.clientId
    const redirectPath = URL.canParse(options.redirectUri) ? new URL(options.redirectUri).pathname : "/callback"
    const paths = {
      login: options.paths?.login ?? sessions.loginPath,
      callback: options.paths?.callback ?? redirectPath,
      logout: options.paths?.logout ?? "/logout"
    }
    if (!sessions.secureCookies && !isLoopbackHttp(options.redirectUri)) {
      // Cookies without `Secure` would travel in clear text: only a development server on http loopback may.
      return yield* Effect.dieMessage("OidcLogin: cookies without Secure need an http loopback redirectUri")
    }
    const scope = withOpenid(options.scope ?? "openid offline_access")
    const dpopAlgorithm: DPoP.Algorithm | undefined = options.dpop === true
      ? "ES256"
      : typeof options.dpop === "string"
      ? options.dpop
      : undefined
    const loginTimeout = Duration.decode(options.loginTimeout ?? Duration.minutes(10))
    const timeout = Duration.decode(options.timeout ?? Duration.seconds(10))
    const secure = sessions.secureCookies
    // The application's origin, as the browser names it in `Origin` (the redirect URI is on it).
    const appOrigin = URL.canParse(options.redirectUri) ? new URL(options.redirectUri).origin : "null"
    const loginPrefix = secure ? "__Host-login" : "login"
    if (options.secret !== undefined && Redacted.value(options.secret).length < minSecretLength) {
      return yield* Effect.dieMessage(`OidcLogin: the secret must be at least ${minSecretLength} characters`)
    }
    const sealingKey = yield* loginCookie.deriveKey(
      Redacted.make(
        options.secret === undefined
          ? crypto.getRandomValues(new Uint8Array(32))
          : new TextEncoder().encode(Redacted.value(options.secret))
      )
    )
    const cookie = (name: string, value: string, maxAge: number | undefined) =>
      protocol.serializeCookie(name, value, { path: "/", httpOnly: true, secure, sameSite: "Lax", maxAge })

    const unavailable = (operation: string, description: string) =>
      new SessionError({ operation, reason: new Unavailable({ description }) })
    const fromDiscovery = (operation: string) => (error: TokenError.TokenError) =>
      unavailable(operation, `the issuer's metadata: ${error.reason._tag}`)
    const metadata = (operation: string) => Effect.mapError(discovery.metadata, fromDiscovery(operation))

    /**
     * Any login failure: for a browser navigation a page that says so and links back to login (or 503 when trying
     * again may work), the application's `errorPage` when it has one; for an API call the same as JSON.
     */
    const failed = (error: SessionError) =>
      Effect.zipRight(
        Effect.logInfo(error.message).pipe(Effect.annotateLogs("reason", error.reason._tag)),
        Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
          if (pages.isNavigation(request)) {
            return sessions.errorPage === undefined
              ? Effect.succeed(pages.defaultPage(error, paths.login))
              : sessions.errorPage(error)
          }
          return Effect.succeed(
            error.reason._tag === "Unavailable"
              ? HttpServerResponse.unsafeJson({ error: "temporarily_unavailable" }, {
                status: 503,
                headers: pages.retryAfterHeaders(error)
              })
              : HttpServerResponse.unsafeJson(
                { error: "login_failed", reason: error.reason._tag, login: paths.login },
                {
                  status: 401
                }
              )
          )
        })
      )

    const login = Effect.gen(function*() {
      const request = yield* HttpServerRequest.HttpServerRequest
      const query = queryOf(request)
      const returnTo = protocol.safeReturnTo(
        Option.getOrUndefined(Option.flatMap(query, (q) => param(q, "returnTo", protocol.maxReturnToLength)))
      )
      const m = yield* metadata("login")
      if (m.authorization_endpoint === undefined) {
        return yield* unavailable("login", "the issuer publishes no authorization_endpoint")
      }
      const state = protocol.randomToken(32)
      const nonce = protocol.randomToken(32)
      const codeVerifier = protocol.randomToken(32)
      const challenge = yield* Effect.promise(() => protocol.pkceChallenge(codeVerifier))
      // A key per login: the session's tokens are bound to it, and only this session holds it.
      const dpopKey = dpopAlgorithm === undefined
        ? undefined
        : yield* Effect.orDie(DPoP.generate({ algorithm: dpopAlgorithm, extractable: true }))
      const dpopJwk = dpopKey === undefined
        ? Option.none()
        : Option.some(
          Redacted.make(JSON.stringify(Redacted.value(yield* Effect.orDie(DPoP.exportPrivateJwk(dpopKey)))))
        )
      const now = yield* Clock.currentTimeMillis
      const name = yield* loginCookie.cookieName(loginPrefix, state)
      const pending = (returnTo: string) =>
        loginCookie.PendingLogin.make({
          state: Redacted.make(state),
          nonce: Redacted.make(nonce),
          codeVerifier: Redacted.make(codeVerifier),
          returnTo,
          createdAt: now,
          dpopKey: dpopJwk
        })
      const fits = (sealed: string) => name.length + 1 + sealed.length <= loginCookie.maxCookieBytes
      let sealed = yield* loginCookie.seal(sealingKey, name, pending(returnTo))
      // A browser drops a cookie over 4 KiB: a long return path (with a large RSA DPoP key) gives way to `/`.
      if (!fits(sealed)) sealed = yield* loginCookie.seal(sealingKey, name, pending("/"))
      if (!fits(sealed)) return yield* Effect.dieMessage("OidcLogin: a login does not fit in a cookie")
      const url = new URL(m.authorization_endpoint)
      for (const [key, value] of Object.entries(options.authorizationParams ?? {})) url.searchParams.set(key, value)
      const protocolParams: Record<string, string | undefined> = {
        response_type: "code",
        client_id: clientId,
        redirect_uri: options.redirectUri,
        scope,
        state,
        nonce,
        code_challenge: challenge,
        code_challenge_method: "S256",
        resource: options.resource,
        // RFC 9449 §10: the code is bound to this key; the exchange must prove it.
        dpop_jkt: dpopKey?.thumbprint
      }
      for (const [key, value] of Object.entries(protocolParams)) {
        if (value !== undefined) url.searchParams.set(key, value)
      }
      // The sealed login travels in the header rather than platform's `Cookies`, whose printed form shows values.
      const response = HttpServerResponse.redirect(url.toString(), {
        status: 302,
        headers: {
          "set-cookie": cookie(name, sealed, Math.ceil(Duration.toSeconds(loginTimeout))),
          "cache-control": "no-store"
        }
      })
      // This browser's earlier logins: the newest few stay (tabs in parallel), older or unreadable ones go, so a
      // site that sends the browser here again and again cannot fill its cookie jar.
      const earlier = yield* earlierLogins(request.cookies, now)
      return earlier.reduce((r, stale) => cookies.expire(r, stale, secure), response)
    }).pipe(Effect.catchAll(failed), Effect.withSpan("effect-token/OidcLogin.login"))

    const callbackOperation = "login callback"
    const callbackError = (reason: SessionError["reason"]) => new SessionError({ operation: callbackOperation, reason })

    /**
     * This browser's login cookies that `/login` expires: past the login timeout, unreadable, or beyond the newest
     * `maxParallelLogins - 1` (the new login makes it `maxParallelLogins`).
     */
    const earlierLogins = (requestCookies: Readonly<Record<string, string>>, now: number) =>
      Effect.gen(function*() {
        const found: Array<{ readonly name: string; readonly createdAt: number }> = []
        const stale: Array<string> = []
        for (const [name, value] of Object.entries(requestCookies)) {
          if (!loginCookie.isLoginCookie(loginPrefix, name)) continue
          // A browser holds a handful at most (this bound); more can only be forged, and are dropped unread.
          if (found.length + stale.length >= maxCookiesRead) {
            stale.push(name)
            continue
          }
          const opened = yield* loginCookie.open(sealingKey, name, value)
          if (Option.isSome(opened) && now - opened.value.createdAt <= Duration.toMillis(loginTimeout)) {
            found.push({ name, createdAt: opened.value.createdAt })
          } else {
            stale.push(name)
          }
        }
        found.sort((a, b) => b.createdAt - a.createdAt)
        return [...stale, ...found.slice(maxParallelLogins - 1).map((login) => login.name)]
      })

    const callback = Effect.gen(function*() {
      const request = yield* HttpServerRequest.HttpServerRequest
      const query = queryOf(request)
      if (Option.isNone(query)) {
        return yield* callbackError(new LoginStateInvalid({ description: "the callback URL is too long" }))
      }
      const q = query.value
      const state = param(q, "state", 512)
      if (Option.isNone(state)) {
        return yield* callbackError(new LoginStateInvalid({ description: "the callback has no state" }))
      }
      // Only the login this state names is looked at: a callback with another state (a link from another site)
      // finds nothing here, and leaves this browser's logins in progress as they are.
      const name = yield* loginCookie.cookieName(loginPrefix, state.value)
      const sealed = request.cookies[name]
      if (sealed === undefined) {
        return yield* callbackError(new LoginStateInvalid({ description: "no login in progress in this browser" }))
      }
      // From here the login is over, whatever happens: its cookie is expired in the answer, success or failure.
      return yield* complete(request, q, state.value, name, sealed).pipe(
        Effect.catchAll(failed),
        Effect.map((response) => cookies.expire(response, name, secure))
      )
    }).pipe(Effect.catchAll(failed), Effect.withSpan("effect-token/OidcLogin.callback"))

    const complete = (
      request: HttpServerRequest.HttpServerRequest,
      q: URLSearchParams,
      state: string,
      name: string,
      sealed: string
    ) =>
      Effect.gen(function*() {
        const pending = yield* loginCookie.open(sealingKey, name, sealed)
        if (Option.isNone(pending)) {
          return yield* callbackError(new LoginStateInvalid({ description: "the login cookie does not open" }))
        }
        // The cookie is named after the state and sealed with its name; the state inside must be this one too.
        if (!protocol.constantTimeEqual(state, Redacted.value(pending.value.state))) {
          return yield* callbackError(new LoginStateInvalid({ description: "state mismatch" }))
        }
        // RFC 9207: when the issuer names itself in the answer (errors included), it must be ours (mix-up defence);
        // an issuer that says it always does (`authorization_response_iss_parameter_supported`) must have (§2.4).
        const iss = q.getAll("iss")
        if (iss.length > 1 || (iss.length === 1 && iss[0] !== discovery.issuer)) {
          return yield* callbackError(new LoginStateInvalid({ description: "the answer names another issuer" }))
        }
        const m = yield* metadata(callbackOperation)
        if (iss.length === 0 && m.authorization_response_iss_parameter_supported === true) {
          return yield* callbackError(new LoginStateInvalid({ description: "the answer does not name its issuer" }))
        }
        // The cookie's Max-Age is the browser's bound; this one holds whatever the browser kept.
        const now = yield* Clock.currentTimeMillis
        if (now - pending.value.createdAt > Duration.toMillis(loginTimeout)) {
          return yield* callbackError(new LoginStateInvalid({ description: "the login took too long" }))
        }
        if (q.has("error")) {
          const code = Option.getOrElse(
            Option.filter(param(q, "error", 64), (c) => /^[a-z_]+$/.test(c)),
            () => "invalid_error"
          )
          return yield* callbackError(new AuthorizationDenied({ code }))
        }
        const code = param(q, "code", 2048)
        if (Option.isNone(code)) {
          return yield* callbackError(new LoginStateInvalid({ description: "no authorization code" }))
        }
        if (m.token_endpoint === undefined) {
          return yield* unavailable(callbackOperation, "the issuer publishes no token_endpoint")
        }
        const dpop = yield* Option.match(pending.value.dpopKey, {
          onNone: () => Effect.succeed(undefined),
          onSome: (jwk) =>
            Effect.try(() => JSON.parse(Redacted.value(jwk)) as Record<string, unknown>).pipe(
              Effect.flatMap((parsed) => DPoP.fromPrivateJwk(Redacted.make(parsed))),
              Effect.mapError(() =>
                callbackError(new LoginStateInvalid({ description: "the login's DPoP key is unreadable" }))
              )
            )
        })
        if (dpopAlgorithm !== undefined && dpop === undefined) {
          return yield* callbackError(new LoginStateInvalid({ description: "the login has no DPoP key" }))
        }
        const endpoint = TokenEndpoint.makeWith(client, {
          tokenUrl: m.token_endpoint,
          clientAuth: options.clientAuth,
          attemptTimeout: timeout,
          dpop
        })
        const token = yield* endpoint.request({
          grant_type: "authorization_code",
          code: Redacted.make(code.value),
          redirect_uri: options.redirectUri,
          code_verifier: pending.value.codeVerifier,
          resource: options.resource
        }).pipe(
          Effect.mapError((error) =>
            classify(error) === "Transient"
              ? unavailable(callbackOperation, `the code exchange: ${error.reason._tag}`)
              : callbackError(
                new CodeExchangeFailed({ code: TokenError.oauthCode(error), detail: error.reason._tag })
              )
          )
        )
        if (Option.isNone(token.idToken)) {
          return yield* callbackError(
            new IdTokenInvalid({ check: "id_token", description: "the token response has no ID token" })
          )
        }
        const claims = yield* sessions.verifyIdToken(token.idToken.value, Redacted.value(pending.value.nonce))
        // A session this browser had before the login ends now: the new one has a new id (session fixation), and
        // the old one must not live on beside it.
        const previous = request.cookies[sessions.cookieName]
        if (previous !== undefined && protocol.isWellFormedId(previous)) {
          yield* Effect.ignore(sessions.end(Redacted.make(previous)))
        }
        const id = yield* sessions.create({
          subject: claims.subject,
          token,
          idToken: token.idToken,
          dpopKey: pending.value.dpopKey
        })
        // Sealed by us, so checked already; checked again so that no path but a safe one is ever a Location.
        return HttpServerResponse.redirect(protocol.safeReturnTo(pending.value.returnTo), {
          status: 302,
          headers: {
            "set-cookie": cookie(sessions.cookieName, Redacted.value(id), undefined),
            "cache-control": "no-store"
          }
        })
      })

    const revocation = Revocation.makeWith(client, {
      revocationUrl: discovery,
      clientAuth: options.clientAuth,
      timeout
    })

    const background = yield* Effect.scope
    let revocationsInFlight = 0
    /**
     * Revokes an ended session's refresh token in the background, in the login's scope: the user is not kept
     * waiting for the issuer. Best effort: bounded in time (`timeout`) and in number (`maxBackgroundRevocations`
     * at once; past it, a revocation is skipped with a warning), and a failure only logs (the session is gone).
     */
    const revokeInBackground = (refreshToken: Redacted.Redacted<string>) =>
      Effect.suspend(() => {
        if (revocationsInFlight >= maxBackgroundRevocations) {
          return Effect.logWarning("refresh token revocation skipped: too many revocations in progress")
        }
        revocationsInFlight++
        return revocation.revokeRefreshToken(refreshToken).pipe(
          Effect.timeoutFail({
            duration: timeout,
            onTimeout: () => new Error(`no answer within ${Duration.format(timeout)}`)
          }),
          Effect.catchAll((error) => Effect.logWarning(`refresh token revocation failed: ${error.message}`)),
          Effect.ensuring(Effect.sync(() => revocationsInFlight--)),
          Effect.withSpan("effect-token/OidcLogin.revoke"),
          Effect.forkIn(background),
          Effect.asVoid
        )
      })

    const logout = Effect.gen(function*() {
      const request = yield* HttpServerRequest.HttpServerRequest
      // A cross-site POST carries no session cookie (SameSite=Lax), but a cookie deletion in its answer would still
      // sign the user out: a request from another site is refused before anything happens.
      if (protocol.isCrossSite(request.headers, appOrigin)) {
        yield* Effect.logInfo("logout refused: a cross-site request")
        return pages.crossSite(pages.isNavigation(request))
      }
      const raw = request.cookies[sessions.cookieName]
      const ended = raw !== undefined && protocol.isWellFormedId(raw)
        ? yield* Effect.orElseSucceed(sessions.end(Redacted.make(raw)), () => Option.none())
        : Option.none()
      const m = yield* Effect.option(discovery.metadata)
      if (Option.isSome(ended) && Option.isSome(ended.value.refreshToken) && Option.isSome(m)) {
        if (m.value.revocation_endpoint !== undefined) yield* revokeInBackground(ended.value.refreshToken.value)
      }
      let location = options.afterLogout ?? "/"
      if (Option.isSome(m) && m.value.end_session_endpoint !== undefined) {
        const url = new URL(m.value.end_session_endpoint)
        url.searchParams.set("client_id", clientId)
        if (Option.isSome(ended) && Option.isSome(ended.value.idToken)) {
          url.searchParams.set("id_token_hint", Redacted.value(ended.value.idToken.value))
        }
        if (options.postLogoutRedirectUri !== undefined) {
          url.searchParams.set("post_logout_redirect_uri", options.postLogoutRedirectUri)
        }
        location = url.toString()
      }
      return cookies.expire(
        HttpServerResponse.redirect(location, { status: 302, headers: { "cache-control": "no-store" } }),
        sessions.cookieName,
        secure
      )
    }).pipe(Effect.withSpan("effect-token/OidcLogin.logout"))

    const router = HttpRouter.empty.pipe(
      HttpRouter.get(routePath(paths.login), login),
      HttpRouter.get(routePath(paths.callback), callback),
      // POST only: with SameSite=Lax cookies another site cannot make a browser POST here with its session.
      HttpRouter.post(routePath(paths.logout), logout)
    )

    return { paths, login, callback, logout, router }
  })

/**
 * Provides {@link OidcLogin} over the `Discovery`, `UserSessions` and `HttpClient` in context (background logout
 * revocations end with the layer).
 *
 * @example
 * ```ts
 * import { ClientAuth } from "@effect-token/core"
 * import { OidcLogin } from "@effect-token/session"
 * import { Redacted } from "effect"
 *
 * const LoginLive = OidcLogin.layer({
 *   clientAuth: ClientAuth.clientSecretBasic({ clientId: "web", clientSecret: Redacted.make("s3cr3t") }),
 *   redirectUri: "https://app.example.com/callback"
 * })
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Options
): Layer.Layer<OidcLogin, never, Discovery.Discovery | UserSession.UserSessions | HttpClient.HttpClient> =>
  Layer.scoped(OidcLogin, make(options))

/**
 * Everything for a web application's sign-in, in one set of options.
 *
 * @example
 * ```ts
 * import { ClientAuth } from "@effect-token/core"
 * import type { OidcLogin } from "@effect-token/session"
 * import { Redacted } from "effect"
 *
 * const options: OidcLogin.AllOptions = {
 *   issuer: "https://auth.example.com",
 *   clientAuth: ClientAuth.clientSecretBasic({ clientId: "web", clientSecret: Redacted.make("s3cr3t") }),
 *   redirectUri: "https://app.example.com/callback",
 *   idleTimeout: "30 minutes"
 * }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface AllOptions extends Options, Omit<UserSession.Options, "discovery" | "clientAuth" | "loginPath"> {
  readonly issuer: string
}

/**
 * One layer: the issuer's `Discovery`, the `UserSessions` and the `OidcLogin`, over the `UserTokenStore` and
 * `HttpClient` in context.
 *
 * @example
 * ```ts
 * import { ClientAuth } from "@effect-token/core"
 * import { OidcLogin, UserTokenStore } from "@effect-token/session"
 * import { NodeHttpClient } from "@effect/platform-node"
 * import { Layer, Redacted } from "effect"
 *
 * const AuthLive = OidcLogin.layerAll({
 *   issuer: "https://auth.example.com",
 *   clientAuth: ClientAuth.clientSecretBasic({ clientId: "web", clientSecret: Redacted.make("s3cr3t") }),
 *   redirectUri: "https://app.example.com/callback"
 * }).pipe(Layer.provide(UserTokenStore.layerMemory()), Layer.provide(NodeHttpClient.layerUndici))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerAll = (
  options: AllOptions
): Layer.Layer<
  OidcLogin | UserSession.UserSessions | Discovery.Discovery,
  never,
  UserTokenStore.UserTokenStore | HttpClient.HttpClient
> => {
  const discovery = Discovery.layer({ issuer: options.issuer })
  const sessions = Layer.unwrapEffect(
    Effect.map(
      Discovery.Discovery,
      (d) =>
        UserSession.layer({ ...options, discovery: d, clientAuth: options.clientAuth, loginPath: options.paths?.login })
    )
  )
  return layer(options).pipe(Layer.provideMerge(sessions), Layer.provideMerge(discovery))
}

/**
 * Settings read from configuration: `ISSUER`, `CLIENT_ID`, `CLIENT_SECRET` (redacted), `REDIRECT_URI`, and optional
 * `SESSION_SECRET` (redacted, at least 32 characters: the sign-in cookie's key is derived from it; the same on every
 * instance), `SCOPE`, `RESOURCE`, `POST_LOGOUT_REDIRECT_URI`, `COOKIE_SECURE` (default true), `IDLE_TIMEOUT`,
 * `ABSOLUTE_TIMEOUT`, `DPOP` (default false: `true` binds each session's tokens to a key of its own). Use
 * `Config.nested` for a prefix.
 *
 * @example
 * ```ts
 * import { OidcLogin } from "@effect-token/session"
 * import { Config } from "effect"
 *
 * // reads WEB_ISSUER, WEB_CLIENT_ID, WEB_CLIENT_SECRET, WEB_REDIRECT_URI, ...
 * const settings = Config.nested(OidcLogin.config, "WEB")
 * ```
 *
 * @since 0.1.0
 * @category config
 */
export const config: Config.Config<AllOptions> = Config.all({
  issuer: Config.nonEmptyString("ISSUER"),
  clientId: Config.nonEmptyString("CLIENT_ID"),
  clientSecret: Config.redacted("CLIENT_SECRET"),
  redirectUri: Config.url("REDIRECT_URI"),
  secret: Config.option(
    Config.redacted("SESSION_SECRET").pipe(
      Config.validate({
        message: `SESSION_SECRET must be at least ${minSecretLength} characters`,
        validation: (secret) => Redacted.value(secret).length >= minSecretLength
      })
    )
  ),
  scope: Config.option(Config.nonEmptyString("SCOPE")),
  resource: Config.option(Config.nonEmptyString("RESOURCE")),
  postLogoutRedirectUri: Config.option(Config.url("POST_LOGOUT_REDIRECT_URI")),
  secure: Config.boolean("COOKIE_SECURE").pipe(Config.withDefault(true)),
  idleTimeout: Config.option(Config.duration("IDLE_TIMEOUT")),
  absoluteTimeout: Config.option(Config.duration("ABSOLUTE_TIMEOUT")),
  dpop: DPoP.enabledConfig
}).pipe(
  Config.validate({
    message: "COOKIE_SECURE=false is for a development server on http loopback only",
    validation: (c) => c.secure || isLoopbackHttp(c.redirectUri.toString())
  }),
  Config.map((c): AllOptions => ({
    issuer: c.issuer,
    clientAuth: ClientAuth.clientSecretBasic({ clientId: c.clientId, clientSecret: c.clientSecret }),
    redirectUri: c.redirectUri.toString(),
    secret: Option.getOrUndefined(c.secret),
    scope: Option.getOrUndefined(c.scope),
    resource: Option.getOrUndefined(c.resource),
    postLogoutRedirectUri: Option.getOrUndefined(Option.map(c.postLogoutRedirectUri, String)),
    cookie: { secure: c.secure },
    idleTimeout: Option.getOrUndefined(c.idleTimeout),
    absoluteTimeout: Option.getOrUndefined(c.absoluteTimeout),
    dpop: c.dpop
  }))
)

/**
 * {@link layerAll} from configuration (see {@link config}).
 *
 * @example
 * ```ts
 * import { OidcLogin, UserTokenStore } from "@effect-token/session"
 * import { NodeHttpClient } from "@effect/platform-node"
 * import { Layer } from "effect"
 *
 * const AuthLive = OidcLogin.layerConfig().pipe(
 *   Layer.provide(UserTokenStore.layerMemory()),
 *   Layer.provide(NodeHttpClient.layerUndici)
 * )
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  settings: Config.Config<AllOptions> = config
): Layer.Layer<
  OidcLogin | UserSession.UserSessions | Discovery.Discovery,
  ConfigError.ConfigError,
  UserTokenStore.UserTokenStore | HttpClient.HttpClient
> => Layer.unwrapEffect(Effect.map(settings, layerAll))
