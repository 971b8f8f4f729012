/**
 * What several benchmarks share: a loopback API on a real `NodeHttpServer`, the undici client, and token sources
 * that count their fetches. Not a benchmark itself (the runner only loads `*.bench.ts`).
 */
import { AccessToken, TokenSource } from "@effect-token/core"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import type * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientTag from "@effect/platform/HttpClient"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { Context, DateTime, Duration, Effect, Layer, Option, Redacted } from "effect"
import type { Scope } from "effect"
import * as Http from "node:http"

export interface Api {
  /** e.g. `http://127.0.0.1:43123/resource` */
  readonly url: string
  /** Answers so far, by status. */
  readonly counts: { ok: number; unauthorized: number }
}

/**
 * A tiny API on 127.0.0.1, port 0: `GET /resource` answers `200 ok` when `accept(authorization header)` holds, else
 * `401` with a `Bearer error="invalid_token"` challenge. Stops with the scope.
 */
export const makeApi = (
  accept: (authorization: string | undefined) => boolean = () => true
): Effect.Effect<Api, unknown, Scope.Scope> =>
  Effect.gen(function*() {
    const counts = { ok: 0, unauthorized: 0 }
    const unauthorized = HttpServerResponse.text("invalid token", {
      status: 401,
      headers: { "www-authenticate": "Bearer error=\"invalid_token\"" }
    })
    const app = Effect.map(HttpServerRequest.HttpServerRequest, (request) => {
      if (accept(request.headers["authorization"])) {
        counts.ok++
        return HttpServerResponse.text("ok")
      }
      counts.unauthorized++
      return unauthorized
    })
    const nodeServer = Http.createServer()
    const server = yield* NodeHttpServer.make(() => nodeServer, { port: 0, host: "127.0.0.1" })
    yield* Effect.addFinalizer(() => Effect.sync(() => nodeServer.closeAllConnections()))
    yield* server.serve(app)
    const port = server.address._tag === "TcpAddress" ? server.address.port : 0
    return { url: `http://127.0.0.1:${port}/resource`, counts }
  })

/** `NodeHttpClient.layerUndici`'s client, living as long as the scope. */
export const undiciClient: Effect.Effect<HttpClient.HttpClient, never, Scope.Scope> = Effect.map(
  Layer.build(NodeHttpClient.layerUndici),
  (context) => Context.get(context, HttpClientTag.HttpClient)
)

/** GET `url` and read the body, as an application would. */
export const getText = <E, R>(client: HttpClient.HttpClient.With<E, R>, url: string) =>
  Effect.flatMap(client.get(url), (response) => Effect.map(response.text, (text) => [response.status, text] as const))

export interface CountingSource {
  readonly source: TokenSource.TokenSource
  /** Fetches started. */
  readonly fetches: () => number
}

/**
 * A token source standing in for an authorization server: each fetch sleeps `latency` (real time) and returns
 * `${prefix}-N` valid for `lifetime`. `onIssue` sees each new value (e.g. to make an API accept it).
 */
export const countingSource = (options: {
  readonly key?: string | undefined
  readonly prefix?: string | undefined
  readonly latency?: Duration.DurationInput | undefined
  readonly lifetime?: Duration.DurationInput | undefined
  readonly onIssue?: ((value: string) => void) | undefined
}): CountingSource => {
  let fetches = 0
  let issued = 0
  const prefix = options.prefix ?? "token"
  const latency = Duration.decode(options.latency ?? 0)
  const lifetime = Duration.decode(options.lifetime ?? "1 hour")
  const wait = Duration.greaterThan(latency, Duration.zero) ? Effect.sleep(latency) : Effect.void
  const fetch = Effect.suspend(() => {
    fetches++
    return wait
  }).pipe(
    Effect.zipRight(DateTime.now),
    Effect.map((now) => {
      const value = `${prefix}-${++issued}`
      options.onIssue?.(value)
      return AccessToken.make({
        value: Redacted.make(value),
        issuedAt: now,
        expiresAt: Option.some(DateTime.addDuration(now, lifetime))
      })
    })
  )
  return {
    source: TokenSource.make({ key: options.key ?? `bench:${prefix}`, fetch }),
    fetches: () => fetches
  }
}

/** Runs `effect` `n` times in a row, each one timed; returns the durations in milliseconds. */
export const timeEach = <E, R>(effect: Effect.Effect<unknown, E, R>, n: number, into: Array<number>) =>
  Effect.gen(function*() {
    for (let i = 0; i < n; i++) {
      const start = performance.now()
      yield* effect
      into.push(performance.now() - start)
    }
  })
