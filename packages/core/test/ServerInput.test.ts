/**
 * What an authorization server sends is bounded and never redirects the client: real node:http servers on
 * 127.0.0.1, real transports (undici, fetch).
 */
import { ClientAuth, ClientCredentials, Discovery, TokenCache, TokenEndpoint, TokenError } from "@effect-token/core"
import { NodeHttpClient } from "@effect/platform-node"
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import { describe, expect, it } from "@effect/vitest"
import type { Layer } from "effect"
import { Effect, Redacted } from "effect"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import * as Zlib from "node:zlib"
import { fake, json } from "./support/http.js"

const HttpClientTag = HttpClient.HttpClient

const secret = "client-secret-that-must-stay-home-4711"

interface Server {
  readonly url: string
  /** Requests received, with their bodies. */
  readonly requests: Array<{ url: string; headers: Http.IncomingHttpHeaders; body: string }>
  /** Bytes the server managed to hand to the socket. */
  readonly written: () => number
}

/** A node:http server on 127.0.0.1:0, closed with the scope. */
const server = (
  handle: (request: Http.IncomingMessage, response: Http.ServerResponse, count: (n: number) => void) => void
) =>
  Effect.acquireRelease(
    Effect.async<{ server: Http.Server; state: Server }>((resume) => {
      let written = 0
      const requests: Server["requests"] = []
      const http = Http.createServer((request, response) => {
        let body = ""
        request.on("data", (chunk) => (body += String(chunk)))
        request.on("end", () => {
          requests.push({ url: request.url ?? "", headers: request.headers, body })
          handle(request, response, (n) => (written += n))
        })
      })
      http.listen(0, "127.0.0.1", () => {
        const { port } = http.address() as AddressInfo
        resume(Effect.succeed({
          server: http,
          state: { url: `http://127.0.0.1:${port}`, requests, written: () => written }
        }))
      })
    }),
    ({ server }) =>
      Effect.async<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map(({ state }) => state))

/** Writes `chunk` until the client goes away or `limit` bytes are out, respecting backpressure. */
const pour = (response: Http.ServerResponse, chunk: Uint8Array, count: (n: number) => void, limit = Infinity) => {
  let sent = 0
  const go = () => {
    while (sent < limit && !response.destroyed) {
      sent += chunk.length
      const ok = response.write(chunk, (error) => {
        if (error === undefined || error === null) count(chunk.length)
      })
      if (!ok) return void response.once("drain", go)
    }
    if (!response.destroyed) response.end()
  }
  response.on("close", () => (sent = limit))
  go()
}

const clientAuth = ClientAuth.clientSecretPost({ clientId: "app", clientSecret: Redacted.make(secret) })
const undici = NodeHttpClient.layerUndici
const fetchLayer = FetchHttpClient.layer

const failureOf = <A, R>(effect: Effect.Effect<A, TokenError.TokenError, R>) => Effect.flip(effect)

