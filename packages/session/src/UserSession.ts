/**
 * Each signed-in user's tokens, per request: the middleware reads the session cookie, loads the session, refreshes
 * its access token once per session when it is due (in this process and, through the store's lock, across
 * processes), and provides the request's {@link RequestSession}. A session whose refresh token is rejected is
 * ended: the request is anonymous, a JSON API gets 401 and a page is sent to log in. A transient failure never logs
 * anyone out: the still-valid token is served, or the request gets 503.
 *
 * @since 0.1.0
 */
import type { AccessToken, AuthHttpClient, ClientAuth, Discovery, DPoP, TokenCache } from "@effect-token/core"
import { TokenTiming } from "@effect-token/core"
import type * as HttpApp from "@effect/platform/HttpApp"
import * as HttpClient from "@effect/platform/HttpClient"
import type * as HttpClientError from "@effect/platform/HttpClientError"
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import type * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import type * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as evictions from "./internal/evictions.js"
import * as idToken from "./internal/idToken.js"
import * as protocol from "./internal/protocol.js"
import * as internal from "./internal/requestSession.js"
import * as sessionEngine from "./internal/sessions.js"
import { SessionError, Unavailable } from "./SessionError.js"
import * as UserTokenStore from "./UserTokenStore.js"

/**
 * The session cookie. Its value is the session id: 32 random bytes, base64url, and nothing else.
 *
 * @example
 * ```ts
 * import type { UserSession } from "@effect-token/session"
 *
 * // A development server on http://127.0.0.1 only: elsewhere the cookie must stay Secure.
 * const cookie: UserSession.CookieOptions = { name: "dev-session", secure: false }
 * // Set as "__Host-sid".
 * const production: UserSession.CookieOptions = { name: "sid" }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface CookieOptions {
  /**
   * Default `"session"`. With `secure`, the cookie is `__Host-` followed by this name (`"sid"` is set as
   * `"__Host-sid"`; a name that starts with `__Host-` is kept): no subdomain can then set or shadow it.
   */
  readonly name?: string | undefined
  /** Default `true`. Turn it off only for a development server on http loopback. */
  readonly secure?: boolean | undefined
  /**
   * Default `true`. `false` opts out of the `__Host-` prefix and sets the cookie under `name` exactly (a name that
   * other software expects); the cookie can then be set by any subdomain of this site.
   */
  readonly hostPrefix?: boolean | undefined
}

/**
 * @example
 * ```ts
 * import type { ClientAuth, Discovery } from "@effect-token/core"
 * import type { UserSession } from "@effect-token/session"
 *
 * declare const discovery: Discovery.Discovery
 * declare const clientAuth: ClientAuth.ClientAuth
 * const options: UserSession.Options = { discovery, clientAuth, refreshBefore: "2 minutes", graceWindow: "10 seconds" }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The authorization server (its `token_endpoint` is used for refreshes). */
  readonly discovery: Discovery.Discovery
  /** How this client authenticates at the token endpoint. */
  readonly clientAuth: ClientAuth.ClientAuth
  /**
   * The refresh window opens this long before expiry (capped at half the lifetime). Default 60 seconds
   * (`TokenTiming.onRequest`). A token without a known expiry is assumed to live `TokenTiming.defaults.defaultLifetime`
   * (5 minutes): then it is refreshed, or, without a refresh token, still served (nothing can replace it).
   */
  readonly refreshBefore?: Duration.DurationInput | undefined
  /** A token is treated as expired this early (capped at 10 % of its lifetime; `TokenTiming`). Default 5 seconds. */
  readonly skew?: Duration.DurationInput | undefined
  /** How long a refresh's result answers requests that still hold the spent refresh token. Default 30 seconds. */
  readonly graceWindow?: Duration.DurationInput | undefined
  /** A session unused this long is over. Default 2 hours. */
  readonly idleTimeout?: Duration.DurationInput | undefined
  /** A session is over this long after login, used or not. Default 12 hours. */
  readonly absoluteTimeout?: Duration.DurationInput | undefined
  /** Time allowed for each refresh request. Default 10 seconds. */
  readonly attemptTimeout?: Duration.DurationInput | undefined
  readonly cookie?: CookieOptions | undefined
  /** Where a page request without a session is sent (with `?returnTo=`). Default `/login`. */
  readonly loginPath?: string | undefined
  /** ID token algorithms accepted; `none` and HS* are always refused. Default: RS, PS, ES families and EdDSA. */
  readonly algorithms?: ReadonlyArray<string> | undefined
  /** An unknown `kid` fetches the JWKS again at most this often. Default 60 seconds. */
  readonly jwksRefetchInterval?: Duration.DurationInput | undefined
  /** Clock tolerance for the ID token's `exp`/`iat`. Default 30 seconds. */
  readonly clockTolerance?: Duration.DurationInput | undefined
  /**
   * The page a browser navigation gets when sign-in fails or its session is unavailable (503), in place of the
   * package's small HTML page. API calls always get JSON. It must not put anything from the request into the page
   * unescaped.
   */
  readonly errorPage?: ErrorPage | undefined
}

