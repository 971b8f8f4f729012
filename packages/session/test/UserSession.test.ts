import { SessionError, UserSession, UserTokenStore } from "@effect-token/session"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Fiber, Option, Redacted, TestClock } from "effect"
import { decodeJwt } from "jose"
import * as FakeIssuer from "./support/fakeIssuer.js"

const lifetime = Duration.seconds(300)
/** Past 235 s a 300 s token is in its refresh window (60 s before the 5 s skew); past 295 s it is expired. */
const intoRefreshWindow = Duration.seconds(240)
const pastExpiry = Duration.seconds(296)

const value = (token: { readonly value: Redacted.Redacted<string> }) => Redacted.value(token.value)

const setup = (options: Parameters<typeof FakeIssuer.sessions>[1] = {}) =>
  Effect.gen(function*() {
    const fake = yield* FakeIssuer.make
    const { sessions, store } = yield* FakeIssuer.sessions(fake, options)
    const login = (
      token: { lifetime?: Duration.Duration; refreshToken?: boolean; refreshTokenValue?: string } = { lifetime }
    ) =>
      Effect.flatMap(
        FakeIssuer.loginToken(token),
        (t) => sessions.create({ subject: "alice", token: t, idToken: Option.none() })
      )
    return { fake, sessions, store, login }
  })

const failureTag = <A>(effect: Effect.Effect<A, SessionError.SessionError>) =>
  Effect.map(Effect.flip(effect), (error) => error.reason._tag)

