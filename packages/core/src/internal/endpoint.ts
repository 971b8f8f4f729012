/*
 * One HTTP exchange with an authorization server endpoint other than the token endpoint (discovery, revocation),
 * mapped to `TokenError` the way `TokenEndpoint` maps token requests.
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import type * as HttpClientError from "@effect/platform/HttpClientError"
import type * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { TokenError } from "../TokenError.js"
import { parseRetryAfter } from "./retryAfter.js"
import { decodeErrorBody } from "./tokenResponse.js"

export interface Exchange {
  readonly response: HttpClientResponse.HttpClientResponse
  readonly text: string
}

/** Sends `request` and reads the whole body within `timeout`. */
export const execute = (
  client: HttpClient.HttpClient,
  request: HttpClientRequest.HttpClientRequest,
  options: { readonly operation: string; readonly timeout: Duration.Duration; readonly endpoint: string }
): Effect.Effect<Exchange, TokenError> =>
  Effect.flatMap(client.execute(request), (response) => Effect.map(response.text, (text) => ({ response, text }))).pipe(
    Effect.mapError((error) => fromHttpClientError(error, options.operation, options.endpoint)),
    Effect.timeoutFail({
      duration: options.timeout,
      onTimeout: () =>
        new TokenError({
          reason: "Timeout",
          operation: options.operation,
          detail: `no answer from the ${options.endpoint} within ${Duration.format(options.timeout)}`
        })
    })
  )

const fromHttpClientError = (
  error: HttpClientError.HttpClientError,
  operation: string,
  endpoint: string
): TokenError => {
  if (error._tag === "RequestError" && error.reason === "InvalidUrl") {
    return new TokenError({ reason: "Misconfigured", operation, detail: `the ${endpoint} URL is invalid` })
  }
  return new TokenError({ reason: "Transport", operation, detail: describeCause(error.cause) ?? error.reason })
}

/** The cause's code and message, e.g. `ECONNREFUSED`: network errors describe the peer, never request contents. */
const describeCause = (cause: unknown): string | undefined => {
  if (!(cause instanceof Error)) return undefined
  const code = (cause as { code?: unknown }).code
  const nested = describeCause((cause as { cause?: unknown }).cause)
  const own = typeof code === "string" && !cause.message.includes(code) ? `${code}: ${cause.message}` : cause.message
  return nested === undefined ? own : `${own} (${nested})`
}

export const parseJson = (text: string): Option.Option<unknown> => {
  try {
    return Option.some(JSON.parse(text))
  } catch {
    return Option.none()
  }
}

const isUnavailableStatus = (status: number) => status === 408 || status === 429 || status >= 500

/** The error for a non-2xx answer: an RFC 6749 §5.2 body, else overload, else an answer we cannot use. */
export const failure = (exchange: Exchange, operation: string): Effect.Effect<never, TokenError> =>
  Effect.flatMap(Clock.currentTimeMillis, (now) => {
    const { response, text } = exchange
    const status = response.status
    const retryAfter = parseRetryAfter(response.headers["retry-after"], now)
    const retry = Option.isSome(retryAfter) ? { retryAfter: retryAfter.value } : {}
    const oauthError = Option.flatMap(parseJson(text), decodeErrorBody)
    if (Option.isSome(oauthError)) {
      const { error, error_description, error_uri } = oauthError.value
      return Effect.fail(
        new TokenError({
          reason: "OAuthError",
          operation,
          status,
          error,
          ...(error_description !== undefined ? { errorDescription: error_description } : {}),
          ...(error_uri !== undefined ? { errorUri: error_uri } : {}),
          ...retry
        })
      )
    }
    return Effect.fail(
      new TokenError({
        reason: isUnavailableStatus(status) ? "Unavailable" : "MalformedResponse",
        operation,
        status,
        detail: `unexpected answer without an OAuth error body (${
          response.headers["content-type"] ?? "no content type"
        })`,
        ...retry
      })
    )
  })