/**
 * An application's page for a failed sign-in or an unavailable session, answered to browser navigations.
 *
 * @example
 * ```ts
 * import { SessionError, type UserSession } from "@effect-token/session"
 * import { HttpServerResponse } from "@effect/platform"
 * import { Effect } from "effect"
 *
 * const errorPage: UserSession.ErrorPage = (error) =>
 *   Effect.succeed(HttpServerResponse.text("<p>Please sign in again.</p>", {
 *     status: SessionError.status(error),
 *     contentType: "text/html; charset=utf-8"
 *   }))
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export type ErrorPage = (
  error: SessionError
) => Effect.Effect<HttpServerResponse.HttpServerResponse, never, HttpServerRequest.HttpServerRequest>

/**
 * What a verified ID token says.
 *
 * @example
 * ```ts
 * import type { UserSession } from "@effect-token/session"
 *
 * const who = (claims: UserSession.IdTokenClaims) => claims.subject
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface IdTokenClaims {
  /** `sub`. */
  readonly subject: string
  /** Every claim of the token, as sent. */
  readonly claims: Readonly<Record<string, unknown>>
}

/**
 * The sessions of this application.
 *
 * @example
 * ```ts
 * import { UserSession } from "@effect-token/session"
 * import { Effect, Redacted } from "effect"
 *
 * const tokenOf = (id: Redacted.Redacted<string>) =>
 *   Effect.flatMap(UserSession.UserSessions, (sessions) => sessions.accessToken(id))
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface UserSessions {
  /** The session cookie's name. */
  readonly cookieName: string
  readonly secureCookies: boolean
  readonly loginPath: string
  /** The application's page for navigations (see {@link Options}), if it has one. */
  readonly errorPage: ErrorPage | undefined
  readonly absoluteTimeout: Duration.Duration
  /** Starts a session after a login, under a new random id (never one the browser brought). */
  readonly create: (input: {
    readonly subject: string
    readonly token: AccessToken.AccessToken
    readonly idToken: Option.Option<Redacted.Redacted<string>>
    /** The DPoP private key (a JWK as JSON) the token is bound to; the session keeps it (see `OidcLogin`'s `dpop`). */
    readonly dpopKey?: Option.Option<Redacted.Redacted<string>> | undefined
  }) => Effect.Effect<Redacted.Redacted<string>, SessionError>
  /** The session's DPoP key, when its tokens are DPoP-bound: calls on the user's behalf sign with it. */
  readonly dpopKey: (id: Redacted.Redacted<string>) => Effect.Effect<Option.Option<DPoP.DPoPKey>, SessionError>
  /** The session, within its idle and absolute expiry (touching the idle one). */
  readonly load: (id: Redacted.Redacted<string>) => Effect.Effect<UserTokenStore.Versioned, SessionError>
  /**
   * As {@link accessToken}, for a session `load` has just read: the record is not read again (the middleware's
   * path, one store read per request).
   */
  readonly accessTokenOf: (
    id: Redacted.Redacted<string>,
    loaded: UserTokenStore.Versioned,
    resource?: string | undefined
  ) => Effect.Effect<AccessToken.AccessToken, SessionError>
  /**
   * The session's access token (or its token for `resource`), refreshed when due, once per session however many
   * requests ask at once.
   */
  readonly accessToken: (
    id: Redacted.Redacted<string>,
    resource?: string | undefined
  ) => Effect.Effect<AccessToken.AccessToken, SessionError>
  /** An API rejected `token`: if it is still the session's, refresh now (once). Returns whether it was. */
  readonly invalidate: (
    id: Redacted.Redacted<string>,
    token: AccessToken.AccessToken,
    resource?: string | undefined
  ) => Effect.Effect<boolean>
  /**
   * Verifies an ID token of the issuer for this client, as the login callback needs it and as refresh answers get
   * it: signature against the issuer's JWKS (fetched bounded, shared by concurrent callers), `iss`, `aud`, `azp`,
   * `exp`, `iat` (not in the future), algorithms from the allow-list, and `nonce` when given.
   */
  readonly verifyIdToken: (
    idToken: Redacted.Redacted<string>,
    nonce: string
  ) => Effect.Effect<IdTokenClaims, SessionError>
  /** Deletes the session; returns what it held (for revocation and logout). */
  readonly end: (
    id: Redacted.Redacted<string>
  ) => Effect.Effect<Option.Option<UserTokenStore.SessionRecord>, SessionError>
}

