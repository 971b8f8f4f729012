/**
 * The refresh token grant (RFC 6749 §6) with rotation: the user's refresh token comes from the `RefreshTokenStore`
 * in context, and a rotated one goes back into it.
 *
 * @since 0.1.0
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as grant from "./internal/grant.js"
import * as internal from "./internal/refreshToken.js"
import * as RefreshTokenStore from "./RefreshTokenStore.js"
import * as TokenEndpoint from "./TokenEndpoint.js"
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
  /**
   * How long the answer to a refresh is still read after its caller stopped waiting (`attemptTimeout`, an
   * interrupt, a paused process), so that a rotated refresh token in it is stored rather than lost. A store shared
   * by several processes keeps the others from spending the same token for this long. Default 60 seconds.
   */
  readonly answerTimeout?: Duration.DurationInput | undefined
}

/**
 * A refresh-token `TokenSource` over the `RefreshTokenStore` in context.
 *
 * A refresh token is spent at most once, and its successor is never lost:
 * - Fetches over one store run one at a time (`RefreshTokenStore.withLock`), each with the refresh token the previous
 *   one stored, so two fetches (of one source, of two sources sharing the store) never spend the same token.
 * - Right before sending, a store shared by several processes records the spend (`RefreshTokenStore.spend`): no
 *   record, no send. While a spend is unresolved, no other holder spends that token; a store grants a takeover only
 *   once the spend's deadline (`answerTimeout`) has passed.
 * - The answer is read even after the caller stopped waiting (its `attemptTimeout`, an interrupt, a paused
 *   process), for up to `answerTimeout`, and a rotated refresh token in it is stored. Until it is, the next fetch
 *   in this process waits for it rather than sending the spent token again, and takes that answer's access token
 *   if nobody did. An interrupted caller still waits for the answer, at most `attemptTimeout`: an application
 *   shutting down mid-refresh stores the rotation before it goes.
 * - The rotated token is stored before the access token is handed out; when the store cannot take it, the fetch
 *   fails with the store's error. The access token handed out carries no refresh token: the store is the one place
 *   it lives.
 * - A timeout or a connection failure after the request may have been sent fails with `sent: true` on its reason,
 *   which is not transient: the cache never retries it with a token the server may have spent. Connection failures
 *   before sending, 429 and 5xx answers are retried as usual (and withdraw the spend).
 * - `invalid_grant`, and an empty store, fail with reason `RefreshTokenRejected`, whose description says where the
 *   token came from and what to do (from the store's `Spend.provenance`). The store is left as it is.
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
    const subject = options.subjectKey === undefined ? [] : [options.subjectKey]
    const attemptTimeout = Duration.decode(options.attemptTimeout ?? TokenEndpoint.defaultTimeout)
    const fetch = internal.fetch({
      store,
      send: (refreshToken, attemptTimeout) =>
        request(
          grant.grantForm({ grant_type: "refresh_token", refresh_token: refreshToken }, options),
          { attemptTimeout }
        ),
      attemptTimeout,
      // Never shorter than a caller's wait: the answer is read at least as long as anyone waits for it.
      answerTimeout: Duration.max(attemptTimeout, Duration.decode(options.answerTimeout ?? defaults.answerTimeout))
    })
    return TokenSource.make({
      key: grant.keyOf("refresh_token", options, options, ...subject),
      // The lock is the store's: two sources over one store never spend one refresh token concurrently.
      fetch: RefreshTokenStore.withLock(store, fetch),
      dpop: options.dpop
    })
  })

/**
 * The defaults of {@link Options}.
 *
 * @example
 * ```ts
 * import { RefreshToken } from "@effect-token/core"
 * import { Duration } from "effect"
 *
 * Duration.toSeconds(RefreshToken.defaults.answerTimeout) // 60
 * ```
 *
 * @since 0.1.0
 * @category constants
 */
export const defaults: { readonly answerTimeout: Duration.Duration } = internal.defaults

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
 * use `CLIENT_AUTH_METHOD=none`), and optional `SCOPE`, `AUDIENCE`, `RESOURCE`, `ATTEMPT_TIMEOUT`, `ANSWER_TIMEOUT`,
 * `SUBJECT_KEY`.
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
  answerTimeout: Config.option(Config.duration("ANSWER_TIMEOUT")),
  subjectKey: Config.option(Config.nonEmptyString("SUBJECT_KEY"))
}).pipe(Config.map((c): Options => ({
  ...c.grant,
  answerTimeout: Option.getOrUndefined(c.answerTimeout),
  subjectKey: Option.getOrUndefined(c.subjectKey)
})))

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
