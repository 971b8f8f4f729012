/**
 * The refresh token grant (RFC 6749 §6) with rotation: the user's refresh token comes from the `RefreshTokenStore`
 * in context, and a rotated one goes back into it.
 *
 * @since 0.1.0
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as AccessToken from "./AccessToken.js"
import * as grant from "./internal/grant.js"
import * as RefreshTokenStore from "./RefreshTokenStore.js"
import { RefreshTokenRejected, Timeout, TokenError, Transport } from "./TokenError.js"
import * as TokenSource from "./TokenSource.js"

/**
 * @example
 * ```ts
 * import { ClientAuth, RefreshToken } from "@effect-token/core"
 *
 * const options: RefreshToken.Options = {
 *   tokenUrl: "https://auth.example.com/oauth/token",
 *   clientAuth: ClientAuth.none({ clientId: "cli" }),
 *   subjectKey: "alice"
 * }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Options extends TokenSource.EndpointOptions, TokenSource.TokenShape {
  /**
   * Whose refresh token the store holds (a user or device id, never the token itself). It is part of the key, so
   * caches or shared stores keyed on it never hand one user's access token to another.
   */
  readonly subjectKey?: string | undefined
}

const operation = "refresh_token grant"

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

/** Connection failures that happen before a byte of the request leaves: the refresh token surely was not spent. */
const beforeSending = /\b(ECONNREFUSED|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH|UND_ERR_CONNECT_TIMEOUT)\b/

/**
 * Marks a failure after which the server may have spent the refresh token (a timeout, a reset once the request was
 * sent) as `sent`, which makes it not transient: sending the same refresh token again would get `invalid_grant`
 * at best and, on a server with reuse detection, revoke the whole token family (RFC 9700 §4.14.2). What is retried
 * is what the server surely did not use: a connection never made, or an answer (429, 5xx) saying it did not.
 */
const spentOnce = (error: TokenError): TokenError => {
  const reason = error.reason
  if (reason._tag === "Timeout" && reason.bound === "attempt") {
    return new TokenError({
      operation: error.operation,
      reason: new Timeout({ bound: reason.bound, after: reason.after, sent: true })
    })
  }
  if (reason._tag === "Transport" && !beforeSending.test(reason.description)) {
    return new TokenError({
      operation: error.operation,
      reason: new Transport({ description: reason.description, sent: true })
    })
  }
  return error
}

