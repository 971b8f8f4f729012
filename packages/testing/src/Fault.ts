/**
 * Scripted failures for the test servers: what an overloaded, broken or misconfigured server answers instead of
 * doing its job.
 *
 * The same faults script both `TestAuthorizationServer` (its token endpoint) and `TestResourceServer`, so a test
 * can put any of them in front of either side of a client.
 *
 * @since 0.1.0
 */
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"

/**
 * One scripted answer.
 *
 * - `Unavailable`: 503 without an OAuth error body, with `Retry-After` if given.
 * - `TooManyRequests`: 429, with `Retry-After` if given.
 * - `ServerError`: a bare 500.
 * - `Slow`: waits `delay` (with `Effect.sleep`, so `TestClock` decides when), then answers normally.
 * - `HtmlPage`: an HTML page, as a proxy or a login redirect would serve.
 * - `NonJson`: 200 with a body that is not JSON.
 * - `MissingAccessToken`: 200 JSON that looks like a token response but has no `access_token`.
 * - `OAuthError`: an RFC 6749 §5.2 error body (`invalid_client`, `invalid_grant`, ...).
 * - `Response`: any status, headers and body.
 *
 * @example
 * ```ts
 * import { Fault, TestAuthorizationServer } from "@effect-token/testing"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const as = yield* TestAuthorizationServer.makeInProcess()
 *   yield* as.failNext(Fault.unavailable({ retryAfter: "1 second" }), 3)
 *   yield* as.failNext(Fault.oauthError("invalid_client"))
 * })
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export type Fault =
  | Unavailable
  | TooManyRequests
  | ServerError
  | Slow
  | HtmlPage
  | NonJson
  | MissingAccessToken
  | OAuthError
  | Response

/**
 * @since 0.1.0
 * @category models
 */
