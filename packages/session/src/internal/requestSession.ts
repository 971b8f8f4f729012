/*
 * What a request sees of its session: the tags, the accessors, the clients acting for the user, the answer to a
 * session's failure, and the middleware. `UserSession.ts` holds the public types and re-exports these.
 */
import type { AccessToken, DPoP, TokenCache } from "@effect-token/core"
import { AuthHttpClient, TokenError } from "@effect-token/core"
import type * as HttpApp from "@effect/platform/HttpApp"
import * as HttpClient from "@effect/platform/HttpClient"
import type * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Context from "effect/Context"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { isSessionError, NotSignedIn, SessionError } from "../SessionError.js"
import type {
  CurrentSession,
  ErrorPage,
  RequestSession as RequestSessionService,
  UserSessions as UserSessionsService
} from "../UserSession.js"
import * as cookies from "./cookies.js"
import * as pages from "./pages.js"
import * as protocol from "./protocol.js"

export const UserSessions = Context.GenericTag<UserSessionsService>("@effect-token/session/UserSessions")

export const RequestSession = Context.GenericTag<RequestSessionService>("@effect-token/session/RequestSession")

export const current: Effect.Effect<CurrentSession, SessionError, RequestSessionService> = Effect.flatMap(
  RequestSession,
  (request) => request.current
)

export const accessToken = (
  resource: string | undefined
): Effect.Effect<AccessToken.AccessToken, SessionError, RequestSessionService> =>
  Effect.flatMap(current, (user) => user.accessToken(resource))

type ClientOptions = AuthHttpClient.Binding & AuthHttpClient.Options & { readonly resource?: string | undefined }

export const client = (
  options: ClientOptions
): Effect.Effect<
  HttpClient.HttpClient.With<HttpClientError.HttpClientError | AuthHttpClient.AuthError>,
  SessionError,
  RequestSessionService | HttpClient.HttpClient
> => Effect.flatMap(current, (user) => authenticated(options, user.tokens(options.resource), user.dpopKey))

export const clientFor = (
  id: Redacted.Redacted<string>,
  options: ClientOptions
): Effect.Effect<
  HttpClient.HttpClient.With<HttpClientError.HttpClientError | AuthHttpClient.AuthError>,
  SessionError,
  UserSessionsService | HttpClient.HttpClient
> =>
  Effect.flatMap(
    UserSessions,
    (sessions) => authenticated(options, tokensOf(sessions, id, options.resource), sessions.dpopKey(id))
  )

const authenticated = (
  options: AuthHttpClient.Binding & AuthHttpClient.Options,
  tokens: TokenCache.TokenCache,
  dpopKey: Effect.Effect<Option.Option<DPoP.DPoPKey>, SessionError>
) =>
  Effect.gen(function*() {
    const http = yield* HttpClient.HttpClient
    // A DPoP session's calls sign with the session's own key, the one its tokens are bound to.
    const dpop = Option.getOrUndefined(yield* dpopKey)
    return AuthHttpClient.authenticate(http, {
      ...options,
      ...(dpop === undefined ? {} : { dpop }),
      tokens
    } as AuthHttpClient.AuthenticateOptions)
  })

/**
 * The session's failures, as the `TokenError` a `TokenCache` fails with: the reason core acts on (retry when
 * `Unavailable`, never when rejected), and the `SessionError` itself as the cause, which the middleware takes back
 * out unchanged (`NotSignedIn` stays `NotSignedIn`).
 */
const toTokenError = (error: SessionError): TokenError.TokenError =>
  new TokenError.TokenError({
    operation: tokenOperation,
    reason: error.reason._tag === "Unavailable"
      ? new TokenError.Unavailable({ description: error.reason.description, retryAfter: error.reason.retryAfter })
      : new TokenError.RefreshTokenRejected({ description: error.reason.message }),
    cause: error
  })

const tokenOperation = "user session"

/** A `TokenCache` over one session's token: what core's `AuthHttpClient` needs. */
const tokensOf = (
  sessions: UserSessionsService,
  id: Redacted.Redacted<string>,
  resource: string | undefined
): TokenCache.TokenCache => {
  const get = Effect.mapError(sessions.accessToken(id, resource), toTokenError)
  return {
    key: `user-session${resource === undefined ? "" : `:${resource}`}`,
    get,
    invalidate: (token) => sessions.invalidate(id, token, resource),
    // The session refreshes on its own rules (due, or a rejected token); asked to, it answers its current token.
    refresh: get,
    // For diagnostics: reading the token may refresh it, as any request of this session would.
    state: Effect.map(Effect.either(sessions.accessToken(id, resource)), (result): TokenCache.State => {
      if (result._tag === "Left") return { _tag: "Empty" }
      const until = Option.getOrElse(Option.map(result.right.expiresAt, DateTime.toEpochMillis), () => Infinity)
      return { _tag: "Ready", token: result.right, validUntil: until, refreshAt: until }
    })
  }
}

