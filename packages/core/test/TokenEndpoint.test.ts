import { ClientAuth, TokenEndpoint, TokenError } from "@effect-token/core"
import type { HttpBody, HttpClientRequest } from "@effect/platform"
import { HttpClient, HttpClientError, HttpClientResponse } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Exit, Fiber, Option, Redacted, TestClock } from "effect"
import { parseRetryAfter } from "../src/internal/retryAfter.js"
import { capturingTracer } from "./support/tracer.js"

const tokenUrl = "https://as.example.test/oauth/token"
// Characters that RFC 6749 §2.3.1 form-encoding changes, and a marker no message could contain by chance.
const clientId = "billing client/é"
const secret = "s3cr3t: +/%&=~!*() marker-7f3a9c"
const accessToken = "at_3b1f0e6c9d2a4f8e-very-secret"
const refreshToken = "rt_8c2d4a6f1e3b5a7c-very-secret"

const basic = ClientAuth.clientSecretBasic({ clientId, clientSecret: Redacted.make(secret) })
const post = ClientAuth.clientSecretPost({ clientId, clientSecret: Redacted.make(secret) })

/** Every form a secret could take on the wire. */
const secretForms = [
  secret,
  encodeURIComponent(secret),
  new URLSearchParams([["", secret]]).toString().slice(1),
  Buffer.from(`${new URLSearchParams([["", clientId]]).toString().slice(1)}:`).toString("base64").slice(0, 12),
  accessToken,
  refreshToken
]

/** Everything a log line could show of an error. */
const printed = (error: TokenError.TokenError) => `${error.message}\n${String(error)}\n${JSON.stringify(error)}`

const expectNoSecret = (error: TokenError.TokenError) => {
  const text = printed(error)
  for (const form of secretForms) expect(text).not.toContain(form)
  expect(text).not.toContain("marker-7f3a9c")
}

interface Seen {
  readonly method: string
  readonly url: string
  readonly headers: Readonly<Record<string, string>>
  readonly contentType: string | undefined
  readonly form: URLSearchParams
}

/** An in-process HttpClient that answers every request with `respond` and records what it was sent. */
const fakeClient = (respond: (request: HttpClientRequest.HttpClientRequest) => Response) => {
  const seen: Array<Seen> = []
  const client = HttpClient.make((request) =>
    Effect.sync(() => {
      const body = request.body as HttpBody.HttpBody
      const bytes = body._tag === "Uint8Array" ? body.body : new Uint8Array()
      seen.push({
        method: request.method,
        url: request.url,
        headers: request.headers,
        contentType: body._tag === "Uint8Array" ? body.contentType : undefined,
        form: new URLSearchParams(new TextDecoder().decode(bytes))
      })
      return HttpClientResponse.fromWeb(request, respond(request))
    })
  )
  return { client, seen }
}

const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } })

const html = (status: number, headers: Record<string, string> = {}) =>
  new Response(`<html><body><h1>${status}</h1></body></html>`, {
    status,
    headers: { "content-type": "text/html; charset=utf-8", ...headers }
  })

const tokenBody = {
  access_token: accessToken,
  token_type: "Bearer",
  expires_in: 300,
  scope: "api:read",
  refresh_token: refreshToken
}

const grant = { grant_type: "client_credentials", scope: "api:read" }

/** Requests with `auth` against a fake answering `response`, and returns the failure. */
const failWith = (response: () => Response, auth: ClientAuth.ClientAuth = basic) => {
  const { client } = fakeClient(response)
  return Effect.flip(TokenEndpoint.makeWith(client, { tokenUrl, clientAuth: auth }).request(grant))
}

