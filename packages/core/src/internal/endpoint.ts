/*
 * One HTTP exchange with an authorization server endpoint (token, discovery, revocation), mapped to `TokenError`.
 * The one place that turns transport failures, timeouts and RFC 6749 §5.2 error bodies into reasons, so every
 * endpoint reports them alike.
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import type * as HttpClient from "@effect/platform/HttpClient"
import type * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Clock from "effect/Clock"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type * as ClientAuth from "../ClientAuth.js"
import {
  MalformedResponse,
  Misconfigured,
  OAuthError,
  Timeout,
  TokenError,
  Transport,
  Unavailable
} from "../TokenError.js"
import * as boundedBody from "./boundedBody.js"
import { parseRetryAfter } from "./retryAfter.js"
import { serverText } from "./serverText.js"
import { decodeErrorBody } from "./tokenResponse.js"
import { isTransientStatus } from "./transient.js"

export interface Exchange {
  readonly response: HttpClientResponse.HttpClientResponse
  readonly text: string
  /** The secrets the request carried: redacted from any server text that reaches a message. */
  readonly secrets: ReadonlyArray<string>
}

/** Form parameters: `undefined` is left out, `Redacted` is revealed only into the body, an array repeats the name. */
export type FormParams = Readonly<
  Record<string, string | Redacted.Redacted<string> | ReadonlyArray<string> | undefined>
>

/**
 * A form POST asking for JSON, authenticated with `credentials`. Credentials win over a parameter of the same name:
 * a caller's parameter can never replace the client's own authentication.
 */
export const formPost = (
  url: string,
  params: FormParams,
  credentials: ClientAuth.Credentials
): HttpClientRequest.HttpClientRequest => {
  const body: Array<[string, string]> = []
  for (const [key, value] of Object.entries({ ...params, ...credentials.params })) {
    if (value === undefined) continue
    if (Redacted.isRedacted(value)) body.push([key, Redacted.value(value)])
    else if (typeof value === "string") body.push([key, value])
    else for (const each of value) body.push([key, each])
  }
  const headers: Record<string, string> = { accept: "application/json" }
  for (const [key, value] of Object.entries(credentials.headers)) headers[key] = Redacted.value(value)
  return HttpClientRequest.post(url).pipe(HttpClientRequest.setHeaders(headers), HttpClientRequest.bodyUrlParams(body))
}

/** The default cap on an authorization server's answer: metadata and token responses are a few KiB. */
export const defaultMaxResponseBytes = 1024 * 1024

export interface ExecuteOptions {
  readonly operation: string
  readonly timeout: Duration.Duration
  readonly endpoint: string
  /** The largest body read, counted after any decompression the transport does. */
  readonly maxResponseBytes: number
  /** The request's secrets (`secretsOf`), in case the server echoes them. */
  readonly secrets?: ReadonlyArray<string> | undefined
}

/**
 * Sends `request` without following a redirect and reads at most `maxResponseBytes` of the body, all within
 * `timeout`.
 *
 * - Redirects: a token, discovery or revocation request carries the client's credentials, and a redirected answer
 *   would be a token or a document from somewhere else (RFC 9700 §4.11, §4.12). `FetchHttpClient` follows by
 *   default, so the request runs with `redirect: "manual"` (other `RequestInit` settings kept); the Node clients
 *   never follow. A client wrapped in platform's `followRedirects` cannot be stopped from following, but its answer
 *   comes from another URL than the one asked and is refused. Any 3xx is a `MalformedResponse`, not retried.
 * - Size: the body is read as a stream and counted as it arrives, so a huge, endless or decompression-bomb answer
 *   costs at most the cap; reading stops there. A `content-length` over the cap fails before reading. An oversized
 *   answer is a `MalformedResponse` naming the cap, never retried: it would be as large the next time.
 */
export const execute = (
  client: HttpClient.HttpClient,
  request: HttpClientRequest.HttpClientRequest,
  options: ExecuteOptions
): Effect.Effect<Exchange, TokenError> =>
  Effect.flatMap(
    Effect.serviceOption(FetchHttpClient.RequestInit),
    (init) =>
      Effect.provideService(
        client.execute(request),
        FetchHttpClient.RequestInit,
        { ...Option.getOrUndefined(init), redirect: "manual" }
      )
  ).pipe(
    Effect.mapError((error) => fromHttpClientError(error, options.operation, options.endpoint)),
    Effect.flatMap((response) => {
      const refused = refuse(response, request, options)
      return refused === undefined
        ? Effect.map(readCapped(response, options), (text) => ({ response, text, secrets: options.secrets ?? [] }))
        : Effect.fail(refused)
    }),
    Effect.timeoutFail({
      duration: options.timeout,
      onTimeout: () =>
        new TokenError({
          operation: options.operation,
          reason: new Timeout({ bound: "attempt", after: options.timeout })
        })
    })
  )

/** A redirect, an answer from elsewhere, or a declared length over the cap: refused before the body is read. */
const refuse = (
  response: HttpClientResponse.HttpClientResponse,
  request: HttpClientRequest.HttpClientRequest,
  options: ExecuteOptions
): TokenError | undefined => {
  const status = response.status
  if ((status >= 300 && status < 400) || response.request.url !== request.url) {
    return new TokenError({
      operation: options.operation,
      reason: new MalformedResponse({
        status,
        description: `the ${options.endpoint} answered with a redirect, which is never followed (the request carries ` +
          `the client's credentials)`
      })
    })
  }
  const declared = Number(response.headers["content-length"])
  if (Number.isFinite(declared) && declared > options.maxResponseBytes) return tooLarge(status, options)
  return undefined
}

