import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Option, Redacted, TestClock } from "effect"
import { chromium } from "playwright-core"
import * as App from "./support/app.js"

/**
 * Debian's Chromium through playwright-core: the real login form, then 20 parallel `fetch`es from the page across
 * the access token's expiry. The application's clock is the TestClock set to the wall clock, moved past expiry.
 */
const launch = Effect.acquireRelease(
  Effect.promise(() =>
    chromium.launch({
      executablePath: "/usr/bin/chromium",
      headless: true,
      args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    })
  ),
  (browser) => Effect.promise(() => browser.close())
)

describe("in a real browser", () => {
  it.scoped("login through the provider's form, then 20 parallel fetches across expiry: one refresh, no logout", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(Date.now())
      const app = yield* App.start()
      const browser = yield* launch
      const page = yield* Effect.promise(() => browser.newPage())
      const run = <A>(f: () => Promise<A>) => Effect.promise(f)

      yield* run(() => page.goto(`${app.appUrl}/login?returnTo=/me`))
      yield* run(() => page.fill("input[name=login]", "alice"))
      yield* run(() => page.fill("input[name=password]", "any"))
      yield* run(() => Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]))
      // The consent page (offline_access), then back to the application.
      yield* run(() => Promise.all([page.waitForURL(`${app.appUrl}/me`), page.click("button[type=submit]")]))
      expect(JSON.parse(yield* run(() => page.innerText("body")))).toEqual({ sub: "alice" })
      const cookies = yield* run(() => page.context().cookies(app.appUrl))
      const session = cookies.find((c) => c.name === "session")!
      expect(session).toMatchObject({ httpOnly: true, sameSite: "Lax", path: "/" })
      // The page's scripts cannot read it.
      expect(yield* run(() => page.evaluate(() => document.cookie))).not.toContain("session=")

      yield* TestClock.adjust(Duration.minutes(10))
      const statuses = yield* run(() =>
        page.evaluate(() =>
          Promise.all(Array.from({ length: 20 }, () => fetch("/orders").then(async (r) => [r.status, await r.json()])))
        )
      )
      expect(statuses).toEqual(Array.from({ length: 20 }, () => [200, { status: 200, body: { sub: "alice" } }]))
      expect(app.as.tokenRequests()["refresh_token"]).toBe(1)
      expect(Option.isSome(yield* app.store.get(Redacted.make(session.value)))).toBe(true)
    }))
})
