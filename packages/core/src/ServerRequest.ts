/**
 * One request to an authorization server's endpoint, with the rules every such request follows: no redirect is
 * followed (a 3xx, or an answer from another URL, is a `MalformedResponse`), the body is read as a counted stream up
 * to a cap (a larger answer is a `MalformedResponse`, never retried), the whole exchange is bounded in time, and
 * every failure is a typed `TokenError`. The token, discovery and revocation endpoints use it, and so does the
 * session package's JWKS fetch: what reads a server's answer reads it here.
 *
 * @since 0.2.0
 */
import type * as Headers from "@effect/platform/Headers"
import type * as HttpClient from "@effect/platform/HttpClient"
import type * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as internal from "./internal/endpoint.js"
import type { TokenError } from "./TokenError.js"

/**
 * @since 0.2.0
 * @category models
 */
export interface Options {
  /** What is being done, for the error (`"discovery"`, `"ID token verification"`). */
  readonly operation: string
  /** The endpoint's name, for messages (`"JWKS endpoint"`). */
  readonly endpoint: string
  /** The bound on the whole exchange, body included. Default 10 seconds. */
  readonly timeout?: Duration.DurationInput | undefined
  /** The largest body read. Default 1 MiB ({@link defaultMaxResponseBytes}). */
  readonly maxResponseBytes?: number | undefined
}

/**
 * @since 0.2.0
 * @category models
 */
export interface Answer {
  readonly status: number
  readonly headers: Headers.Headers
  /** The whole body, decoded as UTF-8. */
  readonly text: string
}

/**
 * @since 0.2.0
 * @category constants
 */
export const defaultMaxResponseBytes: number = internal.defaultMaxResponseBytes

/**
 * Sends `request` under the rules above.
 *
 * @example
 * ```ts
 * import { ServerRequest } from "@effect-token/core"
 * import { HttpClient, HttpClientRequest } from "@effect/platform"
 * import { Effect } from "effect"
 *
 * const jwks = Effect.flatMap(HttpClient.HttpClient, (client) =>
 *   ServerRequest.execute(client, HttpClientRequest.get("https://issuer.example/jwks"), {
 *     operation: "ID token verification",
 *     endpoint: "JWKS endpoint",
 *     maxResponseBytes: 256 * 1024
 *   }))
 * ```
 *
 * @since 0.2.0
 * @category utils
 */
export const execute = (
  client: HttpClient.HttpClient,
  request: HttpClientRequest.HttpClientRequest,
  options: Options
): Effect.Effect<Answer, TokenError> =>
  Effect.map(
    internal.execute(client, request, {
      operation: options.operation,
      endpoint: options.endpoint,
      timeout: Duration.decode(options.timeout ?? Duration.seconds(10)),
      maxResponseBytes: options.maxResponseBytes ?? internal.defaultMaxResponseBytes
    }),
    ({ response, text }) => ({ status: response.status, headers: response.headers, text })
  )
