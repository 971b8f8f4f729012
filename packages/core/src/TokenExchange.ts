/**
 * OAuth 2.0 Token Exchange (RFC 8693): trades a subject token (and optionally an actor token) for a token for
 * another audience, e.g. a service calling a downstream API on behalf of its caller.
 *
 * @since 0.1.0
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as grant from "./internal/grant.js"
import { accessTokenType } from "./internal/tokenResponse.js"
import type { TokenError } from "./TokenError.js"
import * as TokenSource from "./TokenSource.js"

/**
 * Token type identifiers of RFC 8693 §3, for `subjectTokenType`, `requestedTokenType` and `issuedTokenType`.
 *
 * @example
 * ```ts
 * import { TokenExchange } from "@effect-token/core"
 *
 * TokenExchange.TokenTypes.idToken // "urn:ietf:params:oauth:token-type:id_token"
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
 * @example
 * ```ts
 * import { TokenExchange } from "@effect-token/core"
 * import { Redacted } from "effect"
 *
 * const subject: TokenExchange.TokenInput = Redacted.make("eyJ...")
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export type TokenInput =
  | TokenSource.TokenSource
  | Effect.Effect<Redacted.Redacted<string>, TokenError>
  | Redacted.Redacted<string>

/**
 * Token exchange settings apart from the tokens themselves (what configuration can hold).
 *
 * @example
 * ```ts
 * import { ClientAuth, TokenExchange } from "@effect-token/core"
 *
 * const settings: TokenExchange.Settings = {
 *   tokenUrl: "https://auth.example.com/oauth/token",
 *   clientAuth: ClientAuth.none({ clientId: "gateway" }),
 *   audience: "orders-api",
 *   requestedTokenType: TokenExchange.TokenTypes.jwt
 * }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Settings extends TokenSource.EndpointOptions, TokenSource.TokenShape {
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
 * @example
 * ```ts
 * import { ClientAuth, TokenExchange } from "@effect-token/core"
 * import { Redacted } from "effect"
 *
 * const options: TokenExchange.Options = {
 *   tokenUrl: "https://auth.example.com/oauth/token",
 *   clientAuth: ClientAuth.none({ clientId: "gateway" }),
 *   subjectToken: Redacted.make("eyJ..."),
 *   subjectKey: "alice"
 * }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Options extends Settings {
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
 * A token exchange `TokenSource`.
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
 * import { ClientAuth, TokenExchange } from "@effect-token/core"
 * import { Effect, Redacted } from "effect"
 *
 * const onBehalfOf = (userToken: Redacted.Redacted<string>, userId: string) =>
 *   Effect.flatMap(
 *     TokenExchange.make({
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
export const make = (options: Options): Effect.Effect<TokenSource.TokenSource, never, HttpClient.HttpClient> =>
  Effect.map(grant.requester(options), (request) => {
    const subjectTokenType = options.subjectTokenType ?? TokenTypes.accessToken
    const actorTokenType = options.actorTokenType ?? TokenTypes.accessToken
    const actor = options.actorToken
    const fetch = Effect.gen(function*() {
      const subjectToken = yield* resolveToken(options.subjectToken)
      const actorToken = actor === undefined ? undefined : yield* resolveToken(actor)
      return yield* request(grant.grantForm({
        grant_type: "urn:ietf:params:oauth:grant-type:token-exchange",
        subject_token: subjectToken,
        subject_token_type: subjectTokenType,
        actor_token: actorToken,
        actor_token_type: actorToken === undefined ? undefined : actorTokenType,
        requested_token_type: options.requestedTokenType
      }, options))
    })
    const key = grant.keyOf(
      "token_exchange",
      options,
      options,
      options.requestedTokenType ?? "",
      subjectTokenType,
      inputKey(options.subjectToken, options.subjectKey),
      ...(actor === undefined ? [] : [actorTokenType, inputKey(actor, options.actorKey)])
    )
    return TokenSource.make({ key, fetch, dpop: options.dpop })
  })

/**
 * Provides {@link make} as the default `TokenSource`.
 *
 * @example
 * ```ts
 * import { ClientAuth, ClientCredentials, TokenExchange } from "@effect-token/core"
 * import { Effect, Layer, Redacted } from "effect"
 *
 * // Exchanges the app's own client-credentials token for one scoped to the orders API.
 * const SourceLive = Layer.unwrapEffect(Effect.gen(function*() {
 *   const clientAuth = ClientAuth.clientSecretBasic({ clientId: "gateway", clientSecret: Redacted.make("s3cr3t") })
 *   const tokenUrl = "https://auth.example.com/oauth/token"
 *   const own = yield* ClientCredentials.make({ tokenUrl, clientAuth })
 *   return TokenExchange.layer({ tokenUrl, clientAuth, subjectToken: own, audience: "orders-api" })
 * }))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<TokenSource.TokenSource, never, HttpClient.HttpClient> =>
  Layer.effect(TokenSource.TokenSource, make(options))

/**
 * Token exchange settings read from configuration: those of `ClientCredentials.config` plus optional
 * `SUBJECT_TOKEN_TYPE`, `ACTOR_TOKEN_TYPE` and `REQUESTED_TOKEN_TYPE`. The tokens themselves are given in code (see
 * {@link layerConfig}).
 *
 * @example
 * ```ts
 * import { TokenExchange } from "@effect-token/core"
 * import { Config } from "effect"
 *
 * // reads ORDERS_TOKEN_URL, ORDERS_CLIENT_ID, ORDERS_AUDIENCE, ORDERS_REQUESTED_TOKEN_TYPE, ...
 * const orders = Config.nested(TokenExchange.config, "ORDERS")
 * ```
 *
 * @since 0.1.0
 * @category config
 */
export const config: Config.Config<Settings> = Config.all({
  grant: grant.grantConfig,
  subjectTokenType: Config.option(Config.nonEmptyString("SUBJECT_TOKEN_TYPE")),
  actorTokenType: Config.option(Config.nonEmptyString("ACTOR_TOKEN_TYPE")),
  requestedTokenType: Config.option(Config.nonEmptyString("REQUESTED_TOKEN_TYPE"))
}).pipe(Config.map((c): Settings => ({
  ...c.grant,
  subjectTokenType: Option.getOrUndefined(c.subjectTokenType),
  actorTokenType: Option.getOrUndefined(c.actorTokenType),
  requestedTokenType: Option.getOrUndefined(c.requestedTokenType)
})))

/**
 * Provides a token exchange `TokenSource` from configuration (see {@link config}) and the tokens given here.
 *
 * @example
 * ```ts
 * import { TokenExchange } from "@effect-token/core"
 * import { Effect, Redacted } from "effect"
 *
 * declare const currentUserToken: Effect.Effect<Redacted.Redacted<string>>
 * const SourceLive = TokenExchange.layerConfig({ subjectToken: currentUserToken, subjectKey: "alice" })
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  tokens: {
    readonly subjectToken: TokenInput
    readonly actorToken?: TokenInput | undefined
    readonly subjectKey?: string | undefined
    readonly actorKey?: string | undefined
  },
  settings: Config.Config<Settings> = config
): Layer.Layer<TokenSource.TokenSource, ConfigError.ConfigError, HttpClient.HttpClient> =>
  Layer.effect(TokenSource.TokenSource, Effect.flatMap(settings, (s) => make({ ...s, ...tokens })))
