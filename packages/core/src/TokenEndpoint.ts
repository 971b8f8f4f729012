/**
 * One grant request to an OAuth 2.0 token endpoint (RFC 6749 §3.2), over `@effect/platform`'s `HttpClient`.
 *
 * The request is form-encoded, the client authenticates with its `ClientAuth`, and every answer is decoded into
 * an `AccessToken` or a `TokenError` with a precise `reason`: nothing the server sends becomes a defect.
 *
 * @since 0.1.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Clock from "effect/Clock"
import * as DateTime from "effect/DateTime"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import type * as AccessToken from "./AccessToken.js"
import * as ClientAuth from "./ClientAuth.js"
import type * as DPoP from "./DPoP.js"
import * as dpop from "./internal/dpop.js"
import * as endpoint from "./internal/endpoint.js"
import { secretsOf } from "./internal/serverText.js"
import * as internal from "./internal/tokenResponse.js"
import { MalformedResponse, TokenError } from "./TokenError.js"

/**
 * Form parameters of one grant. `undefined` values are left out; `Redacted` values are revealed only into the
 * request body; an array sends the parameter once per value (RFC 8707 allows several `resource` parameters).
 *
 * @since 0.1.0
 * @category models
 */
export type Params = endpoint.FormParams

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly tokenUrl: string | URL
  readonly clientAuth: ClientAuth.ClientAuth
  /** Time allowed for one request, answer body included. Default 10 seconds. */
  readonly attemptTimeout?: Duration.DurationInput | undefined
  /** Lifetime of a token that has neither `expires_in` nor a JWT `exp`. Default: unknown (the cache decides). */
  readonly defaultLifetime?: Duration.DurationInput | undefined
  /**
   * The largest answer read, in bytes, counted after decompression (default 1 MiB). A larger answer is a
   * `MalformedResponse` naming the cap, and is not retried.
   */
  readonly maxResponseBytes?: number | undefined
  /**
   * Bind the tokens to this DPoP key (RFC 9449): every request carries a fresh proof, a `use_dpop_nonce` answer is
   * retried once with the server's nonce, and an answer that is not `token_type: DPoP` is a `MalformedResponse`.
   */
  readonly dpop?: DPoP.DPoPKey | undefined
}

/**
 * A token endpoint bound to a client.
 *
 * @since 0.1.0
 * @category models
 */
export interface TokenEndpoint {
  readonly url: string
  readonly clientAuth: ClientAuth.ClientAuth
  /**
   * Sends one grant (`params` must include `grant_type`) and decodes the answer. An RFC 6749 §5.2 error body is an
   * `OAuthError` whatever the status, 2xx included: some servers (GitHub) answer a failed grant with 200.
   *
   * The token's lifetime counts from the moment the request was sent (its `issuedAt`), not from when the answer
   * was read: `expires_in` counts from the server's answer, which a slow network or a paused process can deliver
   * late, and a token must never be believed valid for longer than it is.
   */
  readonly request: (params: Params, options?: RequestOptions) => Effect.Effect<AccessToken.AccessToken, TokenError>
}

/**
 * Per-request settings.
 *
 * @example
 * ```ts
 * import type { TokenEndpoint } from "@effect-token/core"
 *
 * // A refresh whose answer is still read long after its caller stopped waiting.
 * const options: TokenEndpoint.RequestOptions = { attemptTimeout: "60 seconds" }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface RequestOptions {
  /** Overrides the endpoint's `attemptTimeout` for this request. */
  readonly attemptTimeout?: Duration.DurationInput | undefined
}

/** RFC 8693 §2.1: the one grant whose answer may carry `token_type` `N_A`. */
const tokenExchangeGrant = "urn:ietf:params:oauth:grant-type:token-exchange"

