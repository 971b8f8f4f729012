/*
 * Redirects followed by the authenticated client itself. Platform's `HttpClient.followRedirects` keeps every header,
 * so a bearer token (or a caller's own cookie) would follow a redirect to any origin: here the token is attached per
 * hop, only where the client is bound, and the caller's credentials are dropped as soon as a hop leaves the origin
 * it was sent to or goes from https to http.
 */
import * as Headers from "@effect/platform/Headers"
import * as HttpBody from "@effect/platform/HttpBody"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"

const redirectStatuses: ReadonlySet<number> = new Set([301, 302, 303, 307, 308])

/** Headers that carry the caller's credentials: none of them may reach another origin. */
export const credentialHeaders: ReadonlyArray<string> = ["authorization", "proxy-authorization", "cookie"]

/** Only bodies held in memory can be sent twice; a stream, or a raw body that is not a string or bytes, cannot. */
export const isReplayable = (request: HttpClientRequest.HttpClientRequest): boolean => {
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

export const originOf = (url: string): string | undefined => {
  try {
    const origin = new URL(url).origin
    return origin === "null" ? undefined : origin
  } catch {
    return undefined
  }
}

/** `request` without the named headers (`setHeaders` and `modify` merge, so they cannot remove one). */
export const withoutHeaders = (
  request: HttpClientRequest.HttpClientRequest,
  names: ReadonlyArray<string>
): HttpClientRequest.HttpClientRequest =>
  HttpClientRequest.make(request.method)(request.url, {
    urlParams: request.urlParams,
    hash: Option.getOrUndefined(request.hash),
    headers: Headers.remove(request.headers, names),
    body: request.body
  })

/** What one exchange, redirects followed, ended with. */
export interface Hop<E, R> {
  /** Sends one request: attaches the token when `request` goes where the client is bound. */
  readonly send: (
    request: HttpClientRequest.HttpClientRequest
  ) => Effect.Effect<{ readonly response: HttpClientResponse.HttpClientResponse; readonly tokenSent: boolean }, E, R>
}

/**
 * Follows up to `maxRedirects` redirects from `request`. Says whether the final answer came to a request that
 * carried the token: a 401 from an origin the token was never sent to says nothing about the token.
 */
export const follow = <E, R>(
  request: HttpClientRequest.HttpClientRequest,
  maxRedirects: number,
  hop: Hop<E, R>
): Effect.Effect<{ readonly response: HttpClientResponse.HttpClientResponse; readonly tokenSent: boolean }, E, R> => {
  if (maxRedirects <= 0) return hop.send(request)
  const loop = (
    current: HttpClientRequest.HttpClientRequest,
    redirects: number
  ): Effect.Effect<{ readonly response: HttpClientResponse.HttpClientResponse; readonly tokenSent: boolean }, E, R> =>
    Effect.flatMap(hop.send(current), (sent) => {
      const { response } = sent
      const location = response.headers["location"]
      if (redirects >= maxRedirects || !redirectStatuses.has(response.status) || location === undefined) {
        return Effect.succeed(sent)
      }
      let target: URL
      try {
        target = new URL(location, current.url)
      } catch {
        return Effect.succeed(sent)
      }
      if (target.protocol !== "https:" && target.protocol !== "http:") return Effect.succeed(sent)
      let next = HttpClientRequest.setUrl(current, target)
      if (
        response.status === 303 ||
        ((response.status === 301 || response.status === 302) && current.method === "POST")
      ) {
        next = HttpClientRequest.setMethod(next, "GET").pipe(HttpClientRequest.setBody(HttpBody.empty))
      } else if (!isReplayable(current)) {
        return Effect.succeed(sent)
      }
      const from = originOf(current.url)
      const downgrade = current.url.startsWith("https:") && target.protocol === "http:"
      if (from !== target.origin || downgrade) {
        // The caller's own credentials stay with the origin they were meant for.
        next = withoutHeaders(next, credentialHeaders)
      }
      return loop(next, redirects + 1)
    })
  return loop(request, 0)
}
