/**
 * `HttpClient` middleware that authenticates every request with a token from a `TokenCache` and survives token
 * expiry and transient faults.
 *
 * - Attaches `Authorization: <type> <token>`; a request that already carries an `Authorization` header is sent as
 *   it is (no token, no 401 handling): the caller chose its own credentials.
 * - A 401 to a request that carried the token becomes the typed {@link Unauthorized} error: the rejected token
 *   (exactly that one) is invalidated and the request is sent once more with a fresh token; a second 401 reaches
 *   the caller. A 401 from another origin (after a redirect) is an ordinary response. 403 is never retried.
 * - Transient faults (transport errors, timeouts, 408, 429, 500, 502, 503, 504) are retried with jittered
 *   exponential backoff that honours `Retry-After`; the token is read again on every attempt. A `Retry-After`
 *   longer than `maxRetryAfter` (60 s by default) ends the retries: the caller gets that answer at once.
 * - A request with a stream body is never replayed. Non-idempotent methods (POST, PATCH) are not retried on
 *   transient faults unless `retryNonIdempotent` is set (a 401 is safe to replay: the server did not process it).
 * - Redirects: with `followRedirects`, the token is sent only to the origin of the original request. Do not wrap
 *   this client (or the client under it) in platform's `HttpClient.followRedirects`, which keeps every header.
 * - Fails closed: when no token can be had, nothing is sent and the caller gets the `TokenError`.
 *
 * @since 0.1.0
 */
import * as Headers from "@effect/platform/Headers"
import * as HttpBody from "@effect/platform/HttpBody"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Clock from "effect/Clock"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Inspectable from "effect/Inspectable"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as MetricLabel from "effect/MetricLabel"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import * as Redacted from "effect/Redacted"
import type * as Schedule from "effect/Schedule"
import type * as AccessToken from "./AccessToken.js"
import * as Backoff from "./Backoff.js"
import { parseRetryAfter } from "./internal/retryAfter.js"
import * as TokenCache from "./TokenCache.js"
import * as TokenError from "./TokenError.js"
import * as WwwAuthenticate from "./WwwAuthenticate.js"

/**
 * The resource server rejected the request's token (HTTP 401), after the one retry with a fresh token, or when
 * the request could not be replayed.
 *
 * @example
 * ```ts
 * import { AuthHttpClient } from "@effect-token/core"
 * import { HttpClient } from "@effect/platform"
 * import { Effect } from "effect"
 *
 * const program = Effect.flatMap(HttpClient.HttpClient, (client) => client.get("https://api.example.com/me")).pipe(
 *   Effect.catchTag("Unauthorized", (error) => Effect.logWarning(`rejected: ${error.error ?? "no reason given"}`))
 * )
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class Unauthorized extends Data.TaggedError("Unauthorized")<{
  /** The request as the caller built it (without the token). */
  readonly request: HttpClientRequest.HttpClientRequest
  readonly response: HttpClientResponse.HttpClientResponse
  /** Parsed `WWW-Authenticate` challenges. */
  readonly challenges: ReadonlyArray<WwwAuthenticate.Challenge>
  /** Whether the request was sent again with a fresh token before this error. */
  readonly retried: boolean
}> {
  /** The HTTP status: always 401. */
  get status(): number {
    return this.response.status
  }

  /** The `error` auth-param of the first challenge that has one, e.g. `invalid_token`. */
  get error(): string | undefined {
    return this.challenges.find((c) => c.params.error !== undefined)?.params.error
  }

  /** The `error_description` auth-param, if the server sent one. */
  get errorDescription(): string | undefined {
    return this.challenges.find((c) => c.params.error_description !== undefined)?.params.error_description
  }

  /**
   * The response still references the request that was sent, token included, and platform's header redaction
   * depends on being called inside a fiber: print only what is safe.
   */
  override toJSON(): unknown {
    return {
      _tag: this._tag,
      status: this.status,
      request: this.request.toJSON(),
      challenges: this.challenges,
      retried: this.retried
    }
  }

  override [Inspectable.NodeInspectSymbol](): unknown {
    return this.toJSON()
  }

  override get message(): string {
    const reason = this.error === undefined ? "" : `: ${this.error}`
    const description = this.errorDescription === undefined ? "" : ` - ${this.errorDescription}`
    return `${this.request.method} ${this.request.url} was rejected with HTTP 401${reason}${description}`
  }
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /**
   * Retry of transient faults: backoff settings (base 100 ms, factor 2, cap 10 s, 3 retries, `Retry-After` up to
   * 60 s by default), or `false` to turn it off.
   */
  readonly transientRetry?: Omit<Backoff.Options<unknown>, "isTransient" | "retryAfter"> | false | undefined
  /** Also retry POST and PATCH on transient faults. Default false. */
  readonly retryNonIdempotent?: boolean | undefined
  /** Time allowed for each attempt, after which it fails as a transient `Transport` error. Default: none. */
  readonly timeout?: Duration.DurationInput | undefined
  /**
   * Follow up to this many redirects, re-sending the token only to the original request's origin. Default 0
   * (a 3xx is returned as it is).
   */
  readonly followRedirects?: number | undefined
}