/**
 * A refresh-token `TokenSource` over the `RefreshTokenStore` in context.
 *
 * - When the server answers with a new refresh token, it is written to the store before the access token is
 *   returned, so a crash in between never loses the only valid refresh token. When the store cannot write it (its
 *   `set` fails, e.g. reason `Unavailable`), the fetch fails with that error and the access token is not handed out.
 * - Once sent, the request and the store write are not interruptible: interrupting the fetch (a caller giving up,
 *   the application's scope closing) waits for the answer and the write, at most the request's `attemptTimeout`, so an
 *   answer carrying a rotated refresh token is never dropped. The access token handed out carries no refresh token:
 *   the store is the one place it lives.
 * - Fetches over one store run one at a time (`RefreshTokenStore.withLock`), each with the refresh token the previous
 *   one stored: two concurrent fetches, of one source or of two sources sharing the store, never spend the same
 *   refresh token, with or without a `TokenCache` on top.
 * - A timeout or a connection failure after the request may have been sent fails with `sent: true` on its reason,
 *   which is not transient: the cache does not retry it with a refresh token the server may have spent. Connection
 *   failures before sending, 429 and 5xx answers are retried as usual.
 * - `invalid_grant`, and an empty store, fail with reason `RefreshTokenRejected`: the user has to log in again.
 *   The store is left as it is; clear it at logout.
 *
 * @example
 * ```ts
 * import { ClientAuth, RefreshToken, RefreshTokenStore } from "@effect-token/core"
 * import { NodeHttpClient } from "@effect/platform-node"
 * import { Effect, Layer, Redacted } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const source = yield* RefreshToken.make({
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
export const make = (
  options: Options
): Effect.Effect<TokenSource.TokenSource, never, HttpClient.HttpClient | RefreshTokenStore.RefreshTokenStore> =>
  Effect.gen(function*() {
    const request = yield* grant.requester(options)
    const store = yield* RefreshTokenStore.RefreshTokenStore
    const spend = (refreshToken: Redacted.Redacted<string>) => {
      const params = grant.grantForm({ grant_type: "refresh_token", refresh_token: refreshToken }, options)
      const exchange = Effect.flatMap(
        // Interruptible inside, so that the request's own timeout can still end it (see below).
        Effect.interruptible(Effect.mapError(request(params), (error) => spentOnce(refreshRejected(error)))),
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
      return Effect.uninterruptible(Effect.flatMap(Effect.forkDaemon(exchange), Fiber.join))
    }
    const fetch = Effect.gen(function*() {
      const current = yield* store.get
      if (Option.isNone(current)) {
        return yield* new TokenError({
          operation,
          reason: new RefreshTokenRejected({
            description: "there is no refresh token in the store: the user has to log in first"
          })
        })
      }
      return yield* spend(current.value).pipe(
        // Another holder of the store (a process whose lock lapsed, a store shared without one) may have rotated the
        // token while this request was on its way: the store then holds the sibling's newer token, which is still
        // good. Spending that one, once, is what the sibling's rotation left for this source; failing would log
        // the user out for nothing.
        Effect.catchIf(
          (error) => error.reason._tag === "RefreshTokenRejected",
          (rejected) =>
            Effect.flatMap(
              store.get,
              (now) =>
                Option.isSome(now) && Redacted.value(now.value) !== Redacted.value(current.value)
                  ? spend(now.value)
                  : Effect.fail(rejected)
            )
        )
      )
    })
    const subject = options.subjectKey === undefined ? [] : [options.subjectKey]
    return TokenSource.make({
      key: grant.keyOf("refresh_token", options, options, ...subject),
      // The lock is the store's: two sources over one store never spend one refresh token concurrently.
      fetch: RefreshTokenStore.withLock(store, fetch)
    })
  })

const withoutRefreshToken = (token: AccessToken.AccessToken): AccessToken.AccessToken =>
  AccessToken.make({
    value: token.value,
    type: token.type,
    issuedAt: token.issuedAt,
    expiresAt: token.expiresAt,
    scope: token.scope,
    issuedTokenType: token.issuedTokenType,
    // A refresh answer's ID token (OpenID Connect Core §12.2) reaches the caller: sessions verify and keep it.
    idToken: token.idToken
  })

/**
 * Provides {@link make} as the default `TokenSource`.
 *
 * @example
 * ```ts
 * import { ClientAuth, RefreshToken, RefreshTokenStore } from "@effect-token/core"
 * import { Layer, Redacted } from "effect"
 *
 * const SourceLive = RefreshToken.layer({
 *   tokenUrl: "https://auth.example.com/oauth/token",
 *   clientAuth: ClientAuth.none({ clientId: "cli" })
 * }).pipe(Layer.provide(RefreshTokenStore.layerMemory(Redacted.make("rt-from-login"))))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Options
): Layer.Layer<TokenSource.TokenSource, never, HttpClient.HttpClient | RefreshTokenStore.RefreshTokenStore> =>
  Layer.effect(TokenSource.TokenSource, make(options))

/**
 * Refresh-token settings read from configuration: `TOKEN_URL`, the client (see `ClientAuth.config`; public clients
 * use `CLIENT_AUTH_METHOD=none`), and optional `SCOPE`, `AUDIENCE`, `RESOURCE`, `ATTEMPT_TIMEOUT`, `SUBJECT_KEY`.
 * The refresh token itself belongs to the `RefreshTokenStore` (see `RefreshTokenStore.layerMemoryConfig`).
 *
 * @example
 * ```ts
 * import { RefreshToken } from "@effect-token/core"
 * import { Config } from "effect"
 *
 * // reads GITHUB_TOKEN_URL, GITHUB_CLIENT_ID, GITHUB_CLIENT_AUTH_METHOD, ...
 * const github = Config.nested(RefreshToken.config, "GITHUB")
 * ```
 *
 * @since 0.1.0
 * @category config
 */
export const config: Config.Config<Options> = Config.all({
  grant: grant.grantConfig,
  subjectKey: Config.option(Config.nonEmptyString("SUBJECT_KEY"))
}).pipe(Config.map((c): Options => ({ ...c.grant, subjectKey: Option.getOrUndefined(c.subjectKey) })))

/**
 * Provides a refresh-token `TokenSource` from configuration (see {@link config}).
 *
 * @example
 * ```ts
 * import { RefreshToken, RefreshTokenStore } from "@effect-token/core"
 * import { NodeHttpClient } from "@effect/platform-node"
 * import { Layer } from "effect"
 *
 * const SourceLive = RefreshToken.layerConfig().pipe(
 *   Layer.provide(Layer.merge(NodeHttpClient.layerUndici, RefreshTokenStore.layerMemoryConfig()))
 * )
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  settings: Config.Config<Options> = config
): Layer.Layer<
  TokenSource.TokenSource,
  ConfigError.ConfigError,
  HttpClient.HttpClient | RefreshTokenStore.RefreshTokenStore
> => Layer.effect(TokenSource.TokenSource, Effect.flatMap(settings, make))
