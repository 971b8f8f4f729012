/**
 * An `HttpClient` bound to one API: it attaches a token to the requests for that API's origins, and to nothing else.
 *
 * - Bound by a base URL (relative request URLs resolve against it) or a list of origins. A request to any other
 *   origin is sent untouched and fetches no token: an application's calls to a payment provider or a webhook never
 *   carry the API's bearer token. Token endpoint, discovery and revocation requests go through the plain client.
 * - A request that already carries an `Authorization` header is sent as it is: the caller chose its credentials.
 * - A 401 to a request that carried the token invalidates exactly that token and sends the request once more with a
 *   fresh one; a second 401 reaches the caller as the typed {@link TokenRejected}. 403 is never retried.
 * - Transient faults (transport errors, timeouts, and the statuses of `TokenError.isTransientStatus`) are retried
 *   with jittered exponential backoff that honours `Retry-After`. Stream bodies are never replayed; POST and PATCH
 *   are retried only with `retryNonIdempotent`.
 * - Redirects (`followRedirects`) are followed here: the token goes only to bound origins, and the caller's own
 *   `Authorization`, `Proxy-Authorization` and `Cookie` never leave the origin they were set for. Do not wrap the
 *   client in platform's `HttpClient.followRedirects`, which keeps every header.
 * - Fails closed: when no token can be had, nothing is sent and the caller gets the `TokenError`.
 *
 * @since 0.1.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as HttpIncomingMessage from "@effect/platform/HttpIncomingMessage"
import * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import { dual } from "effect/Function"
import { globalValue } from "effect/GlobalValue"
import * as Inspectable from "effect/Inspectable"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as MetricLabel from "effect/MetricLabel"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import * as Redacted from "effect/Redacted"
import type * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import type * as AccessToken from "./AccessToken.js"
import * as Backoff from "./Backoff.js"
import * as ClientAuth from "./ClientAuth.js"
import * as ClientCredentials from "./ClientCredentials.js"
import * as Discovery from "./Discovery.js"
import { spanUrl } from "./internal/endpoint.js"
import * as redirects from "./internal/redirects.js"
import { parseRetryAfter } from "./internal/retryAfter.js"
import { isTransientStatus } from "./internal/transient.js"
import * as TokenCache from "./TokenCache.js"
import * as TokenError from "./TokenError.js"
import * as TokenManager from "./TokenManager.js"
import type * as TokenSource from "./TokenSource.js"
import * as WwwAuthenticate from "./WwwAuthenticate.js"

const ChallengeSchema = Schema.Struct({
  scheme: Schema.String,
  params: Schema.Record({ key: Schema.String, value: Schema.String }),
  token68: Schema.optional(Schema.String)
})

const RequestSchema = Schema.declare(
  (u): u is HttpClientRequest.HttpClientRequest => Predicate.hasProperty(u, HttpClientRequest.TypeId)
)
const ResponseSchema = Schema.declare(
  (u): u is HttpClientResponse.HttpClientResponse => Predicate.hasProperty(u, HttpClientResponse.TypeId)
)

/**
 * The API rejected the token (HTTP 401), after the one retry with a fresh token, or when the request could not be
 * replayed. Its tag does not collide with platform's `HttpApiError.Unauthorized`.
 *
 * @example
 * ```ts
 * import { AuthHttpClient } from "@effect-token/core"
 * import { Effect } from "effect"
 *
 * const program = Effect.flatMap(AuthHttpClient.AuthHttpClient, (api) => api.get("/me")).pipe(
 *   Effect.catchTag("TokenRejected", (error) => Effect.logWarning(`rejected: ${error.error ?? "no reason given"}`))
 * )
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class TokenRejected extends Schema.TaggedError<TokenRejected>("@effect-token/core/TokenRejected")(
  "TokenRejected",
  {
    /** The request as the caller built it, without the token. */
    request: RequestSchema,
    /** The 401 answer, body read into memory, detached from the request that carried the token. */
    response: ResponseSchema,
    /** Parsed `WWW-Authenticate` challenges. */
    challenges: Schema.Array(ChallengeSchema),
    /** Whether the request was sent again with a fresh token before this error. */
    retried: Schema.Boolean
  }
) {
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

  override get message(): string {
    const reason = this.error === undefined ? "" : `: ${this.error}`
    const description = this.errorDescription === undefined ? "" : ` - ${this.errorDescription}`
    return `${this.request.method} ${spanUrl(this.request.url)} was rejected with HTTP 401${reason}${description}`
  }

  /** Prints what is safe: the request's method and URL without userinfo or query, never headers or the body. */
  override toJSON(): unknown {
    return {
      _tag: this._tag,
      method: this.request.method,
      url: spanUrl(this.request.url),
      status: this.status,
      challenges: this.challenges,
      retried: this.retried
    }
  }

  override [Inspectable.NodeInspectSymbol](): unknown {
    return this.toJSON()
  }

  override toString(): string {
    return `TokenRejected: ${this.message}`
  }
}

