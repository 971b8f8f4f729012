/**
 * Token revocation (RFC 7009): tells the authorization server a token is no longer needed, e.g. at logout.
 *
 * @since 0.1.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as DateTime from "effect/DateTime"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import * as AccessToken from "./AccessToken.js"
import * as ClientAuth from "./ClientAuth.js"
import * as Discovery from "./Discovery.js"
import * as internal from "./internal/endpoint.js"
import { secretsOf } from "./internal/serverText.js"
import * as TokenCache from "./TokenCache.js"
import type { TokenError } from "./TokenError.js"

/**
 * RFC 7009 §2.1 `token_type_hint`: helps the server find the token faster; it searches the other kind too.
 *
 * @since 0.1.0
 * @category models
 */
export type TokenTypeHint = "access_token" | "refresh_token"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The revocation endpoint, or a `Discovery` whose `revocation_endpoint` is used. */
  readonly revocationUrl: string | URL | Discovery.Discovery
  /**
   * How the client authenticates, as at the token endpoint. With `private_key_jwt` the assertion's audience is the
   * revocation URL unless the key's `audience` option says otherwise (some servers want their issuer).
   */
  readonly clientAuth: ClientAuth.ClientAuth
  /** Time allowed for the request. Default 10 seconds. */
  readonly timeout?: Duration.DurationInput | undefined
  /**
   * The largest answer read, in bytes, counted after decompression (default 1 MiB). A larger answer is a
   * `MalformedResponse` naming the cap, and is not retried.
   */
  readonly maxResponseBytes?: number | undefined
}

/**
 * A revocation endpoint bound to a client.
 *
 * @since 0.1.0
 * @category models
 */
export interface Revocation {
  /**
   * Revokes `token`. Succeeds when the server answers 200, which RFC 7009 §2.2 also requires for a token that was
   * already invalid or unknown: revoking twice is not an error.
   */
  readonly revoke: (
    token: Redacted.Redacted<string>,
    tokenTypeHint?: TokenTypeHint | undefined
  ) => Effect.Effect<void, TokenError>
  /** Revokes an access token (hint `access_token`). */
  readonly revokeAccessToken: (token: AccessToken.AccessToken) => Effect.Effect<void, TokenError>
  /** Revokes a refresh token (hint `refresh_token`); servers also drop the access tokens issued with it. */
  readonly revokeRefreshToken: (token: Redacted.Redacted<string>) => Effect.Effect<void, TokenError>
}

/**
 * The application's revocation endpoint.
 *
 * @example
 * ```ts
 * import { RefreshTokenStore, Revocation } from "@effect-token/core"
 * import { Effect, Option } from "effect"
 *
 * const logout = Effect.gen(function*() {
 *   const store = yield* RefreshTokenStore.RefreshTokenStore
 *   const revocation = yield* Revocation.Revocation
 *   const current = yield* store.get
 *   if (Option.isSome(current)) yield* revocation.revokeRefreshToken(current.value)
 *   yield* store.clear
 * })
 * ```
 *
 * @since 0.1.0
 * @category tags
 */
export const Revocation: Context.Tag<Revocation, Revocation> = Context.GenericTag<Revocation>(
  "@effect-token/core/Revocation"
)

const operation = "token revocation"

