/**
 * An `HttpClient` bound to one API: it attaches a token to the requests for that API's origins, and to nothing else.
 *
 * - Bound by a base URL (relative request URLs resolve against it) or a list of origins. A request to any other
 *   origin is sent untouched and fetches no token: an application's calls to a payment provider or a webhook never
 *   carry the API's bearer token. Token endpoint, discovery and revocation requests go through the plain client.
 * - A request that already carries an `Authorization` header is sent as it is: the caller chose its credentials.
 * - A 401 to a request that carried the token invalidates exactly that token and sends the request once more with a
 *   fresh one; a second 401 reaches the caller as the typed {@link TokenRejected}, and that fresh token is not
 *   thrown away by another 401 within `rejectionHold` (30 s). 403 is never retried.
 * - Transient faults (transport errors, timeouts, and the statuses of `TokenError.isTransientStatus`) are retried
 *   with jittered exponential backoff that honours `Retry-After`. Stream bodies are never replayed; POST and PATCH
 *   are retried only with `retryNonIdempotent`.
 * - Redirects (`followRedirects`) are followed here: the token goes only to bound origins, and the caller's own
 *   `Authorization`, `Proxy-Authorization` and `Cookie` never leave the origin they were set for. Do not wrap the
 *   client in platform's `HttpClient.followRedirects`, which keeps every header.
 * - Fails closed: when no token can be had, nothing is sent and the caller gets the `TokenError`.
 *
 * @since 0.1.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import type * as HttpClientError from "@effect/platform/HttpClientError"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { dual } from "effect/Function"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import type * as Backoff from "./Backoff.js"
import * as ClientAuth from "./ClientAuth.js"
import * as ClientCredentials from "./ClientCredentials.js"
import * as Discovery from "./Discovery.js"
import * as DPoP from "./DPoP.js"
import * as internal from "./internal/authHttpClient.js"
import {
  Held,
  NonceRefused,
  NotReplayable,
  RejectedAfterRetry,
  TokenRejected,
  TokenRejectedReason
} from "./internal/tokenRejected.js"
import * as TokenCache from "./TokenCache.js"
import type * as TokenError from "./TokenError.js"
import type * as TokenManager from "./TokenManager.js"
import type * as TokenSource from "./TokenSource.js"

/**
 * The API rejected the token (HTTP 401), and why the call ends there: its `reason` is `RejectedAfterRetry` (a fresh
 * token was rejected too), `Held`, `NotReplayable` or `NonceRefused` (not retried). Its tag does not collide with
 * platform's `HttpApiError.Unauthorized`. Defined in `internal/tokenRejected.ts` (see there for its fields), so that
 * the implementation raises it without a cycle.
 *
 * @since 0.1.0
 * @category errors
 */
export { Held, NonceRefused, NotReplayable, RejectedAfterRetry, TokenRejected, TokenRejectedReason }

/**
 * The errors the authentication adds to a client's own.
 *
 * @since 0.1.0
 * @category errors
 */
export type AuthError = TokenError.TokenError | TokenRejected

/**
 * An authenticated client bound to one API.
 *
 * @since 0.1.0
 * @category models
 */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type -- a named type for the Tag, as platform's HttpClient
export interface AuthHttpClient extends HttpClient.HttpClient.With<HttpClientError.HttpClientError | AuthError> {}

/**
 * The application's authenticated client (one API). For several APIs, give each its own Tag:
 * `class BillingApi extends Context.Tag("BillingApi")<BillingApi, AuthHttpClient.AuthHttpClient>() {}` and pass
 * it as `tag` to the layer functions.
 *
 * @since 0.1.0
 * @category tags
 */
export const AuthHttpClient: Context.Tag<AuthHttpClient, AuthHttpClient> = Context.GenericTag<AuthHttpClient>(
  "@effect-token/core/AuthHttpClient"
)

/**
 * Where the token may go: a base URL (its origin; relative request URLs resolve against it), or a non-empty list
 * of origins, or both.
 *
 * @since 0.1.0
 * @category models
 */
export type Binding =
  | {
    readonly baseUrl: string | URL
    readonly origins?: ReadonlyArray<string | URL> | undefined
  }
  | {
    readonly baseUrl?: undefined
    readonly origins: readonly [string | URL, ...Array<string | URL>]
  }