/**
 * The errors the authentication adds to a client's own.
 *
 * @since 0.1.0
 * @category errors
 */
export type AuthError = TokenError.TokenError | TokenRejected

/**
 * An authenticated client bound to one API.
 *
 * @since 0.1.0
 * @category models
 */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type -- a named type for the Tag, as platform's HttpClient
export interface AuthHttpClient extends HttpClient.HttpClient.With<HttpClientError.HttpClientError | AuthError> {}

/**
 * The application's authenticated client (one API). For several APIs, give each its own Tag:
 * `class BillingApi extends Context.Tag("BillingApi")<BillingApi, AuthHttpClient.AuthHttpClient>() {}` and pass
 * it as `tag` to the layer functions.
 *
 * @since 0.1.0
 * @category tags
 */
export const AuthHttpClient: Context.Tag<AuthHttpClient, AuthHttpClient> = Context.GenericTag<AuthHttpClient>(
  "@effect-token/core/AuthHttpClient"
)

/**
 * Where the token may go: a base URL (its origin; relative request URLs resolve against it), or a non-empty list
 * of origins, or both.
 *
 * @since 0.1.0
 * @category models
 */
export type Binding =
  | {
    readonly baseUrl: string | URL
    readonly origins?: ReadonlyArray<string | URL> | undefined
  }
  | {
    readonly baseUrl?: undefined
    readonly origins: readonly [string | URL, ...Array<string | URL>]
  }

/**
 * How the client behaves on 401s, transient faults and redirects.
 *
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
  /** Follow up to this many redirects (see the module's rules). Default 0: a 3xx is returned as it is. */
  readonly followRedirects?: number | undefined
}

/**
 * Where tokens come from: one `TokenCache`, or a `TokenManager` keyed by token shape (which also serves requests
 * that ask for other token parameters with {@link withTokenParams}).
 *
 * @since 0.1.0
 * @category models
 */
export type Tokens = TokenCache.TokenCache | TokenManager.TokenManager<TokenSource.TokenShape>

/**
 * @since 0.1.0
 * @category models
 */
export type AuthenticateOptions = Binding & Options & { readonly tokens: Tokens }

const currentTokenParams = globalValue(
  "@effect-token/core/AuthHttpClient/currentTokenParams",
  () => FiberRef.unsafeMake<TokenSource.TokenShape | undefined>(undefined)
)