/**
 * @example
 * ```ts
 * import { UserSession } from "@effect-token/session"
 * import { Effect } from "effect"
 *
 * const cookieName = Effect.map(UserSession.UserSessions, (sessions) => sessions.cookieName)
 * ```
 *
 * @since 0.1.0
 * @category tags
 */
export const UserSessions: Context.Tag<UserSessions, UserSessions> = internal.UserSessions

/**
 * The sessions over the `UserTokenStore` and `HttpClient` in context; refreshes run in the scope.
 *
 * @example
 * ```ts
 * import { ClientAuth, Discovery } from "@effect-token/core"
 * import { UserSession } from "@effect-token/session"
 * import { Effect, Redacted } from "effect"
 *
 * const sessions = Effect.gen(function*() {
 *   const discovery = yield* Discovery.make({ issuer: "https://auth.example.com" })
 *   return yield* UserSession.make({
 *     discovery,
 *     clientAuth: ClientAuth.clientSecretBasic({ clientId: "web", clientSecret: Redacted.make("s3cr3t") })
 *   })
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: Options
): Effect.Effect<UserSessions, never, UserTokenStore.UserTokenStore | HttpClient.HttpClient | Scope.Scope> =>
  Effect.gen(function*() {
    const secure = options.cookie?.secure ?? true
    const named = protocol.cookieName(options.cookie?.name ?? "session", {
      secure,
      hostPrefix: options.cookie?.hostPrefix ?? true
    })
    if ("invalid" in named) {
      return yield* Effect.dieMessage(
        `UserSession: the cookie name ${JSON.stringify(options.cookie?.name)}: ${named.invalid}`
      )
    }
    const cookieName = named.name
    const absoluteTimeout = Duration.decode(options.absoluteTimeout ?? Duration.hours(12))
    const discovery = options.discovery
    const verifier = yield* idToken.make(yield* HttpClient.HttpClient, {
      issuer: discovery.issuer,
      clientId: options.clientAuth.clientId,
      jwksUri: Effect.flatMap(
        Effect.mapError(discovery.metadata, (error) =>
          new SessionError({
            operation: "login callback",
            reason: new Unavailable({ description: `the issuer's metadata: ${error.reason._tag}` })
          })),
        (m) =>
          m.jwks_uri === undefined
            ? Effect.fail(
              new SessionError({
                operation: "login callback",
                reason: new Unavailable({ description: "the issuer publishes no jwks_uri" })
              })
            )
            : Effect.succeed(m.jwks_uri)
      ),
      algorithms: options.algorithms,
      refetchInterval: Duration.decode(options.jwksRefetchInterval ?? Duration.seconds(60)),
      timeout: Duration.decode(options.attemptTimeout ?? Duration.seconds(10)),
      maxBytes: 256 * 1024,
      clockTolerance: Duration.decode(options.clockTolerance ?? Duration.seconds(30))
    })
    // Sessions the store drops to stay within its bounds get their refresh tokens revoked, in the background.
    yield* evictions.revokeEvicted(yield* UserTokenStore.UserTokenStore, yield* HttpClient.HttpClient, {
      discovery,
      clientAuth: options.clientAuth,
      timeout: Duration.decode(options.attemptTimeout ?? Duration.seconds(10))
    })
    const engine = yield* sessionEngine.make({
      discovery: options.discovery,
      clientAuth: options.clientAuth,
      timing: TokenTiming.resolve({
        ...TokenTiming.onRequest,
        ...(options.refreshBefore === undefined ? {} : { refreshBefore: options.refreshBefore }),
        ...(options.skew === undefined ? {} : { skew: options.skew })
      }),
      graceWindow: Duration.decode(options.graceWindow ?? Duration.seconds(30)),
      idleTimeout: Duration.decode(options.idleTimeout ?? Duration.hours(2)),
      absoluteTimeout,
      touchInterval: Duration.minutes(1),
      attemptTimeout: options.attemptTimeout === undefined ? undefined : Duration.decode(options.attemptTimeout),
      refreshedIdToken: (record, answer) => idToken.refreshed(verifier, record.idToken, record.subject, answer.idToken)
    })
    return {
      cookieName,
      secureCookies: secure,
      loginPath: options.loginPath ?? "/login",
      errorPage: options.errorPage,
      absoluteTimeout,
      create: engine.create,
      dpopKey: engine.dpopKey,
      load: engine.load,
      accessTokenOf: (id, loaded, resource) => engine.accessTokenOf(id, loaded, resource),
      accessToken: (id, resource) => engine.accessToken(id, resource),
      invalidate: (id, token, resource) => engine.invalidate(id, resource, token),
      verifyIdToken: (token, nonce) =>
        Effect.map(
          verifier.verify(Redacted.value(token), { nonce }),
          (verified): IdTokenClaims => ({ subject: verified.subject, claims: verified.payload })
        ),
      end: engine.end
    }
  })

/**
 * Provides {@link UserSessions}.
 *
 * @example
 * ```ts
 * import { ClientAuth, Discovery } from "@effect-token/core"
 * import { UserSession, UserTokenStore } from "@effect-token/session"
 * import { NodeHttpClient } from "@effect/platform-node"
 * import { Effect, Layer, Redacted } from "effect"
 *
 * const SessionsLive = Layer.unwrapScoped(Effect.map(
 *   Discovery.make({ issuer: "https://auth.example.com" }),
 *   (discovery) =>
 *     UserSession.layer({
 *       discovery,
 *       clientAuth: ClientAuth.clientSecretBasic({ clientId: "web", clientSecret: Redacted.make("s3cr3t") })
 *     })
 * )).pipe(Layer.provide(UserTokenStore.layerMemory()), Layer.provide(NodeHttpClient.layerUndici))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Options
): Layer.Layer<UserSessions, never, UserTokenStore.UserTokenStore | HttpClient.HttpClient> =>
  Layer.scoped(UserSessions, make(options))

/**
 * The signed-in user of one request.
 *
 * @example
 * ```ts
 * import { UserSession } from "@effect-token/session"
 * import { Effect } from "effect"
 *
 * const whoAndToken = Effect.gen(function*() {
 *   const user: UserSession.CurrentSession = yield* UserSession.current
 *   return { sub: user.subject, token: yield* user.accessToken() }
 * })
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface CurrentSession {
  readonly id: Redacted.Redacted<string>
  /** The ID token's `sub`. */
  readonly subject: string
  /** The access token (or the one for `resource`), refreshed when due. */
  readonly accessToken: (resource?: string | undefined) => Effect.Effect<AccessToken.AccessToken, SessionError>
  /**
   * The user's tokens shaped as a `TokenCache`, for core's `AuthHttpClient.authenticate`: an API's 401 for the
   * token invalidates it and refreshes the session once.
   */
  readonly tokens: (resource?: string | undefined) => TokenCache.TokenCache
  /** The key the session's tokens are bound to, when they are DPoP tokens. */
  readonly dpopKey: Effect.Effect<Option.Option<DPoP.DPoPKey>, SessionError>
}