/**
 * How the client behaves on 401s, transient faults and redirects.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /**
   * Retry of transient faults: backoff settings (base 100 ms, factor 2, cap 10 s, 3 retries, `Retry-After` up to
   * 60 s by default), or `false` to turn it off.
   */
  readonly transientRetry?: Omit<Backoff.Options<unknown>, "isTransient" | "retryAfter"> | false | undefined
  /** Also retry POST and PATCH on transient faults. Default false. */
  readonly retryNonIdempotent?: boolean | undefined
  /**
   * Time allowed for each attempt (until the answer's headers), after which it fails as a transient `Transport`
   * error. Default 30 seconds ({@link defaultTimeout}); `Duration.infinity` turns it off.
   */
  readonly timeout?: Duration.DurationInput | undefined
  /**
   * After a 401 threw a token away and the retry's fresh token was rejected too, that fresh token is not thrown away
   * by another 401 for this long: such a call fails with `TokenRejected` at once (`retried: false`), without a token
   * request. One endpoint that rejects every token then costs the authorization server one token request per this
   * time, not one per call, and cannot get the other endpoints on the same cache rate-limited. A fresh token whose
   * retry succeeded is not held (a revocation of it is recovered as usual). Default 30 seconds; 0 turns it off.
   */
  readonly rejectionHold?: Duration.DurationInput | undefined
  /** Follow up to this many redirects (see the module's rules). Default 0: a 3xx is returned as it is. */
  readonly followRedirects?: number | undefined
  /**
   * The DPoP key the tokens are bound to. Default: the key of the `tokens` (`TokenCache.dpop`, `TokenManager.dpop`:
   * the grant's), so it is given once, to the grant. A `DPoP` token is then sent as
   * `Authorization: DPoP <token>` with a fresh proof (with `ath`) on every attempt, and a 401 `use_dpop_nonce` is
   * retried once with the server's nonce and the same token. Without a key a `DPoP` token is refused with
   * `Misconfigured`: sent without a proof, every resource server would reject it.
   */
  readonly dpop?: DPoP.DPoPKey | undefined
}

/**
 * The time allowed for each attempt by default (`timeout`): 30 seconds.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultTimeout: Duration.Duration = internal.defaultTimeout

/**
 * How long a token fetched after a 401 is kept whatever 401s it gets, by default (`rejectionHold`): 30 seconds.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultRejectionHold: Duration.Duration = internal.defaultRejectionHold

/**
 * Where tokens come from: one `TokenCache`, or a `TokenManager` keyed by token shape (which also serves requests
 * that ask for other token parameters with {@link withTokenParams}).
 *
 * @since 0.1.0
 * @category models
 */
export type Tokens = TokenCache.TokenCache | TokenManager.TokenManager<TokenSource.TokenShape>

/**
 * @since 0.1.0
 * @category models
 */
export type AuthenticateOptions = Binding & Options & { readonly tokens: Tokens }