/**
 * Requests through the returned client ask for a token with other parameters (scope, resource, audience, extra
 * parameters), on top of the manager's own. The client must be authenticated with a `TokenManager`: a single
 * `TokenCache` holds one token shape, so it fails such a request with `Misconfigured` rather than send the wrong
 * token.
 *
 * @example
 * ```ts
 * import { AuthHttpClient } from "@effect-token/core"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const api = yield* AuthHttpClient.AuthHttpClient
 *   const admin = api.pipe(AuthHttpClient.withTokenParams({ scope: "orders:admin" }))
 *   return yield* admin.del("/orders/42")
 * })
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const withTokenParams: {
  (params: TokenSource.TokenShape): <E, R>(self: HttpClient.HttpClient.With<E, R>) => HttpClient.HttpClient.With<E, R>
  <E, R>(self: HttpClient.HttpClient.With<E, R>, params: TokenSource.TokenShape): HttpClient.HttpClient.With<E, R>
} = dual(
  2,
  <E, R>(self: HttpClient.HttpClient.With<E, R>, params: TokenSource.TokenShape): HttpClient.HttpClient.With<E, R> =>
    HttpClient.transform(self, (effect) => Effect.locally(effect, currentTokenParams, params))
)

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

type AttemptError = HttpClientError.RequestError | AuthError | TransientStatus

const nonIdempotentMethods: ReadonlySet<string> = new Set(["POST", "PATCH"])

const isTransientFailure = (error: unknown): boolean =>
  Predicate.isTagged(error, "TransientStatus") ||
  (Predicate.isTagged(error, "RequestError") && (error as HttpClientError.RequestError).reason === "Transport")

const countFault = (error: unknown): void => {
  if (!isTransientFailure(error)) return
  const label = Predicate.isTagged(error, "TransientStatus")
    ? String((error as TransientStatus).response.status)
    : "transport"
  transientFaults.unsafeUpdate(1, [MetricLabel.make("status", label)])
}

/** The most of a 401 or transient answer's body the middleware keeps: enough for any error document. */
const maxDetachedBodyBytes = 64 * 1024

/** The time allowed to read such a body when the client has no `timeout` of its own. */
const defaultBodyTimeout = Duration.seconds(10)

/**
 * At most `maxDetachedBodyBytes` of the body, read within `timeout`: reading stops there and the stream is closed,
 * which releases the connection. A server that answers 401 with an endless or stalled body can neither hang the
 * caller nor make the client buffer it.
 */
const boundedBody = (
  response: HttpClientResponse.HttpClientResponse,
  timeout: Duration.Duration
): Effect.Effect<Uint8Array> =>
  response.stream.pipe(
    Stream.runFoldWhile(
      { chunks: [] as Array<Uint8Array>, size: 0 },
      (acc) => acc.size < maxDetachedBodyBytes,
      (acc, chunk) => {
        const room = maxDetachedBodyBytes - acc.size
        const kept = chunk.length > room ? chunk.subarray(0, room) : chunk
        acc.chunks.push(kept)
        return { chunks: acc.chunks, size: acc.size + kept.length }
      }
    ),
    Effect.map(({ chunks, size }) => {
      const bytes = new Uint8Array(size)
      let offset = 0
      for (const chunk of chunks) {
        bytes.set(chunk, offset)
        offset += chunk.length
      }
      return bytes
    }),
    Effect.timeout(timeout),
    Effect.orElseSucceed(() => new Uint8Array(0))
  )

/**
 * Reads the body (bounded in size and time) and rebuilds the response around `request`: the result no longer
 * references the request that carried the token (platform redacts headers only inside a fiber, and errors get
 * serialized outside one), and the connection is released before a retry.
 */
const detach = (
  response: HttpClientResponse.HttpClientResponse,
  request: HttpClientRequest.HttpClientRequest,
  timeout: Duration.Duration
): Effect.Effect<HttpClientResponse.HttpClientResponse> =>
  Effect.map(boundedBody(response, timeout), (bytes) => {
    // The length of what was kept, not of what the server announced.
    const { "content-length": _, ...headers } = response.headers
    return HttpClientResponse.fromWeb(
      request,
      new Response(bytes.length === 0 ? null : (bytes as Uint8Array<ArrayBuffer>), { status: response.status, headers })
    )
  })

/**
 * A response that names `request` (the caller's, without the token) instead of the request that carried the token.
 * Platform's response keeps the request it answered and prints it (`toJSON`, `util.inspect`, and every
 * `ResponseError` built from it, e.g. by the caller's own `HttpClient.filterStatusOk`); platform redacts the header
 * only when printed inside a fiber. Everything else is delegated, so the body stays unread until the caller reads
 * it, and the errors of those reads are re-made around `request` too.
 */