describe("TokenEndpoint request encoding", () => {
  it.effect("POSTs a form with grant_type and the params, asking for JSON", () =>
    Effect.gen(function*() {
      const { client, seen } = fakeClient(() => json(200, tokenBody))
      const endpoint = TokenEndpoint.makeWith(client, { tokenUrl, clientAuth: post })
      const token = yield* endpoint.request({
        grant_type: "client_credentials",
        scope: "api:read api:write",
        resource: "https://api.example.test/",
        audience: undefined, // left out
        assertion: Redacted.make("revealed only into the body")
      })
      expect(Redacted.value(token.value)).toBe(accessToken)
      expect(seen).toHaveLength(1)
      const [request] = seen
      expect(request!.method).toBe("POST")
      expect(request!.url).toBe(tokenUrl)
      expect(request!.headers["accept"]).toBe("application/json")
      expect(request!.contentType).toBe("application/x-www-form-urlencoded")
      expect([...request!.form.entries()]).toEqual([
        ["grant_type", "client_credentials"],
        ["scope", "api:read api:write"],
        ["resource", "https://api.example.test/"],
        ["assertion", "revealed only into the body"],
        ["client_id", clientId],
        ["client_secret", secret]
      ])
      // client_secret_post sends no Authorization header.
      expect(request!.headers["authorization"]).toBeUndefined()
    }))

  it.effect("client_secret_basic form-encodes id and secret before Base64 (RFC 6749 §2.3.1)", () =>
    Effect.gen(function*() {
      const { client, seen } = fakeClient(() => json(200, tokenBody))
      yield* TokenEndpoint.makeWith(client, { tokenUrl, clientAuth: basic }).request(grant)
      const header = seen[0]!.headers["authorization"]!
      expect(header.startsWith("Basic ")).toBe(true)
      const decoded = Buffer.from(header.slice("Basic ".length), "base64").toString("utf8")
      expect(decoded).toBe("billing+client%2F%C3%A9:s3cr3t%3A+%2B%2F%25%26%3D%7E%21*%28%29+marker-7f3a9c")
      // What a server does (RFC 6749 §2.3.1): split at the first colon, then form-decode each half.
      const [id, pass] = decoded.split(":").map((part) => decodeURIComponent(part.replace(/\+/g, " ")))
      expect(id).toBe(clientId)
      expect(pass).toBe(secret)
      // Neither the id nor the secret goes into the body.
      expect(seen[0]!.form.has("client_id")).toBe(false)
      expect(seen[0]!.form.has("client_secret")).toBe(false)
    }))

  it.effect("a public client (none) sends only client_id", () =>
    Effect.gen(function*() {
      const { client, seen } = fakeClient(() => json(200, tokenBody))
      yield* TokenEndpoint.makeWith(client, { tokenUrl, clientAuth: ClientAuth.none({ clientId: "spa" }) }).request(
        grant
      )
      expect(seen[0]!.form.get("client_id")).toBe("spa")
      expect(seen[0]!.form.has("client_secret")).toBe(false)
      expect(seen[0]!.headers["authorization"]).toBeUndefined()
    }))

  it.effect("decodes a token response, its lifetime counted from the clock", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(1_700_000_000_000)
      const { client } = fakeClient(() => json(200, { ...tokenBody, token_type: "bearer" }))
      const token = yield* TokenEndpoint.makeWith(client, { tokenUrl, clientAuth: basic }).request(grant)
      expect(token.type).toBe("Bearer")
      expect(token.issuedAt.epochMillis).toBe(1_700_000_000_000)
      expect(Option.getOrThrow(token.expiresAt).epochMillis).toBe(1_700_000_300_000)
      expect(token.scope).toEqual(Option.some("api:read"))
      expect(Option.map(token.refreshToken, Redacted.value)).toEqual(Option.some(refreshToken))
    }))

  it.effect("a slow answer: the lifetime counts from when the request was sent, not from when it arrived", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(1_700_000_000_000)
      // The server answers `expires_in: 300` after 4 s on the way (a slow link, a paused process): the token has
      // 296 s left when it arrives, and believing 300 would hand it out 4 s past its end.
      const slow = HttpClient.make((request) =>
        Effect.as(Effect.sleep("4 seconds"), HttpClientResponse.fromWeb(request, json(200, tokenBody)))
      )
      const fiber = yield* Effect.fork(TokenEndpoint.makeWith(slow, { tokenUrl, clientAuth: basic }).request(grant))
      yield* TestClock.adjust("4 seconds")
      const token = yield* Fiber.join(fiber)
      expect(token.issuedAt.epochMillis).toBe(1_700_000_000_000)
      expect(Option.getOrThrow(token.expiresAt).epochMillis).toBe(1_700_000_300_000)
    }))

  it.effect("a per-request attemptTimeout replaces the endpoint's for that request only", () =>
    Effect.gen(function*() {
      const hangs = HttpClient.make(() => Effect.never)
      const endpoint = TokenEndpoint.makeWith(hangs, { tokenUrl, clientAuth: basic, attemptTimeout: "2 seconds" })
      const long = yield* Effect.fork(endpoint.request(grant, { attemptTimeout: "30 seconds" }))
      const short = yield* Effect.fork(endpoint.request(grant))
      yield* TestClock.adjust("2 seconds")
      expect((yield* Effect.flip(Fiber.join(short))).reason._tag).toBe("Timeout")
      yield* TestClock.adjust("27 seconds")
      expect(Option.isNone(yield* Fiber.poll(long))).toBe(true)
      yield* TestClock.adjust("1 second")
      expect((yield* Effect.flip(Fiber.join(long))).message).toContain("30s")
    }))

  it.effect("uses defaultLifetime for a token with neither expires_in nor a JWT exp", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(1_000)
      const { client } = fakeClient(() => json(200, { access_token: "opaque", token_type: "Bearer" }))
      const token = yield* TokenEndpoint.makeWith(client, { tokenUrl, clientAuth: basic, defaultLifetime: "5 minutes" })
        .request(grant)
      expect(Option.getOrThrow(token.expiresAt).epochMillis).toBe(1_000 + 300_000)
    }))
})