/**
 * Requests through the returned client ask for a token with other parameters (scope, resource, audience, extra
 * parameters), on top of the manager's own. The client must be authenticated with a `TokenManager`: a single
 * `TokenCache` holds one token shape, so it fails such a request with `Misconfigured` rather than send the wrong
 * token.
 *
 * @example
 * ```ts
 * import { AuthHttpClient } from "@effect-token/core"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const api = yield* AuthHttpClient.AuthHttpClient
 *   const admin = api.pipe(AuthHttpClient.withTokenParams({ scope: "orders:admin" }))
 *   return yield* admin.del("/orders/42")
 * })
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const withTokenParams: {
  (params: TokenSource.TokenShape): <E, R>(self: HttpClient.HttpClient.With<E, R>) => HttpClient.HttpClient.With<E, R>
  <E, R>(self: HttpClient.HttpClient.With<E, R>, params: TokenSource.TokenShape): HttpClient.HttpClient.With<E, R>
} = dual(
  2,
  <E, R>(self: HttpClient.HttpClient.With<E, R>, params: TokenSource.TokenShape): HttpClient.HttpClient.With<E, R> =>
    HttpClient.transform(self, (effect) => Effect.locally(effect, internal.currentTokenParams, params))
)

/**
 * Wraps `self` so that requests to the bound API carry a token from `tokens`. A `dual` combinator: its error
 * channel keeps the client's own errors and adds `TokenError` and {@link TokenRejected}, so `Effect.catchTag` works
 * on each.
 *
 * @example
 * ```ts
 * import { AuthHttpClient, TokenCache } from "@effect-token/core"
 * import { HttpClient } from "@effect/platform"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const api = (yield* HttpClient.HttpClient).pipe(
 *     AuthHttpClient.authenticate({ baseUrl: "https://api.example.com", tokens: yield* TokenCache.TokenCache })
 *   )
 *   const response = yield* api.get("/invoices")
 *   return yield* response.json
 * }).pipe(
 *   Effect.catchTag("TokenError", (error) => Effect.logError(error.message)),
 *   Effect.catchTag("TokenRejected", (error) => Effect.logError(error.message))
 * )
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const authenticate: {
  (
    options: AuthenticateOptions
  ): <E, R>(
    self: HttpClient.HttpClient.With<E, R>
  ) => HttpClient.HttpClient.With<E | HttpClientError.RequestError | AuthError, R>
  <E, R>(
    self: HttpClient.HttpClient.With<E, R>,
    options: AuthenticateOptions
  ): HttpClient.HttpClient.With<E | HttpClientError.RequestError | AuthError, R>
} = dual(2, internal.authenticate)

/**
 * Builds the authenticated client over the `HttpClient` in context.
 *
 * @example
 * ```ts
 * import { AuthHttpClient, TokenCache } from "@effect-token/core"
 * import { Context, Effect, Layer } from "effect"
 *
 * class BillingApi extends Context.Tag("BillingApi")<BillingApi, AuthHttpClient.AuthHttpClient>() {}
 *
 * const BillingApiLive = Layer.effect(
 *   BillingApi,
 *   Effect.flatMap(TokenCache.TokenCache, (tokens) =>
 *     AuthHttpClient.make({ baseUrl: "https://billing.example.com/v2", tokens }))
 * )
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: AuthenticateOptions): Effect.Effect<AuthHttpClient, never, HttpClient.HttpClient> =>
  Effect.map(HttpClient.HttpClient, (client) => authenticate(client, options))

/**
 * Provides an authenticated client (under {@link AuthHttpClient}, or `tag`) over the `TokenCache` and `HttpClient`
 * in context: the composition for those who build the source and the cache themselves.
 *
 * @example
 * ```ts
 * import { AuthHttpClient, ClientCredentials, TokenCache } from "@effect-token/core"
 * import { NodeHttpClient } from "@effect/platform-node"
 * import { Layer } from "effect"
 *
 * const ApiLive = AuthHttpClient.layer({ baseUrl: "https://api.example.com" }).pipe(
 *   Layer.provide(TokenCache.layer({ skew: "10 seconds" })),
 *   Layer.provide(ClientCredentials.layerConfig()),
 *   Layer.provide(NodeHttpClient.layerUndici)
 * )
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export function layer(
  options: Binding & Options & { readonly tag?: undefined }
): Layer.Layer<AuthHttpClient, never, HttpClient.HttpClient | TokenCache.TokenCache>
export function layer<I>(
  options: Binding & Options & { readonly tag: Context.Tag<I, AuthHttpClient> }
): Layer.Layer<I, never, HttpClient.HttpClient | TokenCache.TokenCache>
export function layer<I>(
  options: Binding & Options & { readonly tag?: Context.Tag<I, AuthHttpClient> | undefined }
):
  | Layer.Layer<I, never, HttpClient.HttpClient | TokenCache.TokenCache>
  | Layer.Layer<AuthHttpClient, never, HttpClient.HttpClient | TokenCache.TokenCache>
{
  const client = Effect.flatMap(TokenCache.TokenCache, (tokens) => make({ ...options, tokens } as AuthenticateOptions))
  return options.tag === undefined ? Layer.effect(AuthHttpClient, client) : Layer.effect(options.tag, client)
}

/**
 * Everything the one-layer set-up needs: the API, the authorization server, the client and the token it asks for.
 *
 * @since 0.1.0
 * @category models
 */
export type ClientCredentialsOptions =
  & Binding
  & Omit<Options, "dpop">
  & TokenSource.TokenShape
  & TokenCache.Options
  & {
    /** The token endpoint, or the issuer whose discovery document names it. */
    readonly authorizationServer: { readonly tokenUrl: string | URL } | { readonly issuer: string }
    readonly clientAuth: ClientAuth.ClientAuth
    /** Time allowed for each request to the token endpoint. Default 10 s. */
    readonly attemptTimeout?: Duration.DurationInput | undefined
    /**
     * DPoP (RFC 9449): `true` binds the tokens to an ES256 key generated when the layer is built (one key per
     * instance, as long-lived as its tokens), or give a key. Default: bearer tokens.
     */
    readonly dpop?: DPoP.DPoPKey | boolean | undefined
  }