const transientStatuses = new Set([408, 429, 500, 502, 503, 504])
const nonIdempotentMethods = new Set(["POST", "PATCH"])
const redirectStatuses = new Set([301, 302, 303, 307, 308])

const unauthorizedRetries = Metric.counter("effect_token_http_unauthorized_retries", {
  description: "Requests sent again with a fresh token after a 401",
  incremental: true
})
const transientFaults = Metric.counter("effect_token_http_transient_faults", {
  description: "Transient faults (by status, or transport) seen on retryable requests",
  incremental: true
})

/** A transient answer, turned into a failure so that the retry schedule sees it; unwrapped once retries end. */
class TransientStatus extends Data.TaggedError("TransientStatus")<{
  readonly response: HttpClientResponse.HttpClientResponse
  readonly retryAfter: Option.Option<Duration.Duration>
}> {}

type AttemptError = HttpClientError.RequestError | TokenError.TokenError | Unauthorized | TransientStatus

interface Sent {
  readonly response: HttpClientResponse.HttpClientResponse
  readonly tokenSent: boolean
}

const isTransientFailure = (error: unknown): boolean =>
  Predicate.isTagged(error, "TransientStatus") ||
  (Predicate.isTagged(error, "RequestError") && (error as HttpClientError.RequestError).reason === "Transport")

const faultLabel = (error: unknown): string =>
  Predicate.isTagged(error, "TransientStatus") ? String((error as TransientStatus).response.status) : "transport"

const countFault = (error: unknown): void => {
  if (isTransientFailure(error)) transientFaults.unsafeUpdate(1, [MetricLabel.make("status", faultLabel(error))])
}

/** Only bodies held in memory can be sent twice; a stream, or a raw body that is not a string or bytes, cannot. */
const isReplayable = (request: HttpClientRequest.HttpClientRequest): boolean => {
  const body = request.body
  switch (body._tag) {
    case "Stream":
      return false
    case "Raw":
      return typeof body.body === "string" || body.body instanceof Uint8Array
    default:
      return true
  }
}

/**
 * Reads the body and rebuilds the response around `request`: the result no longer references the request that
 * carried the token (platform redacts headers only inside a fiber, and errors get serialized outside one), and the
 * connection is released before a retry.
 */
const detach = (
  response: HttpClientResponse.HttpClientResponse,
  request: HttpClientRequest.HttpClientRequest
): Effect.Effect<HttpClientResponse.HttpClientResponse> =>
  Effect.map(
    Effect.orElseSucceed(response.text, () => ""),
    (text) =>
      HttpClientResponse.fromWeb(
        request,
        new Response(text === "" ? null : text, { status: response.status, headers: { ...response.headers } })
      )
  )