describe("TokenEndpoint error decoding", () => {
  const oauthCases = [
    { status: 401, error: "invalid_client", headers: { "www-authenticate": "Basic realm=\"as\"" } },
    { status: 400, error: "invalid_scope", headers: {} },
    { status: 400, error: "unauthorized_client", headers: {} },
    { status: 400, error: "invalid_grant", headers: {} },
    { status: 400, error: "invalid_request", headers: {} }
  ] as const

  for (const { error, headers, status } of oauthCases) {
    it.effect(`${status} ${error} -> OAuthError with status, error, description and uri`, () =>
      Effect.gen(function*() {
        const failure = yield* failWith(() =>
          json(status, {
            error,
            error_description: `the ${error} description`,
            error_uri: `https://as.example.test/errors/${error}`
          }, headers)
        )
        expect(failure._tag).toBe("TokenError")
        expect(failure.reason._tag).toBe("OAuthError")
        expect((failure.reason as any).status).toBe(status)
        expect((failure.reason as any).code).toBe(error)
        expect((failure.reason as any).description).toBe(`the ${error} description`)
        expect((failure.reason as any).uri).toBe(`https://as.example.test/errors/${error}`)
        expect(failure.operation).toBe("client_credentials grant")
        expect(failure.message).toBe(
          `client_credentials grant failed (OAuthError): ${error} (HTTP ${status}) - the ${error} description`
        )
        expect(TokenError.isTransient(failure)).toBe(false)
        expectNoSecret(failure)
      }))
  }

  it.effect("an OAuth error body without description or uri leaves them out", () =>
    Effect.gen(function*() {
      const failure = yield* failWith(() => json(400, { error: "invalid_scope" }))
      expect(failure.reason._tag).toBe("OAuthError")
      expect((failure.reason as any).description).toBeUndefined()
      expect((failure.reason as any).uri).toBeUndefined()
    }))

  it.effect("a 200 with an RFC 6749 error body and no access_token (GitHub) -> OAuthError with that error", () =>
    Effect.gen(function*() {
      const failure = yield* failWith(() =>
        json(200, {
          error: "bad_verification_code",
          error_description: "The code passed is incorrect or expired.",
          error_uri: "https://docs.github.com/apps/troubleshooting"
        })
      )
      expect(failure.reason._tag).toBe("OAuthError")
      expect((failure.reason as any).status).toBe(200)
      expect((failure.reason as any).code).toBe("bad_verification_code")
      expect((failure.reason as any).description).toBe("The code passed is incorrect or expired.")
      expect((failure.reason as any).uri).toBe("https://docs.github.com/apps/troubleshooting")
      expect(TokenError.isTransient(failure)).toBe(false)
      // A transient OAuth error in a 200 is retried like one in a 503.
      const transient = yield* failWith(() => json(200, { error: "slow_down" }))
      expect(transient.reason._tag).toBe("OAuthError")
      expect(TokenError.isTransient(transient)).toBe(true)
      expectNoSecret(failure)
    }))

  it.effect("a 200 with an access_token is a token response, even if it also has an error member", () =>
    Effect.gen(function*() {
      const { client } = fakeClient(() => json(200, { ...tokenBody, error: "ignored" }))
      const token = yield* TokenEndpoint.makeWith(client, { tokenUrl, clientAuth: basic }).request(grant)
      expect(Redacted.value(token.value)).toBe(accessToken)
    }))

  it.effect("a 200 that is not JSON -> MalformedResponse", () =>
    Effect.gen(function*() {
      const failure = yield* failWith(() =>
        new Response("access_token=" + accessToken, { status: 200, headers: { "content-type": "text/plain" } })
      )
      expect(failure.reason._tag).toBe("MalformedResponse")
      expect((failure.reason as any).status).toBe(200)
      expect(failure.message).toContain("text/plain")
      expectNoSecret(failure)
    }))

  it.effect("a 200 with JSON that is not a token response -> MalformedResponse naming the field", () =>
    Effect.gen(function*() {
      const failure = yield* failWith(() => json(200, { ...tokenBody, token_type: "mac" }))
      expect(failure.reason._tag).toBe("MalformedResponse")
      expect(failure.message).toContain("token_type")
      expectNoSecret(failure)
    }))

  it.effect("an HTML 502 page -> Unavailable with the status (transient)", () =>
    Effect.gen(function*() {
      const failure = yield* failWith(() => html(502))
      expect(failure.reason._tag).toBe("Unavailable")
      expect((failure.reason as any).status).toBe(502)
      expect((failure.reason as any).retryAfter).toBeUndefined()
      expect(TokenError.isTransient(failure)).toBe(true)
      expect(printed(failure)).not.toContain("<html>")
    }))

  it.effect("an HTML 404 page -> MalformedResponse with the status (not transient)", () =>
    Effect.gen(function*() {
      const failure = yield* failWith(() => html(404))
      expect(failure.reason._tag).toBe("MalformedResponse")
      expect((failure.reason as any).status).toBe(404)
      expect(TokenError.isTransient(failure)).toBe(false)
    }))

  for (const status of [429, 503]) {
    it.effect(`${status} with Retry-After: 7 -> Unavailable, retryAfter 7 s`, () =>
      Effect.gen(function*() {
        const failure = yield* failWith(() => html(status, { "retry-after": "7" }))
        expect(failure.reason._tag).toBe("Unavailable")
        expect((failure.reason as any).status).toBe(status)
        expect(TokenError.retryAfter(failure)).toEqual(Option.some(Duration.seconds(7)))
      }))

    it.effect(`${status} with Retry-After as an HTTP-date 7 s ahead of the clock -> retryAfter 7 s`, () =>
      Effect.gen(function*() {
        yield* TestClock.setTime(Date.UTC(2025, 0, 15, 12, 0, 0))
        const failure = yield* failWith(() =>
          new Response(null, { status, headers: { "retry-after": "Wed, 15 Jan 2025 12:00:07 GMT" } })
        )
        expect(failure.reason._tag).toBe("Unavailable")
        expect((failure.reason as any).retryAfter).toEqual(Duration.seconds(7))
      }))
  }

  it.effect("an OAuth error body on a 503 keeps the OAuth error and the Retry-After", () =>
    Effect.gen(function*() {
      const failure = yield* failWith(() => json(503, { error: "temporarily_unavailable" }, { "retry-after": "7" }))
      expect(failure.reason._tag).toBe("OAuthError")
      expect((failure.reason as any).code).toBe("temporarily_unavailable")
      expect((failure.reason as any).retryAfter).toEqual(Duration.seconds(7))
      expect(TokenError.isTransient(failure)).toBe(true)
    }))

  it.effect("a Retry-After that is garbage is ignored", () =>
    Effect.gen(function*() {
      const failure = yield* failWith(() => html(429, { "retry-after": "soon, in 2099" }))
      expect(failure.reason._tag).toBe("Unavailable")
      expect((failure.reason as any).retryAfter).toBeUndefined()
    }))
})

