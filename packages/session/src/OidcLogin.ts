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
import { ClientAuth, Discovery, DPoP } from "@effect-token/core"
import type * as HttpClient from "@effect/platform/HttpClient"
import type * as HttpRouter from "@effect/platform/HttpRouter"
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import type * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as internal from "./internal/oidcLogin.js"
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
export const make: (
  options: Options
) => Effect.Effect<
  OidcLogin,
  never,
  Discovery.Discovery | UserSession.UserSessions | HttpClient.HttpClient | Scope.Scope
> = internal.make

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
        message: `SESSION_SECRET must be at least ${internal.minSecretLength} characters`,
        validation: (secret) => Redacted.value(secret).length >= internal.minSecretLength
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
    validation: (c) => c.secure || internal.isLoopbackHttp(c.redirectUri.toString())
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
