import { ClientAuth, Revocation, TokenEndpoint } from "@effect-token/core"
import { NodeHttpClient } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Layer, Option, Redacted, TestClock } from "effect"
import * as LoginCookie from "../src/internal/loginCookie.js"
import * as App from "./support/app.js"
import { Browser } from "./support/browser.js"

/**
 * Real sockets, a real oidc-provider, and the Effect `TestClock` set to the wall clock: the login happens in real
 * time, and the test moves the application's clock past the access token's expiry instead of sleeping.
 */
const setupWith = (options: Parameters<typeof App.start>[0] = {}) =>
  Effect.gen(function*() {
    yield* TestClock.setTime(Date.now())
    // The test's own client for the provider, alive for the whole test.
    const http = yield* Layer.build(NodeHttpClient.layerUndici)
    const app = yield* App.start(options)
    const browser = new Browser()
    const promise = <A>(f: () => Promise<A>) => Effect.promise(f)
    const signIn = (returnTo = "/me") =>
      promise(() => browser.navigate(`${app.appUrl}/login?returnTo=${encodeURIComponent(returnTo)}`))
    const sessionId = () => Redacted.make(browser.cookies(app.appUrl).get("session") ?? "")
    const record = Effect.suspend(() => Effect.map(app.store.get(sessionId()), Option.map((v) => v.record)))
    const getJson = (path: string) =>
      promise(async () => {
        const response = await browser.fetch(`${app.appUrl}${path}`, { headers: { accept: "application/json" } })
        return { status: response.status, body: await response.json() as Record<string, unknown>, response }
      })
    return { app, browser, promise, signIn, sessionId, record, getJson, http }
  })
const setup = setupWith()

const refreshCount = (app: App.App) => app.as.tokenRequests()["refresh_token"] ?? 0

