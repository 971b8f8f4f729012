import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { chromium } from "playwright-core"
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

describe("the web-session example in Chromium", () => {
  it.scopedLive("sign in through the provider's pages, see the invoices, sign out", () =>
    Effect.gen(function*() {
      const { appUrl } = yield* start()
      const browser = yield* Effect.acquireRelease(
        Effect.promise(() =>
          chromium.launch({
            executablePath: "/usr/bin/chromium",
            headless: true,
            args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
          })
        ),
        (browser) => Effect.promise(() => browser.close())
      )
      const page = yield* Effect.promise(() => browser.newPage())
      const text = Effect.promise(() => page.innerText("body"))
      yield* Effect.promise(async () => {
        await page.goto(`${appUrl}/`)
        await Promise.all([page.waitForURL((url) => url.origin !== appUrl), page.click("a[href^='/login']")])
        await page.fill("input[name=login]", "alice")
        await page.fill("input[name=password]", "any")
        await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")])
        // The consent page, then back to the page the user asked for.
        await Promise.all([page.waitForURL(`${appUrl}/invoices`), page.click("button[type=submit]")])
      })
      const invoices = JSON.parse(yield* text) as { status: number; invoices: ReadonlyArray<unknown> }
      expect(invoices.status).toBe(200)
      expect(invoices.invoices.length).toBeGreaterThan(0)
      yield* Effect.promise(() => page.goto(`${appUrl}/`))
      expect(yield* text).toContain("Signed in as alice")
      yield* Effect.promise(() =>
        Promise.all([page.waitForURL((url) => url.pathname.includes("/session/end")), page.click("form button")])
      )
      yield* Effect.promise(() => page.goto(`${appUrl}/`))
      expect(yield* text).toContain("Not signed in")
    }))
})