class TokenlessResponse implements HttpClientResponse.HttpClientResponse {
  readonly [HttpClientResponse.TypeId]: HttpClientResponse.TypeId = HttpClientResponse.TypeId
  readonly [HttpIncomingMessage.TypeId]: HttpIncomingMessage.TypeId = HttpIncomingMessage.TypeId
  constructor(
    private readonly original: HttpClientResponse.HttpClientResponse,
    readonly request: HttpClientRequest.HttpClientRequest
  ) {}
  private read<A>(
    effect: Effect.Effect<A, HttpClientError.ResponseError>
  ): Effect.Effect<A, HttpClientError.ResponseError> {
    return Effect.mapError(effect, (error) => tokenlessError(error, this.request, this))
  }
  get status() {
    return this.original.status
  }
  get headers() {
    return this.original.headers
  }
  get cookies() {
    return this.original.cookies
  }
  get remoteAddress() {
    return this.original.remoteAddress
  }
  get formData() {
    return this.read(this.original.formData)
  }
  get text() {
    return this.read(this.original.text)
  }
  get json() {
    return this.read(this.original.json)
  }
  get urlParamsBody() {
    return this.read(this.original.urlParamsBody)
  }
  get arrayBuffer() {
    return this.read(this.original.arrayBuffer)
  }
  get stream(): Stream.Stream<Uint8Array, HttpClientError.ResponseError> {
    return Stream.mapError(this.original.stream, (error) => tokenlessError(error, this.request, this))
  }
  toJSON(): unknown {
    // No body: printing a response must not consume it.
    return {
      _id: "@effect/platform/HttpClientResponse",
      request: this.request.toJSON(),
      status: this.status,
      headers: Inspectable.redact(this.headers)
    }
  }
  toString(): string {
    return Inspectable.format(this.toJSON())
  }
  [Inspectable.NodeInspectSymbol](): unknown {
    return this.toJSON()
  }
}

const viewedThrough = (
  response: HttpClientResponse.HttpClientResponse,
  request: HttpClientRequest.HttpClientRequest
): HttpClientResponse.HttpClientResponse => new TokenlessResponse(response, request)

/** A client error of the request that carried the token, re-made around `request` (the same request without it). */
const tokenlessError = <E>(
  error: E,
  request: HttpClientRequest.HttpClientRequest,
  response?: HttpClientResponse.HttpClientResponse
): E => {
  if (Predicate.isTagged(error, "RequestError") && HttpClientError.isHttpClientError(error)) {
    const e = error as unknown as HttpClientError.RequestError
    return new HttpClientError.RequestError({
      request,
      reason: e.reason,
      cause: e.cause,
      ...(e.description === undefined ? {} : { description: e.description })
    }) as unknown as E
  }
  if (Predicate.isTagged(error, "ResponseError") && HttpClientError.isHttpClientError(error)) {
    const e = error as unknown as HttpClientError.ResponseError
    return new HttpClientError.ResponseError({
      request,
      response: response ?? viewedThrough(e.response, request),
      reason: e.reason,
      cause: e.cause,
      ...(e.description === undefined ? {} : { description: e.description })
    }) as unknown as E
  }
  return error
}

const misconfigured = (description: string) =>
  new TokenError.TokenError({
    operation: "authenticated request",
    reason: new TokenError.Misconfigured({ description })
  })

/** Origins and base of a binding, or why it cannot work. */
const bindingOf = (
  binding: Binding
): { readonly base: string | undefined; readonly origins: ReadonlyArray<string> } | TokenError.TokenError => {
  const origins: Array<string> = []
  let base: string | undefined
  if (binding.baseUrl !== undefined) {
    const url = URL.canParse(binding.baseUrl) ? new URL(binding.baseUrl) : undefined
    const origin = url === undefined ? undefined : redirects.originOf(url.href)
    if (url === undefined || origin === undefined || (url.protocol !== "https:" && url.protocol !== "http:")) {
      return misconfigured("the API base URL is not an absolute http(s) URL")
    }
    base = url.href.replace(/\/+$/, "")
    origins.push(origin)
  }
  for (const each of binding.origins ?? []) {
    const origin = URL.canParse(each) ? redirects.originOf(new URL(each).href) : undefined
    if (origin === undefined) return misconfigured("an API origin is not an absolute http(s) URL")
    origins.push(origin)
  }
  if (origins.length === 0) return misconfigured("the authenticated client is bound to no origin")
  return { base, origins }
}

/** Whether `url` is absolute (has a scheme): only relative URLs are resolved against the base. */
const hasScheme = (url: string): boolean => /^[a-zA-Z][a-zA-Z0-9+.-]*:/.test(url)

