import { UserTokenStore } from "@effect-token/session"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Deferred, Duration, Effect, Exit, Fiber, Option, Redacted, TestClock } from "effect"
import * as FakeIssuer from "./support/fakeIssuer.js"
import * as Login from "./support/login.js"

/** A store that counts every operation on it. */
const counting = (store: UserTokenStore.UserTokenStore) => {
  let operations = 0
  const counted = new Proxy(store, {
    get: (target, key) => {
      const value = Reflect.get(target, key)
      return typeof value === "function"
        ? (...args: Array<unknown>) => {
          operations++
          return value.apply(target, args)
        }
        : value
    }
  })
  return { store: counted, operations: () => operations }
}

describe("a login in progress lives in the browser, not on the server", () => {
  it.scoped("10,000 anonymous GET /login touch no store, and a user's login in progress still completes", () =>
    Effect.gen(function*() {
      const memory = counting(yield* UserTokenStore.makeMemory())
      const app = yield* Login.make({ store: memory.store })
      const alice = app.browser()
      const callback = yield* alice.startLogin("/me")
      const before = memory.operations()
      // Through the whole app a few times, then the login handler itself (the middleware does nothing without a
      // cookie), which keeps the test to a few seconds.
      for (let i = 0; i < 10; i++) expect((yield* app.send(`${Login.appUrl}/login`)).status).toBe(302)
      const anonymous = HttpServerRequest.fromWeb(new Request(`${Login.appUrl}/login`))
      for (let i = 0; i < 10_000; i++) {
        const response = yield* app.login.login.pipe(
          Effect.provideService(HttpServerRequest.HttpServerRequest, anonymous)
        )
        expect(response.status).toBe(302)
      }
      expect(memory.operations() - before).toBe(0)
      const done = yield* alice.navigate(callback)
      expect(done.status).toBe(302)
      expect(done.headers.get("location")).toBe("/me")
      expect((yield* alice.fetch("/me")).status).toBe(200)
    }))

  it.scoped("a callback link from another site does not use up the login in progress", () =>
    Effect.gen(function*() {
      const app = yield* Login.make()
      const alice = app.browser()
      const callback = yield* alice.startLogin("/me")
      // Another site sends alice's browser to our callback with its own code and a state of its choosing.
      const forged = new URL(callback)
      forged.searchParams.set("code", "attacker-code")
      forged.searchParams.set("state", "A".repeat(43))
      const refused = yield* alice.navigate(forged.toString())
      expect(refused.status).toBe(401)
      expect(app.fake.codeRequests).toEqual([])
      // Her own callback still completes.
      const done = yield* alice.navigate(callback)
      expect(done.headers.get("location")).toBe("/me")
      expect((yield* alice.fetch("/me")).status).toBe(200)
    }))

  it.scoped("logins started in parallel tabs each complete, in any order", () =>
    Effect.gen(function*() {
      const app = yield* Login.make()
      const alice = app.browser()
      const first = yield* alice.startLogin("/first")
      const second = yield* alice.startLogin("/second")
      const third = yield* alice.startLogin("/third")
      for (const [callback, path] of [[second, "/second"], [first, "/first"], [third, "/third"]] as const) {
        const done = yield* alice.navigate(callback)
        expect(done.headers.get("location")).toBe(path)
      }
      expect((yield* alice.fetch("/me")).status).toBe(200)
    }))
})

