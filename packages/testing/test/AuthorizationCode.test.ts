import { TestAuthorizationServer } from "@effect-token/testing"
import { HttpClientRequest } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Option, TestClock } from "effect"
import { decodeJwt } from "jose"
import { createHash } from "node:crypto"

const verifier = "a-verifier-of-at-least-43-characters-0123456789abcdef"
const challenge = createHash("sha256").update(verifier).digest("base64url")
const redirectUri = "https://app.test/callback"

const authorizationRequest = (
  as: TestAuthorizationServer.TestAuthorizationServer,
  extra: Record<string, string> = {}
) =>
  `${as.authorizationUrl}?${new URLSearchParams({
    response_type: "code",
    client_id: "test-client",
    redirect_uri: redirectUri,
    scope: "openid offline_access",
    state: "s-1",
    nonce: "n-1",
    code_challenge: challenge,
    code_challenge_method: "S256",
    ...extra
  })}`

const redeem = (as: TestAuthorizationServer.TestAuthorizationServer, code: string, codeVerifier = verifier) =>
  as.client.execute(
    HttpClientRequest.post(as.tokenUrl).pipe(
      HttpClientRequest.basicAuth("test-client", "test-secret"),
      HttpClientRequest.bodyUrlParams({
        grant_type: "authorization_code",
        code,
        redirect_uri: redirectUri,
        code_verifier: codeVerifier
      })
    )
  ).pipe(Effect.flatMap((response) => Effect.map(response.json, (body) => ({ status: response.status, body }))))

describe("TestAuthorizationServer: authorization_code with PKCE", () => {
  it.effect("a code comes back on the callback with state and iss, and is redeemed once for tokens and an ID token", () =>
    Effect.gen(function*() {
      const as = yield* TestAuthorizationServer.makeInProcess()
      const callback = new URL(yield* as.authorize(authorizationRequest(as), { subject: "alice" }))
      expect(callback.origin + callback.pathname).toBe(redirectUri)
      expect(callback.searchParams.get("state")).toBe("s-1")
      expect(callback.searchParams.get("iss")).toBe(as.issuer)
      const code = callback.searchParams.get("code")!
      const first = yield* redeem(as, code)
      expect(first.status).toBe(200)
      const body = first.body as Record<string, string>
      expect(decodeJwt(body.id_token!)).toMatchObject({ sub: "alice", aud: "test-client", nonce: "n-1" })
      expect(decodeJwt(body.access_token!)).toMatchObject({ sub: "alice", scope: "openid offline_access" })
      expect(typeof body.refresh_token).toBe("string")
      expect((yield* redeem(as, code)).body).toMatchObject({ error: "invalid_grant" })
      expect(yield* as.requests).toEqual({ authorization_code: 2 })
    }))

  it.effect("a wrong verifier is invalid_grant; no challenge comes back as an error on the callback", () =>
    Effect.gen(function*() {
      const as = yield* TestAuthorizationServer.makeInProcess()
      const code = new URL(yield* as.authorize(authorizationRequest(as))).searchParams.get("code")!
      expect((yield* redeem(as, code, "another-verifier-of-at-least-43-characters-000000")).body).toMatchObject({
        error: "invalid_grant"
      })
      const refused = new URL(yield* as.authorize(authorizationRequest(as, { code_challenge_method: "plain" })))
      expect(refused.searchParams.get("error")).toBe("invalid_request")
      expect(refused.searchParams.get("code")).toBeNull()
    }))

  it.effect("the authorization endpoint signs login_hint in and redirects to the callback", () =>
    Effect.gen(function*() {
      const as = yield* TestAuthorizationServer.makeInProcess()
      const response = yield* as.client.get(authorizationRequest(as, { login_hint: "bob" }))
      expect(response.status).toBe(302)
      const code = new URL(response.headers["location"]!).searchParams.get("code")!
      const body = (yield* redeem(as, code)).body as Record<string, string>
      expect(decodeJwt(body.id_token!).sub).toBe("bob")
    }))
})

describe("TestAuthorizationServer: holding an answer", () => {
  it.effect("a held request is counted, unanswered while the TestClock moves, and answered once released", () =>
    Effect.gen(function*() {
      const as = yield* TestAuthorizationServer.makeInProcess({ tokenLifetime: "1 minute" })
      const hold = yield* as.holdNext
      const request = as.client.execute(
        HttpClientRequest.post(as.tokenUrl).pipe(
          HttpClientRequest.basicAuth("test-client", "test-secret"),
          HttpClientRequest.bodyUrlParams({ grant_type: "client_credentials" })
        )
      )
      const fiber = yield* Effect.fork(request)
      yield* hold.reached
      expect(yield* as.requests).toEqual({ client_credentials: 1 })
      yield* TestClock.adjust("30 seconds")
      expect(Option.isNone(yield* Fiber.poll(fiber))).toBe(true)
      expect(yield* as.issuedTokens).toEqual([])
      yield* hold.release
      expect((yield* Fiber.join(fiber)).status).toBe(200)
      // Issued when answered: its lifetime counts from the release, on the TestClock.
      const [token] = yield* as.issuedTokens
      expect(token!.issuedAt.epochMillis).toBe(30_000)
      // Only one request was held.
      expect((yield* request).status).toBe(200)
    }))
})