describe("login, session and logout against a real oidc-provider", () => {
  it.scoped("login: PKCE code flow through the provider's login and consent pages, back to the page asked for", () =>
    Effect.gen(function*() {
      const { app, browser, getJson, record, signIn } = yield* setup
      const { response, url } = yield* signIn("/me")
      expect(url).toBe(`${app.appUrl}/me`)
      expect(yield* Effect.promise(() => response.json())).toEqual({ sub: "alice" })
      // The authorization request carried PKCE S256, state and nonce, and asked for offline access.
      const authorize = new URL(browser.visited.find((u) => u.startsWith(`${app.as.issuer}/auth?`))!)
      expect(authorize.searchParams.get("code_challenge_method")).toBe("S256")
      expect(authorize.searchParams.get("code_challenge")).toMatch(/^[A-Za-z0-9_-]{43}$/)
      expect(authorize.searchParams.get("state")).toMatch(/^[A-Za-z0-9_-]{43}$/)
      expect(authorize.searchParams.get("nonce")).toMatch(/^[A-Za-z0-9_-]{43}$/)
      expect(authorize.searchParams.get("scope")).toContain("offline_access")
      // Tokens stay on the server: the browser holds only the session id.
      expect([...browser.cookies(app.appUrl).keys()]).toEqual(["session"])
      const stored = Option.getOrThrow(yield* record)
      expect(stored.subject).toBe("alice")
      expect(Option.isSome(stored.refreshToken)).toBe(true)
      expect(Option.isSome(stored.idToken)).toBe(true)
      const me = yield* getJson("/me")
      expect(me.status).toBe(200)
    }))

  it.scoped("the session cookie is HttpOnly, SameSite=Lax, Path=/, and a new id at every login", () =>
    Effect.gen(function*() {
      const { app, browser, promise } = yield* setup
      const first = yield* promise(() =>
        browser.navigate(`${app.appUrl}/login`, { stopAt: (u) => u.startsWith(`${app.appUrl}/callback`) })
      )
      const callback = yield* promise(() => browser.fetch(first.url))
      const setCookie = callback.headers.getSetCookie().find((c) => c.startsWith("session="))!
      expect(setCookie).toMatch(/^session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Lax$/)
      const before = browser.cookies(app.appUrl).get("session")
      yield* promise(() => browser.navigate(`${app.appUrl}/login`))
      expect(browser.cookies(app.appUrl).get("session")).not.toBe(before)
    }))

  it.scoped("API calls on the user's behalf, silent refresh across expiry, and an API 401 refreshes once", () =>
    Effect.gen(function*() {
      const { app, getJson, record, signIn } = yield* setup
      yield* signIn()
      const first = yield* getJson("/orders")
      expect(first.body).toEqual({ status: 200, body: { sub: "alice" } })
      expect(refreshCount(app)).toBe(0)

      yield* TestClock.adjust(Duration.minutes(10))
      const second = yield* getJson("/orders")
      expect(second.body).toEqual({ status: 200, body: { sub: "alice" } })
      expect(refreshCount(app)).toBe(1)

      // The API stops honouring the current token: one refresh, one retry, and the call succeeds.
      const current = Option.getOrThrow(yield* record).accessToken
      app.api.rejected.add(Redacted.value(current.value))
      const third = yield* getJson("/orders")
      expect(third.body).toEqual({ status: 200, body: { sub: "alice" } })
      expect(refreshCount(app)).toBe(2)
    }))

  it.scoped("revoked at the provider: the session is rejected, the page goes to login, the store is cleared", () =>
    Effect.gen(function*() {
      const { app, browser, http, promise, record, sessionId, signIn } = yield* setup
      yield* signIn()
      const id = sessionId()
      const refreshToken = Option.getOrThrow(Option.getOrThrow(yield* record).refreshToken)
      const revocation = yield* Revocation.make({
        revocationUrl: `${app.as.issuer}/token/revocation`,
        clientAuth: ClientAuth.clientSecretBasic({ clientId: "web", clientSecret: Redacted.make(App.clientSecret) })
      }).pipe(Effect.provide(http))
      yield* revocation.revokeRefreshToken(refreshToken)
      yield* TestClock.adjust(Duration.minutes(10))
      const page = yield* promise(() =>
        browser.fetch(`${app.appUrl}/page`, { headers: { accept: "text/html", "sec-fetch-mode": "navigate" } })
      )
      expect(page.status).toBe(302)
      expect(page.headers.get("location")).toBe(`/login?returnTo=${encodeURIComponent("/page")}`)
      expect(Option.isNone(yield* app.store.get(id))).toBe(true)
      expect(browser.cookies(app.appUrl).has("session")).toBe(false)
    }))

  it.scoped("logout: session gone, refresh token revoked, RP-initiated logout at the provider", () =>
    Effect.gen(function*() {
      const { app, browser, getJson, http, promise, record, signIn } = yield* setup
      yield* signIn()
      const stored = Option.getOrThrow(yield* record)
      const response = yield* promise(() => browser.fetch(`${app.appUrl}/logout`, { method: "POST" }))
      expect(response.status).toBe(302)
      const location = new URL(response.headers.get("location")!)
      expect(`${location.origin}${location.pathname}`).toBe(`${app.as.issuer}/session/end`)
      expect(location.searchParams.get("id_token_hint")).toBe(Redacted.value(Option.getOrThrow(stored.idToken)))
      expect(location.searchParams.get("post_logout_redirect_uri")).toBe(`${app.appUrl}/`)
      expect((yield* getJson("/me")).status).toBe(401)
      // The revocation runs in the background: once the provider has answered it, the refresh token is dead.
      expect(yield* app.revocationAnswered).toBe(200)
      const endpoint = yield* TokenEndpoint.make({
        tokenUrl: app.as.tokenUrl,
        clientAuth: ClientAuth.clientSecretBasic({ clientId: "web", clientSecret: Redacted.make(App.clientSecret) })
      }).pipe(Effect.provide(http))
      const refused = yield* Effect.flip(
        endpoint.request({ grant_type: "refresh_token", refresh_token: Option.getOrThrow(stored.refreshToken) })
      )
      expect(refused.reason._tag === "OAuthError" && refused.reason.code).toBe("invalid_grant")
    }))
})

describe("cookies the middleware writes never replace the login's", () => {
  it.scoped("a stale session cookie on /login: the login still completes", () =>
    Effect.gen(function*() {
      const { app, browser, getJson, signIn } = yield* setup
      browser.cookies(app.appUrl).set("session", "C".repeat(43))
      const { url } = yield* signIn("/me")
      expect(url).toBe(`${app.appUrl}/me`)
      expect((yield* getJson("/me")).status).toBe(200)
    }))

  it.scoped("a session that expired while idle, then a new sign-in: the new session cookie is kept", () =>
    Effect.gen(function*() {
      // A short idle timeout: the provider's clock is the real one, and its ID tokens live 5 minutes.
      const { app, browser, getJson, record, signIn } = yield* setupWith({ idleTimeout: "1 minute" })
      yield* signIn("/me")
      const first = browser.cookies(app.appUrl).get("session")
      yield* TestClock.adjust(Duration.minutes(2))
      const { url } = yield* signIn("/me")
      expect(url).toBe(`${app.appUrl}/me`)
      expect(browser.cookies(app.appUrl).get("session")).not.toBe(first)
      expect(Option.isSome(yield* record)).toBe(true)
      expect((yield* getJson("/me")).status).toBe(200)
    }))
})