/**
 * What the middleware knows of the request's session: the signed-in user, or why there is none.
 *
 * @example
 * ```ts
 * import { UserSession } from "@effect-token/session"
 * import { Effect } from "effect"
 *
 * const isSignedIn = Effect.flatMap(UserSession.RequestSession, (request: UserSession.RequestSession) =>
 *   Effect.isSuccess(request.current))
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface RequestSession {
  readonly current: Effect.Effect<CurrentSession, SessionError>
}

/**
 * Provided by {@link middleware} to every request.
 *
 * @example
 * ```ts
 * import { UserSession } from "@effect-token/session"
 * import { Effect } from "effect"
 *
 * const signedIn = Effect.flatMap(UserSession.RequestSession, (request) => Effect.option(request.current))
 * ```
 *
 * @since 0.1.0
 * @category tags
 */
export const RequestSession: Context.Tag<RequestSession, RequestSession> = internal.RequestSession

/**
 * The request's signed-in user; fails with a `SessionError` (reason `NotSignedIn`, `SessionRejected` or
 * `Unavailable`) when there is none. The middleware turns that failure into a 401, a 503 or a redirect to login.
 *
 * @example
 * ```ts
 * import { UserSession } from "@effect-token/session"
 * import { HttpServerResponse } from "@effect/platform"
 * import { Effect } from "effect"
 *
 * const me = Effect.map(UserSession.current, (user) => HttpServerResponse.unsafeJson({ sub: user.subject }))
 * ```
 *
 * @since 0.1.0
 * @category accessors
 */
export const current: Effect.Effect<CurrentSession, SessionError, RequestSession> = internal.current