describe("TokenEndpoint timeouts and transport failures", () => {
  const never = HttpClient.make(() => Effect.never)

  it.effect("a server that never answers -> Timeout after the default 10 s of the clock", () =>
    Effect.gen(function*() {
      const fiber = yield* Effect.fork(TokenEndpoint.makeWith(never, { tokenUrl, clientAuth: basic }).request(grant))
      yield* TestClock.adjust(Duration.millis(9_999))
      expect(yield* Fiber.poll(fiber)).toEqual(Option.none())
      yield* TestClock.adjust(Duration.millis(1))
      const failure = yield* Effect.flip(Fiber.join(fiber))
      expect(failure.reason._tag).toBe("Timeout")
      expect(failure.message).toContain("10s")
      expect(TokenError.isTransient(failure)).toBe(true)
      expectNoSecret(failure)
    }))

  it.effect("a configured timeout replaces the default", () =>
    Effect.gen(function*() {
      const endpoint = TokenEndpoint.makeWith(never, { tokenUrl, clientAuth: basic, attemptTimeout: "2 seconds" })
      const fiber = yield* Effect.fork(endpoint.request(grant))
      yield* TestClock.adjust("1999 millis")
      expect(Option.isNone(yield* Fiber.poll(fiber))).toBe(true)
      yield* TestClock.adjust("1 millis")
      const exit = yield* Fiber.await(fiber)
      expect(Exit.isFailure(exit)).toBe(true)
      const failure = yield* Effect.flip(Fiber.join(fiber))
      expect(failure.reason._tag).toBe("Timeout")
    }))

  it.effect("headers that arrive but a body that never ends -> Timeout (the limit covers the body)", () =>
    Effect.gen(function*() {
      const { client } = fakeClient(() =>
        new Response(new ReadableStream({ start: () => {} }), {
          status: 200,
          headers: { "content-type": "application/json" }
        })
      )
      const fiber = yield* Effect.fork(TokenEndpoint.makeWith(client, { tokenUrl, clientAuth: basic }).request(grant))
      yield* TestClock.adjust("10 seconds")
      const failure = yield* Effect.flip(Fiber.join(fiber))
      expect(failure.reason._tag).toBe("Timeout")
    }))

  it.effect("a RequestError from the HttpClient -> Transport, with the cause's code but no secret", () =>
    Effect.gen(function*() {
      const client = HttpClient.make((request) =>
        Effect.fail(
          new HttpClientError.RequestError({
            request,
            reason: "Transport",
            cause: Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:9"), { code: "ECONNREFUSED" })
          })
        )
      )
      for (const clientAuth of [basic, post]) {
        const failure = yield* Effect.flip(TokenEndpoint.makeWith(client, { tokenUrl, clientAuth }).request(grant))
        expect(failure.reason._tag).toBe("Transport")
        expect(failure.message).toContain("ECONNREFUSED")
        expect(TokenError.isTransient(failure)).toBe(true)
        expectNoSecret(failure)
      }
    }))

  it.effect("a body that fails half-way -> Transport", () =>
    Effect.gen(function*() {
      const { client } = fakeClient(() =>
        new Response(
          new ReadableStream({
            start: (controller) => {
              controller.enqueue(new TextEncoder().encode("{\"access_token\":\""))
              controller.error(new Error("socket hang up"))
            }
          }),
          { status: 200, headers: { "content-type": "application/json" } }
        )
      )
      const failure = yield* Effect.flip(TokenEndpoint.makeWith(client, { tokenUrl, clientAuth: basic }).request(grant))
      expect(failure.reason._tag).toBe("Transport")
      expect(failure.message).toContain("socket hang up")
    }))

  it.effect("an invalid token URL -> Misconfigured", () =>
    Effect.gen(function*() {
      const { client, seen } = fakeClient(() => json(200, tokenBody))
      const failure = yield* Effect.flip(
        TokenEndpoint.makeWith(client, { tokenUrl: "not a url", clientAuth: basic }).request(grant)
      )
      expect(failure.reason._tag).toBe("Misconfigured")
      expect(seen).toHaveLength(0)
    }))
})

