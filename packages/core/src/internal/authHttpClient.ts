/*
 * The authenticated client's request path: binding check, token attachment, the 401 rule, transient retries and
 * redirects. The public module (`AuthHttpClient.ts`) holds the types, the error and the layers.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as HttpIncomingMessage from "@effect/platform/HttpIncomingMessage"
import * as Clock from "effect/Clock"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import { globalValue } from "effect/GlobalValue"
import * as Inspectable from "effect/Inspectable"
import * as Metric from "effect/Metric"
import * as MetricLabel from "effect/MetricLabel"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import * as Redacted from "effect/Redacted"
import type * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import type * as AccessToken from "../AccessToken.js"
import type { AuthenticateOptions, AuthError, Binding } from "../AuthHttpClient.js"
import * as Backoff from "../Backoff.js"
import type * as TokenCache from "../TokenCache.js"
import * as TokenError from "../TokenError.js"
import * as TokenManager from "../TokenManager.js"
import type * as TokenSource from "../TokenSource.js"
import * as WwwAuthenticate from "../WwwAuthenticate.js"
import * as BoundedBody from "./boundedBody.js"
import { within } from "./deadline.js"
import * as dpop from "./dpop.js"
import * as redirects from "./redirects.js"
import { parseRetryAfter } from "./retryAfter.js"
import { redact, serverText } from "./serverText.js"
import type { TokenRejectedReason } from "./tokenRejected.js"
import { Held, NonceRefused, NotReplayable, RejectedAfterRetry, TokenRejected } from "./tokenRejected.js"
import { isTransientStatus } from "./transient.js"

export const currentTokenParams = globalValue(
  "@effect-token/core/AuthHttpClient/currentTokenParams",
  () => FiberRef.unsafeMake<TokenSource.TokenShape | undefined>(undefined)
)

/**
 * Each token that was rejected again: sent in place of a token a 401 threw away, and answered 401 itself. The time of
 * that second 401 (epoch milliseconds). Keyed by the token object, which a cache hands out for as long as it holds
 * the token, so an entry goes when the token does. One map for every client in the process: the bound is per token,
 * whichever endpoint or client rejects it.
 */
const replacements = globalValue(
  "@effect-token/core/AuthHttpClient/replacements",
  () => new WeakMap<AccessToken.AccessToken, number>()
)

/** How long a token rejected again is kept whatever 401s it gets, by default. */
export const defaultRejectionHold = Duration.seconds(30)

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

/** The time allowed to read such a body when the client's `timeout` is turned off. */
const defaultBodyTimeout = Duration.seconds(10)

/**
 * The time allowed for each attempt by default: a client whose API never answers must not hang its caller until
 * the transport gives up (platform-node's undici client waits an hour for headers, leaving timeouts to Effect).
 */
export const defaultTimeout = Duration.seconds(30)

/**
 * At most `maxDetachedBodyBytes` of the body, read within `timeout`: reading stops there and the stream is closed,
 * which releases the connection. A server that answers 401 with an endless or stalled body can neither hang the
 * caller nor make the client buffer it.
 */
const boundedBody = (
  response: HttpClientResponse.HttpClientResponse,
  timeout: Duration.Duration
): Effect.Effect<Uint8Array> =>
  BoundedBody.read(response.stream, maxDetachedBodyBytes).pipe(
    Effect.map(({ bytes }) => bytes),
    Effect.timeout(timeout),
    Effect.orElseSucceed(() => new Uint8Array(0))
  )

/**
 * Reads the body (bounded in size and time) and rebuilds the response around `request`: the result no longer
 * references the request that carried the token (platform redacts headers only inside a fiber, and errors get
 * serialized outside one), and the connection is released before a retry. `secrets` (what the request carried: the
 * token, the proofs) are redacted from the headers and the body kept, in case the server echoed them.
 */
const detach = (
  response: HttpClientResponse.HttpClientResponse,
  request: HttpClientRequest.HttpClientRequest,
  timeout: Duration.Duration,
  secrets: ReadonlyArray<string> = []
): Effect.Effect<HttpClientResponse.HttpClientResponse> =>
  Effect.map(boundedBody(response, timeout), (read) => {
    // The length of what was kept, not of what the server announced.
    const { "content-length": _, ...kept } = response.headers
    let headers: Record<string, string> = kept
    let bytes = read
    if (secrets.length > 0) {
      headers = {}
      for (const [name, value] of Object.entries(kept)) headers[name] = redact(value, secrets)
      const text = decoder.decode(bytes)
      const redacted = redact(text, secrets)
      if (redacted !== text) bytes = encoder.encode(redacted)
    }
    return HttpClientResponse.fromWeb(
      request,
      new Response(bytes.length === 0 ? null : (bytes as Uint8Array<ArrayBuffer>), { status: response.status, headers })
    )
  })