describe("bounded answers", () => {
  it.live(
    "an endless token response is cut at maxResponseBytes, is MalformedResponse and is not retried",
    () =>
      Effect.gen(function*() {
        const as = yield* server((_, response, count) => {
          response.writeHead(200, { "content-type": "application/json" })
          pour(response, new Uint8Array(64 * 1024).fill(0x20), count)
        })
        const source = yield* ClientCredentials.make({
          tokenUrl: `${as.url}/token`,
          clientAuth,
          attemptTimeout: "5 seconds",
          maxResponseBytes: 256 * 1024
        })
        const cache = yield* TokenCache.make(source, { name: "endless" })
        const error = yield* failureOf(cache.get)
        expect(error.reason._tag).toBe("MalformedResponse")
        expect(error.reason.message).toContain("262144 bytes (maxResponseBytes)")
        expect(TokenError.isTransient(error)).toBe(false)
        expect(as.requests).toHaveLength(1)
        // Backpressure: the server got a few socket buffers out, not the endless body.
        expect(as.written()).toBeLessThan(16 * 1024 * 1024)
      }).pipe(Effect.scoped, Effect.provide(undici)),
    20_000
  )

  it.live("a declared content-length over the cap fails before the body is read", () =>
    Effect.gen(function*() {
      const as = yield* server((_, response) => {
        response.writeHead(200, { "content-type": "application/json", "content-length": String(600 * 1024 * 1024) })
        response.write("{")
      })
      const endpoint = yield* TokenEndpoint.make({ tokenUrl: `${as.url}/token`, clientAuth })
      const error = yield* failureOf(endpoint.request({ grant_type: "client_credentials" }))
      expect(error.reason._tag).toBe("MalformedResponse")
      expect(error.reason.message).toContain(`${1024 * 1024} bytes (maxResponseBytes)`)
    }).pipe(Effect.scoped, Effect.provide(undici)), 20_000)

  it.live(
    "the cap holds after decompression: a gzip bomb through fetch (which inflates) is cut at the cap",
    () =>
      Effect.gen(function*() {
        // 64 MiB of spaces: about 64 KiB on the wire.
        const bomb = Zlib.gzipSync(new Uint8Array(64 * 1024 * 1024).fill(0x20))
        const as = yield* server((_, response, count) => {
          response.writeHead(200, { "content-type": "application/json", "content-encoding": "gzip" })
          pour(response, bomb, count, bomb.length)
        })
        const discovery = Discovery.fetch({ issuer: as.url, maxResponseBytes: 100_000 })
        const error = yield* failureOf(discovery)
        expect(error.reason._tag).toBe("MalformedResponse")
        expect(error.reason.message).toContain("100000 bytes (maxResponseBytes)")
      }).pipe(Effect.scoped, Effect.provide(fetchLayer)),
    20_000
  )

  it.live("an answer within the cap is read whole", () =>
    Effect.gen(function*() {
      const as = yield* server((_, response) => {
        response.writeHead(200, { "content-type": "application/json" })
        response.end(JSON.stringify({ access_token: "at", token_type: "Bearer", expires_in: 60, pad: "x".repeat(900) }))
      })
      const endpoint = yield* TokenEndpoint.make({ tokenUrl: `${as.url}/token`, clientAuth, maxResponseBytes: 1000 })
      const token = yield* endpoint.request({ grant_type: "client_credentials" })
      expect(Redacted.value(token.value)).toBe("at")
    }).pipe(Effect.scoped, Effect.provide(undici)))
})

describe("no redirects", () => {
  const elsewhere = () =>
    server((_, response) => {
      response.writeHead(200, { "content-type": "application/json" })
      response.end(JSON.stringify({ access_token: "issued-elsewhere", token_type: "Bearer", expires_in: 60 }))
    })
  const redirecting = (to: string, status = 302) =>
    server((request, response) => {
      response.writeHead(status, { location: `${to}${request.url ?? "/"}` })
      response.end()
    })

  for (const [name, layer] of [["FetchHttpClient", fetchLayer], ["undici", undici]] as const) {
    for (const status of [301, 302, 303, 307, 308]) {
      it.live(
        `${name}: a ${status} from the token endpoint is MalformedResponse, not followed, not retried`,
        () =>
          Effect.gen(function*() {
            const other = yield* elsewhere()
            const as = yield* redirecting(other.url, status)
            const source = yield* ClientCredentials.make({ tokenUrl: `${as.url}/token`, clientAuth })
            const cache = yield* TokenCache.make(source, { name: "redirected" })
            const error = yield* failureOf(cache.get)
            expect(error.reason._tag).toBe("MalformedResponse")
            expect(error.reason.message).toContain("redirect")
            expect(as.requests).toHaveLength(1)
            expect(other.requests).toHaveLength(0)
          }).pipe(Effect.scoped, Effect.provide(layer as Layer.Layer<HttpClient.HttpClient>)),
        20_000
      )
    }
  }

  it.live(
    "a client wrapped in platform's followRedirects: the token issued elsewhere is refused",
    () =>
      Effect.gen(function*() {
        const other = yield* elsewhere()
        const as = yield* redirecting(other.url, 307)
        const client = HttpClient.followRedirects(yield* HttpClient.HttpClient)
        const endpoint = TokenEndpoint.makeWith(client, { tokenUrl: `${as.url}/token`, clientAuth })
        const error = yield* failureOf(endpoint.request({ grant_type: "client_credentials" }))
        expect(error.reason._tag).toBe("MalformedResponse")
        expect(error.reason.message).toContain("redirect")
        // Such a wrapper cannot be stopped from following: the other origin got the request. Only the answer is refused.
        expect(other.requests).toHaveLength(1)
      }).pipe(Effect.scoped, Effect.provide(undici)),
    20_000
  )

  it.live(
    "FetchHttpClient: a redirected well-known document sends nothing to the other origin",
    () =>
      Effect.gen(function*() {
        const other = yield* server((_, response) => {
          response.writeHead(200, { "content-type": "application/json" })
          response.end(JSON.stringify({ issuer: "x", token_endpoint: `http://127.0.0.1:1/token` }))
        })
        const as = yield* redirecting(other.url)
        const discovery = yield* Discovery.make({ issuer: as.url })
        const source = yield* ClientCredentials.make({ tokenUrl: discovery, clientAuth })
        const error = yield* failureOf(source.fetch)
        expect(error.reason._tag).toBe("MalformedResponse")
        expect(other.requests).toHaveLength(0)
        expect(JSON.stringify(other.requests)).not.toContain(secret)
      }).pipe(Effect.scoped, Effect.provide(fetchLayer)),
    20_000
  )

  it.live("FetchHttpClient: a user's own RequestInit is kept, redirect excepted", () =>
    Effect.gen(function*() {
      const other = yield* elsewhere()
      const as = yield* redirecting(other.url)
      const endpoint = yield* TokenEndpoint.make({ tokenUrl: `${as.url}/token`, clientAuth })
      const error = yield* failureOf(endpoint.request({ grant_type: "client_credentials" })).pipe(
        Effect.provideService(FetchHttpClient.RequestInit, { redirect: "follow", headers: { "x-mine": "1" } })
      )
      expect(error.reason._tag).toBe("MalformedResponse")
      expect(as.requests[0]?.headers["x-mine"]).toBe("1")
      expect(other.requests).toHaveLength(0)
    }).pipe(Effect.scoped, Effect.provide(fetchLayer)), 20_000)
})