/** A tracer that keeps every span's name and attributes (as SecretLeak.test.ts captures them). */
describe("TokenEndpoint span", () => {
  it.effect("url.full has no userinfo, query or fragment (they can carry secrets)", () =>
    Effect.gen(function*() {
      const { spans, tracer } = capturingTracer()
      const { client } = fakeClient(() => json(200, tokenBody))
      const endpoint = TokenEndpoint.makeWith(client, {
        tokenUrl: "https://client:pa55-in-url@as.example.test/oauth/token?key=api-key-in-query#frag-secret",
        clientAuth: basic
      })
      yield* endpoint.request(grant).pipe(Effect.withTracer(tracer))
      const span = spans.find((s) => s.name === "effect-token/TokenEndpoint.request")!
      expect(span.attributes.get("url.full")).toBe("https://as.example.test/oauth/token")
      expect(span.attributes.get("oauth.grant_type")).toBe("client_credentials")
      const shown = JSON.stringify([...span.attributes.values()])
      for (const secret of ["pa55-in-url", "api-key-in-query", "frag-secret", "client:"]) {
        expect(shown).not.toContain(secret)
      }
    }))

  it.effect("an unparsable token URL is not echoed into the span", () =>
    Effect.gen(function*() {
      const { spans, tracer } = capturingTracer()
      const { client } = fakeClient(() => json(200, tokenBody))
      yield* TokenEndpoint.makeWith(client, { tokenUrl: "not a url with-a-secret", clientAuth: basic }).request(grant)
        .pipe(Effect.withTracer(tracer), Effect.flip)
      const span = spans.find((s) => s.name === "effect-token/TokenEndpoint.request")!
      expect(String(span.attributes.get("url.full"))).not.toContain("with-a-secret")
    }))
})

