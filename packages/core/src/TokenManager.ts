/**
 * Many tokens, one service, bounded memory: a token for any key of source parameters (a tenant, a scope, an
 * audience, a resource), fetched on demand.
 *
 * Each key follows every `TokenCache` rule: single flight, refresh ahead, compare-and-clear invalidation, failures
 * never kept, transient failures retried. Keys live in one map that never holds more than its capacity: a new key
 * drops the least recently used idle key (a key with a fetch in flight never is). At most `maxInFlight` keys fetch
 * at once, and a key is at most `maxKeyLength` characters, so memory is bounded whatever keys callers ask for (keys
 * often come from requests). An idle key costs its token and a few hundred bytes, not a whole cache.
 *
 * @since 0.1.0
 */
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import type * as AccessToken from "./AccessToken.js"
import * as DPoP from "./DPoP.js"
import * as internal from "./internal/tokenManager.js"
import type * as TokenCache from "./TokenCache.js"
import type * as TokenError from "./TokenError.js"
import type * as TokenSource from "./TokenSource.js"

/**
 * @since 0.1.0
 * @category type ids
 */
export const TypeId: unique symbol = internal.TypeId

/**
 * @since 0.1.0
 * @category type ids
 */
export type TypeId = typeof TypeId

/**
 * @since 0.1.0
 * @category models
 */
