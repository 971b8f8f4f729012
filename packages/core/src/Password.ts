/**
 * The resource owner password credentials grant (RFC 6749 §4.3).
 *
 * **Legacy.** The OAuth 2.0 Security Best Current Practice (RFC 9700 §2.4) says it MUST NOT be used: the client sees
 * the user's password, and the grant cannot do multi-factor or federated login. It is here for migrating first-party
 * legacy systems and for test users; prefer the authorization code flow, or `ClientCredentials` for services.
 *
 * @since 0.1.0
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Redacted from "effect/Redacted"
import * as grant from "./internal/grant.js"
import * as TokenSource from "./TokenSource.js"

/**
 * @example
 * ```ts
 * import { ClientAuth, Password } from "@effect-token/core"
 * import { Redacted } from "effect"
 *
 * const options: Password.Options = {
 *   tokenUrl: "https://auth.example.com/oauth/token",
 *   clientAuth: ClientAuth.none({ clientId: "legacy" }),
 *   username: "batch-user",
 *   password: Redacted.make("hunter2")
 * }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Options extends TokenSource.EndpointOptions, TokenSource.TokenShape {
  readonly username: string
  readonly password: Redacted.Redacted<string>
}

/**
 * A password-grant `TokenSource`. Legacy: see the module's note. The username is part of the key; the password
 * never is.
 *
 * @example
 * ```ts
 * import { ClientAuth, Password } from "@effect-token/core"
 * import { Redacted } from "effect"
 *
 * const source = Password.make({
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
export const make = (options: Options): Effect.Effect<TokenSource.TokenSource, never, HttpClient.HttpClient> =>
  Effect.map(grant.requester(options), (request) => {
    const params = grant.grantForm(
      { grant_type: "password", username: options.username, password: options.password },
      options
    )
    return TokenSource.make({
      key: grant.keyOf("password", options, options, options.username),
      fetch: request(params),
      dpop: options.dpop
    })
  })

/**
 * Provides {@link make} as the default `TokenSource`. Legacy: see the module's note.
 *
 * @example
 * ```ts
 * import { ClientAuth, Password } from "@effect-token/core"
 * import { Redacted } from "effect"
 *
 * const SourceLive = Password.layer({
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
export const layer = (options: Options): Layer.Layer<TokenSource.TokenSource, never, HttpClient.HttpClient> =>
  Layer.effect(TokenSource.TokenSource, make(options))

/**
 * Password-grant settings read from configuration: those of `ClientCredentials.config` plus `USERNAME` and
 * `PASSWORD` (redacted). Legacy: see the module's note.
 *
 * @example
 * ```ts
 * import { Password } from "@effect-token/core"
 * import { Config } from "effect"
 *
 * // reads LEGACY_TOKEN_URL, LEGACY_CLIENT_ID, LEGACY_USERNAME, LEGACY_PASSWORD, ...
 * const legacy = Config.nested(Password.config, "LEGACY")
 * ```
 *
 * @since 0.1.0
 * @category config
 */
export const config: Config.Config<Options> = Config.all({
  grant: grant.grantConfig,
  username: Config.nonEmptyString("USERNAME"),
  password: Config.redacted("PASSWORD")
}).pipe(Config.map((c): Options => ({ ...c.grant, username: c.username, password: c.password })))

/**
 * Provides a password-grant `TokenSource` from configuration (see {@link config}).
 *
 * @example
 * ```ts
 * import { Password } from "@effect-token/core"
 * import { NodeHttpClient } from "@effect/platform-node"
 * import { Layer } from "effect"
 *
 * const SourceLive = Password.layerConfig().pipe(Layer.provide(NodeHttpClient.layerUndici))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  settings: Config.Config<Options> = config
): Layer.Layer<TokenSource.TokenSource, ConfigError.ConfigError, HttpClient.HttpClient> =>
  Layer.effect(TokenSource.TokenSource, Effect.flatMap(settings, make))