describe("UserSession: refresh", () => {
  it.scoped("a fresh token is served without a refresh", () =>
    Effect.gen(function*() {
      const { fake, login, sessions } = yield* setup()
      const id = yield* login()
      expect(value(yield* sessions.accessToken(id))).toBe("at-0")
      expect(fake.refreshRequests).toHaveLength(0)
    }))

  it.scoped("50 concurrent requests in the refresh window get the current token at once; one refresh runs behind it", () =>
    Effect.gen(function*() {
      const { fake, login, sessions } = yield* setup()
      const id = yield* login()
      yield* TestClock.adjust(intoRefreshWindow)
      const held = yield* fake.hold
      // The refresh is held at the issuer: no request waits for it.
      const tokens = yield* Effect.forEach(Array.from({ length: 50 }), () => sessions.accessToken(id), {
        concurrency: "unbounded"
      })
      expect(new Set(tokens.map(value))).toEqual(new Set(["at-0"]))
      yield* Deferred.await(held.started)
      yield* held.open
      yield* TestClock.adjust(0)
      expect(value(yield* sessions.accessToken(id))).toBe("at-1")
      expect(fake.refreshRequests).toEqual([{ refreshToken: "rt-0", resource: null }])
    }))

  it.scoped("50 concurrent requests past expiry: one refresh, everyone gets the new token", () =>
    Effect.gen(function*() {
      const { fake, login, sessions } = yield* setup()
      const id = yield* login()
      yield* TestClock.adjust(pastExpiry)
      const tokens = yield* Effect.forEach(Array.from({ length: 50 }), () => sessions.accessToken(id), {
        concurrency: "unbounded"
      })
      expect(new Set(tokens.map(value))).toEqual(new Set(["at-1"]))
      expect(fake.refreshRequests).toHaveLength(1)
    }))

  it.scoped("two instances sharing one store: 50 requests split across them make one refresh (lock, then re-read)", () =>
    Effect.gen(function*() {
      const fake = yield* FakeIssuer.make
      const store = yield* UserTokenStore.makeMemory()
      const one = (yield* FakeIssuer.sessions(fake, { store })).sessions
      const two = (yield* FakeIssuer.sessions(fake, { store })).sessions
      const id = yield* Effect.flatMap(
        FakeIssuer.loginToken({ lifetime }),
        (token) => one.create({ subject: "alice", token, idToken: Option.none() })
      )
      yield* TestClock.adjust(pastExpiry)
      const held = yield* fake.hold
      const all = yield* Effect.fork(
        Effect.forEach(
          Array.from({ length: 50 }, (_, i) => i % 2 === 0 ? one : two),
          (instance) => instance.accessToken(id),
          { concurrency: "unbounded" }
        )
      )
      yield* Deferred.await(held.started)
      yield* held.open
      const tokens = yield* Fiber.join(all)
      expect(new Set(tokens.map(value))).toEqual(new Set(["at-1"]))
      expect(fake.refreshRequests).toHaveLength(1)
    }))

  it.scoped("two sessions refresh independently, and never share tokens", () =>
    Effect.gen(function*() {
      const { fake, login, sessions } = yield* setup()
      const alice = yield* login({ lifetime, refreshTokenValue: "rt-alice" })
      const bob = yield* login({ lifetime, refreshTokenValue: "rt-bob" })
      expect(Redacted.value(alice)).not.toBe(Redacted.value(bob))
      yield* TestClock.adjust(pastExpiry)
      const [a, b] = yield* Effect.all([sessions.accessToken(alice), sessions.accessToken(bob)], {
        concurrency: "unbounded"
      })
      expect(value(a)).not.toBe(value(b))
      expect(fake.refreshRequests).toHaveLength(2)
      // Each session spent its own refresh token once; a second round rotates each one's own new token.
      yield* TestClock.adjust(pastExpiry)
      yield* Effect.all([sessions.accessToken(alice), sessions.accessToken(bob)], { concurrency: "unbounded" })
      const presented = fake.refreshRequests.map((r) => r.refreshToken)
      expect(new Set(presented).size).toBe(presented.length)
      expect(presented.slice(2).sort()).toEqual([`rt-${value(a).slice(3)}`, `rt-${value(b).slice(3)}`].sort())
    }))

  it.scoped("grace window: a request holding the spent refresh token gets the new token, no replay", () =>
    Effect.gen(function*() {
      const memory = yield* UserTokenStore.makeMemory()
      // A store read that lags one write behind (a replica), for the request under test.
      let stale: Option.Option<UserTokenStore.Versioned> = Option.none()
      const store: UserTokenStore.UserTokenStore = {
        ...memory,
        get: (id) =>
          Option.isSome(stale)
            ? Effect.sync(() => {
              const answer = stale
              stale = Option.none()
              return answer
            })
            : memory.get(id)
      }
      const { fake, login, sessions } = yield* setup({ store })
      const id = yield* login()
      const before = yield* memory.get(id)
      yield* TestClock.adjust(pastExpiry)
      expect(value(yield* sessions.accessToken(id))).toBe("at-1")
      stale = before
      yield* TestClock.adjust(Duration.seconds(10))
      expect(value(yield* sessions.accessToken(id))).toBe("at-1")
      expect(fake.refreshRequests.map((r) => r.refreshToken)).toEqual(["rt-0"])
    }))

  it.scoped("after the grace window, a stale read still finds the rotation under the lock (re-read)", () =>
    Effect.gen(function*() {
      const memory = yield* UserTokenStore.makeMemory()
      let stale: Option.Option<UserTokenStore.Versioned> = Option.none()
      const store: UserTokenStore.UserTokenStore = {
        ...memory,
        get: (id) =>
          Option.isSome(stale)
            ? Effect.sync(() => {
              const answer = stale
              stale = Option.none()
              return answer
            })
            : memory.get(id)
      }
      const { fake, login, sessions } = yield* setup({ store, graceWindow: Duration.seconds(1) })
      const id = yield* login()
      const before = yield* memory.get(id)
      yield* TestClock.adjust(pastExpiry)
      yield* sessions.accessToken(id)
      stale = before
      yield* TestClock.adjust(Duration.seconds(2))
      expect(value(yield* sessions.accessToken(id))).toBe("at-1")
      expect(fake.refreshRequests).toHaveLength(1)
    }))

  it.scoped("invalid_grant rejects the session and clears the store", () =>
    Effect.gen(function*() {
      const { fake, login, sessions, store } = yield* setup()
      const id = yield* login()
      fake.answer({ _tag: "InvalidGrant" })
      yield* TestClock.adjust(pastExpiry)
      expect(yield* failureTag(sessions.accessToken(id))).toBe("SessionRejected")
      expect(Option.isNone(yield* store.get(id))).toBe(true)
      expect(yield* failureTag(sessions.accessToken(id))).toBe("NotSignedIn")
    }))

  it.scoped("a refresh answer's ID token is verified and replaces the stored one (logout's id_token_hint)", () =>
    Effect.gen(function*() {
      const { fake, sessions, store } = yield* setup()
      // A session whose login brought an ID token (with the login's nonce).
      const atLogin = yield* fake.signIdToken({ sub: "alice", nonce: "n-login" })
      const id = yield* Effect.flatMap(
        FakeIssuer.loginToken({ lifetime }),
        (token) => sessions.create({ subject: "alice", token, idToken: Option.some(Redacted.make(atLogin)) })
      )
      const idTokenOf = Effect.map(
        store.get(id),
        (found) => Redacted.value(Option.getOrThrow(Option.getOrThrow(found).record.idToken))
      )
      expect(yield* idTokenOf).toBe(atLogin)
      fake.answer({ _tag: "Rotate", idToken: { nonce: undefined } })
      yield* TestClock.adjust(pastExpiry)
      expect(value(yield* sessions.accessToken(id))).toBe("at-1")
      const idToken = yield* idTokenOf
      // The answer's (no nonce: a refresh's ID token carries none), not the login's any more.
      expect(idToken).not.toBe(atLogin)
      expect(decodeJwt(idToken).nonce).toBeUndefined()
      expect(decodeJwt(idToken)).toMatchObject({ iss: FakeIssuer.issuer, sub: "alice", aud: FakeIssuer.clientId })
    }))

  it.scoped("a refresh answer's ID token that fails the login's checks (signature, exp, iat) ends the session", () =>
    Effect.gen(function*() {
      const year = 365 * 24 * 3600
      const answers: Array<FakeIssuer.Answer> = [
        { _tag: "Rotate", idToken: { nonce: undefined }, idTokenForged: true },
        { _tag: "Rotate", idToken: { nonce: undefined, exp: 1 } },
        { _tag: "Rotate", idToken: { nonce: undefined, iat: Math.floor(Date.now() / 1000) + year } }
      ]
      for (const answer of answers) {
        const { fake, login, sessions, store } = yield* setup()
        const id = yield* login()
        fake.answer(answer)
        yield* TestClock.adjust(pastExpiry)
        expect(yield* failureTag(sessions.accessToken(id))).toBe("SessionRejected")
        expect(Option.isNone(yield* store.get(id))).toBe(true)
      }
    }))

  it.scoped("a refresh answer's ID token for another subject, issuer or audience ends the session (OIDC Core 12.2)", () =>
    Effect.gen(function*() {
      for (const claims of [{ sub: "mallory" }, { iss: "https://other.test" }, { aud: "another-client" }]) {
        const { fake, login, sessions, store } = yield* setup()
        const id = yield* login()
        fake.answer({ _tag: "Rotate", idToken: claims })
        yield* TestClock.adjust(pastExpiry)
        expect(yield* failureTag(sessions.accessToken(id))).toBe("SessionRejected")
        expect(Option.isNone(yield* store.get(id))).toBe(true)
      }
    }))

  it.scoped("a transient failure in the refresh window serves the still-valid token and keeps the session", () =>
    Effect.gen(function*() {
      const { fake, login, sessions, store } = yield* setup()
      const id = yield* login()
      fake.answer({ _tag: "Unavailable" })
      yield* TestClock.adjust(intoRefreshWindow)
      expect(value(yield* sessions.accessToken(id))).toBe("at-0")
      yield* TestClock.adjust(0)
      expect(Option.isSome(yield* store.get(id))).toBe(true)
      // The failure is remembered: the next requests get the current token without another attempt...
      expect(value(yield* sessions.accessToken(id))).toBe("at-0")
      expect(fake.refreshRequests).toHaveLength(1)
      // ...until the hold (1 s after a first failure) has passed: then one more attempt, which succeeds.
      yield* TestClock.adjust("1 second")
      yield* sessions.accessToken(id)
      yield* TestClock.adjust(0)
      expect(value(yield* sessions.accessToken(id))).toBe("at-1")
      expect(fake.refreshRequests).toHaveLength(2)
    }))

  it.scoped("in the refresh window, a rejection ends the session behind the current token's back", () =>
    Effect.gen(function*() {
      const { fake, login, sessions, store } = yield* setup()
      const id = yield* login()
      fake.answer({ _tag: "InvalidGrant" })
      yield* TestClock.adjust(intoRefreshWindow)
      expect(value(yield* sessions.accessToken(id))).toBe("at-0")
      yield* TestClock.adjust(0)
      expect(Option.isNone(yield* store.get(id))).toBe(true)
      expect(yield* failureTag(sessions.accessToken(id))).toBe("NotSignedIn")
    }))

  it.scoped("a refresh answer that takes longer than the request waits is still stored; its token is never sent twice", () =>
    Effect.gen(function*() {
      const { fake, login, sessions, store } = yield* setup()
      const id = yield* login()
      yield* TestClock.adjust(pastExpiry)
      // The issuer has the refresh and holds its answer for 12 s: the request gives up after its 10 s.
      const held = yield* fake.hold
      const first = yield* Effect.fork(Effect.flip(sessions.accessToken(id)))
      yield* Deferred.await(held.started)
      yield* TestClock.adjust("10 seconds")
      expect((yield* Fiber.join(first)).reason._tag).toBe("Unavailable")
      // Past the 1 s hold of that failure, the record says a refresh is out: the next request waits for its answer
      // rather than send rt-0 again, and takes it.
      yield* TestClock.adjust("1 second")
      const second = yield* Effect.fork(sessions.accessToken(id))
      yield* TestClock.adjust("1 second")
      yield* held.open
      yield* TestClock.adjust("1 second")
      expect(value(yield* Fiber.join(second))).toBe("at-1")
      expect(fake.refreshRequests.map((r) => r.refreshToken)).toEqual(["rt-0"])
      const record = Option.getOrThrow(yield* store.get(id)).record
      expect(Option.map(record.refreshToken, Redacted.value)).toEqual(Option.some("rt-1"))
      expect(Option.isNone(record.spend)).toBe(true)
    }))

  it.scoped("a degraded issuer: a Retry-After holds the session's refreshes; one request, one attempt", () =>
    Effect.gen(function*() {
      const { fake, login, sessions } = yield* setup()
      const id = yield* login()
      fake.answer({ _tag: "Unavailable", retryAfter: Duration.seconds(7) })
      yield* TestClock.adjust(pastExpiry)
      const first = yield* Effect.flip(sessions.accessToken(id))
      expect(first.reason._tag).toBe("Unavailable")
      // Twenty more requests within the server's Retry-After: none reaches the issuer, each is told when to return.
      for (let i = 0; i < 20; i++) {
        const error = yield* Effect.flip(sessions.accessToken(id))
        expect(error.reason._tag === "Unavailable" && Duration.toSeconds(error.reason.retryAfter!)).toBe(7)
      }
      expect(fake.refreshRequests).toHaveLength(1)
      yield* TestClock.adjust("7 seconds")
      expect(value(yield* sessions.accessToken(id))).toBe("at-1")
      expect(fake.refreshRequests).toHaveLength(2)
    }))

  it.scoped("a transient failure past expiry is a typed Unavailable (503), and the session stays", () =>
    Effect.gen(function*() {
      const { fake, login, sessions, store } = yield* setup()
      const id = yield* login()
      fake.answer({ _tag: "Unavailable" })
      yield* TestClock.adjust(pastExpiry)
      const error = yield* Effect.flip(sessions.accessToken(id))
      expect(error.reason._tag).toBe("Unavailable")
      expect(SessionError.status(error)).toBe(503)
      expect(Option.isSome(yield* store.get(id))).toBe(true)
    }))

  it.scoped("a login without a known lifetime is assumed to live 5 minutes (TokenTiming), then refreshed", () =>
    Effect.gen(function*() {
      const { fake, login, sessions } = yield* setup({
        idleTimeout: Duration.days(400),
        absoluteTimeout: Duration.days(400)
      })
      const id = yield* login({})
      yield* TestClock.adjust(Duration.minutes(3))
      expect(value(yield* sessions.accessToken(id))).toBe("at-0")
      expect(fake.refreshRequests).toHaveLength(0)
      yield* TestClock.adjust(Duration.minutes(2))
      expect(value(yield* sessions.accessToken(id))).toBe("at-1")
      expect(fake.refreshRequests).toHaveLength(1)
    }))

  it.scoped("a login without a known lifetime and without a refresh token is served past its assumed expiry", () =>
    Effect.gen(function*() {
      const { fake, login, sessions } = yield* setup({
        idleTimeout: Duration.days(400),
        absoluteTimeout: Duration.days(400)
      })
      const id = yield* login({ refreshToken: false })
      yield* TestClock.adjust(Duration.days(365))
      expect(value(yield* sessions.accessToken(id))).toBe("at-0")
      expect(fake.refreshRequests).toHaveLength(0)
    }))

  it.scoped("without a refresh token the access token is served until it expires, then the session ends", () =>
    Effect.gen(function*() {
      const { fake, login, sessions, store } = yield* setup()
      const id = yield* login({ lifetime, refreshToken: false })
      yield* TestClock.adjust(intoRefreshWindow)
      expect(value(yield* sessions.accessToken(id))).toBe("at-0")
      yield* TestClock.adjust(Duration.seconds(60))
      expect(yield* failureTag(sessions.accessToken(id))).toBe("SessionRejected")
      expect(Option.isNone(yield* store.get(id))).toBe(true)
      expect(fake.refreshRequests).toHaveLength(0)
    }))

  it.scoped("a refresh answer without a refresh token keeps the old one", () =>
    Effect.gen(function*() {
      const { fake, login, sessions } = yield* setup()
      const id = yield* login()
      fake.answer({ _tag: "NoRefreshToken" }, { _tag: "Rotate" })
      yield* TestClock.adjust(pastExpiry)
      expect(value(yield* sessions.accessToken(id))).toBe("at-1")
      yield* TestClock.adjust(pastExpiry)
      expect(value(yield* sessions.accessToken(id))).toBe("at-2")
      expect(fake.refreshRequests.map((r) => r.refreshToken)).toEqual(["rt-0", "rt-0"])
    }))

  it.scoped("per-resource tokens share the session's one refresh token", () =>
    Effect.gen(function*() {
      const { fake, login, sessions } = yield* setup()
      const id = yield* login()
      const orders = yield* sessions.accessToken(id, "urn:orders")
      const billing = yield* sessions.accessToken(id, "urn:billing")
      expect([value(orders), value(billing)]).toEqual(["at-1", "at-2"])
      // The second resource used the refresh token the first one's refresh rotated.
      expect(fake.refreshRequests).toEqual([
        { refreshToken: "rt-0", resource: "urn:orders" },
        { refreshToken: "rt-1", resource: "urn:billing" }
      ])
      // Cached per resource; the default token is untouched.
      expect(value(yield* sessions.accessToken(id, "urn:orders"))).toBe("at-1")
      expect(value(yield* sessions.accessToken(id))).toBe("at-0")
    }))

  it.scoped("idle and absolute expiry end the session", () =>
    Effect.gen(function*() {
      const { login, sessions, store } = yield* setup({
        idleTimeout: Duration.minutes(30),
        absoluteTimeout: Duration.hours(2)
      })
      const idle = yield* login({})
      yield* TestClock.adjust(Duration.minutes(31))
      expect(yield* failureTag(sessions.load(idle))).toBe("NotSignedIn")
      const used = yield* login({})
      for (let i = 0; i < 4; i++) {
        yield* TestClock.adjust(Duration.minutes(25))
        yield* sessions.load(used)
      }
      // 100 minutes in, used every 25: idle never ran out; at 125 minutes the 2-hour absolute expiry has.
      yield* TestClock.adjust(Duration.minutes(25))
      expect(yield* failureTag(sessions.load(used))).toBe("NotSignedIn")
      expect(Option.isNone(yield* store.get(used))).toBe(true)
    }))

  it.scoped("an unknown session id is NotSignedIn and leaves the store untouched", () =>
    Effect.gen(function*() {
      const { fake, sessions, store } = yield* setup()
      const unknown = Redacted.make("A".repeat(43))
      expect(yield* failureTag(sessions.accessToken(unknown))).toBe("NotSignedIn")
      expect(Option.isNone(yield* store.get(unknown))).toBe(true)
      expect(fake.refreshRequests).toHaveLength(0)
    }))
})

