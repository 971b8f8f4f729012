/**
 * Where tokens come from: a grant against a token endpoint, or anything a user writes.
 *
 * A source only fetches; caching, single flight and refresh-ahead belong to `TokenCache`.
 *
 * @since 0.1.0
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as AccessToken from "./AccessToken.js"
import * as ClientAuth from "./ClientAuth.js"
import * as TokenEndpoint from "./TokenEndpoint.js"
import type { TokenError } from "./TokenError.js"

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
}

/**
 * The default source of an application.
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
}): TokenSource => ({ key: options.key, fetch: options.fetch })

/**
 * What every grant against a token endpoint needs.
 *
 * @since 0.1.0
 * @category models
 */
export interface EndpointOptions {
  readonly tokenUrl: string | URL
  readonly clientAuth: ClientAuth.ClientAuth
  readonly timeout?: Duration.DurationInput | undefined
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
  /** The `audience` parameter many servers (Auth0, Okta, Keycloak token exchange) use. */
  readonly audience?: string | undefined
  /** Any other parameter the server wants; part of the cache key. */
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
  const resources = shape.resource === undefined
    ? []
    : typeof shape.resource === "string"
    ? [shape.resource]
    : shape.resource
  for (const resource of resources) params.push(["resource", resource])
  if (shape.audience !== undefined) params.push(["audience", shape.audience])
  for (const key of Object.keys(shape.extraParams ?? {}).sort()) params.push([key, shape.extraParams![key]!])
  return params
}

/**
 * A cache key from non-secret parts. JSON keeps parts with separators in them from colliding.
 *
 * @since 0.1.0
 * @category internal
 */
export const keyOf = (grant: string, endpoint: EndpointOptions, shape: TokenShape, ...more: Array<string>): string =>
  JSON.stringify([grant, endpoint.tokenUrl.toString(), endpoint.clientAuth.clientId, shapeParams(shape), ...more])

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
  Effect.map(TokenEndpoint.make(options), (endpoint) => {
    // Built once: every fetch sends the same parameters.
    const params = Object.fromEntries([["grant_type", "client_credentials"], ...shapeParams(options)])
    return make({ key: keyOf("client_credentials", options, options), fetch: endpoint.request(params) })
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

/**
 * Client-credentials settings read from configuration:
 * `TOKEN_URL`, `CLIENT_ID`, `CLIENT_SECRET` (redacted), `CLIENT_AUTH_METHOD` (`client_secret_basic` by default, or
 * `client_secret_post`), and optional `SCOPE`, `AUDIENCE`, `RESOURCE`, `TIMEOUT` (e.g. `5 seconds`). Use
 * `Config.nested` for a prefix.
 *
 * @example
 * ```ts
 * import { TokenSource } from "@effect-token/core"
 * import { Config } from "effect"
 *
 * // reads BILLING_TOKEN_URL, BILLING_CLIENT_ID, BILLING_CLIENT_SECRET, ...
 * const billing = Config.nested(TokenSource.clientCredentialsConfig, "BILLING")
 * ```
 *
 * @since 0.1.0
 * @category config
 */
export const clientCredentialsConfig: Config.Config<ClientCredentialsOptions> = Config.all({
  tokenUrl: Config.url("TOKEN_URL"),
  clientId: Config.nonEmptyString("CLIENT_ID"),
  clientSecret: Config.redacted("CLIENT_SECRET"),
  authMethod: Config.literal("client_secret_basic", "client_secret_post")("CLIENT_AUTH_METHOD").pipe(
    Config.withDefault("client_secret_basic" as const)
  ),
  scope: Config.option(Config.string("SCOPE")),
  audience: Config.option(Config.string("AUDIENCE")),
  resource: Config.option(Config.string("RESOURCE")),
  timeout: Config.option(Config.duration("TIMEOUT"))
}).pipe(Config.map((c): ClientCredentialsOptions => {
  const client = { clientId: c.clientId, clientSecret: c.clientSecret }
  return {
    tokenUrl: c.tokenUrl,
    clientAuth: c.authMethod === "client_secret_post"
      ? ClientAuth.clientSecretPost(client)
      : ClientAuth.clientSecretBasic(client),
    scope: c.scope._tag === "Some" ? c.scope.value : undefined,
    audience: c.audience._tag === "Some" ? c.audience.value : undefined,
    resource: c.resource._tag === "Some" ? c.resource.value : undefined,
    timeout: c.timeout._tag === "Some" ? c.timeout.value : undefined
  }
}))

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