/**
 * Wraps `self` so that requests to the bound API carry a token from `tokens`. A `dual` combinator: its error
 * channel keeps the client's own errors and adds `TokenError` and {@link TokenRejected}, so `Effect.catchTag` works
 * on each.
 *
 * @example
 * ```ts
 * import { AuthHttpClient, TokenCache } from "@effect-token/core"
 * import { HttpClient } from "@effect/platform"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const api = (yield* HttpClient.HttpClient).pipe(
 *     AuthHttpClient.authenticate({ baseUrl: "https://api.example.com", tokens: yield* TokenCache.TokenCache })
 *   )
 *   const response = yield* api.get("/invoices")
 *   return yield* response.json
 * }).pipe(
 *   Effect.catchTag("TokenError", (error) => Effect.logError(error.message)),
 *   Effect.catchTag("TokenRejected", (error) => Effect.logError(error.message))
 * )
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const authenticate: {
  (
    options: AuthenticateOptions
  ): <E, R>(
    self: HttpClient.HttpClient.With<E, R>
  ) => HttpClient.HttpClient.With<E | HttpClientError.RequestError | AuthError, R>
  <E, R>(
    self: HttpClient.HttpClient.With<E, R>,
    options: AuthenticateOptions
  ): HttpClient.HttpClient.With<E | HttpClientError.RequestError | AuthError, R>
} = dual(2, <E, R>(
  client: HttpClient.HttpClient.With<E, R>,
  options: AuthenticateOptions
): HttpClient.HttpClient.With<E | HttpClientError.RequestError | AuthError, R> => {
  type Out = E | HttpClientError.RequestError | AuthError
  const binding = bindingOf(options)
  if (TokenError.isTokenError(binding)) {
    return HttpClient.makeWith<never, never, Out, R>(() => Effect.fail(binding), Effect.succeed)
  }
  const { base, origins } = binding
  /**
   * Whether the token may go to `url`: the origin followed by a path, query, fragment or nothing (so that
   * `https://api.test.evil.example` and `https://api.test@evil.example` do not pass), else a parse for the
   * spellings a prefix misses (an upper-case host, a default port).
   */
  const isBound = (url: string): boolean => {
    for (let i = 0; i < origins.length; i++) {
      const origin = origins[i]!
      if (url.startsWith(origin)) {
        const next = url.charCodeAt(origin.length)
        if (Number.isNaN(next) || next === 47 || next === 63 || next === 35) return true
      }
    }
    const origin = redirects.originOf(url)
    return origin !== undefined && origins.includes(origin)
  }

  const tokens = options.tokens
  const manager = TokenManager.isTokenManager(tokens) ? tokens : undefined
  const cache = manager === undefined ? tokens as TokenCache.TokenCache : undefined
  const noParams: TokenSource.TokenShape = {}
  const getToken = (params: TokenSource.TokenShape | undefined): Effect.Effect<AccessToken.AccessToken, AuthError> =>
    cache !== undefined
      ? params === undefined
        ? cache.get
        : Effect.fail(misconfigured("per-request token parameters need a TokenManager; this client has one TokenCache"))
      : manager!.get(params ?? noParams)
  const invalidate = (params: TokenSource.TokenShape | undefined, token: AccessToken.AccessToken) =>
    cache !== undefined ? cache.invalidate(token) : manager!.invalidate(params ?? noParams, token)

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
  const bodyTimeout = timeout ?? defaultBodyTimeout

  const exchange = (request: HttpClientRequest.HttpClientRequest) =>
    timeout === undefined ? client.execute(request) : client.execute(request).pipe(
      Effect.timeoutFail({
        duration: timeout,
        onTimeout: () =>
          new HttpClientError.RequestError({
            request,
            reason: "Transport",
            description: `no response within ${Duration.format(timeout)}`
          })
      })
    )

  /** One exchange (redirects followed), with `token` attached wherever the client is bound. */
  const send = (request: HttpClientRequest.HttpClientRequest, token: AccessToken.AccessToken) =>
    redirects.follow(request, maxRedirects, {
      send: (current) => {
        const tokenSent = isBound(current.url)
        if (!tokenSent) return Effect.map(exchange(current), (response) => ({ response, tokenSent }))
        const sent = HttpClientRequest.setHeader(
          current,
          "authorization",
          `${token.type} ${Redacted.value(token.value)}`
        )
        // Nothing handed back references the request that carried the token: responses and errors name `current`.
        return Effect.mapBoth(exchange(sent), {
          onFailure: (error) => tokenlessError(error, current),
          onSuccess: (response) => ({ response: viewedThrough(response, current), tokenSent })
        })
      }
    })

  const checkTransient = (
    response: HttpClientResponse.HttpClientResponse,
    request: HttpClientRequest.HttpClientRequest
  ): Effect.Effect<HttpClientResponse.HttpClientResponse, TransientStatus> =>
    isTransientStatus(response.status)
      ? Effect.flatMap(
        Effect.zip(detach(response, request, bodyTimeout), Clock.currentTimeMillis),
        ([detached, now]) =>
          new TransientStatus({
            response: detached,
            retryAfter: parseRetryAfter(detached.headers["retry-after"], now)
          })
      )
      : Effect.succeed(response)

  /**
   * One authenticated attempt with the 401 rule: the first 401 for the token invalidates exactly that token and,
   * when the request can be replayed, tries once more with a fresh one. The retry's own 401 does not invalidate the
   * fresh token: an endpoint that refuses every token would otherwise cost two token requests per call.
   */
  const attempt = (
    request: HttpClientRequest.HttpClientRequest,
    params: TokenSource.TokenShape | undefined
  ): Effect.Effect<HttpClientResponse.HttpClientResponse, E | AttemptError, R> => {
    // Plain flatMaps rather than a generator: this runs on every request.
    const once = (retried: boolean): Effect.Effect<HttpClientResponse.HttpClientResponse, E | AttemptError, R> =>
      Effect.flatMap(
        getToken(params),
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
        const rejected = yield* detach(response, request, bodyTimeout)
        if (!retried) {
          yield* invalidate(params, token)
          if (redirects.isReplayable(request)) {
            unauthorizedRetries.unsafeUpdate(1, [])
            yield* Effect.annotateCurrentSpan("effect_token.unauthorized_retry", true)
            return yield* once(true)
          }
        }
        const challenges = WwwAuthenticate.parse(rejected.headers["www-authenticate"] ?? "")
        return yield* new TokenRejected({ request, response: rejected, challenges, retried })
      })
    return once(false)
  }

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

  const authenticated = (
    request: HttpClientRequest.HttpClientRequest,
    params: TokenSource.TokenShape | undefined
  ): Effect.Effect<HttpClientResponse.HttpClientResponse, Out, R> => {
    const retryable = redirects.isReplayable(request) &&
      (options.retryNonIdempotent === true || !nonIdempotentMethods.has(request.method))
    const once = attempt(request, params)
    const attempts = retryable && schedule !== undefined ? withRetry(once, schedule) : once
    // When the retries are spent, the caller gets the last transient answer, as without the middleware.
    return Effect.catchIf(
      attempts,
      (error): error is TransientStatus => Predicate.isTagged(error, "TransientStatus"),
      (error) => Effect.succeed(error.response)
    )
  }

  const execute = (request: HttpClientRequest.HttpClientRequest): Effect.Effect<
    HttpClientResponse.HttpClientResponse,
    Out,
    R
  > => {
    const resolved = base !== undefined && !hasScheme(request.url)
      ? HttpClientRequest.setUrl(request, base + (request.url.startsWith("/") ? "" : "/") + request.url)
      : request
    if (resolved.headers["authorization"] !== undefined || !isBound(resolved.url)) {
      // The caller brought its own credentials, or the request is not for this API: no token, no 401 rule.
      return Effect.map(
        redirects.follow(resolved, maxRedirects, {
          send: (current) => Effect.map(exchange(current), (response) => ({ response, tokenSent: false }))
        }),
        (sent) => sent.response
      )
    }
    return Effect.flatMap(FiberRef.get(currentTokenParams), (params) => authenticated(resolved, params))
  }

  return HttpClient.makeWith<never, never, Out, R>(
    (request) => Effect.flatMap(request, execute),
    Effect.succeed
  )
})