describe("secrets in errors", () => {
  const answers: ReadonlyArray<readonly [string, () => Response]> = [
    ["invalid_client", () => json(401, { error: "invalid_client", error_description: "client authentication failed" })],
    ["non-JSON 200", () => new Response("oops", { status: 200 })],
    ["bad token response", () => json(200, { ...tokenBody, expires_in: -1 })],
    ["token with a space", () => json(200, { ...tokenBody, access_token: `${accessToken} x` })],
    ["HTML 502", () => html(502)],
    ["HTML 404", () => html(404)],
    ["429", () => html(429, { "retry-after": "7" })]
  ]

  it.effect("no error from any failure shows the client secret, a token or a refresh token", () =>
    Effect.gen(function*() {
      for (const [name, answer] of answers) {
        for (const auth of [basic, post]) {
          const failure = yield* failWith(answer, auth)
          expect(TokenError.isTokenError(failure), name).toBe(true)
          expectNoSecret(failure)
        }
      }
    }))
})

describe("TokenError.isTransient", () => {
  const operation = "client_credentials grant"
  const oauth = (code: string) => new TokenError.OAuthError({ code, status: 400 })
  const cases: ReadonlyArray<readonly [string, TokenError.TokenErrorReason, boolean]> = [
    ["Transport", new TokenError.Transport({ description: "ECONNRESET" }), true],
    ["Timeout of one attempt", new TokenError.Timeout({ bound: "attempt", after: Duration.seconds(10) }), true],
    ["Timeout of the whole wait", new TokenError.Timeout({ bound: "acquire", after: Duration.seconds(1) }), false],
    ["Unavailable", new TokenError.Unavailable({ status: 503 }), true],
    ["OAuthError temporarily_unavailable", oauth("temporarily_unavailable"), true],
    ["OAuthError slow_down", oauth("slow_down"), true],
    ["OAuthError server_error", oauth("server_error"), true],
    ["OAuthError invalid_client", oauth("invalid_client"), false],
    ["OAuthError invalid_grant", oauth("invalid_grant"), false],
    ["OAuthError invalid_scope", oauth("invalid_scope"), false],
    ["OAuthError unauthorized_client", oauth("unauthorized_client"), false],
    ["RefreshTokenRejected", new TokenError.RefreshTokenRejected({ status: 400 }), false],
    ["MalformedResponse", new TokenError.MalformedResponse({ description: "not JSON" }), false],
    ["Misconfigured", new TokenError.Misconfigured({ description: "bad key" }), false]
  ]

  for (const [name, reason, transient] of cases) {
    it(`${name} -> ${transient}`, () => {
      expect(TokenError.isTransient(new TokenError.TokenError({ operation, reason }))).toBe(transient)
    })
  }

  it("one status table: 408, 429, 500, 502, 503, 504 are transient; 501 and 505 are not", () => {
    const transient = Array.from({ length: 600 }, (_, status) => status).filter(TokenError.isTransientStatus)
    expect(transient).toEqual([408, 429, 500, 502, 503, 504])
  })
})

