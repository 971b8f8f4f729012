/**
 * Where tokens come from: a grant against a token endpoint, or anything a user writes.
 *
 * A source only fetches; caching, single flight and refresh-ahead belong to `TokenCache`.
 *
 * @since 0.1.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as AccessToken from "./AccessToken.js"
import * as ClientAuth from "./ClientAuth.js"
import * as Discovery from "./Discovery.js"
import { accessTokenType } from "./internal/tokenResponse.js"
import * as RefreshTokenStore from "./RefreshTokenStore.js"
import * as TokenEndpoint from "./TokenEndpoint.js"
import { RefreshTokenRejected, TokenError } from "./TokenError.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface TokenSource {
  /**
   * Identifies the token this source produces: every parameter that shapes the token (grant, endpoint, client,
   * scope, audience, resource, extra parameters), never a secret. Caches and shared stores key on it.
   */
  readonly key: string
  /** Fetches a new token. Every call goes to the source: cache it with `TokenCache`. */
  readonly fetch: Effect.Effect<AccessToken.AccessToken, TokenError>
  /**
   * Forgets `token` wherever the source keeps a copy of its own (a store shared by a cluster), after a resource
   * server rejected it. A cache calls it when it clears that token. Most sources keep nothing and leave it out.
   */
  readonly invalidate?: ((token: AccessToken.AccessToken) => Effect.Effect<void>) | undefined
}

/**
 * The default source of an application.
 *
 * Several sources in one app (two APIs, two tenants) each get their own tag; their keys differ because every
 * parameter that shapes a token is part of the key.
 *
 * @example
 * ```ts
 * import { ClientAuth, TokenSource } from "@effect-token/core"
 * import { Context, Effect, Layer, Redacted } from "effect"
 *
 * class BillingSource extends Context.Tag("BillingSource")<BillingSource, TokenSource.TokenSource>() {}
 * class ReportsSource extends Context.Tag("ReportsSource")<ReportsSource, TokenSource.TokenSource>() {}
 *
 * const clientAuth = ClientAuth.clientSecretBasic({ clientId: "app", clientSecret: Redacted.make("s3cr3t") })
 * const tokenUrl = "https://auth.example.com/oauth/token"
 * const SourcesLive = Layer.mergeAll(
 *   Layer.effect(BillingSource, TokenSource.clientCredentials({ tokenUrl, clientAuth, audience: "billing-api" })),
 *   Layer.effect(ReportsSource, TokenSource.clientCredentials({ tokenUrl, clientAuth, scope: "reports:read" }))
 * )
 *
 * const program = Effect.gen(function*() {
 *   const billing = yield* BillingSource
 *   return yield* billing.fetch
 * })
 * ```
 *
 * @since 0.1.0
 * @category tags
 */
export const TokenSource: Context.Tag<TokenSource, TokenSource> = Context.GenericTag<TokenSource>(
  "@effect-token/core/TokenSource"
)

/**
 * A custom source, e.g. a token read from a file or minted by a cloud SDK.
 *
 * @example
 * ```ts
 * import { AccessToken, TokenSource } from "@effect-token/core"
 * import { DateTime, Effect, Redacted } from "effect"
 *
 * const source = TokenSource.make({
 *   key: "static:dev",
 *   fetch: Effect.map(DateTime.now, (now) => AccessToken.make({ value: Redacted.make("dev-token"), issuedAt: now }))
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: {
  readonly key: string
  readonly fetch: Effect.Effect<AccessToken.AccessToken, TokenError>
  readonly invalidate?: ((token: AccessToken.AccessToken) => Effect.Effect<void>) | undefined
}): TokenSource =>
  options.invalidate === undefined
    ? { key: options.key, fetch: options.fetch }
    : { key: options.key, fetch: options.fetch, invalidate: options.invalidate }

/**
 * What every grant against a token endpoint needs.
 *
 * @since 0.1.0
 * @category models
 */
export interface EndpointOptions {
  /** The token endpoint, or a `Discovery` whose `token_endpoint` is used (looked up on the first fetch). */
  readonly tokenUrl: string | URL | Discovery.Discovery
  readonly clientAuth: ClientAuth.ClientAuth
  /**
   * Time allowed for each request to the token endpoint, answer included (default 10 s). A cache retries transient
   * failures, each attempt with this bound; bound the whole wait for a token with the cache's `acquireTimeout`.
   */
  readonly attemptTimeout?: Duration.DurationInput | undefined
  readonly defaultLifetime?: Duration.DurationInput | undefined
}