/**
 * The default time allowed for one token request.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultTimeout: Duration.Duration = Duration.seconds(10)

/**
 * Binds a token endpoint to a client, using the `HttpClient` in context.
 *
 * @example
 * ```ts
 * import { ClientAuth, TokenEndpoint } from "@effect-token/core"
 * import { Effect, Redacted } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const endpoint = yield* TokenEndpoint.make({
 *     tokenUrl: "https://auth.example.com/oauth/token",
 *     clientAuth: ClientAuth.clientSecretBasic({ clientId: "billing", clientSecret: Redacted.make("s3cr3t") })
 *   })
 *   return yield* endpoint.request({ grant_type: "client_credentials", scope: "invoices:read" })
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<TokenEndpoint, never, HttpClient.HttpClient> =>
  Effect.map(HttpClient.HttpClient, (client) => makeWith(client, options))

/**
 * Like {@link make}, with an explicit `HttpClient`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeWith = (client: HttpClient.HttpClient, options: Options): TokenEndpoint => {
  const url = options.tokenUrl.toString()
  const defaultAttemptTimeout = Duration.decode(options.attemptTimeout ?? defaultTimeout)
  const defaultLifetime = Option.map(Option.fromNullable(options.defaultLifetime), Duration.decode)
  const clientId = options.clientAuth.clientId
  const authMethod = ClientAuth.method(options.clientAuth)
  const spanUrl = endpoint.spanUrl(url)
  const maxResponseBytes = options.maxResponseBytes ?? endpoint.defaultMaxResponseBytes
  const key = options.dpop

  const request = (
    params: Params,
    requestOptions?: RequestOptions
  ): Effect.Effect<AccessToken.AccessToken, TokenError> => {
    const grantType = typeof params.grant_type === "string" ? params.grant_type : "token"
    const operation = `${grantType} grant`
    const timeout = requestOptions?.attemptTimeout === undefined
      ? defaultAttemptTimeout
      : Duration.decode(requestOptions.attemptTimeout)
    // One attempt: credentials (a `private_key_jwt` assertion) and the DPoP proof are made anew for each.
    const attempt = Effect.gen(function*() {
      const credentials = yield* ClientAuth.credentials(options.clientAuth, url)
      const form = endpoint.formPost(url, params, credentials)
      if (key === undefined) {
        return yield* endpoint.execute(client, form, {
          secrets: secretsOf(params, credentials),
          operation,
          timeout,
          endpoint: "token endpoint",
          maxResponseBytes
        })
      }
      const proof = yield* dpopProof(key, { method: "POST", url })
      const exchange = yield* dpop.redactingProof(
        endpoint.execute(client, HttpClientRequest.setHeader(form, "dpop", proof), {
          // A proof is not a secret, but it is a signed credential for a minute: never echoed into a message.
          secrets: [...secretsOf(params, credentials), proof],
          operation,
          timeout,
          endpoint: "token endpoint",
          maxResponseBytes
        })
      )
      dpop.rememberNonce(key, url, exchange.response.headers)
      return exchange
    })
    // The lifetime of the answer's token counts from here, before a byte is sent.
    const send = Effect.zip(DateTime.now, attempt)
    return Effect.gen(function*() {
      let [sentAt, exchange] = yield* send
      // RFC 9449 §8: the server wants a nonce. One retry with it, never more (a server that keeps asking is failing).
      if (key !== undefined && isNonceChallenge(exchange)) [sentAt, exchange] = yield* send
      const tokenExchange = grantType === tokenExchangeGrant
      const token = yield* decodeResponse(exchange, { operation, now: sentAt, defaultLifetime, tokenExchange })
      // The token type must be the one asked for. A Bearer answer to a proof would be sent without one, unbound; a
      // DPoP answer to a bearer request cannot be sent at all (no key), and cached it would fail every call for its
      // whole lifetime.
      const asked = key === undefined ? "Bearer" : "DPoP"
      if (token.type !== asked) {
        return yield* new TokenError({
          operation,
          reason: new MalformedResponse({
            status: exchange.response.status,
            fields: ["token_type"],
            description: key === undefined
              ? `the token_type is ${token.type} but no DPoP proof was sent (a bearer token was asked for)`
              : `a DPoP proof was sent but the token_type is ${token.type}, not DPoP`
          })
        })
      }
      return token
    }).pipe(
      Effect.withSpan("effect-token/TokenEndpoint.request", {
        kind: "client",
        attributes: {
          "oauth.grant_type": grantType,
          "oauth.client_id": clientId,
          "oauth.client_auth_method": authMethod,
          "url.full": spanUrl
        }
      })
    )
  }

  return { url, clientAuth: options.clientAuth, request }
}

const dpopProof = (key: DPoP.DPoPKey, input: dpop.ProofInput) =>
  Effect.flatMap(Clock.currentTimeMillis, (now) => dpop.proof(key, input, now))

/** A 400 `use_dpop_nonce` that came with a nonce to use (without one, a retry would fail the same way). */
const isNonceChallenge = (exchange: endpoint.Exchange): boolean =>
  dpop.isNonce(exchange.response.headers["dpop-nonce"]) &&
  dpop.isServerNonceChallenge(exchange.response.status, Option.getOrUndefined(endpoint.parseJson(exchange.text)))