const currentOf = (sessions: UserSessionsService, id: Redacted.Redacted<string>, subject: string): CurrentSession => ({
  id,
  subject,
  accessToken: (resource) => sessions.accessToken(id, resource),
  tokens: (resource) => tokensOf(sessions, id, resource),
  dpopKey: sessions.dpopKey(id)
})

/** A page load that can simply be sent to log in (a GET navigation), rather than answered 401. */
const wantsLogin = (request: HttpServerRequest.HttpServerRequest): boolean =>
  (request.method === "GET" || request.method === "HEAD") && pages.isNavigation(request)

export const errorResponse = (
  error: SessionError,
  loginPath: string,
  page: ErrorPage | undefined
): Effect.Effect<HttpServerResponse.HttpServerResponse, never, HttpServerRequest.HttpServerRequest> =>
  Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
    if (error.reason._tag !== "Unavailable" && wantsLogin(request)) {
      const returnTo = protocol.safeReturnTo(request.url)
      return Effect.succeed(
        HttpServerResponse.redirect(`${loginPath}?returnTo=${encodeURIComponent(returnTo)}`, { status: 302 })
      )
    }
    if (pages.isNavigation(request)) {
      return page === undefined ? Effect.succeed(pages.defaultPage(error, loginPath)) : page(error)
    }
    return Effect.succeed(
      error.reason._tag === "Unavailable"
        ? HttpServerResponse.unsafeJson({ error: "temporarily_unavailable" }, {
          status: 503,
          headers: pages.retryAfterHeaders(error)
        })
        : HttpServerResponse.unsafeJson({ error: "login_required" }, { status: 401 })
    )
  })

/** The `SessionError` a session's token cache failed with (see `toTokenError`), if `error` is one. */
const fromTokenError = (error: TokenError.TokenError): Option.Option<SessionError> =>
  error.operation === tokenOperation && isSessionError(error.cause) ? Option.some(error.cause) : Option.none()

export const middleware = <E, R>(
  app: HttpApp.Default<E, R>
): HttpApp.Default<Exclude<E, SessionError>, Exclude<R, RequestSessionService> | UserSessionsService> =>
  Effect.gen(function*() {
    const sessions = yield* UserSessions
    const request = yield* HttpServerRequest.HttpServerRequest
    const raw = request.cookies[sessions.cookieName]
    let expire = false
    let session: Effect.Effect<CurrentSession, SessionError>
    const anonymous = (description: string) =>
      Effect.fail(new SessionError({ operation: "session", reason: new NotSignedIn({ description }) }))
    if (raw === undefined) {
      session = anonymous("no session cookie")
    } else if (!protocol.isWellFormedId(raw)) {
      expire = true
      session = anonymous("malformed session cookie")
    } else {
      const id = Redacted.make(raw)
      const loaded = yield* Effect.either(
        Effect.flatMap(sessions.load(id), (found) =>
          // The token now, so that a rejected session is known before the app runs; a transient failure still
          // lets the request through (it may not need the token, and the user stays signed in).
          Effect.as(
            Effect.catchIf(
              sessions.accessTokenOf(id, found),
              (e) => e.reason._tag === "Unavailable",
              () => Effect.void
            ),
            found
          ))
      )
      if (loaded._tag === "Right") {
        const user = currentOf(sessions, id, loaded.right.record.subject)
        session = Effect.succeed(user)
      } else {
        expire = loaded.left.reason._tag !== "Unavailable"
        session = Effect.fail(loaded.left)
      }
    }
    const response = yield* app.pipe(
      Effect.provideService(RequestSession, { current: session }),
      Effect.catchAll((error) => {
        const sessionFailure = isSessionError(error)
          ? Option.some(error)
          : TokenError.isTokenError(error)
          ? fromTokenError(error)
          : Option.none()
        // Not a session's failure: the application's own error, which is not a `SessionError`.
        if (Option.isNone(sessionFailure)) return Effect.fail(error as Exclude<E, SessionError>)
        return errorResponse(sessionFailure.value, sessions.loginPath, sessions.errorPage)
      })
    )
    // Added beside the application's cookies; a response that sets a new session cookie keeps it.
    return expire ? cookies.expire(response, sessions.cookieName, sessions.secureCookies) : response
  })