describe("a refresh's ID token", () => {
  it.scoped("replaces the login's: logout sends the current id_token_hint", () =>
    Effect.gen(function*() {
      const { app, browser, getJson, promise, record, signIn } = yield* setup
      yield* signIn()
      const atLogin = Redacted.value(Option.getOrThrow(Option.getOrThrow(yield* record).idToken))
      // The provider's clock is the real one: an ID token issued within the login's second (same iat, same claims,
      // RS256 is deterministic) would be the very same string. One real second apart, they differ.
      yield* promise(() => new Promise((resolve) => setTimeout(resolve, 1100)))
      yield* TestClock.adjust(Duration.minutes(10))
      expect((yield* getJson("/orders")).body).toEqual({ status: 200, body: { sub: "alice" } })
      expect(refreshCount(app)).toBe(1)
      const current = Redacted.value(Option.getOrThrow(Option.getOrThrow(yield* record).idToken))
      expect(current).not.toBe(atLogin)
      const response = yield* promise(() => browser.fetch(`${app.appUrl}/logout`, { method: "POST" }))
      expect(new URL(response.headers.get("location")!).searchParams.get("id_token_hint")).toBe(current)
    }))
})

describe("what reaches the browser", () => {
  it.scoped("the session id and the sealed login cookie; the ID token only as id_token_hint; never the access or refresh token", () =>
    Effect.gen(function*() {
      const { app, browser, getJson, promise, record, signIn } = yield* setup
      yield* signIn("/orders")
      const tokensOf = (stored: Option.Option.Value<Effect.Effect.Success<typeof record>>) => [
        Redacted.value(stored.accessToken.value),
        Redacted.value(Option.getOrThrow(stored.refreshToken))
      ]
      // The login's tokens, then (after the refresh) their successors: none of them may reach the browser.
      const login = Option.getOrThrow(yield* record)
      yield* promise(() => new Promise((resolve) => setTimeout(resolve, 1100)))
      yield* TestClock.adjust(Duration.minutes(10))
      expect((yield* getJson("/orders")).status).toBe(200)
      const stored = Option.getOrThrow(yield* record)
      expect(Redacted.value(stored.accessToken.value)).not.toBe(Redacted.value(login.accessToken.value))
      const secrets = [...tokensOf(login), ...tokensOf(stored)]
      const idToken = Redacted.value(Option.getOrThrow(stored.idToken))
      yield* promise(() => browser.fetch(`${app.appUrl}/logout`, { method: "POST" }))
      const everything = [...browser.visited, ...browser.received].join("\n")
      for (const secret of secrets) expect(everything).not.toContain(secret)
      // The login's ID token was replaced by the refresh answer's, and logout sends the current one only.
      const loginIdToken = Redacted.value(Option.getOrThrow(login.idToken))
      expect(loginIdToken).not.toBe(idToken)
      expect(everything).not.toContain(loginIdToken)
      // The ID token: once, in the logout redirect to the issuer (OpenID Connect RP-Initiated Logout).
      const withIdToken = browser.received.filter((answer) => answer.includes(idToken))
      expect(withIdToken).toHaveLength(1)
      expect(withIdToken[0]).toMatch(new RegExp(`^302 ${app.appUrl}/logout\n`))
      expect(withIdToken[0]).toContain(`location: ${app.as.issuer}/session/end?`)
      // The only cookies the app ever set: the session id and the login cookies.
      const names = browser.received.filter((answer) => answer.startsWith("3") || answer.startsWith("2"))
        .filter((answer) => answer.split("\n")[0]!.includes(app.appUrl))
        .flatMap((answer) => answer.split("\n").filter((line) => line.startsWith("set-cookie: ")))
        .map((line) => line.slice("set-cookie: ".length).split("=")[0]!)
      expect(new Set(names.map((name) => name.startsWith("login-") ? "login-*" : name))).toEqual(
        new Set(["session", "login-*"])
      )
    }))
})

