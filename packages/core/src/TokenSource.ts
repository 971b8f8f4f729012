/**
 * Where tokens come from: the `TokenSource` interface, its default Tag, and `make` for a source of your own.
 *
 * The grants against a token endpoint are modules of their own (`ClientCredentials`, `RefreshToken`, `Password`,
 * `TokenExchange`), each with `make`, `layer`, `config` and `layerConfig`; they share the option types below. A
 * source only fetches; caching, single flight and refresh-ahead belong to `TokenCache`.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as AccessToken from "./AccessToken.js"
import type * as ClientAuth from "./ClientAuth.js"
import type * as Discovery from "./Discovery.js"
import type * as DPoP from "./DPoP.js"
import type { TokenError } from "./TokenError.js"

/**
 * A source of access tokens: a grant against a token endpoint, or anything you write with {@link make}.
 *
 * @example
 * ```ts
 * import { TokenSource } from "@effect-token/core"
 * import { Effect } from "effect"
 *
 * const twice = (source: TokenSource.TokenSource) => Effect.all([source.fetch, source.fetch])
 * ```
 *
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
  /**
   * The DPoP key its tokens are bound to (a grant given `dpop`). A cache over the source carries it, and an
   * authenticated client over that cache signs its proofs with it: the key is given once, to the grant.
   */
  readonly dpop?: DPoP.DPoPKey | undefined
}

/**
 * The default source of an application.
 *
 * Several sources in one app (two APIs, two tenants) each get their own tag; their keys differ because every
 * parameter that shapes a token is part of the key.
 *
 * @example
 * ```ts
 * import { ClientAuth, ClientCredentials, TokenSource } from "@effect-token/core"
 * import { Context, Effect, Layer, Redacted } from "effect"
 *
 * class BillingSource extends Context.Tag("BillingSource")<BillingSource, TokenSource.TokenSource>() {}
 * class ReportsSource extends Context.Tag("ReportsSource")<ReportsSource, TokenSource.TokenSource>() {}
 *
 * const clientAuth = ClientAuth.clientSecretBasic({ clientId: "app", clientSecret: Redacted.make("s3cr3t") })
 * const tokenUrl = "https://auth.example.com/oauth/token"
 * const SourcesLive = Layer.mergeAll(
 *   Layer.effect(BillingSource, ClientCredentials.make({ tokenUrl, clientAuth, audience: "billing-api" })),
 *   Layer.effect(ReportsSource, ClientCredentials.make({ tokenUrl, clientAuth, scope: "reports:read" }))
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
  readonly dpop?: DPoP.DPoPKey | undefined
}): TokenSource => ({
  key: options.key,
  fetch: options.fetch,
  ...(options.invalidate === undefined ? {} : { invalidate: options.invalidate }),
  ...(options.dpop === undefined ? {} : { dpop: options.dpop })
})

/**
 * What every grant against a token endpoint needs.
 *
 * @example
 * ```ts
 * import { ClientAuth, TokenSource } from "@effect-token/core"
 *
 * const endpoint: TokenSource.EndpointOptions = {
 *   tokenUrl: "https://auth.example.com/oauth/token",
 *   clientAuth: ClientAuth.none({ clientId: "cli" }),
 *   attemptTimeout: "5 seconds"
 * }
 * ```
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
  /**
   * The largest answer read, in bytes, counted after decompression (default 1 MiB). A larger answer is a
   * `MalformedResponse` naming the cap, and is not retried.
   */
  readonly maxResponseBytes?: number | undefined
  /**
   * Bind the tokens to this DPoP key (RFC 9449): token requests send proofs and require `token_type: DPoP`. The
   * key's thumbprint is part of the source's `key`, so a cache or a shared store never serves a token bound to
   * another key. Give the `AuthHttpClient` the same key.
   */
  readonly dpop?: DPoP.DPoPKey | undefined
}

/**
 * Parameters that shape the token, shared by the grants.
 *
 * @example
 * ```ts
 * import { TokenSource } from "@effect-token/core"
 *
 * const shape: TokenSource.TokenShape = { scope: "orders:read", audience: "orders-api", extraParams: { tenant: "eu" } }
 * ```
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
   * Any other parameter the server wants; part of the cache key. It cannot set a parameter of the protocol
   * (`grant_type`, `client_id`, `client_secret`, `client_assertion`, `client_assertion_type`, `refresh_token`,
   * `code`, `code_verifier`, `redirect_uri`, `username`, `password`, `assertion`, `device_code`, the token exchange's
   * `subject_token`, `actor_token` and their types, `requested_token_type`; in any case): a source given one fails
   * every fetch with `Misconfigured` and sends nothing. A `scope`, `resource` or `audience` given above wins over an
   * entry of the same name.
   */
  readonly extraParams?: Readonly<Record<string, string>> | undefined
}