describe("UserSession: calls on the user's behalf", () => {
  it.scoped("an API's 401 for the user's token refreshes the session once and retries", () =>
    Effect.gen(function*() {
      const { fake, login, sessions } = yield* setup({ cookie: { secure: false } })
      const id = yield* login()
      const seen: Array<string> = []
      const api = HttpClient.make((request) =>
        Effect.sync(() => {
          const auth = request.headers["authorization"] ?? ""
          seen.push(auth)
          return HttpClientResponse.fromWeb(
            request,
            new Response(auth === "Bearer at-0" ? "" : "ok", { status: auth === "Bearer at-0" ? 401 : 200 })
          )
        })
      )
      const program = Effect.gen(function*() {
        const client = yield* UserSession.client({ baseUrl: "https://api.test" })
        return yield* client.get("/orders")
      })
      const request = HttpServerRequest.fromWeb(
        new Request("https://app.test/orders", {
          headers: { cookie: `session=${Redacted.value(id)}` }
        })
      )
      const responses = yield* Effect.forEach(
        Array.from({ length: 20 }),
        () =>
          UserSession.middleware(Effect.map(Effect.scoped(program), (r) => HttpServerResponse.text(String(r.status))))
            .pipe(
              Effect.provideService(HttpServerRequest.HttpServerRequest, request),
              Effect.provideService(UserSession.UserSessions, sessions),
              Effect.provideService(HttpClient.HttpClient, api)
            ),
        { concurrency: "unbounded" }
      )
      expect(responses.map((r) => r.status)).toEqual(Array.from({ length: 20 }, () => 200))
      expect(fake.refreshRequests).toHaveLength(1)
      expect(seen.filter((s) => s === "Bearer at-1").length).toBe(20)
    }))
  it.scoped("a background job reaches a session's tokens by its id (clientFor), outside any request", () =>
    Effect.gen(function*() {
      const { login, sessions } = yield* setup()
      const id = yield* login()
      const seen: Array<string | undefined> = []
      const api = HttpClient.make((request) =>
        Effect.sync(() => {
          seen.push(request.headers["authorization"])
          return HttpClientResponse.fromWeb(request, new Response("ok"))
        })
      )
      const job = Effect.flatMap(
        UserSession.clientFor(id, { baseUrl: "https://api.test" }),
        (client) => Effect.scoped(client.get("/export"))
      ).pipe(
        Effect.provideService(UserSession.UserSessions, sessions),
        Effect.provideService(HttpClient.HttpClient, api)
      )
      expect((yield* job).status).toBe(200)
      expect(seen).toEqual(["Bearer at-0"])
      yield* sessions.end(id)
      const error = yield* Effect.flip(job)
      expect(error._tag).toBe("SessionError")
    }))

  it.scoped("a session's failure crosses core as the TokenError's cause, unchanged (NotSignedIn stays NotSignedIn)", () =>
    Effect.gen(function*() {
      const { login, sessions } = yield* setup({ cookie: { secure: false } })
      const id = yield* login()
      const api = HttpClient.make((request) => Effect.succeed(HttpClientResponse.fromWeb(request, new Response("ok"))))
      const seen: Array<unknown> = []
      const program = Effect.gen(function*() {
        const client = yield* UserSession.client({ baseUrl: "https://api.test" })
        yield* sessions.end(id)
        const error = yield* Effect.flip(client.get("/orders"))
        seen.push(error._tag === "TokenError" ? error.cause : error)
        return yield* error
      })
      const request = HttpServerRequest.fromWeb(
        new Request("https://app.test/orders", { headers: { cookie: `session=${Redacted.value(id)}` } })
      )
      const response = yield* UserSession.middleware(
        Effect.map(Effect.scoped(program), () => HttpServerResponse.text("unreachable"))
      ).pipe(
        Effect.provideService(HttpServerRequest.HttpServerRequest, request),
        Effect.provideService(UserSession.UserSessions, sessions),
        Effect.provideService(HttpClient.HttpClient, api)
      )
      expect(response.status).toBe(401)
      expect(seen).toHaveLength(1)
      expect(SessionError.isSessionError(seen[0])).toBe(true)
      expect((seen[0] as SessionError.SessionError).reason._tag).toBe("NotSignedIn")
    }))
})