/**
 * The signed-in user's access token (or the one for `resource`).
 *
 * @example
 * ```ts
 * import { UserSession } from "@effect-token/session"
 *
 * const token = UserSession.accessToken("https://api.example.com")
 * ```
 *
 * @since 0.1.0
 * @category accessors
 */
export const accessToken = (
  resource?: string | undefined
): Effect.Effect<AccessToken.AccessToken, SessionError, RequestSession> => internal.accessToken(resource)

/**
 * An `HttpClient` bound to one API that calls it on the signed-in user's behalf (core's `AuthHttpClient`, over the
 * user's tokens): the token goes only to that API's origins, and a 401 refreshes the session once and retries.
 *
 * @example
 * ```ts
 * import { UserSession } from "@effect-token/session"
 * import { Effect } from "effect"
 *
 * const orders = Effect.gen(function*() {
 *   const api = yield* UserSession.client({ baseUrl: "https://api.example.com" })
 *   const response = yield* api.get("/orders")
 *   return yield* response.json
 * })
 * ```
 *
 * @since 0.1.0
 * @category accessors
 */
export const client = (
  options: AuthHttpClient.Binding & AuthHttpClient.Options & { readonly resource?: string | undefined }
): Effect.Effect<
  HttpClient.HttpClient.With<HttpClientError.HttpClientError | AuthHttpClient.AuthError>,
  SessionError,
  RequestSession | HttpClient.HttpClient
> => internal.client(options)

/**
 * As {@link client}, for a session named by its id, outside any request: a background job acting for a signed-in
 * user (a scheduled export, a webhook). The same rules apply: the session's tokens, refreshed when due (single
 * flight with the requests of that session), a 401 refreshes once; a session that is over fails with its
 * `SessionError`. Reading the token does not extend the session's idle expiry.
 *
 * @example
 * ```ts
 * import { UserSession } from "@effect-token/session"
 * import { Effect, Redacted } from "effect"
 *
 * const exportFor = (sessionId: Redacted.Redacted<string>) =>
 *   Effect.gen(function*() {
 *     const api = yield* UserSession.clientFor(sessionId, { baseUrl: "https://api.example.com" })
 *     return yield* api.get("/export")
 *   })
 * ```
 *
 * @since 0.2.0
 * @category accessors
 */
export const clientFor = (
  id: Redacted.Redacted<string>,
  options: AuthHttpClient.Binding & AuthHttpClient.Options & { readonly resource?: string | undefined }
): Effect.Effect<
  HttpClient.HttpClient.With<HttpClientError.HttpClientError | AuthHttpClient.AuthError>,
  SessionError,
  UserSessions | HttpClient.HttpClient
> => internal.clientFor(id, options)

/**
 * The answer to a request whose session is missing, rejected or unavailable. `Unavailable`: 503 (with `Retry-After`
 * when known), a small HTML page for a browser navigation (or `page`, the application's), JSON for an API call.
 * Otherwise: a redirect to the login path for a page load, 401 JSON for an API call (a page for another navigation).
 *
 * @example
 * ```ts
 * import { SessionError, UserSession } from "@effect-token/session"
 * import { Effect } from "effect"
 *
 * declare const error: SessionError.SessionError
 * const response = UserSession.errorResponse(error, "/login")
 * ```
 *
 * @since 0.1.0
 * @category responses
 */
export const errorResponse = (
  error: SessionError,
  loginPath: string,
  page?: ErrorPage | undefined
): Effect.Effect<HttpServerResponse.HttpServerResponse, never, HttpServerRequest.HttpServerRequest> =>
  internal.errorResponse(error, loginPath, page)

/**
 * The session middleware: reads the session cookie, loads the session and its access token (refreshing it once
 * when due), provides {@link RequestSession}, and turns the app's `SessionError`s (and the `TokenError`s of
 * {@link client} that stand for them) into 401, 503 or a redirect to login. A session that is unknown, expired or
 * rejected gets its cookie expired in the answer.
 *
 * @example
 * ```ts
 * import { UserSession } from "@effect-token/session"
 * import { HttpRouter, HttpServerResponse } from "@effect/platform"
 * import { Effect } from "effect"
 *
 * const app = HttpRouter.empty.pipe(
 *   HttpRouter.get("/me", Effect.map(UserSession.current, (user) => HttpServerResponse.unsafeJson({ sub: user.subject }))),
 *   UserSession.middleware
 * )
 * ```
 *
 * @since 0.1.0
 * @category middleware
 */
export const middleware = <E, R>(
  app: HttpApp.Default<E, R>
): HttpApp.Default<Exclude<E, SessionError>, Exclude<R, RequestSession> | UserSessions> => internal.middleware(app)