describe("the login cookie", () => {
  const loginCookies = (jar: Map<string, string>) => [...jar.keys()].filter((name) => name.startsWith("__Host-login-"))

  it.scoped("__Host-, HttpOnly, Secure, SameSite=Lax, lives as long as a login may take; sealed, so it shows nothing", () =>
    Effect.gen(function*() {
      const app = yield* Login.make()
      const response = yield* app.send(`${Login.appUrl}/login?returnTo=%2Forders`)
      const [line, ...others] = response.headers.getSetCookie()
      expect(others).toEqual([])
      expect(line).toMatch(
        /^__Host-login-[A-Za-z0-9_-]{22}=v1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+; Path=\/; Max-Age=600; HttpOnly; Secure; SameSite=Lax$/
      )
      const authorize = new URL(response.headers.get("location")!)
      for (const param of ["state", "nonce"]) expect(line).not.toContain(authorize.searchParams.get(param))
      expect(line).not.toContain("orders")
    }))

  it.scoped("a tampered cookie, or one sealed for another login, does not open: refused, and the cookie expired", () =>
    Effect.gen(function*() {
      const app = yield* Login.make()
      const alice = app.browser()
      const first = yield* alice.startLogin("/first")
      const second = yield* alice.startLogin("/second")
      const [a, b] = loginCookies(alice.jar)
      // Swapped: each login's seal under the other's name.
      const [va, vb] = [alice.jar.get(a!)!, alice.jar.get(b!)!]
      alice.jar.set(a!, vb)
      alice.jar.set(b!, va)
      for (const callback of [first, second]) {
        const refused = yield* alice.fetch(callback, { headers: { accept: "application/json" } })
        expect(refused.status).toBe(401)
        expect(yield* Effect.promise(() => refused.json())).toMatchObject({ reason: "LoginStateInvalid" })
      }
      expect(loginCookies(alice.jar)).toEqual([])
      // One byte changed.
      const third = yield* alice.startLogin("/third")
      const [c] = loginCookies(alice.jar)
      const value = alice.jar.get(c!)!
      alice.jar.set(c!, value.slice(0, -2) + (value.endsWith("AA") ? "BB" : "AA"))
      expect((yield* alice.fetch(third)).status).toBe(401)
      expect(app.fake.codeRequests).toEqual([])
    }))

  it.scoped("one browser keeps its 4 newest logins: a site sending it to /login again and again cannot fill its jar", () =>
    Effect.gen(function*() {
      const app = yield* Login.make()
      const alice = app.browser()
      const callbacks: Array<string> = []
      for (let i = 0; i < 10; i++) {
        callbacks.push(yield* alice.startLogin(`/tab-${i}`))
        yield* TestClock.adjust(Duration.seconds(1))
        expect(loginCookies(alice.jar).length).toBeLessThanOrEqual(4)
      }
      expect((yield* alice.navigate(callbacks[0]!)).status).toBe(401)
      expect((yield* alice.navigate(callbacks[9]!)).headers.get("location")).toBe("/tab-9")
      expect((yield* alice.navigate(callbacks[6]!)).headers.get("location")).toBe("/tab-6")
    }))

  it.scoped("instances with the same secret complete each other's logins; another secret cannot open them", () =>
    Effect.gen(function*() {
      const secret = Redacted.make("a-secret-shared-by-every-instance-0123456789")
      const fake = yield* FakeIssuer.make
      const store = yield* UserTokenStore.makeMemory()
      const one = yield* Login.make({ fake, store, login: { secret } })
      const two = yield* Login.make({ fake, store, login: { secret } })
      const other = yield* Login.make({ fake, store, login: { secret: Redacted.make("x".repeat(32)) } })
      const alice = one.browser()
      const callback = yield* alice.startLogin("/me")
      const request = (app: typeof one) => {
        const headers = { cookie: [...alice.jar].map(([k, v]) => `${k}=${v}`).join("; ") }
        return app.send(callback, { headers })
      }
      expect((yield* request(other)).status).toBe(401)
      expect((yield* request(two)).headers.get("location")).toBe("/me")
    }))

  it.scoped("a secret shorter than 32 characters is a defect at start-up", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(Login.make({ login: { secret: Redacted.make("short") } }))
      expect(Exit.isFailure(exit) && Cause.isDie(exit.cause)).toBe(true)
    }))

  it.scoped("used once: the callback expires the cookie, and a replay with it put back is refused by the issuer", () =>
    Effect.gen(function*() {
      const app = yield* Login.make()
      const alice = app.browser()
      const callback = yield* alice.startLogin("/me")
      const saved = new Map(alice.jar)
      const done = yield* alice.navigate(callback)
      expect(done.headers.get("location")).toBe("/me")
      expect(loginCookies(alice.jar)).toEqual([])
      expect((yield* alice.navigate(callback)).status).toBe(401)
      // A replay that brings the cookie back reaches the issuer, which refuses the spent code.
      const mallory = app.browser()
      for (const [k, v] of saved) mallory.jar.set(k, v)
      const replay = yield* mallory.fetch(callback, { headers: { accept: "application/json" } })
      expect(yield* Effect.promise(() => replay.json())).toMatchObject({ reason: "CodeExchangeFailed" })
      expect(mallory.jar.has("__Host-session")).toBe(false)
    }))
})