describe("logout when revocation fails", () => {
  it.scoped("the provider is down: logout still ends the session and answers its redirect", () =>
    Effect.gen(function*() {
      const { app, browser, getJson, promise, sessionId, signIn } = yield* setup
      yield* signIn()
      const id = sessionId()
      yield* app.as.stop
      const response = yield* promise(() => browser.fetch(`${app.appUrl}/logout`, { method: "POST" }))
      expect(response.status).toBe(302)
      expect(Option.isNone(yield* app.store.get(id))).toBe(true)
      expect(browser.cookies(app.appUrl).has("session")).toBe(false)
      expect((yield* getJson("/me")).status).toBe(401)
    }))
})

describe("bad input at the callback: a typed error, a way back to login, no session", () => {
  /** Runs a login up to the redirect to our callback, and returns that URL (code and state) unvisited. */
  const toCallback = (browser: Browser, appUrl: string) =>
    Effect.promise(() => browser.navigate(`${appUrl}/login`, { stopAt: (u) => u.startsWith(`${appUrl}/callback`) }))

  const expectLoginFailed = (response: Response, reason: string) =>
    Effect.promise(async () => {
      expect(response.status).toBe(401)
      expect(await response.json()).toEqual({ error: "login_failed", reason, login: "/login" })
      expect(response.headers.getSetCookie().some((c) => c.startsWith("session="))).toBe(false)
    })

  const loginCookieOf = (browser: Browser, appUrl: string) => {
    const found = [...browser.cookies(appUrl)].filter(([name]) => name.startsWith("login-"))
    expect(found).toHaveLength(1)
    return found[0]!
  }

  it.scoped("a replayed callback finds no login: the callback expired its cookie", () =>
    Effect.gen(function*() {
      const { app, browser, promise } = yield* setup
      const { url } = yield* toCallback(browser, app.appUrl)
      loginCookieOf(browser, app.appUrl)
      expect((yield* promise(() => browser.fetch(url))).status).toBe(302)
      expect([...browser.cookies(app.appUrl).keys()]).toEqual(["session"])
      browser.cookies(app.appUrl).delete("session")
      yield* expectLoginFailed(yield* promise(() => browser.fetch(url)), "LoginStateInvalid")
    }))

  it.scoped("a replay that brings the login cookie back: the provider refuses the spent code (invalid_grant)", () =>
    Effect.gen(function*() {
      const { app, browser, promise } = yield* setup
      const { url } = yield* toCallback(browser, app.appUrl)
      const [name, value] = loginCookieOf(browser, app.appUrl)
      expect((yield* promise(() => browser.fetch(url))).status).toBe(302)
      browser.cookies(app.appUrl).set(name, value)
      browser.cookies(app.appUrl).delete("session")
      yield* expectLoginFailed(yield* promise(() => browser.fetch(url)), "CodeExchangeFailed")
    }))

  it.scoped("a mismatched state is refused, and does not use up the login in progress", () =>
    Effect.gen(function*() {
      const { app, browser, promise } = yield* setup
      const { url } = yield* toCallback(browser, app.appUrl)
      const tampered = new URL(url)
      tampered.searchParams.set("state", "A".repeat(43))
      yield* expectLoginFailed(yield* promise(() => browser.fetch(tampered.toString())), "LoginStateInvalid")
      const done = yield* promise(() => browser.fetch(url))
      expect(done.status).toBe(302)
      expect(browser.cookies(app.appUrl).has("session")).toBe(true)
    }))

  it.scoped("no login cookie, or a tampered one", () =>
    Effect.gen(function*() {
      const { app, browser, promise } = yield* setup
      const { url } = yield* toCallback(browser, app.appUrl)
      const [name, value] = loginCookieOf(browser, app.appUrl)
      browser.cookies(app.appUrl).set(name, `${value.slice(0, -4)}AAAA`)
      yield* expectLoginFailed(yield* promise(() => browser.fetch(url)), "LoginStateInvalid")
      expect(browser.cookies(app.appUrl).has(name)).toBe(false)
      yield* expectLoginFailed(yield* promise(() => browser.fetch(url)), "LoginStateInvalid")
    }))

  it.scoped("a wrong nonce in the provider's ID token is refused", () =>
    Effect.gen(function*() {
      const { app, browser, promise } = yield* setup
      const { url } = yield* toCallback(browser, app.appUrl)
      // The test knows the app's secret: it re-seals the login with another nonce.
      const [name, value] = loginCookieOf(browser, app.appUrl)
      const key = yield* LoginCookie.deriveKey(Redacted.make(new TextEncoder().encode(App.loginSecret)))
      const pending = Option.getOrThrow(yield* LoginCookie.open(key, name, value))
      const forged = LoginCookie.PendingLogin.make({ ...pending, nonce: Redacted.make("another-nonce") })
      browser.cookies(app.appUrl).set(name, yield* LoginCookie.seal(key, name, forged))
      yield* expectLoginFailed(yield* promise(() => browser.fetch(url)), "IdTokenInvalid")
    }))

  it.scoped("the provider's error=access_denied", () =>
    Effect.gen(function*() {
      const { app, browser, promise } = yield* setup
      const start = yield* promise(() => browser.fetch(`${app.appUrl}/login`))
      const state = new URL(start.headers.get("location")!).searchParams.get("state")!
      const denied = `${app.appUrl}/callback?error=access_denied&state=${state}&iss=${
        encodeURIComponent(app.as.issuer)
      }`
      yield* expectLoginFailed(yield* promise(() => browser.fetch(denied)), "AuthorizationDenied")
    }))

  it.scoped("a tampered or unknown session cookie: 401 JSON, or a redirect to login for a page", () =>
    Effect.gen(function*() {
      const { app, browser, getJson, promise } = yield* setup
      browser.cookies(app.appUrl).set("session", "tampered!")
      expect((yield* getJson("/me")).status).toBe(401)
      browser.cookies(app.appUrl).set("session", "C".repeat(43))
      expect((yield* getJson("/me")).status).toBe(401)
      browser.cookies(app.appUrl).set("session", "C".repeat(43))
      const page = yield* promise(() =>
        browser.fetch(`${app.appUrl}/page`, { headers: { accept: "text/html", "sec-fetch-mode": "navigate" } })
      )
      expect(page.status).toBe(302)
      expect(page.headers.get("location")).toBe(`/login?returnTo=${encodeURIComponent("/page")}`)
    }))

  it.scoped("returnTo to another origin lands on /", () =>
    Effect.gen(function*() {
      const { app, promise, browser } = yield* setup
      const { url } = yield* promise(() =>
        browser.navigate(`${app.appUrl}/login?returnTo=${encodeURIComponent("//evil.example/x")}`)
      )
      expect(url).toBe(`${app.appUrl}/`)
    }))
})

