import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { start } from "../web-session/WebSessionApp.js"

describe("the web-session example", () => {
  it.scopedLive("serves its home page, sends /invoices to login, and /login to the provider with PKCE", () =>
    Effect.gen(function*() {
      const { appUrl, issuer } = yield* start()
      const get = (path: string, accept = "text/html") =>
        Effect.promise(() => fetch(`${appUrl}${path}`, { redirect: "manual", headers: { accept } }))
      const home = yield* get("/")
      expect(home.status).toBe(200)
      expect(yield* Effect.promise(() => home.text())).toContain("Not signed in")
      expect((yield* get("/invoices", "application/json")).status).toBe(401)
      const login = yield* get("/login?returnTo=/invoices")
      expect(login.status).toBe(302)
      const location = new URL(login.headers.get("location")!)
      expect(location.origin).toBe(issuer)
      expect(location.searchParams.get("code_challenge_method")).toBe("S256")
    }))
})
