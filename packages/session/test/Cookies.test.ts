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