describe("callback answers that name another issuer, or come too late", () => {
  it.scoped("an iss parameter that is not our issuer (RFC 9207) is refused, errors included", () =>
    Effect.gen(function*() {
      const { app, browser, promise } = yield* setup
      const start = yield* promise(() => browser.fetch(`${app.appUrl}/login`))
      const state = new URL(start.headers.get("location")!).searchParams.get("state")!
      const mixedUp = `${app.appUrl}/callback?error=access_denied&state=${state}&iss=${
        encodeURIComponent("https://evil.example")
      }`
      const response = yield* promise(() => browser.fetch(mixedUp))
      expect(response.status).toBe(401)
      expect(yield* promise(() => response.json())).toMatchObject({ reason: "LoginStateInvalid" })
    }))

  it.scoped("a login completed after the login timeout is refused, with no session", () =>
    Effect.gen(function*() {
      const { app, browser, promise } = yield* setup
      const { url } = yield* promise(() =>
        browser.navigate(`${app.appUrl}/login`, { stopAt: (u) => u.startsWith(`${app.appUrl}/callback`) })
      )
      yield* TestClock.adjust(Duration.minutes(11))
      const response = yield* promise(() => browser.fetch(url))
      expect(response.status).toBe(401)
      expect(yield* promise(() => response.json())).toMatchObject({ reason: "LoginStateInvalid" })
      expect(response.headers.getSetCookie().some((c) => c.startsWith("session="))).toBe(false)
    }))
})

describe("an expired authorization code", () => {
  it.scoped("is refused by the provider (invalid_grant): CodeExchangeFailed, no session", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(Date.now())
      // The provider's clock is the real one: its codes live 1 s here, and this test waits 1.5 s of real time.
      const app = yield* App.start({ codeTtl: 1 })
      const browser = new Browser()
      const { url } = yield* Effect.promise(() =>
        browser.navigate(`${app.appUrl}/login`, { stopAt: (u) => u.startsWith(`${app.appUrl}/callback`) })
      )
      yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 1500)))
      const response = yield* Effect.promise(() => browser.fetch(url))
      expect(response.status).toBe(401)
      expect(yield* Effect.promise(() => response.json())).toMatchObject({ reason: "CodeExchangeFailed" })
      expect(response.headers.getSetCookie().some((c) => c.startsWith("session="))).toBe(false)
    }))
})
