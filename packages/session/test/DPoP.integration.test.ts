import type { AccessToken } from "@effect-token/core"
import { UserTokenStore } from "@effect-token/session"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Inspectable, Option, Redacted, Schema, TestClock } from "effect"
import { calculateJwkThumbprint, decodeJwt } from "jose"
import * as util from "node:util"
import * as App from "./support/app.js"
import { Browser } from "./support/browser.js"

/**
 * A DPoP login against a real oidc-provider (`features.dPoP`): `dpop_jkt` on the authorization request, proofs on
 * the code exchange and the refresh, the session's key kept (redacted) in its record, and calls on the user's behalf
 * verified by the testing kit's DPoP resource server. The app's `TestClock` follows the wall clock (proofs' `iat` are
 * checked by both servers against real time), so the test waits for the short-lived token's refresh window.
 */
const sameToken = (a: UserTokenStore.SessionRecord, b: UserTokenStore.SessionRecord) =>
  Redacted.value(a.accessToken.value) === Redacted.value(b.accessToken.value)

describe("DPoP sessions against a real oidc-provider", () => {
  it.scoped("login binds the code to the session's key; calls and refreshes sign with it; the key never prints", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(Date.now())
      const app = yield* App.start({ dpop: true, accessTokenTtl: 4 })
      const browser = new Browser()
      const { url } = yield* Effect.promise(() => browser.navigate(`${app.appUrl}/login?returnTo=%2Fme`))
      expect(url).toBe(`${app.appUrl}/me`)

      const id = Redacted.make(browser.cookies(app.appUrl).get("session")!)
      const record = Effect.map(app.store.get(id), (found) => Option.getOrThrow(found).record)
      const first = yield* record
      const privateJwk = JSON.parse(Redacted.value(Option.getOrThrow(first.dpopKey)))
      const thumbprint = yield* Effect.promise(() =>
        calculateJwkThumbprint({ kty: privateJwk.kty, crv: privateJwk.crv, x: privateJwk.x, y: privateJwk.y })
      )
      // The authorization request named the key; the token is bound to it.
      const authorize = new URL(browser.visited.find((u) => u.startsWith(`${app.as.issuer}/auth?`))!)
      expect(authorize.searchParams.get("dpop_jkt")).toBe(thumbprint)
      expect(first.accessToken.type).toBe("DPoP")
      const jktOf = (token: AccessToken.AccessToken) => (decodeJwt(Redacted.value(token.value)).cnf as any).jkt
      expect(jktOf(first.accessToken)).toBe(thumbprint)

      const orders = Effect.promise(async () => {
        const response = await browser.fetch(`${app.appUrl}/orders`, { headers: { accept: "application/json" } })
        return await response.json() as Record<string, unknown>
      })
      expect(yield* orders).toEqual({ status: 200, body: expect.objectContaining({ ok: true, sub: "alice" }) })

      // Past the refresh window (half of the 4 s lifetime): the call is served with the current token and the
      // refresh runs behind it, sending a proof; the new token is bound to the same key, and the next call signs
      // with it.
      yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 2_500)))
      yield* TestClock.setTime(Date.now())
      expect(yield* orders).toEqual({ status: 200, body: expect.objectContaining({ ok: true, sub: "alice" }) })
      // Real time: the refresh travels to the real provider and back; bounded, so a lost refresh fails the test.
      const realPause = Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 50)))
      let second = yield* record
      for (let attempt = 0; attempt < 200 && sameToken(second, first); attempt++) {
        yield* realPause
        second = yield* record
      }
      expect(Redacted.value(second.accessToken.value)).not.toBe(Redacted.value(first.accessToken.value))
      expect(app.as.tokenRequests()["refresh_token"]).toBe(1)
      expect(jktOf(second.accessToken)).toBe(thumbprint)
      expect(yield* orders).toEqual({ status: 200, body: expect.objectContaining({ ok: true, sub: "alice" }) })
      expect(app.as.tokenRequests()["refresh_token"]).toBe(1)
      expect(yield* app.dpopApi!.counts).toEqual({ total: 3, ok: 3, unauthorized: 0, nonceChallenges: 0 })

      // The key is Redacted in the record: printing shows nothing of it; only the store's encoding carries it.
      const printed = [
        String(second),
        JSON.stringify(second),
        util.inspect(second, { depth: 20 }),
        Inspectable.format(second)
      ]
      for (const text of printed) expect(text).not.toContain(privateJwk.d)
      expect(Schema.encodeSync(UserTokenStore.SessionRecordJson)(second)).toContain(privateJwk.d)
    }))
})
