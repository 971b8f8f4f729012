/**
 * The whole sign-in against the testing kit's `TestAuthorizationServer` (in process, so `TestClock` governs every
 * lifetime): code + PKCE + nonce, the ID token, a refresh across the expiry held mid-flight while other requests of
 * the session wait for it, and a rejected refresh token sending the user back to login.
 */
import { TestAuthorizationServer } from "@effect-token/testing"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, TestClock } from "effect"
import * as Login from "./support/login.js"

describe("sign-in against TestAuthorizationServer", () => {
  it.scoped("login with PKCE, the user's subject from the ID token, one refresh per session held mid-flight", () =>
    Effect.gen(function*() {
      const server = yield* TestAuthorizationServer.makeInProcess({ tokenLifetime: "5 minutes" })
      const app = yield* Login.make({ server })
      const alice = app.browser()
      const callback = yield* alice.startLogin("/me", { subject: "alice" })
      expect(new URL(callback).searchParams.get("iss")).toBe(server.issuer)
      const done = yield* alice.navigate(callback)
      expect(done.headers.get("location")).toBe("/me")
      const me = yield* alice.fetch("/me")
      expect(yield* Effect.promise(() => me.json())).toEqual({ sub: "alice" })
      expect(yield* server.requests).toEqual({ authorization_code: 1 })

      // In the refresh window (the last minute): the refresh is held at the server while more requests arrive; they
      // are served with the current token, still valid, and start no refresh of their own.
      yield* TestClock.adjust("270 seconds")
      const hold = yield* server.holdNext
      const first = yield* Effect.fork(alice.fetch("/token"))
      yield* hold.reached
      const others = yield* Effect.fork(Effect.all([alice.fetch("/token"), alice.fetch("/token")], {
        concurrency: "unbounded"
      }))
      expect((yield* Fiber.join(others)).map((response) => response.status)).toEqual([200, 200])
      yield* hold.release
      expect((yield* Fiber.join(first)).status).toBe(200)
      // The refresh's answer is stored (in the background when nobody waits for it): past the first token's expiry,
      // requests go on without another refresh.
      for (let i = 0; i < 100 && (yield* server.issuedTokens).length < 2; i++) yield* Effect.yieldNow()
      yield* TestClock.adjust("60 seconds")
      expect((yield* alice.fetch("/token")).status).toBe(200)
      expect(yield* server.requests).toEqual({ authorization_code: 1, refresh_token: 1 })
      const [, refreshed] = yield* server.issuedTokens
      expect(refreshed?.grantType).toBe("refresh_token")
    }))

  it.scoped("a code is redeemed once, and only with its PKCE verifier", () =>
    Effect.gen(function*() {
      const server = yield* TestAuthorizationServer.makeInProcess()
      const app = yield* Login.make({ server })
      const alice = app.browser()
      const callback = yield* alice.startLogin("/me")
      expect((yield* alice.navigate(callback)).headers.get("location")).toBe("/me")
      // The same callback again (a replayed code): the login cookie is used up and the code too.
      const again = yield* app.browser().navigate(callback)
      expect(again.status).toBeGreaterThanOrEqual(400)
      expect((yield* server.requests)["authorization_code"]).toBe(1)
    }))

  it.scoped("a refresh token the server revoked ends the session: back to login", () =>
    Effect.gen(function*() {
      const server = yield* TestAuthorizationServer.makeInProcess({ tokenLifetime: "2 minutes" })
      const app = yield* Login.make({ server })
      const alice = app.browser()
      yield* alice.navigate(yield* alice.startLogin("/me"))
      const issued = yield* server.issuedTokens
      const refreshToken = issued[0]!.refreshToken
      expect(refreshToken._tag).toBe("Some")
      if (refreshToken._tag === "Some") yield* server.revokeRefreshToken(refreshToken.value)
      yield* TestClock.adjust("3 minutes")
      const response = yield* alice.navigate("/me")
      expect(response.status).toBe(302)
      expect(response.headers.get("location")).toMatch(/^\/login/)
    }))
})