/**
 * Builds the authenticated client over the `HttpClient` in context.
 *
 * @example
 * ```ts
 * import { AuthHttpClient, TokenCache } from "@effect-token/core"
 * import { Context, Effect, Layer } from "effect"
 *
 * class BillingApi extends Context.Tag("BillingApi")<BillingApi, AuthHttpClient.AuthHttpClient>() {}
 *
 * const BillingApiLive = Layer.effect(
 *   BillingApi,
 *   Effect.flatMap(TokenCache.TokenCache, (tokens) =>
 *     AuthHttpClient.make({ baseUrl: "https://billing.example.com/v2", tokens }))
 * )
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: AuthenticateOptions): Effect.Effect<AuthHttpClient, never, HttpClient.HttpClient> =>
  Effect.map(HttpClient.HttpClient, (client) => authenticate(client, options))

/**
 * Provides an authenticated client (under {@link AuthHttpClient}, or `tag`) over the `TokenCache` and `HttpClient`
 * in context: the composition for those who build the source and the cache themselves.
 *
 * @example
 * ```ts
 * import { AuthHttpClient, ClientCredentials, TokenCache } from "@effect-token/core"
 * import { NodeHttpClient } from "@effect/platform-node"
 * import { Layer } from "effect"
 *
 * const ApiLive = AuthHttpClient.layer({ baseUrl: "https://api.example.com" }).pipe(
 *   Layer.provide(TokenCache.layer({ skew: "10 seconds" })),
 *   Layer.provide(ClientCredentials.layerConfig()),
 *   Layer.provide(NodeHttpClient.layerUndici)
 * )
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <I = AuthHttpClient>(
  options: Binding & Options & { readonly tag?: Context.Tag<I, AuthHttpClient> | undefined }
): Layer.Layer<I, never, HttpClient.HttpClient | TokenCache.TokenCache> =>
  Layer.effect(
    options.tag ?? (AuthHttpClient as unknown as Context.Tag<I, AuthHttpClient>),
    Effect.flatMap(TokenCache.TokenCache, (tokens) => make({ ...options, tokens } as AuthenticateOptions))
  )

/**
 * Everything the one-layer set-up needs: the API, the authorization server, the client and the token it asks for.
 *
 * @since 0.1.0
 * @category models
 */
