/**
 * The client credentials grant (RFC 6749 §4.4): a service acting on its own behalf.
 *
 * @since 0.1.0
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import type * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as grant from "./internal/grant.js"
import * as TokenSource from "./TokenSource.js"

/**
 * @example
 * ```ts
 * import { ClientAuth, ClientCredentials } from "@effect-token/core"
 * import { Redacted } from "effect"
 *
 * const options: ClientCredentials.Options = {
 *   tokenUrl: "https://auth.example.com/oauth/token",
 *   clientAuth: ClientAuth.clientSecretBasic({ clientId: "billing", clientSecret: Redacted.make("s3cr3t") }),
 *   scope: "invoices:read"
 * }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Options extends TokenSource.EndpointOptions, TokenSource.TokenShape {}

/**
 * A client-credentials `TokenSource`, sending its requests with the `HttpClient` in context.
 *
 * @example
 * ```ts
 * import { ClientAuth, ClientCredentials } from "@effect-token/core"
 * import { NodeHttpClient } from "@effect/platform-node"
 * import { Effect, Redacted } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const source = yield* ClientCredentials.make({
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
export const make = (options: Options): Effect.Effect<TokenSource.TokenSource, never, HttpClient.HttpClient> =>
  Effect.map(grant.requester(options), (request) => {
    // Built once: every fetch sends the same parameters.
    const params = grant.grantForm({ grant_type: "client_credentials" }, options)
    return TokenSource.make({
      key: grant.keyOf("client_credentials", options, options),
      fetch: request(params),
      dpop: options.dpop
    })
  })

/**
 * Provides {@link make} as the default `TokenSource`.
 *
 * @example
 * ```ts
 * import { ClientAuth, ClientCredentials } from "@effect-token/core"
 * import { NodeHttpClient } from "@effect/platform-node"
 * import { Layer, Redacted } from "effect"
 *
 * const SourceLive = ClientCredentials.layer({
 *   tokenUrl: "https://auth.example.com/oauth/token",
 *   clientAuth: ClientAuth.clientSecretBasic({ clientId: "billing", clientSecret: Redacted.make("s3cr3t") })
 * }).pipe(Layer.provide(NodeHttpClient.layerUndici))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<TokenSource.TokenSource, never, HttpClient.HttpClient> =>
  Layer.effect(TokenSource.TokenSource, make(options))

/**
 * Client-credentials settings read from configuration, as every grant reads them: `TOKEN_URL`, the client (see
 * `ClientAuth.config`: `CLIENT_ID`, `CLIENT_AUTH_METHOD` = `client_secret_basic` (default), `client_secret_post`,
 * `private_key_jwt` or `none`, with `CLIENT_SECRET` or `CLIENT_PRIVATE_KEY` as the method needs), and optional
 * `SCOPE`, `AUDIENCE`, `RESOURCE`, `ATTEMPT_TIMEOUT` (each request to the token endpoint, e.g. `5 seconds`). Use
 * `Config.nested` for a prefix.
 *
 * @example
 * ```ts
 * import { ClientCredentials } from "@effect-token/core"
 * import { Config } from "effect"
 *
 * // reads BILLING_TOKEN_URL, BILLING_CLIENT_ID, BILLING_CLIENT_AUTH_METHOD, BILLING_CLIENT_PRIVATE_KEY, ...
 * const billing = Config.nested(ClientCredentials.config, "BILLING")
 * ```
 *
 * @since 0.1.0
 * @category config
 */
export const config: Config.Config<Options> = grant.grantConfig

/**
 * Provides a client-credentials `TokenSource` from configuration (see {@link config}).
 *
 * @example
 * ```ts
 * import { ClientCredentials } from "@effect-token/core"
 * import { NodeHttpClient } from "@effect/platform-node"
 * import { Config, Layer } from "effect"
 *
 * const SourceLive = ClientCredentials.layerConfig().pipe(Layer.provide(NodeHttpClient.layerUndici))
 * const BillingLive = ClientCredentials.layerConfig(Config.nested(ClientCredentials.config, "BILLING"))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  settings: Config.Config<Options> = config
): Layer.Layer<TokenSource.TokenSource, ConfigError.ConfigError, HttpClient.HttpClient> =>
  Layer.effect(TokenSource.TokenSource, Effect.flatMap(settings, make))