const tooLarge = (status: number, options: ExecuteOptions) =>
  new TokenError({
    operation: options.operation,
    reason: new MalformedResponse({
      status,
      description: `the ${options.endpoint}'s answer is larger than ${options.maxResponseBytes} bytes ` +
        `(maxResponseBytes); it was not read further`
    })
  })

/** The body as text, counted chunk by chunk; the stream is closed as soon as the count passes the cap. */
const readCapped = (
  response: HttpClientResponse.HttpClientResponse,
  options: ExecuteOptions
): Effect.Effect<string, TokenError> =>
  boundedBody.read(response.stream, options.maxResponseBytes).pipe(
    // No body at all (a 204, `new Response(null)`) is an empty body.
    Effect.catchIf(
      (error) => error._tag === "ResponseError" && error.reason === "EmptyBody",
      () => Effect.succeed({ bytes: new Uint8Array(0), truncated: false })
    ),
    Effect.mapError((error) => fromHttpClientError(error, options.operation, options.endpoint)),
    Effect.flatMap(({ bytes, truncated }) =>
      truncated
        ? Effect.fail(tooLarge(response.status, options))
        : Effect.succeed(new TextDecoder().decode(bytes))
    )
  )

const fromHttpClientError = (
  error: HttpClientError.HttpClientError | HttpClientError.ResponseError,
  operation: string,
  endpoint: string
): TokenError => {
  if (error._tag === "RequestError" && error.reason === "InvalidUrl") {
    return new TokenError({ operation, reason: new Misconfigured({ description: `the ${endpoint} URL is invalid` }) })
  }
  return new TokenError({
    operation,
    reason: new Transport({ description: describeCause(error.cause) ?? `${error.reason} error` })
  })
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

/**
 * `url` as a span's `url.full`: without userinfo, query or fragment, which can carry credentials or API keys (and
 * OpenTelemetry's semantic conventions forbid credentials there). Not even an unparsable URL is echoed, since no
 * part of it can be told safe.
 */
export const spanUrl = (url: string): string => {
  if (!URL.canParse(url)) return "(invalid URL)"
  const safe = new URL(url)
  safe.username = ""
  safe.password = ""
  safe.search = ""
  safe.hash = ""
  return safe.href
}

/**
 * A URL a server sent, for a message: without userinfo, query or fragment (see {@link spanUrl}), and as server text;
 * what does not parse is kept as (cleaned, capped) text, so a reader still sees what the server said.
 */
export const serverUrl = (url: string, secrets: ReadonlyArray<string> = []): string =>
  serverText(hasCredentialParts(url) ? spanUrl(url) : url, secrets)

/** Whether `url` has a part that may carry credentials; others are shown as written (a trailing slash matters). */
const hasCredentialParts = (url: string): boolean => {
  if (!URL.canParse(url)) return false
  const parsed = new URL(url)
  return parsed.username !== "" || parsed.password !== "" || parsed.search !== "" || parsed.hash !== ""
}

/** The `content-type` for a detail: it tells an HTML error page from JSON without quoting the body. */
export const contentType = (response: HttpClientResponse.HttpClientResponse): string =>
  serverText(response.headers["content-type"] ?? "no content type")

/** `body` as an RFC 6749 §5.2 error (`OAuthError`), if it is one. */
export const oauthError = (
  body: unknown,
  options: {
    readonly operation: string
    readonly status: number
    readonly retryAfter: Option.Option<Duration.Duration>
    readonly secrets: ReadonlyArray<string>
  }
): Option.Option<TokenError> =>
  Option.map(decodeErrorBody(body), ({ error, error_description, error_uri }) =>
    new TokenError({
      operation: options.operation,
      reason: new OAuthError({
        code: serverText(error, options.secrets),
        status: options.status,
        ...(error_description !== undefined ? { description: serverText(error_description, options.secrets) } : {}),
        ...(error_uri !== undefined ? { uri: serverUrl(error_uri, options.secrets) } : {}),
        ...(Option.isSome(options.retryAfter) ? { retryAfter: options.retryAfter.value } : {})
      })
    }))

/** The error for a non-2xx answer: an RFC 6749 §5.2 body, else overload, else an answer we cannot use. */
export const failure = (exchange: Exchange, operation: string): Effect.Effect<never, TokenError> =>
  Effect.flatMap(Clock.currentTimeMillis, (now) => {
    const { response, text } = exchange
    const status = response.status
    const retryAfter = parseRetryAfter(response.headers["retry-after"], now)
    const error = Option.getOrElse(
      Option.flatMap(
        parseJson(text),
        (body) => oauthError(body, { operation, status, retryAfter, secrets: exchange.secrets })
      ),
      () =>
        new TokenError({
          operation,
          reason: isTransientStatus(status)
            ? new Unavailable({
              status,
              ...(Option.isSome(retryAfter) ? { retryAfter: retryAfter.value } : {})
            })
            : new MalformedResponse({
              status,
              description: `unexpected answer without an OAuth error body (${contentType(response)})`
            })
        })
    )
    return Effect.fail(error)
  })
