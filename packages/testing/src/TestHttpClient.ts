/**
 * An `HttpClient` that answers from in-process `HttpApp`s instead of the network.
 *
 * Requests are routed by origin to the app mounted there and run in the caller's fiber, so `TestClock`,
 * `TestRandom`, the caller's tracer and interruption all apply to the server side too, and no port is opened.
 * Real sockets and `TestClock` do not mix well (the HTTP stack's own timers run on real time); property tests
 * and unit tests should use this client.
 *
 * @since 0.1.0
 */
import type * as HttpApp from "@effect/platform/HttpApp"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientError from "@effect/platform/HttpClientError"
import type * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"

/**
 * Something that can be served in process: an app and the origin (`scheme://host[:port]`) it answers for.
 * `TestAuthorizationServer` and `TestResourceServer` are both.
 *
 * @since 0.1.0
 * @category models
 */
export interface Mountable {
  readonly origin: string
  readonly app: HttpApp.Default
}

/**
 * A client that sends each request to the app mounted at the request's origin. A request to any other origin
 * fails with a `Transport` `RequestError` (`ECONNREFUSED`), as an unreachable host would.
 *
 * @example
 * ```ts
 * import { TestAuthorizationServer, TestHttpClient, TestResourceServer } from "@effect-token/testing"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const as = yield* TestAuthorizationServer.makeInProcess()
 *   const api = yield* TestResourceServer.makeInProcess({ authorizationServer: as })
 *   const client = TestHttpClient.make(as, api)
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (...mounts: ReadonlyArray<Mountable>): HttpClient.HttpClient => {
  const byOrigin = new Map<string, HttpApp.Default>()
  for (const mount of mounts) byOrigin.set(new URL(mount.origin).origin, mount.app)
  return HttpClient.make((request, url) => {
    const app = byOrigin.get(url.origin)
    if (app === undefined) {
      return Effect.fail(
        new HttpClientError.RequestError({
          request,
          reason: "Transport",
          cause: Object.assign(new Error(`connect ECONNREFUSED ${url.origin}`), { code: "ECONNREFUSED" }),
          description: `no in-process server at ${url.origin}`
        })
      )
    }
    return Effect.gen(function*() {
      const webRequest = yield* toWebRequest(request, url)
      const response = yield* Effect.provideService(
        app,
        HttpServerRequest.HttpServerRequest,
        HttpServerRequest.fromWeb(webRequest)
      )
      return HttpClientResponse.fromWeb(request, HttpServerResponse.toWeb(response))
    })
  })
}

/**
 * Provides {@link make} as the `HttpClient`.
 *
 * @example
 * ```ts
 * import { TestAuthorizationServer, TestHttpClient } from "@effect-token/testing"
 * import { Effect, Layer } from "effect"
 *
 * const HttpClientTest = Layer.unwrapEffect(
 *   Effect.map(TestAuthorizationServer.makeInProcess(), (as) => TestHttpClient.layer(as))
 * )
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (...mounts: ReadonlyArray<Mountable>): Layer.Layer<HttpClient.HttpClient> =>
  Layer.succeed(HttpClient.HttpClient, make(...mounts))

type WebBody = NonNullable<RequestInit["body"]>

const toWebRequest = (
  request: HttpClientRequest.HttpClientRequest,
  url: URL
): Effect.Effect<Request, HttpClientError.RequestError> => {
  const init = (body: WebBody | undefined): Request =>
    new Request(url, {
      method: request.method,
      headers: request.headers,
      body,
      ...(request.body._tag === "Stream" ? { duplex: "half" } : {})
    } as RequestInit)
  const build = (body: WebBody | undefined) =>
    Effect.try({
      try: () => init(body),
      catch: (cause) => new HttpClientError.RequestError({ request, reason: "Encode", cause })
    })
  switch (request.body._tag) {
    case "Empty":
      return build(undefined)
    case "Raw":
    case "Uint8Array":
      return build(request.body.body as WebBody)
    case "FormData":
      return build(request.body.formData)
    case "Stream":
      return Effect.flatMap(Stream.toReadableStreamEffect(request.body.stream), build)
  }
}