describe("logout", () => {
  const signedIn = Effect.gen(function*() {
    const app = yield* Login.make()
    const alice = app.browser()
    yield* alice.navigate(yield* alice.startLogin("/me"))
    const id = Redacted.make(alice.jar.get("__Host-session")!)
    return { app, alice, id }
  })

  it.scoped("a cross-site POST is refused: 403, no cookie deletion, the session stays", () =>
    Effect.gen(function*() {
      const { alice, app, id } = yield* signedIn
      for (
        const headers of [
          { origin: "https://evil.example" },
          { origin: "null" },
          { "sec-fetch-site": "cross-site" },
          { "sec-fetch-site": "same-site", origin: "https://sibling.app.test" },
          { "sec-fetch-site": "cross-site", origin: Login.appUrl }
        ]
      ) {
        const response = yield* alice.fetch("/logout", { method: "POST", headers })
        expect(response.status).toBe(403)
        expect(response.headers.getSetCookie()).toEqual([])
      }
      expect(Option.isSome(yield* app.store.get(id))).toBe(true)
      expect((yield* alice.fetch("/me")).status).toBe(200)
      expect(app.fake.revoked).toEqual([])
    }))

  it.scoped("from this origin (Origin or Sec-Fetch-Site), or from a client that sends neither: the session ends", () =>
    Effect.gen(function*() {
      for (
        const headers of [
          { origin: Login.appUrl, "sec-fetch-site": "same-origin" },
          { "sec-fetch-site": "same-origin" },
          { origin: Login.appUrl },
          {}
        ]
      ) {
        const { alice, app, id } = yield* signedIn
        const response = yield* alice.fetch("/logout", { method: "POST", headers })
        expect(response.status).toBe(302)
        expect(response.headers.getSetCookie()).toEqual([
          "__Host-session=; Max-Age=0; Path=/; HttpOnly; Secure; SameSite=Lax"
        ])
        expect(Option.isNone(yield* app.store.get(id))).toBe(true)
      }
    }))

  it.scoped("the user is not kept waiting for the revocation: it runs in the background, bounded in time", () =>
    Effect.gen(function*() {
      const { alice, app } = yield* signedIn
      const held = yield* app.fake.holdRevocations
      // Answered while the issuer holds the revocation: the response does not wait for it.
      const answered = yield* Effect.fork(
        Effect.timeoutOption(
          alice.fetch("/logout", { method: "POST", headers: { origin: Login.appUrl } }),
          "1 second"
        )
      )
      yield* TestClock.adjust(Duration.seconds(1))
      const response = yield* Fiber.join(answered)
      expect(Option.map(response, (r) => r.status)).toEqual(Option.some(302))
      yield* Deferred.await(held.started)
      yield* held.open
      yield* Effect.repeat(Effect.yieldNow(), { until: () => app.fake.revoked.length > 0, times: 1000 })
      expect(app.fake.revoked).toEqual(["rt-1"])

      // A revocation the issuer never answers is given up after its bound (the timeout, 10 s).
      const bob = app.browser()
      yield* bob.navigate(yield* bob.startLogin("/me", { subject: "bob" }))
      const hung = yield* app.fake.holdRevocations
      yield* bob.fetch("/logout", { method: "POST" })
      yield* Deferred.await(hung.started)
      yield* TestClock.adjust(Duration.seconds(11))
      yield* hung.open
      for (let i = 0; i < 100; i++) yield* Effect.yieldNow()
      expect(app.fake.revoked).toEqual(["rt-1"])
    }))
})