describe("parseRetryAfter", () => {
  const now = Date.UTC(2015, 9, 21, 7, 28, 0) // Wed, 21 Oct 2015 07:28:00 GMT
  const seconds = (header: string | undefined) =>
    Option.map(parseRetryAfter(header, now), Duration.toMillis).pipe(Option.map((ms) => ms / 1000))

  it("reads delay-seconds", () => {
    expect(seconds("7")).toEqual(Option.some(7))
    expect(seconds(" 120 ")).toEqual(Option.some(120))
    expect(seconds("0")).toEqual(Option.some(0))
  })

  it("reads an HTTP-date relative to now, in all three RFC 9110 forms, always as GMT", () => {
    expect(seconds("Wed, 21 Oct 2015 07:28:07 GMT")).toEqual(Option.some(7))
    expect(seconds("Wednesday, 21-Oct-15 07:28:07 GMT")).toEqual(Option.some(7))
    expect(seconds("Wed Oct 21 07:28:07 2015")).toEqual(Option.some(7))
    expect(seconds("Wed Oct  21 07:28:07 2015")).toEqual(Option.none()) // one space too many
    // asctime pads a one-digit day with a space.
    expect(Option.map(parseRetryAfter("Thu Oct  1 07:28:07 2015", Date.UTC(2015, 9, 1, 7, 28, 0)), Duration.toSeconds))
      .toEqual(Option.some(7))
    expect(Option.map(parseRetryAfter("Sat, 01 Nov 2025 00:00:05 GMT", Date.UTC(2025, 10, 1)), Duration.toSeconds))
      .toEqual(Option.some(5))
  })

  it("a date in the past means now", () => {
    expect(seconds("Wed, 21 Oct 2015 07:27:00 GMT")).toEqual(Option.some(0))
    expect(seconds("Thu, 01 Jan 1970 00:00:00 GMT")).toEqual(Option.some(0))
  })

  it("ignores what is neither", () => {
    for (
      const garbage of [
        undefined,
        "",
        " ",
        "soon",
        "1.5",
        "-1",
        "+7",
        "7 seconds",
        "x 2020",
        "May 5",
        "tomorrow 1",
        "Wed, 31 Feb 2015 07:28:07 GMT",
        "Wed, 21 Oct 2015 25:28:07 GMT",
        "Wed, 21 Oct 2015 07:28:07 PST",
        "2015-10-21T07:28:07Z"
      ]
    ) {
      expect(seconds(garbage), String(garbage)).toEqual(Option.none())
    }
  })
})