const decoder = new TextDecoder()
const encoder = new TextEncoder()

/**
 * The challenges of a 401 as a `TokenRejected` keeps them: every part is server text (`serverText`: the token and
 * proofs the request carried redacted, control characters removed, 256 characters at most), so neither the error's
 * message nor any printing of it repeats what the API echoed.
 */
const cleanChallenges = (
  header: string | undefined,
  secrets: ReadonlyArray<string>
): Array<WwwAuthenticate.Challenge> =>
  WwwAuthenticate.parse(header ?? "").map((challenge) => {
    // Without a prototype, as the parser makes them: a parameter named `__proto__` is a parameter like any other.
    const params: Record<string, string> = Object.create(null)
    for (const [name, value] of Object.entries(challenge.params)) {
      params[serverText(name, secrets)] = serverText(value, secrets)
    }
    return challenge.token68 === undefined
      ? { scheme: serverText(challenge.scheme, secrets), params }
      : { scheme: serverText(challenge.scheme, secrets), params, token68: serverText(challenge.token68, secrets) }
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

/**
 * A relative URL against the base (which has no trailing slash): a path is appended under it (`orders` and `/orders`
 * alike), while `""`, a query or a fragment alone stay on the base itself (`""` is the base URL, not the base plus `/`).
 */
export const resolve = (base: string, url: string): string =>
  url === "" || url.startsWith("?") || url.startsWith("#")
    ? base + url
    : base + (url.startsWith("/") ? "" : "/") + url

/** Whether `url` is absolute (has a scheme): only relative URLs are resolved against the base. */
const hasScheme = (url: string): boolean => /^[a-zA-Z][a-zA-Z0-9+.-]*:/.test(url)

export const authenticate = <E, R>(
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
  const rejectionHold = Duration.toMillis(Duration.decode(options.rejectionHold ?? defaultRejectionHold))
  const maxRedirects = options.followRedirects ?? 0
  const requested = Duration.decode(options.timeout ?? defaultTimeout)
  // `Duration.infinity` turns the bound off.
  const timeout = Duration.isFinite(requested) ? requested : undefined
  const bodyTimeout = timeout ?? defaultBodyTimeout

  const exchange = (request: HttpClientRequest.HttpClientRequest) =>
    timeout === undefined ?
      client.execute(request) :
      within(client.execute(request), timeout, () =>
        new HttpClientError.RequestError({
          request,
          reason: "Transport",
          description: `no response within ${Duration.format(timeout)}`
        }))

  /**
   * One exchange (redirects followed), with `token` attached wherever the client is bound. The proofs signed for a
   * DPoP token are added to `proofs`: a rejection redacts them.
   */
  const send = (
    request: HttpClientRequest.HttpClientRequest,
    token: AccessToken.AccessToken,
    proofs: Array<string> | undefined
  ) =>
    redirects.follow<E | HttpClientError.RequestError | AuthError, R>(request, maxRedirects, {
      send: (current) => {
        const tokenSent = isBound(current.url)
        if (!tokenSent) return Effect.map(exchange(current), (response) => ({ response, tokenSent }))
        if (token.type === "DPoP") return sendDPoP(current, token, proofs ?? [])
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

  /**
   * One hop with a DPoP token: a proof signed for this hop's method and URL (so a redirect, a retry or a nonce
   * retry each get a fresh one), with `ath` binding it to the token; the server's `DPoP-Nonce` is remembered.
   */
  const tokenHash = dpop.athMemo()
  const sendDPoP = (
    current: HttpClientRequest.HttpClientRequest,
    token: AccessToken.AccessToken,
    proofs: Array<string>
  ): Effect.Effect<
    { readonly response: HttpClientResponse.HttpClientResponse; readonly tokenSent: boolean },
    E | HttpClientError.RequestError | AuthError,
    R
  > => {
    const key = options.dpop ?? tokens.dpop
    if (key === undefined) {
      return Effect.fail(
        misconfigured("the token is a DPoP token but the client has no DPoP key (dpop): it would be sent without proof")
      )
    }
    const value = Redacted.value(token.value)
    return Effect.flatMap(
      Effect.flatten(
        Effect.zipWith(
          tokenHash(value),
          Clock.currentTimeMillis,
          (ath, now) => dpop.signed(key, { method: current.method, url: current.url }, ath, now)
        )
      ),
      (proof) => {
        proofs.push(proof)
        return Effect.mapBoth(
          dpop.redactingProof(
            exchange(HttpClientRequest.setHeaders(current, { authorization: `DPoP ${value}`, dpop: proof }))
          ),
          {
            onFailure: (error) => tokenlessError(error, current),
            onSuccess: (response) => {
              dpop.rememberNonce(key, current.url, response.headers)
              return { response: viewedThrough(response, current), tokenSent: true }
            }
          }
        )
      }
    )
  }

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
   * fresh token: an endpoint that refuses every token would otherwise cost two token requests per call. Nor does a
   * later call's 401 for that fresh token within `rejectionHold` of the retry's: the token is kept, and the caller
   * gets `TokenRejected` at once. A token rejected again right after it replaced a rejected one is refused for a
   * reason a new token will not fix (the endpoint's, not the token's), and throwing each one away would let one such
   * endpoint drive the authorization server into rate-limiting every other endpoint on the same cache. A fresh token
   * whose retry succeeded is not held: if it is revoked later, its next 401 replaces it as usual.
   */
  const attempt = (
    request: HttpClientRequest.HttpClientRequest,
    params: TokenSource.TokenShape | undefined
  ): Effect.Effect<HttpClientResponse.HttpClientResponse, E | AttemptError, R> => {
    // Plain flatMaps rather than a generator: this runs on every request.
    const once = (
      retried: boolean,
      nonceRetried: boolean
    ): Effect.Effect<HttpClientResponse.HttpClientResponse, E | AttemptError, R> =>
      Effect.flatMap(
        getToken(params),
        (token) => {
          const proofs = token.type === "DPoP" ? [] : undefined
          return Effect.flatMap(send(request, token, proofs), ({ response, tokenSent }) =>
            response.status === 401 && tokenSent
              ? rejectedBy(token, proofs, response, retried, nonceRetried)
              : checkTransient(response, request))
        }
      )
    const rejectedBy = (
      token: AccessToken.AccessToken,
      proofs: ReadonlyArray<string> | undefined,
      response: HttpClientResponse.HttpClientResponse,
      retried: boolean,
      nonceRetried: boolean
    ): Effect.Effect<HttpClientResponse.HttpClientResponse, E | AttemptError, R> =>
      Effect.gen(function*() {
        // What the request carried, in case the API echoes it (an `error_description` quoting the header).
        const secrets = proofs === undefined ? [Redacted.value(token.value)] : [Redacted.value(token.value), ...proofs]
        const rejected = yield* detach(response, request, bodyTimeout, secrets)
        // RFC 9449 §9: the server wants a nonce, not another token. One retry with the nonce and the same token; the
        // token stays cached. Only with a nonce to use: without one the retry would fail the same way.
        const nonceChallenge = token.type === "DPoP" && dpop.isResourceNonceChallenge(rejected.headers)
        if (
          nonceChallenge && !nonceRetried && dpop.isNonce(rejected.headers["dpop-nonce"]) &&
          redirects.isReplayable(request)
        ) {
          return yield* once(retried, true)
        }
        const fail = (reason: TokenRejectedReason) =>
          new TokenRejected({
            request,
            response: rejected,
            challenges: cleanChallenges(rejected.headers["www-authenticate"], secrets),
            reason
          })
        // A nonce challenge is never the token's fault: it is not invalidated, and a server that asks again after
        // its nonce was sent is not asked a third time.
        if (nonceChallenge) return yield* fail(new NonceRefused({}))
        const now = yield* Clock.currentTimeMillis
        if (retried) {
          // The token sent in place of a rejected one is rejected too: keep it, and hold further 401s for it.
          if (rejectionHold > 0 && !replacements.has(token)) replacements.set(token, now)
          return yield* fail(new RejectedAfterRetry({}))
        }
        const rejectedAgainAt = replacements.get(token)
        if (rejectedAgainAt !== undefined && now < rejectedAgainAt + rejectionHold) {
          yield* Effect.annotateCurrentSpan("effect_token.rejection_held", true)
          return yield* fail(new Held({}))
        }
        yield* invalidate(params, token)
        if (!redirects.isReplayable(request)) return yield* fail(new NotReplayable({}))
        unauthorizedRetries.unsafeUpdate(1, [])
        yield* Effect.annotateCurrentSpan("effect_token.unauthorized_retry", true)
        return yield* once(true, nonceRetried)
      })
    return once(false, false)
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
      ? HttpClientRequest.setUrl(request, resolve(base, request.url))
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
}