/**
 * Parameters that shape the token, shared by the grants.
 *
 * @since 0.1.0
 * @category models
 */
export interface TokenShape {
  /** Space-separated scopes. */
  readonly scope?: string | undefined
  /** RFC 8707 resource indicator(s). */
  readonly resource?: string | ReadonlyArray<string> | undefined
  /** The `audience` parameter(s) many servers (Auth0, Okta, Keycloak, RFC 8693 token exchange) use. */
  readonly audience?: string | ReadonlyArray<string> | undefined
  /**
   * Any other parameter the server wants; part of the cache key. It cannot replace a parameter the grant sets
   * itself (`grant_type`, `refresh_token`, `client_id`, ...) nor `scope`/`resource`/`audience` given above.
   */
  readonly extraParams?: Readonly<Record<string, string>> | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface ClientCredentialsOptions extends EndpointOptions, TokenShape {}

/**
 * The form parameters of a token shape, in a fixed order.
 *
 * @since 0.1.0
 * @category internal
 */
export const shapeParams = (shape: TokenShape): Array<[string, string]> => {
  const params: Array<[string, string]> = []
  if (shape.scope !== undefined) params.push(["scope", shape.scope])
  for (const resource of values(shape.resource)) params.push(["resource", resource])
  for (const audience of values(shape.audience)) params.push(["audience", audience])
  for (const key of Object.keys(shape.extraParams ?? {}).sort()) params.push([key, shape.extraParams![key]!])
  return params
}

/** One value or several, as a list. */
const values = (value: string | ReadonlyArray<string> | undefined): ReadonlyArray<string> =>
  value === undefined ? [] : typeof value === "string" ? [value] : value

/**
 * A cache key from non-secret parts. JSON keeps parts with separators in them from colliding.
 *
 * @since 0.1.0
 * @category internal
 */
export const keyOf = (grant: string, endpoint: EndpointOptions, shape: TokenShape, ...more: Array<string>): string =>
  JSON.stringify([grant, endpointKey(endpoint.tokenUrl), endpoint.clientAuth.clientId, shapeParams(shape), ...more])

/**
 * A discovered endpoint is known by its issuer: the URL is not known before the first fetch. A pair, not a prefixed
 * string, so that no token URL (`discovery:` is a valid scheme) can spell the same key.
 */
const endpointKey = (tokenUrl: EndpointOptions["tokenUrl"]): string | readonly [string, string] =>
  Discovery.isDiscovery(tokenUrl) ? ["discovery", tokenUrl.issuer] : tokenUrl.toString()

/** Sends one grant to the configured endpoint, looking it up through discovery first when it is one. */
const requester = (
  options: EndpointOptions
): Effect.Effect<
  (params: TokenEndpoint.Params) => Effect.Effect<AccessToken.AccessToken, TokenError>,
  never,
  HttpClient.HttpClient
> =>
  Effect.map(HttpClient.HttpClient, (client) => {
    const { tokenUrl } = options
    const endpointOptions = {
      clientAuth: options.clientAuth,
      attemptTimeout: options.attemptTimeout,
      defaultLifetime: options.defaultLifetime
    }
    if (!Discovery.isDiscovery(tokenUrl)) {
      return TokenEndpoint.makeWith(client, { ...endpointOptions, tokenUrl }).request
    }
    return (params) =>
      Effect.flatMap(
        tokenUrl.tokenEndpoint,
        (url) => TokenEndpoint.makeWith(client, { ...endpointOptions, tokenUrl: url }).request(params)
      )
  })

/** Parameters RFC 8707 and RFC 8693 allow more than once; any other name is sent once, first value wins. */
const multiValued = new Set(["resource", "audience"])

/**
 * A grant's form: its own parameters, then the shape's. The grant's own always win: an `extraParams` entry can
 * never turn a `refresh_token` grant into another grant or replace the refresh token.
 */
const grantForm = (
  grant: Readonly<Record<string, string | Redacted.Redacted<string> | undefined>>,
  shape: TokenShape
): TokenEndpoint.Params => {
  // No prototype: an extra parameter named `constructor` or `__proto__` is a parameter like any other.
  const form: Record<string, string | Redacted.Redacted<string> | Array<string>> = Object.create(null)
  for (const [name, value] of Object.entries(grant)) if (value !== undefined) form[name] = value
  for (const [name, value] of shapeParams(shape)) {
    const current = form[name]
    if (current === undefined) form[name] = multiValued.has(name) ? [value] : value
    else if (Array.isArray(current) && multiValued.has(name)) current.push(value)
  }
  return form
}

/**
 * The client credentials grant (RFC 6749 §4.4): a service acting on its own behalf.
 *
 * @example
 * ```ts
 * import { ClientAuth, TokenSource } from "@effect-token/core"
 * import { NodeHttpClient } from "@effect/platform-node"
 * import { Effect, Redacted } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const source = yield* TokenSource.clientCredentials({
 *     tokenUrl: "https://auth.example.com/oauth/token",
 *     clientAuth: ClientAuth.clientSecretBasic({ clientId: "billing", clientSecret: Redacted.make("s3cr3t") }),
 *     scope: "invoices:read"
 *   })
 *   return yield* source.fetch
 * }).pipe(Effect.provide(NodeHttpClient.layerUndici))
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const clientCredentials = (
  options: ClientCredentialsOptions
): Effect.Effect<TokenSource, never, HttpClient.HttpClient> =>
  Effect.map(requester(options), (request) => {
    // Built once: every fetch sends the same parameters.
    const params = grantForm({ grant_type: "client_credentials" }, options)
    return make({ key: keyOf("client_credentials", options, options), fetch: request(params) })
  })

/**
 * Provides {@link clientCredentials} as the default `TokenSource`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerClientCredentials = (
  options: ClientCredentialsOptions
): Layer.Layer<TokenSource, never, HttpClient.HttpClient> => Layer.effect(TokenSource, clientCredentials(options))

/** Endpoint, client and token shape, as every grant's configuration reads them. */
const grantConfig = Config.all({
  tokenUrl: Config.url("TOKEN_URL"),
  clientAuth: ClientAuth.config,
  scope: Config.option(Config.string("SCOPE")),
  audience: Config.option(Config.string("AUDIENCE")),
  resource: Config.option(Config.string("RESOURCE")),
  attemptTimeout: Config.option(Config.duration("ATTEMPT_TIMEOUT"))
}).pipe(Config.map((c) => ({
  tokenUrl: c.tokenUrl,
  clientAuth: c.clientAuth,
  scope: Option.getOrUndefined(c.scope),
  audience: Option.getOrUndefined(c.audience),
  resource: Option.getOrUndefined(c.resource),
  attemptTimeout: Option.getOrUndefined(c.attemptTimeout)
})))

/**
 * Client-credentials settings read from configuration, as every grant reads them: `TOKEN_URL`, the client (see
 * `ClientAuth.config`: `CLIENT_ID`, `CLIENT_AUTH_METHOD` = `client_secret_basic` (default), `client_secret_post`,
 * `private_key_jwt` or `none`, with `CLIENT_SECRET` or `CLIENT_PRIVATE_KEY` as the method needs), and optional
 * `SCOPE`, `AUDIENCE`, `RESOURCE`, `ATTEMPT_TIMEOUT` (each request to the token endpoint, e.g. `5 seconds`). Use `Config.nested` for a prefix.
 *
 * @example
 * ```ts
 * import { TokenSource } from "@effect-token/core"
 * import { Config } from "effect"
 *
 * // reads BILLING_TOKEN_URL, BILLING_CLIENT_ID, BILLING_CLIENT_AUTH_METHOD, BILLING_CLIENT_PRIVATE_KEY, ...
 * const billing = Config.nested(TokenSource.clientCredentialsConfig, "BILLING")
 * ```
 *
 * @since 0.1.0
 * @category config
 */
export const clientCredentialsConfig: Config.Config<ClientCredentialsOptions> = grantConfig

/**
 * Provides a client-credentials `TokenSource` from configuration (see {@link clientCredentialsConfig}).
 *
 * @example
 * ```ts
 * import { TokenSource } from "@effect-token/core"
 * import { NodeHttpClient } from "@effect/platform-node"
 * import { Layer } from "effect"
 *
 * const SourceLive = TokenSource.layerConfig().pipe(Layer.provide(NodeHttpClient.layerUndici))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config<ClientCredentialsOptions> = clientCredentialsConfig
): Layer.Layer<TokenSource, ConfigError.ConfigError, HttpClient.HttpClient> =>
  Layer.effect(TokenSource, Effect.flatMap(config, clientCredentials))

/**
 * @since 0.1.0
 * @category models
 */
export interface RefreshTokenOptions extends EndpointOptions, TokenShape {
  /**
   * Whose refresh token the store holds (a user or device id, never the token itself). It is part of the key, so
   * caches or shared stores keyed on it never hand one user's access token to another.
   */
  readonly subjectKey?: string | undefined
}

const refreshOperation = "refresh_token grant"

/** RFC 6749 §5.2: `invalid_grant` on a refresh means the refresh token is dead; nothing but a new login helps. */
const refreshRejected = (error: TokenError): TokenError =>
  error.reason._tag === "OAuthError" && error.reason.code === "invalid_grant"
    ? new TokenError({
      operation: error.operation,
      reason: new RefreshTokenRejected({
        status: error.reason.status,
        description: error.reason.description ??
          "the authorization server rejected the refresh token (expired, revoked or already used)"
      })
    })
    : error

/**
 * The refresh token grant (RFC 6749 §6) with rotation: the user's refresh token comes from the
 * `RefreshTokenStore` in context.
 *
 * - When the server answers with a new refresh token, it is written to the store before the access token is
 *   returned, so a crash in between never loses the only valid refresh token. When the store cannot write it (its
 *   `set` fails, e.g. reason `Unavailable`), the fetch fails with that error and the access token is not handed out.
 * - Once sent, the request and the store write are not interruptible: interrupting the fetch (a caller giving up,
 *   the application's scope closing) waits for the answer and the write, at most the request's `attemptTimeout`, so an
 *   answer carrying a rotated refresh token is never dropped. The access token handed out carries no refresh token:
 *   the store is the one place it lives.
 * - Fetches of one source run one at a time, each with the refresh token the previous one stored: two concurrent
 *   fetches never spend the same refresh token, with or without a `TokenCache` on top.
 * - `invalid_grant`, and an empty store, fail with reason `RefreshTokenRejected`: the user has to log in again.
 *   The store is left as it is; clear it at logout.
 *
 * @example
 * ```ts
 * import { ClientAuth, RefreshTokenStore, TokenSource } from "@effect-token/core"
 * import { NodeHttpClient } from "@effect/platform-node"
 * import { Effect, Layer, Redacted } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const source = yield* TokenSource.refreshToken({
 *     tokenUrl: "https://auth.example.com/oauth/token",
 *     clientAuth: ClientAuth.none({ clientId: "cli" }),
 *     subjectKey: "alice"
 *   })
 *   return yield* source.fetch
 * }).pipe(
 *   Effect.provide(Layer.merge(NodeHttpClient.layerUndici, RefreshTokenStore.layerMemory(Redacted.make("rt-from-login"))))
 * )
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const refreshToken = (
  options: RefreshTokenOptions
): Effect.Effect<TokenSource, never, HttpClient.HttpClient | RefreshTokenStore.RefreshTokenStore> =>
  Effect.gen(function*() {
    const request = yield* requester(options)
    const store = yield* RefreshTokenStore.RefreshTokenStore
    const semaphore = yield* Effect.makeSemaphore(1)
    const fetch = Effect.gen(function*() {
      const current = yield* store.get
      if (Option.isNone(current)) {
        return yield* new TokenError({
          operation: refreshOperation,
          reason: new RefreshTokenRejected({
            description: "there is no refresh token in the store: the user has to log in first"
          })
        })
      }
      const params = grantForm({ grant_type: "refresh_token", refresh_token: current.value }, options)
      const exchange = Effect.flatMap(
        // Interruptible inside, so that the request's own timeout can still end it (see below).
        Effect.interruptible(Effect.mapError(request(params), refreshRejected)),
        (token) =>
          Option.match(token.refreshToken, {
            onNone: () => Effect.succeed(token),
            onSome: (rotated) => Effect.as(store.set(rotated), withoutRefreshToken(token))
          })
      )
      // Once the request is sent, the server may already have rotated the refresh token, and only its answer carries
      // the new one. Dropping that answer because the caller was interrupted (the app shutting down, its scope
      // closing) would leave the spent token in the store and force a new login. So the request and the store write
      // run to the end in a daemon fiber (a child would be interrupted with its parent), and the caller waits for it
      // without being interruptible; its interruption takes effect afterwards. The request's timeout bounds that
      // wait: it still works in the daemon, whereas timing out an uninterruptible request would wait for the request
      // however long it takes.
      return yield* Effect.uninterruptible(Effect.flatMap(Effect.forkDaemon(exchange), Fiber.join))
    })
    const subject = options.subjectKey === undefined ? [] : [options.subjectKey]
    return make({ key: keyOf("refresh_token", options, options, ...subject), fetch: semaphore.withPermits(1)(fetch) })
  })

const withoutRefreshToken = (token: AccessToken.AccessToken): AccessToken.AccessToken =>
  AccessToken.make({
    value: token.value,
    type: token.type,
    issuedAt: token.issuedAt,
    expiresAt: token.expiresAt,
    scope: token.scope,
    issuedTokenType: token.issuedTokenType
  })

/**
 * Provides {@link refreshToken} as the default `TokenSource`.
 *
 * @example
 * ```ts
 * import { ClientAuth, RefreshTokenStore, TokenSource } from "@effect-token/core"
 * import { Layer, Redacted } from "effect"
 *
 * const SourceLive = TokenSource.layerRefreshToken({
 *   tokenUrl: "https://auth.example.com/oauth/token",
 *   clientAuth: ClientAuth.none({ clientId: "cli" })
 * }).pipe(Layer.provide(RefreshTokenStore.layerMemory(Redacted.make("rt-from-login"))))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerRefreshToken = (
  options: RefreshTokenOptions
): Layer.Layer<TokenSource, never, HttpClient.HttpClient | RefreshTokenStore.RefreshTokenStore> =>
  Layer.effect(TokenSource, refreshToken(options))

/**
 * Refresh-token settings read from configuration: `TOKEN_URL`, the client (see `ClientAuth.config`; public clients
 * use `CLIENT_AUTH_METHOD=none`), and optional `SCOPE`, `AUDIENCE`, `RESOURCE`, `ATTEMPT_TIMEOUT`, `SUBJECT_KEY`. The refresh
 * token itself belongs to the `RefreshTokenStore` (see `RefreshTokenStore.layerMemoryConfig`).
 *
 * @example
 * ```ts
 * import { TokenSource } from "@effect-token/core"
 * import { Config } from "effect"
 *
 * // reads GITHUB_TOKEN_URL, GITHUB_CLIENT_ID, GITHUB_CLIENT_AUTH_METHOD, ...
 * const github = Config.nested(TokenSource.refreshTokenConfig, "GITHUB")
 * ```
 *
 * @since 0.1.0
 * @category config
 */
export const refreshTokenConfig: Config.Config<RefreshTokenOptions> = Config.all({
  grant: grantConfig,
  subjectKey: Config.option(Config.nonEmptyString("SUBJECT_KEY"))
}).pipe(Config.map((c): RefreshTokenOptions => ({ ...c.grant, subjectKey: Option.getOrUndefined(c.subjectKey) })))

/**
 * Provides a refresh-token `TokenSource` from configuration (see {@link refreshTokenConfig}).
 *
 * @example
 * ```ts
 * import { RefreshTokenStore, TokenSource } from "@effect-token/core"
 * import { NodeHttpClient } from "@effect/platform-node"
 * import { Layer } from "effect"
 *
 * const SourceLive = TokenSource.layerRefreshTokenConfig().pipe(
 *   Layer.provide(Layer.merge(NodeHttpClient.layerUndici, RefreshTokenStore.layerMemoryConfig()))
 * )
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerRefreshTokenConfig = (
  config: Config.Config<RefreshTokenOptions> = refreshTokenConfig
): Layer.Layer<TokenSource, ConfigError.ConfigError, HttpClient.HttpClient | RefreshTokenStore.RefreshTokenStore> =>
  Layer.effect(TokenSource, Effect.flatMap(config, refreshToken))

/**
 * @since 0.1.0
 * @category models
 */
export interface PasswordOptions extends EndpointOptions, TokenShape {
  readonly username: string
  readonly password: Redacted.Redacted<string>
}

/**
 * The resource owner password credentials grant (RFC 6749 §4.3).
 *
 * **Legacy.** The OAuth 2.0 Security Best Current Practice (RFC 9700 §2.4) says it MUST NOT be used: the client
 * sees the user's password, and the grant cannot do multi-factor or federated login. It is here for migrating
 * first-party legacy systems and for test users; prefer the authorization code flow, or client credentials for
 * services. The username is part of the key; the password never is.
 *
 * @example
 * ```ts
 * import { ClientAuth, TokenSource } from "@effect-token/core"
 * import { Redacted } from "effect"
 *
 * const source = TokenSource.password({
 *   tokenUrl: "https://auth.example.com/oauth/token",
 *   clientAuth: ClientAuth.clientSecretBasic({ clientId: "legacy", clientSecret: Redacted.make("s3cr3t") }),
 *   username: "batch-user",
 *   password: Redacted.make("hunter2"),
 *   scope: "reports:read"
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const password = (options: PasswordOptions): Effect.Effect<TokenSource, never, HttpClient.HttpClient> =>
  Effect.map(requester(options), (request) => {
    const params = grantForm(
      { grant_type: "password", username: options.username, password: options.password },
      options
    )
    return make({ key: keyOf("password", options, options, options.username), fetch: request(params) })
  })

/**
 * Provides {@link password} as the default `TokenSource`. Legacy: see {@link password}.
 *
 * @example
 * ```ts
 * import { ClientAuth, TokenSource } from "@effect-token/core"
 * import { Redacted } from "effect"
 *
 * const SourceLive = TokenSource.layerPassword({
 *   tokenUrl: "https://auth.example.com/oauth/token",
 *   clientAuth: ClientAuth.none({ clientId: "legacy" }),
 *   username: "batch-user",
 *   password: Redacted.make("hunter2")
 * })
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerPassword = (
  options: PasswordOptions
): Layer.Layer<TokenSource, never, HttpClient.HttpClient> => Layer.effect(TokenSource, password(options))

/**
 * Password-grant settings read from configuration: those of {@link refreshTokenConfig} (without `SUBJECT_KEY`) plus
 * `USERNAME` and `PASSWORD` (redacted). Legacy: see {@link password}.
 *
 * @example
 * ```ts
 * import { TokenSource } from "@effect-token/core"
 * import { Config } from "effect"
 *
 * // reads LEGACY_TOKEN_URL, LEGACY_CLIENT_ID, LEGACY_USERNAME, LEGACY_PASSWORD, ...
 * const legacy = Config.nested(TokenSource.passwordConfig, "LEGACY")
 * ```
 *
 * @since 0.1.0
 * @category config
 */
export const passwordConfig: Config.Config<PasswordOptions> = Config.all({
  grant: grantConfig,
  username: Config.nonEmptyString("USERNAME"),
  password: Config.redacted("PASSWORD")
}).pipe(Config.map((c): PasswordOptions => ({ ...c.grant, username: c.username, password: c.password })))

/**
 * Provides a password-grant `TokenSource` from configuration (see {@link passwordConfig}).
 *
 * @example
 * ```ts
 * import { TokenSource } from "@effect-token/core"
 * import { NodeHttpClient } from "@effect/platform-node"
 * import { Layer } from "effect"
 *
 * const SourceLive = TokenSource.layerPasswordConfig().pipe(Layer.provide(NodeHttpClient.layerUndici))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerPasswordConfig = (
  config: Config.Config<PasswordOptions> = passwordConfig
): Layer.Layer<TokenSource, ConfigError.ConfigError, HttpClient.HttpClient> =>
  Layer.effect(TokenSource, Effect.flatMap(config, password))

/**
 * Token type identifiers of RFC 8693 §3, for `subjectTokenType`, `requestedTokenType` and `issuedTokenType`.
 *
 * @example
 * ```ts
 * import { TokenSource } from "@effect-token/core"
 *
 * TokenSource.TokenTypes.idToken // "urn:ietf:params:oauth:token-type:id_token"
 * ```
 *
 * @since 0.1.0
 * @category constants
 */
export const TokenTypes = {
  accessToken: accessTokenType,
  refreshToken: "urn:ietf:params:oauth:token-type:refresh_token",
  idToken: "urn:ietf:params:oauth:token-type:id_token",
  saml1: "urn:ietf:params:oauth:token-type:saml1",
  saml2: "urn:ietf:params:oauth:token-type:saml2",
  jwt: "urn:ietf:params:oauth:token-type:jwt"
} as const

/**
 * A token handed to token exchange: another source (its token's value is used), an effect producing the token, or
 * the token itself.
 *
 * @since 0.1.0
 * @category models
 */
export type TokenInput =
  | TokenSource
  | Effect.Effect<Redacted.Redacted<string>, TokenError>
  | Redacted.Redacted<string>

/**
 * Token exchange settings apart from the tokens themselves (what configuration can hold).
 *
 * @since 0.1.0
 * @category models
 */
export interface TokenExchangeSettings extends EndpointOptions, TokenShape {
  /** Default `urn:ietf:params:oauth:token-type:access_token`. */
  readonly subjectTokenType?: string | undefined
  /** Default `urn:ietf:params:oauth:token-type:access_token`; sent only with an actor token. */
  readonly actorTokenType?: string | undefined
  /** RFC 8693 `requested_token_type`; the server's default when absent. */
  readonly requestedTokenType?: string | undefined
  /**
   * Identifies the subject in the key (a user id, never the token) when the subject token is not a `TokenSource`
   * (whose own key is used). Without it the key is unique to this source, so nothing keyed on it is ever shared.
   */
  readonly subjectKey?: string | undefined
  /** Like `subjectKey`, for the actor token. */
  readonly actorKey?: string | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface TokenExchangeOptions extends TokenExchangeSettings {
  readonly subjectToken: TokenInput
  readonly actorToken?: TokenInput | undefined
}

const resolveToken = (input: TokenInput): Effect.Effect<Redacted.Redacted<string>, TokenError> =>
  Redacted.isRedacted(input)
    ? Effect.succeed(input)
    : Effect.isEffect(input)
    ? input
    : Effect.map(input.fetch, (token) => token.value)

const inputKey = (input: TokenInput, explicit: string | undefined): string =>
  explicit ??
    (!Redacted.isRedacted(input) && !Effect.isEffect(input) ? input.key : `unshared:${globalThis.crypto.randomUUID()}`)

/**
 * OAuth 2.0 Token Exchange (RFC 8693): trades a subject token (and optionally an actor token) for a token for
 * another audience, e.g. a service calling a downstream API on behalf of its caller.
 *
 * Each fetch obtains the subject (and actor) token afresh: give a cached source (or an effect reading a cache) when
 * the subject token is itself fetched. An answer with `token_type` `N_A` (the issued token is not an access token,
 * e.g. an ID token requested with `requestedTokenType`) is accepted: its `type` reads `Bearer`, and
 * `issuedTokenType` says what it is; check it before sending the token as an access token.
 *
 * Caching: a subject given as a `TokenSource` contributes its key; give `subjectKey` otherwise. A source whose
 * subject changes from fetch to fetch (a per-request user token) must not sit under one shared cache.
 *
 * @example
 * ```ts
 * import { ClientAuth, TokenSource } from "@effect-token/core"
 * import { Effect, Redacted } from "effect"
 *
 * const onBehalfOf = (userToken: Redacted.Redacted<string>, userId: string) =>
 *   Effect.flatMap(
 *     TokenSource.tokenExchange({
 *       tokenUrl: "https://auth.example.com/oauth/token",
 *       clientAuth: ClientAuth.clientSecretBasic({ clientId: "gateway", clientSecret: Redacted.make("s3cr3t") }),
 *       subjectToken: userToken,
 *       subjectKey: userId,
 *       audience: "orders-api"
 *     }),
 *     (source) => source.fetch
 *   )
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const tokenExchange = (
  options: TokenExchangeOptions
): Effect.Effect<TokenSource, never, HttpClient.HttpClient> =>
  Effect.map(requester(options), (request) => {
    const subjectTokenType = options.subjectTokenType ?? TokenTypes.accessToken
    const actorTokenType = options.actorTokenType ?? TokenTypes.accessToken
    const actor = options.actorToken
    const fetch = Effect.gen(function*() {
      const subjectToken = yield* resolveToken(options.subjectToken)
      const actorToken = actor === undefined ? undefined : yield* resolveToken(actor)
      return yield* request(grantForm({
        grant_type: "urn:ietf:params:oauth:grant-type:token-exchange",
        subject_token: subjectToken,
        subject_token_type: subjectTokenType,
        actor_token: actorToken,
        actor_token_type: actorToken === undefined ? undefined : actorTokenType,
        requested_token_type: options.requestedTokenType
      }, options))
    })
    const key = keyOf(
      "token_exchange",
      options,
      options,
      options.requestedTokenType ?? "",
      subjectTokenType,
      inputKey(options.subjectToken, options.subjectKey),
      ...(actor === undefined ? [] : [actorTokenType, inputKey(actor, options.actorKey)])
    )
    return make({ key, fetch })
  })

/**
 * Provides {@link tokenExchange} as the default `TokenSource`.
 *
 * @example
 * ```ts
 * import { ClientAuth, TokenSource } from "@effect-token/core"
 * import { Effect, Layer, Redacted } from "effect"
 *
 * // Exchanges the app's own client-credentials token for one scoped to the orders API.
 * const SourceLive = Layer.unwrapEffect(Effect.gen(function*() {
 *   const clientAuth = ClientAuth.clientSecretBasic({ clientId: "gateway", clientSecret: Redacted.make("s3cr3t") })
 *   const tokenUrl = "https://auth.example.com/oauth/token"
 *   const own = yield* TokenSource.clientCredentials({ tokenUrl, clientAuth })
 *   return TokenSource.layerTokenExchange({ tokenUrl, clientAuth, subjectToken: own, audience: "orders-api" })
 * }))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerTokenExchange = (
  options: TokenExchangeOptions
): Layer.Layer<TokenSource, never, HttpClient.HttpClient> => Layer.effect(TokenSource, tokenExchange(options))

/**
 * Token exchange settings read from configuration: those of {@link refreshTokenConfig} (without `SUBJECT_KEY`) plus
 * optional `SUBJECT_TOKEN_TYPE`, `ACTOR_TOKEN_TYPE` and `REQUESTED_TOKEN_TYPE`. The tokens themselves are given in
 * code (see {@link layerTokenExchangeConfig}).
 *
 * @example
 * ```ts
 * import { TokenSource } from "@effect-token/core"
 * import { Config } from "effect"
 *
 * // reads ORDERS_TOKEN_URL, ORDERS_CLIENT_ID, ORDERS_AUDIENCE, ORDERS_REQUESTED_TOKEN_TYPE, ...
 * const orders = Config.nested(TokenSource.tokenExchangeConfig, "ORDERS")
 * ```
 *
 * @since 0.1.0
 * @category config
 */
export const tokenExchangeConfig: Config.Config<TokenExchangeSettings> = Config.all({
  grant: grantConfig,
  subjectTokenType: Config.option(Config.nonEmptyString("SUBJECT_TOKEN_TYPE")),
  actorTokenType: Config.option(Config.nonEmptyString("ACTOR_TOKEN_TYPE")),
  requestedTokenType: Config.option(Config.nonEmptyString("REQUESTED_TOKEN_TYPE"))
}).pipe(Config.map((c): TokenExchangeSettings => ({
  ...c.grant,
  subjectTokenType: Option.getOrUndefined(c.subjectTokenType),
  actorTokenType: Option.getOrUndefined(c.actorTokenType),
  requestedTokenType: Option.getOrUndefined(c.requestedTokenType)
})))

/**
 * Provides a token exchange `TokenSource` from configuration (see {@link tokenExchangeConfig}) and the tokens given
 * here.
 *
 * @example
 * ```ts
 * import { TokenSource } from "@effect-token/core"
 * import { Effect, Redacted } from "effect"
 *
 * declare const currentUserToken: Effect.Effect<Redacted.Redacted<string>>
 * const SourceLive = TokenSource.layerTokenExchangeConfig({ subjectToken: currentUserToken, subjectKey: "alice" })
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerTokenExchangeConfig = (
  tokens: {
    readonly subjectToken: TokenInput
    readonly actorToken?: TokenInput | undefined
    readonly subjectKey?: string | undefined
    readonly actorKey?: string | undefined
  },
  config: Config.Config<TokenExchangeSettings> = tokenExchangeConfig
): Layer.Layer<TokenSource, ConfigError.ConfigError, HttpClient.HttpClient> =>
  Layer.effect(TokenSource, Effect.flatMap(config, (settings) => tokenExchange({ ...settings, ...tokens })))