const originOf = (url: string): string | undefined => {
  try {
    return new URL(url).origin
  } catch {
    return undefined
  }
}

/**
 * Wraps `client` so that every request is authenticated with a token from `cache`.
 *
 * @example
 * ```ts
 * import { AuthHttpClient, TokenCache } from "@effect-token/core"
 * import { HttpClient } from "@effect/platform"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const client = AuthHttpClient.make(yield* HttpClient.HttpClient, yield* TokenCache.TokenCache)
 *   const response = yield* client.get("https://api.example.com/invoices")
 *   return yield* response.json
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <E, R>(
  client: HttpClient.HttpClient.With<E, R>,
  cache: TokenCache.TokenCache,
  options: Options = {}
): HttpClient.HttpClient.With<E | HttpClientError.RequestError | TokenError.TokenError | Unauthorized, R> => {
  const schedule = options.transientRetry === false
    ? undefined
    : Backoff.schedule<unknown>({
      ...options.transientRetry,
      isTransient: isTransientFailure,
      retryAfter: (error) =>
        Predicate.isTagged(error, "TransientStatus") ? (error as TransientStatus).retryAfter : Option.none()
    })
  const maxRedirects = options.followRedirects ?? 0
  const timeout = options.timeout === undefined ? undefined : Duration.decode(options.timeout)

  /**
   * One exchange, following redirects; the token only goes to the original origin. Says whether the final answer
   * came to a request that carried the token: a 401 from another origin says nothing about the token.
   */
  const send = (
    request: HttpClientRequest.HttpClientRequest,
    token: AccessToken.AccessToken | undefined
  ): Effect.Effect<Sent, E | HttpClientError.RequestError, R> => {
    // Parsed only when a redirect is followed: the first hop goes where the caller sent it.
    let origin: string | undefined
    const originalOrigin = () => origin ??= originOf(request.url)
    const hop = (
      current: HttpClientRequest.HttpClientRequest,
      redirects: number
    ): Effect.Effect<Sent, E | HttpClientError.RequestError, R> => {
      const tokenSent = token !== undefined && (redirects === 0 || originOf(current.url) === originalOrigin())
      const authorized = tokenSent
        ? HttpClientRequest.setHeader(current, "authorization", `${token.type} ${Redacted.value(token.value)}`)
        : current
      const exchange = timeout === undefined ? client.execute(authorized) : client.execute(authorized).pipe(
        Effect.timeoutFail({
          duration: timeout,
          onTimeout: () =>
            new HttpClientError.RequestError({
              request: current,
              reason: "Transport",
              description: `no response within ${Duration.format(timeout)}`
            })
        })
      )
      return Effect.flatMap(exchange, (response): Effect.Effect<Sent, E | HttpClientError.RequestError, R> => {
        const location = response.headers["location"]
        if (redirects >= maxRedirects || !redirectStatuses.has(response.status) || location === undefined) {
          return Effect.succeed({ response, tokenSent })
        }
        let next: HttpClientRequest.HttpClientRequest
        try {
          next = HttpClientRequest.setUrl(current, new URL(location, current.url))
        } catch {
          return Effect.succeed({ response, tokenSent })
        }
        if (
          response.status === 303 || ((response.status === 301 || response.status === 302) && current.method === "POST")
        ) {
          next = HttpClientRequest.setMethod(next, "GET").pipe(HttpClientRequest.setBody(HttpBody.empty))
        } else if (!isReplayable(current)) {
          return Effect.succeed({ response, tokenSent })
        }
        if (originOf(next.url) !== originalOrigin()) {
          // Credentials set by the caller must not cross origins either.
          next = HttpClientRequest.setHeaders(
            next,
            Headers.remove(next.headers, ["authorization", "cookie", "proxy-authorization"])
          )
        }
        return hop(next, redirects + 1)
      })
    }
    return hop(request, 0)
  }

  /**
   * One authenticated attempt with the 401 rule: the first 401 for the token invalidates exactly that token and,
   * when the request can be replayed, tries once more with a fresh one. The retry's own 401 does not invalidate the
   * fresh token: an endpoint that refuses every token would otherwise cost two token requests per call.
   */
  const attempt = (
    request: HttpClientRequest.HttpClientRequest
  ): Effect.Effect<HttpClientResponse.HttpClientResponse, E | AttemptError, R> => {
    // Plain flatMaps rather than a generator: this runs on every request.
    const once = (retried: boolean): Effect.Effect<HttpClientResponse.HttpClientResponse, E | AttemptError, R> =>
      Effect.flatMap(
        cache.get,
        (token) =>
          Effect.flatMap(send(request, token), ({ response, tokenSent }) =>
            response.status === 401 && tokenSent
              ? rejectedBy(token, response, retried)
              : checkTransient(response, request))
      )
    const rejectedBy = (
      token: AccessToken.AccessToken,
      response: HttpClientResponse.HttpClientResponse,
      retried: boolean
    ): Effect.Effect<HttpClientResponse.HttpClientResponse, E | AttemptError, R> =>
      Effect.gen(function*() {
        const rejected = yield* detach(response, request)
        if (!retried) {
          yield* cache.invalidate(token)
          if (isReplayable(request)) {
            unauthorizedRetries.unsafeUpdate(1, [])
            yield* Effect.annotateCurrentSpan("effect_token.unauthorized_retry", true)
            return yield* once(true)
          }
        }
        const challenges = WwwAuthenticate.parse(rejected.headers["www-authenticate"] ?? "")
        return yield* new Unauthorized({ request, response: rejected, challenges, retried })
      })
    return once(false)
  }

  const checkTransient = (
    response: HttpClientResponse.HttpClientResponse,
    request: HttpClientRequest.HttpClientRequest
  ): Effect.Effect<HttpClientResponse.HttpClientResponse, TransientStatus> =>
    transientStatuses.has(response.status)
      ? Effect.flatMap(
        Effect.zip(detach(response, request), Clock.currentTimeMillis),
        ([detached, now]) =>
          new TransientStatus({
            response: detached,
            retryAfter: parseRetryAfter(detached.headers["retry-after"], now)
          })
      )
      : Effect.succeed(response)

  /**
   * Retries only after a transient failure. `Effect.retry` sets up its schedule driver on every run, which costs
   * more than the whole middleware on a hot path that almost never fails: the first attempt runs bare, and its
   * failure is replayed as the schedule's first input.
   */
  const withRetry = <A>(
    once: Effect.Effect<A, E | AttemptError, R>,
    schedule: Schedule.Schedule<unknown, unknown>
  ): Effect.Effect<A, E | AttemptError, R> =>
    Effect.catchAll(once, (first) => {
      if (!isTransientFailure(first)) return Effect.fail(first)
      countFault(first)
      const counted = Effect.tapError(once, (error) => Effect.sync(() => countFault(error)))
      let replayed = false
      return Effect.retry(
        Effect.suspend(() => {
          if (replayed) return counted
          replayed = true
          return Effect.fail(first)
        }),
        schedule
      )
    })

  const execute = (
    request: HttpClientRequest.HttpClientRequest
  ): Effect.Effect<
    HttpClientResponse.HttpClientResponse,
    E | HttpClientError.RequestError | TokenError.TokenError | Unauthorized,
    R
  > => {
    if (request.headers["authorization"] !== undefined) {
      // The caller brought its own credentials.
      return Effect.map(send(request, undefined), (sent) => sent.response)
    }
    const retryable = isReplayable(request) &&
      (options.retryNonIdempotent === true || !nonIdempotentMethods.has(request.method))
    const attempts = retryable && schedule !== undefined ? withRetry(attempt(request), schedule) : attempt(request)
    // When the retries are spent, the caller gets the last transient answer, as without the middleware.
    return Effect.catchIf(
      attempts,
      (error): error is TransientStatus => Predicate.isTagged(error, "TransientStatus"),
      (error) => Effect.succeed(error.response)
    )
  }

  return HttpClient.makeWith<never, never, E | HttpClientError.RequestError | TokenError.TokenError | Unauthorized, R>(
    (request) => Effect.flatMap(request, execute),
    Effect.succeed
  )
}