export type ClientCredentialsOptions =
  & Binding
  & Options
  & TokenSource.TokenShape
  & TokenCache.Options
  & {
    /** The token endpoint, or the issuer whose discovery document names it. */
    readonly authorizationServer: { readonly tokenUrl: string | URL } | { readonly issuer: string }
    readonly clientAuth: ClientAuth.ClientAuth
    /** Time allowed for each request to the token endpoint. Default 10 s. */
    readonly attemptTimeout?: Duration.DurationInput | undefined
  }

/**
 * One layer to start: client credentials, a token cache and the authenticated client bound to the API, over the
 * `HttpClient` in context (the transport: `NodeHttpClient.layerUndici`, `FetchHttpClient.layer`, ...).
 *
 * @example
 * ```ts
 * import { AuthHttpClient, ClientAuth } from "@effect-token/core"
 * import { NodeHttpClient } from "@effect/platform-node"
 * import { Layer, Redacted } from "effect"
 *
 * const ApiLive = AuthHttpClient.layerClientCredentials({
 *   baseUrl: "https://api.example.com",
 *   authorizationServer: { issuer: "https://auth.example.com" },
 *   clientAuth: ClientAuth.clientSecretBasic({ clientId: "billing", clientSecret: Redacted.make("s3cr3t") }),
 *   scope: "invoices:read"
 * }).pipe(Layer.provide(NodeHttpClient.layerUndici))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerClientCredentials = <I = AuthHttpClient>(
  options: ClientCredentialsOptions & { readonly tag?: Context.Tag<I, AuthHttpClient> | undefined }
): Layer.Layer<I, never, HttpClient.HttpClient> =>
  Layer.scoped(
    options.tag ?? (AuthHttpClient as unknown as Context.Tag<I, AuthHttpClient>),
    Effect.gen(function*() {
      const server = options.authorizationServer
      const tokenUrl = "issuer" in server ? yield* Discovery.make({ issuer: server.issuer }) : server.tokenUrl
      const source = yield* ClientCredentials.make({
        tokenUrl,
        clientAuth: options.clientAuth,
        scope: options.scope,
        resource: options.resource,
        audience: options.audience,
        extraParams: options.extraParams,
        attemptTimeout: options.attemptTimeout,
        defaultLifetime: options.defaultLifetime
      })
      const tokens = yield* TokenCache.make(source, options)
      return yield* make({ ...options, tokens } as AuthenticateOptions)
    })
  )

/**
 * The one-layer set-up read from configuration: `API_URL` (the API's base URL), `TOKEN_URL` or `ISSUER`, the client
 * (`CLIENT_ID`, `CLIENT_SECRET`, and the other settings of `ClientAuth.config`), and optional `SCOPE`, `AUDIENCE`,
 * `RESOURCE`, `ATTEMPT_TIMEOUT` (each request to the token endpoint) and `ACQUIRE_TIMEOUT` (a caller's whole wait for
 * a token, retries included). Use `Config.nested` for a prefix.
 *
 * @example
 * ```ts
 * import { AuthHttpClient } from "@effect-token/core"
 * import { Config } from "effect"
 *
 * // reads BILLING_API_URL, BILLING_ISSUER, BILLING_CLIENT_ID, BILLING_CLIENT_SECRET, ...
 * const billing = Config.nested(AuthHttpClient.config, "BILLING")
 * ```
 *
 * @since 0.1.0
 * @category config
 */