export interface TokenManager<P> {
  readonly [TypeId]: TypeId
  /** A valid token for `params`, from the key's cell or its one fetch. */
  readonly get: (params: P) => Effect.Effect<AccessToken.AccessToken, TokenError.TokenError>
  /** Compare-and-clear of `token` under `params`' key, e.g. after a 401 for it. Returns whether it cleared. */
  readonly invalidate: (params: P, token: AccessToken.AccessToken) => Effect.Effect<boolean>
  /** Fetches a new token for `params` now (joining a fetch in flight). */
  readonly refresh: (params: P) => Effect.Effect<AccessToken.AccessToken, TokenError.TokenError>
  /** The key of `params` seen as a `TokenCache`, e.g. to give one tenant's client a cache of its own. */
  readonly at: (params: P) => TokenCache.TokenCache
  /** How many keys are held. */
  readonly size: Effect.Effect<number>
  /** The DPoP key every key's tokens are bound to, when known (`fromShapes` over a grant given `dpop`). */
  readonly dpop?: DPoP.DPoPKey | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options extends TokenCache.Options {
  /**
   * The most keys held, never exceeded: a new key first drops the least recently used idle key. Default 10,000.
   */
  readonly capacity?: number | undefined
  /**
   * The most keys with a token request in flight at once (at most `capacity`). At the bound a call that would start
   * another fails at once with reason `Unavailable` (a key already fetching is joined as usual, and a refresh-ahead
   * waits for a later call), so a hung authorization server costs at most this many requests, fibers and waiting
   * keys, whatever the keys callers ask for. Default 100.
   */
  readonly maxInFlight?: number | undefined
  /**
   * The longest key held, in characters; a longer one fails with `Misconfigured` and is neither held nor fetched.
   * For `fromShapes` the key is the token parameters themselves, so this bounds what one key costs (a 64 KiB scope
   * cost 130 KB per idle key). Default 4,096.
   */
  readonly maxKeyLength?: number | undefined
}

/**
 * A manager whose keys are any parameters `P`: `key` names them (cheaply: it runs on every `get`), `source` builds
 * the source that fetches their token (only when a fetch starts, so no source is kept per key).
 *
 * @example
 * ```ts
 * import { ClientAuth, ClientCredentials, TokenManager } from "@effect-token/core"
 * import { Effect, Redacted } from "effect"
 *
 * // One token per tenant, each tenant with its own client at the same authorization server.
 * declare const secretOf: (tenant: string) => Redacted.Redacted<string>
 *
 * const program = Effect.gen(function*() {
 *   const tenants = yield* TokenManager.make({
 *     key: (tenant: string) => tenant,
 *     source: (tenant: string) =>
 *       ClientCredentials.make({
 *         tokenUrl: "https://auth.example.com/oauth/token",
 *         clientAuth: ClientAuth.clientSecretBasic({ clientId: tenant, clientSecret: secretOf(tenant) })
 *       }),
 *     capacity: 50_000
 *   })
 *   return yield* tenants.get("acme")
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: <P, R = never>(
  options: Options & {
    readonly key: (params: P) => string
    readonly source: (params: P) => Effect.Effect<TokenSource.TokenSource, never, R>
  }
) => Effect.Effect<TokenManager<P>, never, Scope.Scope | R> = internal.make

/**
 * A request's token parameters over a base shape: its `scope`, `resource` and `audience` replace the base's, its
 * `extraParams` are added to the base's.
 *
 * @example
 * ```ts
 * import { TokenManager } from "@effect-token/core"
 *
 * TokenManager.mergeShape({ scope: "read", audience: "api" }, { scope: "write" })
 * // { scope: "write", audience: "api" }
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const mergeShape = <O extends TokenSource.TokenShape>(base: O, params: TokenSource.TokenShape): O => ({
  ...base,
  ...(params.scope === undefined ? {} : { scope: params.scope }),
  ...(params.resource === undefined ? {} : { resource: params.resource }),
  ...(params.audience === undefined ? {} : { audience: params.audience }),
  ...(params.extraParams === undefined ? {} : { extraParams: { ...base.extraParams, ...params.extraParams } })
})

/**
 * A canonical key of a token shape: equal shapes (whatever the order of their extra parameters) have equal keys.
 *
 * @example
 * ```ts
 * import { TokenManager } from "@effect-token/core"
 *
 * TokenManager.shapeKey({ scope: "read" }) === TokenManager.shapeKey({ scope: "read", extraParams: {} }) // true
 * ```
 *
 * @since 0.1.0
 * @category keys
 */
export const shapeKey = (shape: TokenSource.TokenShape): string => {
  const extra = shape.extraParams === undefined ? [] : Object.entries(shape.extraParams).sort(byName)
  if (shape.scope === undefined && shape.resource === undefined && shape.audience === undefined && extra.length === 0) {
    return ""
  }
  return JSON.stringify([shape.scope ?? null, shape.resource ?? null, shape.audience ?? null, extra])
}

const byName = (a: readonly [string, unknown], b: readonly [string, unknown]) => a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0

/**
 * A manager keyed by token shape over one grant: each key's source is `grant(mergeShape(base, params))`. This is
 * what an authenticated client needs for per-request token parameters (`AuthHttpClient.withTokenParams`).
 *
 * @example
 * ```ts
 * import { ClientAuth, ClientCredentials, TokenManager } from "@effect-token/core"
 * import { Effect, Redacted } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const tokens = yield* TokenManager.fromShapes(
 *     {
 *       tokenUrl: "https://auth.example.com/oauth/token",
 *       clientAuth: ClientAuth.clientSecretBasic({ clientId: "app", clientSecret: Redacted.make("s3cr3t") }),
 *       scope: "orders:read"
 *     },
 *     ClientCredentials.make
 *   )
 *   const reports = yield* tokens.get({ audience: "reports-api" })
 *   const orders = yield* tokens.get({})
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromShapes = <O extends TokenSource.TokenShape, R>(
  base: O,
  grant: (options: O) => Effect.Effect<TokenSource.TokenSource, never, R>,
  options: Options = {}
): Effect.Effect<TokenManager<TokenSource.TokenShape>, never, Scope.Scope | R> =>
  Effect.map(
    make({ ...options, key: shapeKey, source: (params: TokenSource.TokenShape) => grant(mergeShape(base, params)) }),
    (manager) => {
      // The grant's key binds every shape's tokens: the client over the manager signs with it.
      const dpop = "dpop" in base && DPoP.isDPoPKey(base.dpop) ? base.dpop : undefined
      return dpop === undefined ? manager : { ...manager, dpop }
    }
  )

/**
 * The application's shape-keyed manager (see {@link fromShapes}).
 *
 * @since 0.1.0
 * @category tags
 */
export const TokenManager: Context.Tag<TokenManager<TokenSource.TokenShape>, TokenManager<TokenSource.TokenShape>> =
  internal.ManagerTag

/**
 * Provides {@link TokenManager} over one grant.
 *
 * @example
 * ```ts
 * import { ClientAuth, ClientCredentials, TokenManager } from "@effect-token/core"
 * import { NodeHttpClient } from "@effect/platform-node"
 * import { Layer, Redacted } from "effect"
 *
 * const TokensLive = TokenManager.layer({
 *   base: {
 *     tokenUrl: "https://auth.example.com/oauth/token",
 *     clientAuth: ClientAuth.clientSecretBasic({ clientId: "app", clientSecret: Redacted.make("s3cr3t") })
 *   },
 *   grant: ClientCredentials.make,
 *   capacity: 1_000
 * }).pipe(Layer.provide(NodeHttpClient.layerUndici))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export function layer<O extends TokenSource.TokenShape, R>(
  options: Options & {
    /** The grant's options every key starts from; a key's parameters are merged over them. */
    readonly base: O
    /** The grant's constructor (`ClientCredentials.make`, ...). */
    readonly grant: (options: O) => Effect.Effect<TokenSource.TokenSource, never, R>
  }
): Layer.Layer<TokenManager<TokenSource.TokenShape>, never, Exclude<R, Scope.Scope>>
/** @deprecated Positional form: pass `{ base, grant, ...options }`. */
export function layer<O extends TokenSource.TokenShape, R>(
  base: O,
  grant: (options: O) => Effect.Effect<TokenSource.TokenSource, never, R>,
  options?: Options
): Layer.Layer<TokenManager<TokenSource.TokenShape>, never, Exclude<R, Scope.Scope>>
export function layer<O extends TokenSource.TokenShape, R>(
  first:
    | O
    | (Options & {
      readonly base: O
      readonly grant: (options: O) => Effect.Effect<TokenSource.TokenSource, never, R>
    }),
  grant?: (options: O) => Effect.Effect<TokenSource.TokenSource, never, R>,
  options: Options = {}
): Layer.Layer<TokenManager<TokenSource.TokenShape>, never, Exclude<R, Scope.Scope>> {
  if (grant !== undefined) return Layer.scoped(internal.ManagerTag, fromShapes(first as O, grant, options))
  const { base, grant: named, ...rest } = first as Options & {
    readonly base: O
    readonly grant: (options: O) => Effect.Effect<TokenSource.TokenSource, never, R>
  }
  return Layer.scoped(internal.ManagerTag, fromShapes(base, named, rest))
}

/**
 * Whether `u` is a {@link TokenManager}.
 *
 * @example
 * ```ts
 * import { TokenManager } from "@effect-token/core"
 *
 * TokenManager.isTokenManager({}) // false
 * ```
 *
 * @since 0.1.0
 * @category refinements
 */
export const isTokenManager: (u: unknown) => u is TokenManager<unknown> = internal.isTokenManager