describe("UserSession: middleware", () => {
  const run = (
    sessions: UserSession.UserSessions,
    init: { readonly cookie?: string; readonly accept?: string }
  ) => {
    const headers: Record<string, string> = {}
    if (init.cookie !== undefined) headers.cookie = init.cookie
    if (init.accept !== undefined) headers.accept = init.accept
    const request = HttpServerRequest.fromWeb(new Request("https://app.test/orders?x=1", { headers }))
    const app = Effect.map(UserSession.current, (user) => HttpServerResponse.text(user.subject))
    return UserSession.middleware(app).pipe(
      Effect.provideService(HttpServerRequest.HttpServerRequest, request),
      Effect.provideService(UserSession.UserSessions, sessions)
    )
  }

  it.scoped("no cookie: a page is sent to login with its path, an API call gets 401 JSON", () =>
    Effect.gen(function*() {
      const { sessions } = yield* setup({ cookie: { secure: false } })
      const page = yield* run(sessions, { accept: "text/html" })
      expect(page.status).toBe(302)
      expect(page.headers.location).toBe(`/login?returnTo=${encodeURIComponent("/orders?x=1")}`)
      const api = yield* run(sessions, { accept: "application/json" })
      expect(api.status).toBe(401)
    }))

  it.scoped("no signed-in user: a typed NotSignedIn failure, and the store is not written", () =>
    Effect.gen(function*() {
      const memory = yield* UserTokenStore.makeMemory()
      let writes = 0
      const store: UserTokenStore.UserTokenStore = {
        ...memory,
        set: (...args) => Effect.zipRight(Effect.sync(() => writes++), memory.set(...args)),
        delete: (id) => Effect.zipRight(Effect.sync(() => writes++), memory.delete(id))
      }
      const { sessions } = yield* setup({ store, cookie: { secure: false } })
      const request = HttpServerRequest.fromWeb(new Request("https://app.test/orders"))
      const seen = yield* UserSession.middleware(
        Effect.map(Effect.flip(UserSession.accessToken()), (error) => HttpServerResponse.text(error.reason._tag))
      ).pipe(
        Effect.provideService(HttpServerRequest.HttpServerRequest, request),
        Effect.provideService(UserSession.UserSessions, sessions)
      )
      expect(seen.status).toBe(200)
      expect(seen.body).toMatchObject({ body: new TextEncoder().encode("NotSignedIn") })
      expect(writes).toBe(0)
    }))

  it.scoped("a signed-in user reaches the app", () =>
    Effect.gen(function*() {
      const { login, sessions } = yield* setup({ cookie: { secure: false } })
      const id = yield* login()
      const response = yield* run(sessions, { cookie: `session=${Redacted.value(id)}` })
      expect(response.status).toBe(200)
    }))

  it.scoped("a signed-in request with a fresh token reads the store once (a Redis round trip per request, not two)", () =>
    Effect.gen(function*() {
      const memory = yield* UserTokenStore.makeMemory()
      let reads = 0
      const store: UserTokenStore.UserTokenStore = {
        ...memory,
        get: (id) => Effect.zipRight(Effect.sync(() => reads++), memory.get(id))
      }
      const { login, sessions } = yield* setup({ store, cookie: { secure: false } })
      const id = yield* login()
      const response = yield* run(sessions, { cookie: `session=${Redacted.value(id)}` })
      expect(response.status).toBe(200)
      expect(reads).toBe(1)
    }))

  it.scoped("a tampered or unknown cookie: 401 and the cookie expired", () =>
    Effect.gen(function*() {
      const { sessions } = yield* setup({ cookie: { secure: false } })
      for (const cookie of ["session=not a valid id!", `session=${"B".repeat(43)}`]) {
        const response = yield* run(sessions, { cookie, accept: "application/json" })
        expect(response.status).toBe(401)
        expect(HttpServerResponse.toWeb(response).headers.getSetCookie()).toEqual([
          "session=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax"
        ])
      }
    }))

  it.scoped("a rejected refresh: the request is anonymous, 401, the store cleared", () =>
    Effect.gen(function*() {
      const { fake, login, sessions, store } = yield* setup({ cookie: { secure: false } })
      const id = yield* login()
      fake.answer({ _tag: "InvalidGrant" })
      yield* TestClock.adjust(pastExpiry)
      const response = yield* run(sessions, { cookie: `session=${Redacted.value(id)}`, accept: "application/json" })
      expect(response.status).toBe(401)
      expect(Option.isNone(yield* store.get(id))).toBe(true)
    }))

  it.scoped("a transient failure past expiry: 503, still signed in afterwards", () =>
    Effect.gen(function*() {
      const { fake, login, sessions } = yield* setup({ cookie: { secure: false } })
      const id = yield* login()
      // The middleware's attempt fails; the app's own call within the request is told so without another one.
      fake.answer({ _tag: "Unavailable" })
      yield* TestClock.adjust(pastExpiry)
      const request = HttpServerRequest.fromWeb(
        new Request("https://app.test/orders", {
          headers: { cookie: `session=${Redacted.value(id)}` }
        })
      )
      const response = yield* UserSession.middleware(
        Effect.map(UserSession.accessToken(), (t) => HttpServerResponse.text(value(t)))
      ).pipe(
        Effect.provideService(HttpServerRequest.HttpServerRequest, request),
        Effect.provideService(UserSession.UserSessions, sessions)
      )
      expect(response.status).toBe(503)
      expect(HttpServerResponse.toWeb(response).headers.getSetCookie()).toEqual([])
      expect(fake.refreshRequests).toHaveLength(1)
      yield* TestClock.adjust("1 second")
      expect(value(yield* sessions.accessToken(id))).toBe("at-1")
    }))
})