describe("the callback's iss parameter (RFC 9207)", () => {
  it.scoped("an issuer that advertises it: a callback without iss is refused", () =>
    Effect.gen(function*() {
      const app = yield* Login.make()
      const alice = app.browser()
      const withoutIss = yield* alice.startLogin("/me", { iss: null })
      const refused = yield* alice.fetch(withoutIss, { headers: { accept: "application/json" } })
      expect(refused.status).toBe(401)
      expect(yield* Effect.promise(() => refused.json())).toMatchObject({ reason: "LoginStateInvalid" })
      expect(app.fake.codeRequests).toEqual([])
      // The same for an error answer.
      const denied = new URL(yield* alice.startLogin("/me", { iss: null }))
      denied.searchParams.delete("code")
      denied.searchParams.set("error", "access_denied")
      const answer = yield* alice.fetch(denied.toString(), { headers: { accept: "application/json" } })
      expect(yield* Effect.promise(() => answer.json())).toMatchObject({ reason: "LoginStateInvalid" })
    }))

  it.scoped("an issuer that does not advertise it: a callback without iss completes", () =>
    Effect.gen(function*() {
      const app = yield* Login.make({ fake: yield* FakeIssuer.makeWith({ issParameterSupported: false }) })
      const alice = app.browser()
      const done = yield* alice.navigate(yield* alice.startLogin("/me", { iss: null }))
      expect(done.headers.get("location")).toBe("/me")
    }))
})

describe("browser navigations get pages, API calls JSON", () => {
  const contentType = (response: Response) => response.headers.get("content-type") ?? ""

  it.scoped("a failed sign-in: a small page with a way back to login for a navigation, JSON for an API call", () =>
    Effect.gen(function*() {
      const app = yield* Login.make()
      const alice = app.browser()
      const callback = new URL(yield* alice.startLogin("/me"))
      callback.searchParams.set("code", "<script>alert('code')</script>")
      const page = yield* alice.navigate(callback.toString())
      expect(page.status).toBe(401)
      expect(contentType(page)).toContain("text/html")
      expect(page.headers.get("content-security-policy")).toBe("default-src 'none'")
      const html = yield* Effect.promise(() => page.text())
      expect(html).toContain(`href="/login"`)
      expect(html).not.toContain("<script")
      expect(html).not.toContain("alert")

      const api = yield* app.send(`${Login.appUrl}/callback?state=x`, { headers: { accept: "application/json" } })
      expect(api.status).toBe(401)
      expect(yield* Effect.promise(() => api.json())).toEqual({
        error: "login_failed",
        reason: "LoginStateInvalid",
        login: "/login"
      })
    }))

  it.scoped("nothing from the request is reflected: a hostile state, error and path come back as nothing", () =>
    Effect.gen(function*() {
      const app = yield* Login.make()
      const hostile = `${Login.appUrl}/callback?state=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E&error=%3Cb%3Ex%3C%2Fb%3E`
      const page = yield* app.browser().navigate(hostile)
      const html = yield* Effect.promise(() => page.text())
      expect(html).not.toMatch(/<img|<b>|onerror|alert/)
    }))

  it.scoped("the issuer is down: a navigation gets a 503 page, an API call 503 JSON", () =>
    Effect.gen(function*() {
      const fake = yield* FakeIssuer.make
      const app = yield* Login.make({ fake })
      const alice = app.browser()
      yield* alice.navigate(yield* alice.startLogin("/me"))
      fake.answer({ _tag: "Unavailable" }, { _tag: "Unavailable" }, { _tag: "Unavailable" }, { _tag: "Unavailable" })
      yield* TestClock.adjust(Duration.seconds(296))
      const page = yield* alice.navigate("/token")
      expect(page.status).toBe(503)
      expect(contentType(page)).toContain("text/html")
      const api = yield* alice.fetch("/token", { headers: { accept: "application/json" } })
      expect(api.status).toBe(503)
      expect(yield* Effect.promise(() => api.json())).toEqual({ error: "temporarily_unavailable" })
    }))

  it.scoped("the application's own page, when it gives one, for navigations only", () =>
    Effect.gen(function*() {
      const app = yield* Login.make({
        sessions: {
          errorPage: (error) => Effect.succeed(HttpServerResponse.text(`ours: ${error.reason._tag}`, { status: 418 }))
        }
      })
      const page = yield* app.browser().navigate(`${Login.appUrl}/callback?state=x`)
      expect(page.status).toBe(418)
      expect(yield* Effect.promise(() => page.text())).toBe("ours: LoginStateInvalid")
      const api = yield* app.send(`${Login.appUrl}/callback?state=x`, { headers: { accept: "application/json" } })
      expect(api.status).toBe(401)
    }))
})