/**
 * Replaces the `HttpClient` in context with one authenticated by the `TokenCache` in context.
 *
 * The application's `HttpClient` can only fail with `HttpClientError`, so through this layer a `TokenError` arrives
 * as a `RequestError` (nothing was sent) and an `Unauthorized` as a `ResponseError` (status 401), each with the
 * original error as its `cause`: {@link authFailure} gets it back. Use {@link make} to keep them apart in the type.
 *
 * @example
 * ```ts
 * import { AuthHttpClient, ClientCredentials, TokenCache } from "@effect-token/core"
 * import { NodeHttpClient } from "@effect/platform-node"
 * import { Layer } from "effect"
 *
 * const ApiClientLive = AuthHttpClient.layer().pipe(
 *   Layer.provide(TokenCache.layer()),
 *   Layer.provide(ClientCredentials.layerConfig()),
 *   Layer.provide(NodeHttpClient.layerUndici)
 * )
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options?: Options
): Layer.Layer<HttpClient.HttpClient, never, HttpClient.HttpClient | TokenCache.TokenCache> =>
  Layer.effect(
    HttpClient.HttpClient,
    Effect.map(
      Effect.all([HttpClient.HttpClient, TokenCache.TokenCache]),
      ([client, cache]): HttpClient.HttpClient => {
        const authenticated = make(client, cache, options)
        return HttpClient.makeWith<never, never, HttpClientError.HttpClientError, never>(
          (request) =>
            Effect.flatMap(request, (request) =>
              Effect.catchTags(authenticated.execute(request), {
                TokenError: (cause) =>
                  new HttpClientError.RequestError({
                    request,
                    // Only a transient token failure may look like a transport fault: platform's `retryTransient`
                    // retries those, and retrying `invalid_client` would hammer the authorization server.
                    reason: TokenError.isTransient(cause) ? "Transport" : "Encode",
                    description: cause.message,
                    cause
                  }),
                Unauthorized: (cause) =>
                  new HttpClientError.ResponseError({
                    request: cause.request,
                    response: cause.response,
                    reason: "StatusCode",
                    description: cause.message,
                    cause
                  })
              })),
          Effect.succeed
        )
      }
    )
  )

/**
 * The `TokenError` or `Unauthorized` behind an `HttpClientError` from {@link layer}'s client.
 *
 * @example
 * ```ts
 * import { AuthHttpClient } from "@effect-token/core"
 * import { HttpClient } from "@effect/platform"
 * import { Effect, Option } from "effect"
 *
 * const program = Effect.flatMap(HttpClient.HttpClient, (client) => client.get("https://api.example.com/me")).pipe(
 *   Effect.catchAll((error) =>
 *     Option.match(AuthHttpClient.authFailure(error), {
 *       onNone: () => Effect.fail(error),
 *       onSome: (failure) => Effect.logWarning(failure.message)
 *     })
 *   )
 * )
 * ```
 *
 * @since 0.1.0
 * @category accessors
 */
export const authFailure = (
  error: HttpClientError.HttpClientError
): Option.Option<TokenError.TokenError | Unauthorized> =>
  Predicate.isTagged(error.cause, "TokenError") || Predicate.isTagged(error.cause, "Unauthorized")
    ? Option.some(error.cause as TokenError.TokenError | Unauthorized)
    : Option.none()