const decodeResponse = (
  exchange: endpoint.Exchange,
  options: internal.DecodeOptions
): Effect.Effect<AccessToken.AccessToken, TokenError> => {
  const status = exchange.response.status
  if (status < 200 || status >= 300) return endpoint.failure(exchange, options.operation)
  const json = endpoint.parseJson(exchange.text)
  if (Option.isNone(json)) {
    return Effect.fail(
      new TokenError({
        operation: options.operation,
        reason: new MalformedResponse({
          status,
          description: `expected a JSON token response, got ${endpoint.contentType(exchange.response)}`
        })
      })
    )
  }
  // Some servers (GitHub among them) answer a failed grant with 200 and an RFC 6749 §5.2 error body. Without an
  // `access_token` such a body is the server's error, not a malformed token response: report it as one.
  const body = json.value
  if (!(Predicate.isRecord(body) && "access_token" in body)) {
    const error = endpoint.oauthError(body, {
      operation: options.operation,
      status,
      retryAfter: Option.none(),
      secrets: exchange.secrets
    })
    if (Option.isSome(error)) return Effect.fail(error.value)
  }
  return decodeResponseBody(body, options)
}

/**
 * Decodes an already-parsed RFC 6749 §5.1 token response body.
 *
 * The lifetime comes from `expires_in`, else from the access token's JWT `exp` (read, not verified: the client
 * only needs to know when to refresh), else from `defaultLifetime`. Without `expires_in`, a JWT `exp` that is not
 * after `now` (the token is expired on arrival, usually because the clocks of this host and the server disagree) or
 * more than {@link maxExpiresInSeconds} ahead is a `MalformedResponse`. Errors name the invalid fields, never values.
 *
 * @example
 * ```ts
 * import { TokenEndpoint } from "@effect-token/core"
 * import { DateTime, Option } from "effect"
 *
 * const result = TokenEndpoint.decodeResponseBody(
 *   { access_token: "abc", token_type: "Bearer", expires_in: 3600 },
 *   { operation: "client_credentials grant", now: DateTime.unsafeMake(0), defaultLifetime: Option.none() }
 * )
 * ```
 *
 * @since 0.1.0
 * @category decoding
 */
export const decodeResponseBody: (
  body: unknown,
  options: {
    readonly operation: string
    readonly now: DateTime.Utc
    readonly defaultLifetime: Option.Option<Duration.Duration>
  }
) => Either.Either<AccessToken.AccessToken, TokenError> = internal.decodeTokenBody

/**
 * The largest `expires_in` accepted, in seconds (one year).
 *
 * @since 0.1.0
 * @category constants
 */
export const maxExpiresInSeconds: number = internal.maxExpiresInSeconds