export interface Unavailable {
  readonly _tag: "Unavailable"
  readonly retryAfter: Option.Option<Duration.Duration>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface TooManyRequests {
  readonly _tag: "TooManyRequests"
  readonly retryAfter: Option.Option<Duration.Duration>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface ServerError {
  readonly _tag: "ServerError"
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Slow {
  readonly _tag: "Slow"
  readonly delay: Duration.Duration
}

/**
 * @since 0.1.0
 * @category models
 */
export interface HtmlPage {
  readonly _tag: "HtmlPage"
  readonly status: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface NonJson {
  readonly _tag: "NonJson"
  readonly status: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface MissingAccessToken {
  readonly _tag: "MissingAccessToken"
}

/**
 * @since 0.1.0
 * @category models
 */
export interface OAuthError {
  readonly _tag: "OAuthError"
  readonly error: string
  readonly description: Option.Option<string>
  readonly status: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Response {
  readonly _tag: "Response"
  readonly status: number
  readonly headers: Readonly<Record<string, string>>
  readonly body: string
}

/**
 * 503 Service Unavailable, optionally with `Retry-After` (sent as whole seconds, rounded up).
 *
 * @example
 * ```ts
 * import { Fault } from "@effect-token/testing"
 *
 * const fault = Fault.unavailable({ retryAfter: "2 seconds" })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const unavailable = (options?: { readonly retryAfter?: Duration.DurationInput | undefined }): Fault => ({
  _tag: "Unavailable",
  retryAfter: Option.map(Option.fromNullable(options?.retryAfter), Duration.decode)
})

/**
 * 429 Too Many Requests, optionally with `Retry-After`.
 *
 * @example
 * ```ts
 * import { Fault } from "@effect-token/testing"
 *
 * const fault = Fault.tooManyRequests({ retryAfter: "1 second" })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const tooManyRequests = (options?: { readonly retryAfter?: Duration.DurationInput | undefined }): Fault => ({
  _tag: "TooManyRequests",
  retryAfter: Option.map(Option.fromNullable(options?.retryAfter), Duration.decode)
})

/**
 * A bare 500 with a plain-text body.
 *
 * @example
 * ```ts
 * import { Fault } from "@effect-token/testing"
 *
 * const fault = Fault.serverError
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const serverError: Fault = { _tag: "ServerError" }

/**
 * Delays the answer by `delay` on the Effect `Clock`; under `TestClock` nothing is answered until the test
 * advances the clock.
 *
 * @example
 * ```ts
 * import { Fault } from "@effect-token/testing"
 *
 * const fault = Fault.slow("30 seconds")
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const slow = (delay: Duration.DurationInput): Fault => ({ _tag: "Slow", delay: Duration.decode(delay) })

/**
 * An HTML page (default status 200), like the login page a misrouted request lands on.
 *
 * @example
 * ```ts
 * import { Fault } from "@effect-token/testing"
 *
 * const fault = Fault.htmlPage({ status: 502 })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const htmlPage = (options?: { readonly status?: number | undefined }): Fault => ({
  _tag: "HtmlPage",
  status: options?.status ?? 200
})

/**
 * A body that is not JSON (default status 200, `text/plain`).
 *
 * @example
 * ```ts
 * import { Fault } from "@effect-token/testing"
 *
 * const fault = Fault.nonJson()
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const nonJson = (options?: { readonly status?: number | undefined }): Fault => ({
  _tag: "NonJson",
  status: options?.status ?? 200
})

/**
 * 200 JSON with `token_type` and `expires_in` but no `access_token`.
 *
 * @example
 * ```ts
 * import { Fault } from "@effect-token/testing"
 *
 * const fault = Fault.missingAccessToken
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const missingAccessToken: Fault = { _tag: "MissingAccessToken" }

/**
 * An RFC 6749 §5.2 error. The status defaults to what the RFC says: 401 for `invalid_client`, 503 for
 * `temporarily_unavailable`, 500 for `server_error`, 400 otherwise.
 *
 * @example
 * ```ts
 * import { Fault } from "@effect-token/testing"
 *
 * const fault = Fault.oauthError("invalid_grant", { description: "refresh token expired" })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const oauthError = (
  error: string,
  options?: { readonly description?: string | undefined; readonly status?: number | undefined }
): Fault => ({
  _tag: "OAuthError",
  error,
  description: Option.fromNullable(options?.description),
  status: options?.status ?? defaultOAuthErrorStatus(error)
})

/**
 * Any answer, for cases the other constructors do not cover (a malformed `Retry-After`, a 502 from a gateway).
 *
 * @example
 * ```ts
 * import { Fault } from "@effect-token/testing"
 *
 * const fault = Fault.response({ status: 503, headers: { "retry-after": "soon" } })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const response = (options: {
  readonly status: number
  readonly headers?: Readonly<Record<string, string>> | undefined
  readonly body?: string | undefined
}): Fault => ({ _tag: "Response", status: options.status, headers: options.headers ?? {}, body: options.body ?? "" })

const defaultOAuthErrorStatus = (error: string): number => {
  switch (error) {
    case "invalid_client":
      return 401
    case "temporarily_unavailable":
      return 503
    case "server_error":
      return 500
    default:
      return 400
  }
}

const retryAfterHeaders = (retryAfter: Option.Option<Duration.Duration>): Record<string, string> =>
  Option.match(retryAfter, {
    onNone: () => ({}),
    // Retry-After is delay-seconds (RFC 9110 §10.2.3); rounding up never asks a client to come back too early.
    onSome: (delay) => ({ "retry-after": String(Math.ceil(Duration.toMillis(delay) / 1000)) })
  })

const htmlBody = "<!DOCTYPE html><html><head><title>Sign in</title></head><body><form>Sign in</form></body></html>"

/**
 * The response a fault stands for, or `None` when the request should go on to be answered normally (after a
 * `Slow` delay).
 *
 * @example
 * ```ts
 * import { Fault } from "@effect-token/testing"
 * import { Effect } from "effect"
 *
 * const answer = Fault.toResponse(Fault.serverError) // Effect<Option<HttpServerResponse>>
 * ```
 *
 * @since 0.1.0
 * @category conversions
 */
export const toResponse = (fault: Fault): Effect.Effect<Option.Option<HttpServerResponse.HttpServerResponse>> => {
  switch (fault._tag) {
    case "Slow":
      return Effect.as(Effect.sleep(fault.delay), Option.none())
    case "Unavailable":
      return Effect.succeed(Option.some(
        HttpServerResponse.text("Service Unavailable", { status: 503, headers: retryAfterHeaders(fault.retryAfter) })
      ))
    case "TooManyRequests":
      return Effect.succeed(Option.some(
        HttpServerResponse.text("Too Many Requests", { status: 429, headers: retryAfterHeaders(fault.retryAfter) })
      ))
    case "ServerError":
      return Effect.succeed(Option.some(HttpServerResponse.text("Internal Server Error", { status: 500 })))
    case "HtmlPage":
      return Effect.succeed(Option.some(
        HttpServerResponse.text(htmlBody, { status: fault.status, contentType: "text/html; charset=utf-8" })
      ))
    case "NonJson":
      return Effect.succeed(Option.some(HttpServerResponse.text("OK", { status: fault.status })))
    case "MissingAccessToken":
      return Effect.succeed(Option.some(
        HttpServerResponse.unsafeJson({ token_type: "Bearer", expires_in: 300 }, { headers: noStore })
      ))
    case "OAuthError":
      return Effect.succeed(Option.some(
        HttpServerResponse.unsafeJson(
          Option.match(fault.description, {
            onNone: () => ({ error: fault.error }),
            onSome: (description) => ({ error: fault.error, error_description: description })
          }),
          { status: fault.status, headers: noStore }
        )
      ))
    case "Response":
      return Effect.succeed(Option.some(
        HttpServerResponse.text(fault.body, {
          status: fault.status,
          headers: fault.headers,
          ...(fault.headers["content-type"] !== undefined ? { contentType: fault.headers["content-type"] } : {})
        })
      ))
  }
}

/** RFC 6749 §5.1: token responses must not be cached by intermediaries. */
const noStore = { "cache-control": "no-store", pragma: "no-cache" }