/**
 * One layer to start: client credentials, a token cache and the authenticated client bound to the API, over the
 * `HttpClient` in context (the transport: `NodeHttpClient.layerUndici`, `FetchHttpClient.layer`, ...).
 *
 * @example
 * ```ts
 * import { AuthHttpClient, ClientAuth } from "@effect-token/core"
 * import { NodeHttpClient } from "@effect/platform-node"
 * import { Layer, Redacted } from "effect"
 *
 * const ApiLive = AuthHttpClient.layerClientCredentials({
 *   baseUrl: "https://api.example.com",
 *   authorizationServer: { issuer: "https://auth.example.com" },
 *   clientAuth: ClientAuth.clientSecretBasic({ clientId: "billing", clientSecret: Redacted.make("s3cr3t") }),
 *   scope: "invoices:read"
 * }).pipe(Layer.provide(NodeHttpClient.layerUndici))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export function layerClientCredentials(
  options: ClientCredentialsOptions & { readonly tag?: undefined }
): Layer.Layer<AuthHttpClient, never, HttpClient.HttpClient>
export function layerClientCredentials<I>(
  options: ClientCredentialsOptions & { readonly tag: Context.Tag<I, AuthHttpClient> }
): Layer.Layer<I, never, HttpClient.HttpClient>
export function layerClientCredentials<I>(
  options: ClientCredentialsOptions & { readonly tag?: Context.Tag<I, AuthHttpClient> | undefined }
): Layer.Layer<I, never, HttpClient.HttpClient> | Layer.Layer<AuthHttpClient, never, HttpClient.HttpClient> {
  const client = oneLayerClient(options)
  return options.tag === undefined ? Layer.scoped(AuthHttpClient, client) : Layer.scoped(options.tag, client)
}

/** The one-layer set-up's client: its source, cache and DPoP key, in the layer's scope. */
const oneLayerClient = (
  options: ClientCredentialsOptions
): Effect.Effect<AuthHttpClient, never, HttpClient.HttpClient | Scope.Scope> =>
  Effect.gen(function*() {
    const key = options.dpop === true
      ? yield* Effect.orDie(DPoP.generate())
      : options.dpop === false
      ? undefined
      : options.dpop
    const server = options.authorizationServer
    const tokenUrl = "issuer" in server ? yield* Discovery.make({ issuer: server.issuer }) : server.tokenUrl
    const source = yield* ClientCredentials.make({
      tokenUrl,
      clientAuth: options.clientAuth,
      scope: options.scope,
      resource: options.resource,
      audience: options.audience,
      extraParams: options.extraParams,
      attemptTimeout: options.attemptTimeout,
      defaultLifetime: options.defaultLifetime,
      dpop: key
    })
    const tokens = yield* TokenCache.make(source, options)
    return yield* make({ ...options, dpop: key, tokens } as AuthenticateOptions)
  })

/**
 * The one-layer set-up read from configuration: `API_URL` (the API's base URL), `TOKEN_URL` or `ISSUER`, the client
 * (`CLIENT_ID`, `CLIENT_SECRET`, and the other settings of `ClientAuth.config`), and optional `SCOPE`, `AUDIENCE`,
 * `RESOURCE`, `ATTEMPT_TIMEOUT` (each request to the token endpoint, default 10 s), `ACQUIRE_TIMEOUT` (a caller's
 * whole wait for a token, retries included, default 30 s), `REQUEST_TIMEOUT` (each attempt of a request to the API,
 * default 30 s) and `DPOP` (`true`: DPoP-bound tokens with a generated key; default false). Use `Config.nested` for
 * a prefix.
 *
 * @example
 * ```ts
 * import { AuthHttpClient } from "@effect-token/core"
 * import { Config } from "effect"
 *
 * // reads BILLING_API_URL, BILLING_ISSUER, BILLING_CLIENT_ID, BILLING_CLIENT_SECRET, ...
 * const billing = Config.nested(AuthHttpClient.config, "BILLING")
 * ```
 *
 * @since 0.1.0
 * @category config
 */