/**
 * Like {@link make}, with an explicit `HttpClient`.
 *
 * @example
 * ```ts
 * import { ClientAuth, Revocation } from "@effect-token/core"
 * import { HttpClient } from "@effect/platform"
 *
 * declare const client: HttpClient.HttpClient
 * const revocation = Revocation.makeWith(client, {
 *   revocationUrl: "https://auth.example.com/oauth/revoke",
 *   clientAuth: ClientAuth.none({ clientId: "cli" })
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeWith = (client: HttpClient.HttpClient, options: Options): Revocation => {
  const timeout = Duration.decode(options.timeout ?? Duration.seconds(10))
  const revocationUrl = options.revocationUrl
  const url: Effect.Effect<string, TokenError> = Discovery.isDiscovery(revocationUrl)
    ? revocationUrl.revocationEndpoint
    : Effect.succeed(revocationUrl.toString())

  const revoke = (token: Redacted.Redacted<string>, tokenTypeHint?: TokenTypeHint | undefined) =>
    Effect.gen(function*() {
      const endpoint = yield* url
      const credentials = yield* ClientAuth.credentials(options.clientAuth, endpoint)
      const request = internal.formPost(endpoint, { token, token_type_hint: tokenTypeHint }, credentials)
      const exchange = yield* internal.execute(client, request, {
        operation,
        timeout,
        endpoint: "revocation endpoint",
        secrets: secretsOf({ token }, credentials),
        maxResponseBytes: options.maxResponseBytes ?? internal.defaultMaxResponseBytes
      })
      const status = exchange.response.status
      if (status < 200 || status >= 300) return yield* internal.failure(exchange, operation)
    }).pipe(
      Effect.withSpan("effect-token/Revocation.revoke", {
        kind: "client",
        attributes: {
          "oauth.client_id": options.clientAuth.clientId,
          "oauth.token_type_hint": tokenTypeHint ?? "none"
        }
      })
    )

  return {
    revoke,
    revokeAccessToken: (token) => revoke(token.value, "access_token"),
    revokeRefreshToken: (token) => revoke(token, "refresh_token")
  }
}

/**
 * Where a revoked access token may still be cached: a `TokenCache` as it is, or one key of a `TokenManager` as
 * `{ invalidate: (token) => manager.invalidate(params, token) }`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Holder {
  readonly invalidate: (token: AccessToken.AccessToken) => Effect.Effect<boolean>
}

/**
 * `revocation`, made to forget what it revokes: an access token revoked through the result is first cleared from
 * `holder` (compare-and-clear, so only that token goes), so that no caller is handed a token the server no longer
 * honours. The token is forgotten before the request, and even when revocation fails: a token the application wants
 * dead is not worth serving. Refresh tokens are not cached here; clear them from their `RefreshTokenStore`.
 *
 * @example
 * ```ts
 * import { Revocation, TokenCache } from "@effect-token/core"
 * import { Effect } from "effect"
 *
 * const revokeCurrent = Effect.gen(function*() {
 *   const cache = yield* TokenCache.TokenCache
 *   const revocation = Revocation.forgetting(yield* Revocation.Revocation, cache)
 *   yield* revocation.revokeAccessToken(yield* cache.get) // the next cache.get fetches a new token
 * })
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const forgetting = (revocation: Revocation, holder: Holder): Revocation => {
  const forget = (token: AccessToken.AccessToken) => Effect.asVoid(holder.invalidate(token))
  return {
    revoke: (token, tokenTypeHint) =>
      tokenTypeHint === "refresh_token"
        ? revocation.revoke(token, tokenTypeHint)
        : Effect.zipRight(
          // Only the value is compared (`AccessToken.sameValue`); the other fields of this stand-in do not matter.
          forget(AccessToken.make({ value: token, issuedAt: DateTime.unsafeMake(0) })),
          revocation.revoke(token, tokenTypeHint)
        ),
    revokeAccessToken: (token) => Effect.zipRight(forget(token), revocation.revokeAccessToken(token)),
    revokeRefreshToken: revocation.revokeRefreshToken
  }
}

/**
 * A revocation endpoint bound to a client, using the `HttpClient` in context. When a `TokenCache` is in context too
 * (the application's default cache), an access token revoked through it is forgotten there first
 * ({@link forgetting}): the next `get` fetches a new token instead of handing out the revoked one. A `TokenManager`'s
 * keys are not known here: use {@link forgetting} with the key's holder.
 *
 * @example
 * ```ts
 * import { ClientAuth, Revocation } from "@effect-token/core"
 * import { Effect, Redacted } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const revocation = yield* Revocation.make({
 *     revocationUrl: "https://auth.example.com/oauth/revoke",
 *     clientAuth: ClientAuth.clientSecretBasic({ clientId: "web", clientSecret: Redacted.make("s3cr3t") })
 *   })
 *   yield* revocation.revokeRefreshToken(Redacted.make("the-refresh-token"))
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<Revocation, never, HttpClient.HttpClient> =>
  Effect.zipWith(
    HttpClient.HttpClient,
    Effect.serviceOption(TokenCache.TokenCache),
    (client, cache) => {
      const revocation = makeWith(client, options)
      return Option.isSome(cache) ? forgetting(revocation, cache.value) : revocation
    }
  )

/**
 * Revokes one token.
 *
 * @example
 * ```ts
 * import { ClientAuth, Revocation } from "@effect-token/core"
 * import { Redacted } from "effect"
 *
 * const revoked = Revocation.revoke({
 *   revocationUrl: "https://auth.example.com/oauth/revoke",
 *   clientAuth: ClientAuth.none({ clientId: "cli" }),
 *   token: Redacted.make("the-refresh-token"),
 *   tokenTypeHint: "refresh_token"
 * })
 * ```
 *
 * @since 0.1.0
 * @category revocation
 */
export const revoke = (
  options: Options & {
    readonly token: Redacted.Redacted<string>
    readonly tokenTypeHint?: TokenTypeHint | undefined
  }
): Effect.Effect<void, TokenError, HttpClient.HttpClient> =>
  Effect.flatMap(make(options), (revocation) => revocation.revoke(options.token, options.tokenTypeHint))

/**
 * Provides a {@link Revocation}.
 *
 * @example
 * ```ts
 * import { ClientAuth, Revocation } from "@effect-token/core"
 * import { Redacted } from "effect"
 *
 * const RevocationLive = Revocation.layer({
 *   revocationUrl: "https://auth.example.com/oauth/revoke",
 *   clientAuth: ClientAuth.clientSecretBasic({ clientId: "web", clientSecret: Redacted.make("s3cr3t") })
 * })
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<Revocation, never, HttpClient.HttpClient> =>
  Layer.effect(Revocation, make(options))

/**
 * Revocation settings read from configuration: `REVOCATION_URL`, the client (see `ClientAuth.config`) and optional
 * `TIMEOUT`.
 *
 * @example
 * ```ts
 * import { Revocation } from "@effect-token/core"
 * import { Config } from "effect"
 *
 * // reads WEB_REVOCATION_URL, WEB_CLIENT_ID, WEB_CLIENT_SECRET, ...
 * const settings = Config.nested(Revocation.config, "WEB")
 * ```
 *
 * @since 0.1.0
 * @category config
 */
export const config: Config.Config<Options> = Config.all({
  revocationUrl: Config.url("REVOCATION_URL"),
  clientAuth: ClientAuth.config,
  timeout: Config.option(Config.duration("TIMEOUT"))
}).pipe(Config.map((c): Options => ({ ...c, timeout: Option.getOrUndefined(c.timeout) })))

/**
 * Provides a {@link Revocation} from configuration (see {@link config}).
 *
 * @example
 * ```ts
 * import { Revocation } from "@effect-token/core"
 * import { NodeHttpClient } from "@effect/platform-node"
 * import { Layer } from "effect"
 *
 * const RevocationLive = Revocation.layerConfig().pipe(Layer.provide(NodeHttpClient.layerUndici))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  settings: Config.Config<Options> = config
): Layer.Layer<Revocation, ConfigError.ConfigError, HttpClient.HttpClient> =>
  Layer.effect(Revocation, Effect.flatMap(settings, make))
