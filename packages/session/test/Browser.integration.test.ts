import { ClientAuth, Revocation, TokenEndpoint } from "@effect-token/core"
import { NodeHttpClient } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Option, Redacted, TestClock } from "effect"
import type { Page } from "playwright-core"
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

  /**
   * Goes through the provider's pages as a user would (its login form, shown unless the provider still has the user
   * signed in, then its consent form) until the browser is back on `landing`.
   */
  const signIn = (page: Page, landing: string) =>
    Effect.promise(async () => {
      for (let form = 0; form < 4 && !page.url().startsWith(landing); form++) {
        await page.waitForSelector("button[type=submit]")
        if (await page.isVisible("input[name=login]")) {
          await page.fill("input[name=login]", "alice")
          await page.fill("input[name=password]", "any")
        }
        const before = page.url()
        await Promise.all([page.waitForURL((url) => url.href !== before), page.click("button[type=submit]")])
        await page.waitForLoadState()
      }
      expect(page.url()).toBe(landing)
    })

  const webClient = ClientAuth.clientSecretBasic({ clientId: "web", clientSecret: Redacted.make(App.clientSecret) })

  it.scoped("silent refresh past expiry; refresh token revoked at the provider: the next page goes to login", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(Date.now())
      const app = yield* App.start()
      const browser = yield* launch
      const page = yield* Effect.promise(() => browser.newPage())
      const run = <A>(f: () => Promise<A>) => Effect.promise(f)
      const sessionCookie = Effect.map(
        run(() => page.context().cookies(app.appUrl)),
        (cookies) => Option.fromNullable(cookies.find((c) => c.name === "session")?.value)
      )
      const storedRefreshToken = Effect.gen(function*() {
        const id = Option.getOrThrow(yield* sessionCookie)
        const record = Option.getOrThrow(yield* app.store.get(Redacted.make(id)))
        return Option.getOrThrow(record.record.refreshToken)
      })

      yield* run(() => page.goto(`${app.appUrl}/login?returnTo=/orders`))
      yield* signIn(page, `${app.appUrl}/orders`)
      expect(JSON.parse(yield* run(() => page.innerText("body")))).toEqual({ status: 200, body: { sub: "alice" } })

      // Past the access token's expiry: the next page load refreshes silently.
      yield* TestClock.adjust(Duration.minutes(10))
      yield* run(() => page.goto(`${app.appUrl}/orders`))
      expect(JSON.parse(yield* run(() => page.innerText("body")))).toEqual({ status: 200, body: { sub: "alice" } })
      expect(app.as.tokenRequests()["refresh_token"]).toBe(1)

      // The user's refresh token is revoked at the provider: past the next expiry the app sends the browser to login.
      const revocation = yield* Revocation.make({
        revocationUrl: `${app.as.issuer}/token/revocation`,
        clientAuth: webClient
      })
      yield* revocation.revokeRefreshToken(yield* storedRefreshToken)
      yield* TestClock.adjust(Duration.minutes(10))
      yield* run(() => page.goto(`${app.appUrl}/page`))
      expect(page.url().startsWith(`${app.as.issuer}/interaction/`)).toBe(true)
      expect(Option.isNone(yield* sessionCookie)).toBe(true)
    }).pipe(Effect.provide(NodeHttpClient.layerUndici)))

  it.scoped("returnTo shapes that normalize to a scheme-relative path land on /, never on another origin", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(Date.now())
      const app = yield* App.start()
      // Another origin the browser can reach, so that a redirect there is seen rather than lost to DNS.
      const evil = yield* App.otherSite
      const browser = yield* launch
      const page = yield* Effect.promise(() => browser.newPage())
      const host = evil.url.slice("http://".length)
      const shapes = [`/.//${host}/`, `/..//${host}/`, `/%2e//${host}/`, `/%2E%2E//${host}/`, `/a/..//${host}/`]
      const landed: Array<string> = []
      for (const shape of shapes) {
        yield* Effect.promise(() => page.goto(`${app.appUrl}/login?returnTo=${encodeURIComponent(shape)}`))
        // The provider's forms, until the browser leaves the provider (wherever it goes).
        yield* Effect.promise(async () => {
          for (let form = 0; form < 4 && page.url().startsWith(app.as.issuer); form++) {
            await page.waitForSelector("button[type=submit]")
            if (await page.isVisible("input[name=login]")) {
              await page.fill("input[name=login]", "alice")
              await page.fill("input[name=password]", "any")
            }
            const before = page.url()
            await Promise.all([page.waitForURL((url) => url.href !== before), page.click("button[type=submit]")])
            await page.waitForLoadState()
          }
        })
        landed.push(page.url())
      }
      expect(landed).toEqual(shapes.map(() => `${app.appUrl}/`))
      expect(evil.requests()).toBe(0)
    }))

  it.scoped("a page on another site that posts a form to /logout signs nobody out", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(Date.now())
      const app = yield* App.start()
      const evil = yield* App.otherSiteWith(
        `<form method="post" action="${app.appUrl}/logout"></form><script>document.forms[0].submit()</script>`
      )
      const browser = yield* launch
      const page = yield* Effect.promise(() => browser.newPage())
      const run = <A>(f: () => Promise<A>) => Effect.promise(f)
      yield* run(() => page.goto(`${app.appUrl}/login?returnTo=/me`))
      yield* signIn(page, `${app.appUrl}/me`)
      const id = (yield* run(() => page.context().cookies(app.appUrl))).find((c) => c.name === "session")!.value

      const answer = yield* run(() =>
        Promise.all([
          page.waitForResponse((response) => response.url() === `${app.appUrl}/logout`),
          page.goto(evil.url)
        ]).then(([response]) => response.status())
      )
      expect(answer).toBe(403)
      const after = yield* run(() => page.context().cookies(app.appUrl))
      expect(after.find((c) => c.name === "session")?.value).toBe(id)
      expect(Option.isSome(yield* app.store.get(Redacted.make(id)))).toBe(true)
      yield* run(() => page.goto(`${app.appUrl}/me`))
      expect(JSON.parse(yield* run(() => page.innerText("body")))).toEqual({ sub: "alice" })
    }))

  it.scoped("logout from the page: the session ends and the refresh token no longer works at the provider", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(Date.now())
      const app = yield* App.start()
      const browser = yield* launch
      const page = yield* Effect.promise(() => browser.newPage())
      const run = <A>(f: () => Promise<A>) => Effect.promise(f)
      yield* run(() => page.goto(`${app.appUrl}/login?returnTo=/page`))
      yield* signIn(page, `${app.appUrl}/page`)
      const id = (yield* run(() => page.context().cookies(app.appUrl))).find((c) => c.name === "session")!.value
      const record = Option.getOrThrow(yield* app.store.get(Redacted.make(id)))
      const refreshToken = Option.getOrThrow(record.record.refreshToken)

      // A form post, as a logout button sends (logout is POST only: a link on another site cannot log the user out).
      yield* run(() =>
        Promise.all([
          page.waitForURL((url) => url.href.startsWith(`${app.as.issuer}/session/end`)),
          page.evaluate(() => {
            const form = document.createElement("form")
            form.method = "POST"
            form.action = "/logout"
            document.body.appendChild(form)
            form.submit()
          })
        ])
      )
      expect((yield* run(() => page.context().cookies(app.appUrl))).some((c) => c.name === "session")).toBe(false)
      expect(Option.isNone(yield* app.store.get(Redacted.make(id)))).toBe(true)
      // The revocation runs in the background: once the provider has answered it, the refresh token is dead.
      expect(yield* app.revocationAnswered).toBe(200)
      const endpoint = yield* TokenEndpoint.make({ tokenUrl: app.as.tokenUrl, clientAuth: webClient })
      const refused = yield* Effect.flip(endpoint.request({ grant_type: "refresh_token", refresh_token: refreshToken }))
      expect(refused.reason._tag === "OAuthError" && refused.reason.code).toBe("invalid_grant")
    }).pipe(Effect.provide(NodeHttpClient.layerUndici)))
})