export const config: Config.Config<ClientCredentialsOptions> = Config.all({
  baseUrl: Config.url("API_URL"),
  tokenUrl: Config.option(Config.url("TOKEN_URL")),
  issuer: Config.option(Config.nonEmptyString("ISSUER")),
  clientAuth: ClientAuth.config,
  scope: Config.option(Config.string("SCOPE")),
  audience: Config.option(Config.string("AUDIENCE")),
  resource: Config.option(Config.string("RESOURCE")),
  attemptTimeout: Config.option(Config.duration("ATTEMPT_TIMEOUT")),
  acquireTimeout: Config.option(Config.duration("ACQUIRE_TIMEOUT")),
  timeout: Config.option(Config.duration("REQUEST_TIMEOUT")),
  dpop: DPoP.enabledConfig
}).pipe(
  Config.validate({
    message: "exactly one of TOKEN_URL and ISSUER is required",
    validation: (c) => Option.isSome(c.tokenUrl) !== Option.isSome(c.issuer)
  }),
  Config.map((c): ClientCredentialsOptions => ({
    baseUrl: c.baseUrl,
    authorizationServer: Option.isSome(c.tokenUrl)
      ? { tokenUrl: c.tokenUrl.value }
      : { issuer: Option.getOrThrow(c.issuer) },
    clientAuth: c.clientAuth,
    scope: Option.getOrUndefined(c.scope),
    audience: Option.getOrUndefined(c.audience),
    resource: Option.getOrUndefined(c.resource),
    attemptTimeout: Option.getOrUndefined(c.attemptTimeout),
    acquireTimeout: Option.getOrUndefined(c.acquireTimeout),
    timeout: Option.getOrUndefined(c.timeout),
    dpop: c.dpop
  }))
)

/**
 * What {@link layerConfig} takes besides the Tag: where the settings come from, and code-level options that
 * configuration cannot express (a retry schedule, a name, a DPoP key, a per-API timeout, ...), applied over them.
 *
 * @since 0.2.0
 * @category models
 */
export interface LayerConfigOptions {
  /** Default {@link config}; `Config.nested(AuthHttpClient.config, "BILLING")` for a prefix. */
  readonly config?: Config.Config<ClientCredentialsOptions> | undefined
  /** Applied over what was read (no cast needed); the API's binding comes from configuration. */
  readonly options?: Partial<Omit<ClientCredentialsOptions, "baseUrl" | "origins">> | undefined
}

/**
 * Provides the one-layer set-up from configuration (see {@link config}), under {@link AuthHttpClient} or `tag`.
 *
 * @example
 * ```ts
 * import { AuthHttpClient } from "@effect-token/core"
 * import { NodeHttpClient } from "@effect/platform-node"
 * import { Layer } from "effect"
 *
 * // Reads API_URL, TOKEN_URL (or ISSUER), CLIENT_ID, CLIENT_SECRET and SCOPE.
 * const ApiLive = AuthHttpClient.layerConfig().pipe(Layer.provide(NodeHttpClient.layerUndici))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export function layerConfig(
  options?: LayerConfigOptions & { readonly tag?: undefined }
): Layer.Layer<AuthHttpClient, ConfigError.ConfigError, HttpClient.HttpClient>
export function layerConfig<I>(
  options: LayerConfigOptions & { readonly tag: Context.Tag<I, AuthHttpClient> }
): Layer.Layer<I, ConfigError.ConfigError, HttpClient.HttpClient>
export function layerConfig<I>(
  options: LayerConfigOptions & { readonly tag?: Context.Tag<I, AuthHttpClient> | undefined } = {}
):
  | Layer.Layer<I, ConfigError.ConfigError, HttpClient.HttpClient>
  | Layer.Layer<AuthHttpClient, ConfigError.ConfigError, HttpClient.HttpClient>
{
  const overrides = options.options ?? {}
  const settings = Config.map(options.config ?? config, (read): ClientCredentialsOptions => ({ ...read, ...overrides }))
  const tag = options.tag
  return tag === undefined
    ? Layer.unwrapEffect(Effect.map(settings, (s) => layerClientCredentials({ ...s, tag: undefined })))
    : Layer.unwrapEffect(Effect.map(settings, (s) => layerClientCredentials({ ...s, tag })))
}