describe("discovered endpoints", () => {
  const documentFrom = (issuer: string, fields: Record<string, string>) =>
    Effect.flatMap(fake(() => json({ issuer, ...fields })), ({ client, requests }) =>
      Effect.map(
        Effect.flip(Discovery.fetch({ issuer }).pipe(Effect.provideService(HttpClientTag, client))),
        (error) => ({ error, requests })
      ))

  for (
    const [field, value] of [
      ["token_endpoint", "file:///etc/passwd"],
      ["token_endpoint", "data:application/json,{}"],
      ["revocation_endpoint", "ws://auth.example.com/revoke"],
      ["jwks_uri", "http://auth.example.com/jwks"],
      ["token_endpoint", "http://127.0.0.1/token"],
      ["userinfo_endpoint", "javascript:alert(1)"]
    ] as const
  ) {
    it.effect(`an https issuer's ${field} ${value} is MalformedResponse naming the field`, () =>
      Effect.gen(function*() {
        const { error } = yield* documentFrom("https://auth.example.com", {
          token_endpoint: "https://auth.example.com/token",
          [field]: value
        })
        expect(error.reason._tag).toBe("MalformedResponse")
        expect(error.reason).toMatchObject({ fields: [field] })
        expect(error.message).not.toContain(value)
      }))
  }

  it.effect("an http issuer on a loopback address may publish http loopback endpoints, for development", () =>
    Effect.gen(function*() {
      for (
        const issuer of ["http://127.0.0.1:8080", "http://localhost:3000", "http://[::1]:9000", "http://127.1.2.3"]
      ) {
        const { client } = yield* fake(() => json({ issuer, token_endpoint: `${issuer}/token` }))
        const metadata = yield* Discovery.fetch({ issuer }).pipe(Effect.provideService(HttpClientTag, client))
        expect(metadata.token_endpoint).toBe(`${issuer}/token`)
      }
      const { error } = yield* documentFrom("http://127.0.0.1:8080", { token_endpoint: "https://auth.example.com/t" })
      expect(error.reason).toMatchObject({ _tag: "MalformedResponse", fields: ["token_endpoint"] })
      const remote = yield* documentFrom("http://127.0.0.1:8080", { token_endpoint: "http://auth.example.com/t" })
      expect(remote.error.reason).toMatchObject({ _tag: "MalformedResponse", fields: ["token_endpoint"] })
    }))

  it.effect("an http issuer elsewhere is Misconfigured, and nothing is sent", () =>
    Effect.gen(function*() {
      for (const issuer of ["http://auth.example.com", "http://10.0.0.1", "ftp://auth.example.com"]) {
        const { error, requests } = yield* documentFrom(issuer, { token_endpoint: `${issuer}/token` })
        expect(error.reason._tag).toBe("Misconfigured")
        expect(yield* requests).toHaveLength(0)
      }
    }))
})
