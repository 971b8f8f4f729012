/*
 * The handlers behind `OidcLogin`: the I/O around the pure steps of `loginSteps.ts` (request, clock, login cookie,
 * the issuer's metadata, the code exchange, the ID token, the session store, revocation).
 */
import { Discovery, DPoP, Revocation, TokenEndpoint, type TokenError } from "@effect-token/core"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import type * as OidcLogin from "../OidcLogin.js"
import { IdTokenInvalid, LoginStateInvalid, SessionError, Unavailable } from "../SessionError.js"
import * as UserSession from "../UserSession.js"
import * as cookies from "./cookies.js"
import * as loginCookie from "./loginCookie.js"
import * as steps from "./loginSteps.js"
import * as pages from "./pages.js"
import * as protocol from "./protocol.js"

/** The shortest `secret` accepted: 32 characters (256 bits of a random base64 or hex string). */
export const minSecretLength = 32
/** Logins in progress kept per browser (tabs in parallel), and the most login cookies of a request that are read. */
const maxParallelLogins = 4
const maxCookiesRead = 16
/** Logout revocations running in the background at once, at most. */
const maxBackgroundRevocations = 256

/** Cookies without `Secure` travel in clear text: only a development server on http loopback may use them. */
export const isLoopbackHttp = (url: string): boolean =>
  URL.canParse(url) && new URL(url).protocol === "http:" && Discovery.isSecureUrl(url)

/** A configured path as the router's type; one that does not start with `/` is a programming error. */
const routePath = (path: string): HttpRouter.PathInput => {
  if (!path.startsWith("/")) throw new Error(`OidcLogin: the path ${JSON.stringify(path)} must start with "/"`)
  return path as HttpRouter.PathInput
}

const dpopAlgorithmOf = (dpop: OidcLogin.Options["dpop"]): DPoP.Algorithm | undefined =>
  dpop === true ? "ES256" : typeof dpop === "string" ? dpop : undefined

