import { UserSession } from "@effect-token/session"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit } from "effect"
import * as FakeIssuer from "./support/fakeIssuer.js"

const cookieNameOf = (cookie: { readonly name?: string; readonly secure?: boolean; readonly hostPrefix?: boolean }) =>
  Effect.gen(function*() {
    const fake = yield* FakeIssuer.make
    const { sessions } = yield* FakeIssuer.sessions(fake, { cookie })
    return sessions.cookieName
  })

describe("the session cookie's name", () => {
  it.scoped("a custom name keeps the __Host- prefix (no subdomain can set or shadow the cookie)", () =>
    Effect.gen(function*() {
      expect(yield* cookieNameOf({})).toBe("__Host-session")
      expect(yield* cookieNameOf({ name: "sid" })).toBe("__Host-sid")
      expect(yield* cookieNameOf({ name: "__Host-sid" })).toBe("__Host-sid")
    }))

  it.scoped("the application opts out by name: hostPrefix: false; without Secure there is no prefix", () =>
    Effect.gen(function*() {
      expect(yield* cookieNameOf({ name: "sid", hostPrefix: false })).toBe("sid")
      expect(yield* cookieNameOf({ secure: false })).toBe("session")
      expect(yield* cookieNameOf({ name: "sid", secure: false })).toBe("sid")
    }))

  it.scoped("a name a browser would refuse or drop is a defect at start-up, not a cookie that never comes back", () =>
    Effect.gen(function*() {
      for (const cookie of [{ name: "a;b" }, { name: "" }, { name: "__Host-sid", secure: false }]) {
        const exit = yield* Effect.exit(cookieNameOf(cookie))
        expect(Exit.isFailure(exit) && Cause.isDie(exit.cause)).toBe(true)
      }
    }))
})

describe("cookies the middleware writes are added, never in place of the application's", () => {
  const request = (cookie: string) =>
    HttpServerRequest.fromWeb(new Request("https://app.test/page", { headers: { cookie, accept: "application/json" } }))
  const setCookies = (response: HttpServerResponse.HttpServerResponse) =>
    HttpServerResponse.toWeb(response).headers.getSetCookie()

  it.scoped("a stale session cookie: the application's own cookies stay, the stale one is expired beside them", () =>
    Effect.gen(function*() {
      const fake = yield* FakeIssuer.make
      const { sessions } = yield* FakeIssuer.sessions(fake, { cookie: { secure: false } })
      const app = Effect.succeed(
        HttpServerResponse.text("ok").pipe(
          HttpServerResponse.setHeader("set-cookie", "theme=dark; Path=/"),
          HttpServerResponse.unsafeSetCookie("lang", "en", { path: "/" })
        )
      )
      for (const stale of ["session=not a valid id!", `session=${"B".repeat(43)}`]) {
        const response = yield* UserSession.middleware(app).pipe(
          Effect.provideService(HttpServerRequest.HttpServerRequest, request(stale)),
          Effect.provideService(UserSession.UserSessions, sessions)
        )
        expect(setCookies(response).sort()).toEqual([
          "lang=en; Path=/",
          "session=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax",
          "theme=dark; Path=/"
        ])
      }
    }))

  it.scoped("a response that sets the session cookie itself (a new sign-in) keeps it: the stale one is not expired", () =>
    Effect.gen(function*() {
      const fake = yield* FakeIssuer.make
      const { sessions } = yield* FakeIssuer.sessions(fake, { cookie: { secure: false } })
      const fresh = `session=${"N".repeat(43)}; Path=/; HttpOnly; SameSite=Lax`
      const app = Effect.succeed(HttpServerResponse.redirect("/me", { headers: { "set-cookie": fresh } }))
      const response = yield* UserSession.middleware(app).pipe(
        Effect.provideService(HttpServerRequest.HttpServerRequest, request(`session=${"B".repeat(43)}`)),
        Effect.provideService(UserSession.UserSessions, sessions)
      )
      expect(setCookies(response)).toEqual([fresh])
    }))
})