export const config: Config.Config<ClientCredentialsOptions> = Config.all({
  baseUrl: Config.url("API_URL"),
  tokenUrl: Config.option(Config.url("TOKEN_URL")),
  issuer: Config.option(Config.nonEmptyString("ISSUER")),
  clientAuth: ClientAuth.config,
  scope: Config.option(Config.string("SCOPE")),
  audience: Config.option(Config.string("AUDIENCE")),
  resource: Config.option(Config.string("RESOURCE")),
  attemptTimeout: Config.option(Config.duration("ATTEMPT_TIMEOUT")),
  acquireTimeout: Config.option(Config.duration("ACQUIRE_TIMEOUT"))
}).pipe(
  Config.validate({
    message: "exactly one of TOKEN_URL and ISSUER is required",
    validation: (c) => Option.isSome(c.tokenUrl) !== Option.isSome(c.issuer)
  }),
  Config.map((c): ClientCredentialsOptions => ({
    baseUrl: c.baseUrl,
    authorizationServer: Option.isSome(c.tokenUrl)
      ? { tokenUrl: c.tokenUrl.value }
      : { issuer: Option.getOrThrow(c.issuer) },
    clientAuth: c.clientAuth,
    scope: Option.getOrUndefined(c.scope),
    audience: Option.getOrUndefined(c.audience),
    resource: Option.getOrUndefined(c.resource),
    attemptTimeout: Option.getOrUndefined(c.attemptTimeout),
    acquireTimeout: Option.getOrUndefined(c.acquireTimeout)
  }))
)

/**
 * Provides the one-layer set-up from configuration (see {@link config}), under {@link AuthHttpClient} or `tag`.
 *
 * @example
 * ```ts
 * import { AuthHttpClient } from "@effect-token/core"
 * import { NodeHttpClient } from "@effect/platform-node"
 * import { Layer } from "effect"
 *
 * // Reads API_URL, TOKEN_URL (or ISSUER), CLIENT_ID, CLIENT_SECRET and SCOPE.
 * const ApiLive = AuthHttpClient.layerConfig().pipe(Layer.provide(NodeHttpClient.layerUndici))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = <I = AuthHttpClient>(
  options: {
    readonly config?: Config.Config<ClientCredentialsOptions> | undefined
    readonly tag?: Context.Tag<I, AuthHttpClient> | undefined
  } = {}
): Layer.Layer<I, ConfigError.ConfigError, HttpClient.HttpClient> =>
  Layer.unwrapEffect(
    Effect.map(options.config ?? config, (settings) => layerClientCredentials({ ...settings, tag: options.tag }))
  )