export const make = (
  options: OidcLogin.Options
): Effect.Effect<
  OidcLogin.OidcLogin,
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
      return yield* Effect.dieMessage("OidcLogin: cookies without Secure need an http loopback redirectUri")
    }
    const scope = steps.withOpenid(options.scope ?? "openid offline_access")
    const dpopAlgorithm = dpopAlgorithmOf(options.dpop)
    const loginTimeout = Duration.decode(options.loginTimeout ?? Duration.minutes(10))
    const loginTimeoutMillis = Duration.toMillis(loginTimeout)
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
    const metadata = (operation: string) =>
      Effect.mapError(
        discovery.metadata,
        (error: TokenError.TokenError) => unavailable(operation, `the issuer's metadata: ${error.reason._tag}`)
      )

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
                { status: 401 }
              )
          )
        })
      )

    /** This browser's login cookies, opened (the first `maxCookiesRead`; more can only be forged, and stay shut). */
    const earlierLogins = (requestCookies: Readonly<Record<string, string>>) =>
      Effect.gen(function*() {
        const earlier: Array<steps.EarlierLogin> = []
        for (const [name, value] of Object.entries(requestCookies)) {
          if (!loginCookie.isLoginCookie(loginPrefix, name)) continue
          const opened = earlier.length < maxCookiesRead
            ? yield* loginCookie.open(sealingKey, name, value)
            : Option.none()
          earlier.push({ name, createdAt: Option.map(opened, (login) => login.createdAt) })
        }
        return earlier
      })

    const login = Effect.gen(function*() {
      const request = yield* HttpServerRequest.HttpServerRequest
      const returnTo = protocol.safeReturnTo(
        Option.getOrUndefined(
          Option.flatMap(steps.queryOf(request.url), (q) => steps.param(q, "returnTo", protocol.maxReturnToLength))
        )
      )
      const m = yield* metadata("login")
      if (m.authorization_endpoint === undefined) {
        return yield* unavailable("login", "the issuer publishes no authorization_endpoint")
      }
      const state = protocol.randomToken(32)
      const nonce = protocol.randomToken(32)
      const codeVerifier = protocol.randomToken(32)
      const codeChallenge = yield* Effect.promise(() => protocol.pkceChallenge(codeVerifier))
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
      const url = steps.authorizationUrl({
        authorizationEndpoint: m.authorization_endpoint,
        clientId,
        redirectUri: options.redirectUri,
        scope,
        state,
        nonce,
        codeChallenge,
        resource: options.resource,
        dpopJkt: dpopKey?.thumbprint,
        extraParams: options.authorizationParams
      })
      // The sealed login travels in the header rather than platform's `Cookies`, whose printed form shows values.
      const response = HttpServerResponse.redirect(url, {
        status: 302,
        headers: {
          "set-cookie": cookie(name, sealed, Math.ceil(Duration.toSeconds(loginTimeout))),
          "cache-control": "no-store"
        }
      })
      const expired = steps.loginsToExpire(yield* earlierLogins(request.cookies), {
        now,
        loginTimeoutMillis,
        keep: maxParallelLogins - 1
      })
      return expired.reduce((r, stale) => cookies.expire(r, stale, secure), response)
    }).pipe(Effect.catchAll(failed), Effect.withSpan("effect-token/OidcLogin.login"))

    const callbackOperation = "login callback"
    const callbackError = (reason: SessionError["reason"]) => new SessionError({ operation: callbackOperation, reason })
    const invalid = (description: string) => callbackError(new LoginStateInvalid({ description }))

    const callback = Effect.gen(function*() {
      const request = yield* HttpServerRequest.HttpServerRequest
      const query = steps.queryOf(request.url)
      if (Option.isNone(query)) return yield* invalid("the callback URL is too long")
      const state = steps.param(query.value, "state", steps.maxStateLength)
      if (Option.isNone(state)) return yield* invalid("the callback has no state")
      // Only the login this state names is looked at: a callback with another state (a link from another site)
      // finds nothing here, and leaves this browser's logins in progress as they are.
      const name = yield* loginCookie.cookieName(loginPrefix, state.value)
      const sealed = request.cookies[name]
      if (sealed === undefined) return yield* invalid("no login in progress in this browser")
      // From here the login is over, whatever happens: its cookie is expired in the answer, success or failure.
      return yield* complete(request, query.value, name, sealed).pipe(
        Effect.catchAll(failed),
        Effect.map((response) => cookies.expire(response, name, secure))
      )
    }).pipe(Effect.catchAll(failed), Effect.withSpan("effect-token/OidcLogin.callback"))

    const complete = (
      request: HttpServerRequest.HttpServerRequest,
      query: URLSearchParams,
      name: string,
      sealed: string
    ) =>
      Effect.gen(function*() {
        const pending = yield* loginCookie.open(sealingKey, name, sealed)
        if (Option.isNone(pending)) return yield* invalid("the login cookie does not open")
        const m = yield* metadata(callbackOperation)
        const checked = steps.checkCallback(query, pending.value, {
          issuer: discovery.issuer,
          issParameterSupported: m.authorization_response_iss_parameter_supported === true,
          now: yield* Clock.currentTimeMillis,
          loginTimeoutMillis
        })
        if (Either.isLeft(checked)) return yield* callbackError(checked.left)
        if (m.token_endpoint === undefined) {
          return yield* unavailable(callbackOperation, "the issuer publishes no token_endpoint")
        }
        const dpop = yield* Option.match(pending.value.dpopKey, {
          onNone: () => Effect.succeed(undefined),
          onSome: (jwk) =>
            Effect.try(() => JSON.parse(Redacted.value(jwk)) as Record<string, unknown>).pipe(
              Effect.flatMap((parsed) => DPoP.fromPrivateJwk(Redacted.make(parsed))),
              Effect.mapError(() => invalid("the login's DPoP key is unreadable"))
            )
        })
        if (dpopAlgorithm !== undefined && dpop === undefined) return yield* invalid("the login has no DPoP key")
        const endpoint = TokenEndpoint.makeWith(client, {
          tokenUrl: m.token_endpoint,
          clientAuth: options.clientAuth,
          attemptTimeout: timeout,
          dpop
        })
        const token = yield* endpoint.request(steps.codeGrant({
          code: checked.right.code,
          codeVerifier: pending.value.codeVerifier,
          redirectUri: options.redirectUri,
          resource: options.resource
        })).pipe(
          Effect.mapError((error) => {
            const failure = steps.exchangeFailure(error)
            return failure._tag === "Transient"
              ? unavailable(callbackOperation, failure.description)
              : callbackError(failure)
          })
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
      const location = steps.logoutLocation({
        endSessionEndpoint: Option.isSome(m) ? m.value.end_session_endpoint : undefined,
        clientId,
        idTokenHint: Option.flatMap(ended, (session) => session.idToken),
        postLogoutRedirectUri: options.postLogoutRedirectUri,
        afterLogout: options.afterLogout ?? "/"
      })
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
