import { AccessToken } from "@effect-token/core"
import { SessionError, UserTokenStore } from "@effect-token/session"
import { describe, expect, it } from "@effect/vitest"
import { Cause, DateTime, Effect, Exit, Inspectable, Option, Redacted, Schema } from "effect"
import { inspect } from "node:util"
import * as LoginCookie from "../src/internal/loginCookie.js"

const secrets = [
  "at-SECRET",
  "rt-SECRET",
  "id-SECRET",
  "state-SECRET",
  "nonce-SECRET",
  "verifier-SECRET",
  "dpop-SECRET"
]

const printed = (value: unknown) =>
  [
    String(value),
    JSON.stringify(value),
    inspect(value, { depth: 10 }),
    Inspectable.format(value)
  ].join("\n")

const expectNoSecret = (text: string) => {
  for (const secret of secrets) expect(text).not.toContain(secret)
}

const now = DateTime.unsafeMake(0)
const record = UserTokenStore.SessionRecord.make({
  subject: "alice",
  accessToken: AccessToken.make({ value: Redacted.make("at-SECRET"), issuedAt: now }),
  refreshToken: Option.some(Redacted.make("rt-SECRET")),
  idToken: Option.some(Redacted.make("id-SECRET")),
  resourceTokens: { "urn:api": AccessToken.make({ value: Redacted.make("at-SECRET"), issuedAt: now }) },
  createdAt: now,
  lastSeenAt: now
})
const pending = LoginCookie.PendingLogin.make({
  state: Redacted.make("state-SECRET"),
  nonce: Redacted.make("nonce-SECRET"),
  codeVerifier: Redacted.make("verifier-SECRET"),
  returnTo: "/",
  createdAt: 0,
  dpopKey: Option.some(Redacted.make("dpop-SECRET"))
})

describe("secrets never print", () => {
  it("session records and pending logins", () => {
    expectNoSecret(printed(record))
    expectNoSecret(printed(pending))
  })

  it("an ID token in a token response is Redacted on the AccessToken", () => {
    const token = AccessToken.make({
      value: Redacted.make("at-SECRET"),
      issuedAt: now,
      idToken: Option.some(Redacted.make("id-SECRET"))
    })
    expectNoSecret(printed(token))
  })

  it.effect("errors and their causes", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(
        Effect.fail(
          SessionError.make(
            "login callback",
            new SessionError.IdTokenInvalid({ check: "nonce", description: "the ID token's nonce is not this login's" })
          )
        )
      )
      expect(Exit.isFailure(exit)).toBe(true)
      if (Exit.isFailure(exit)) expectNoSecret(Cause.pretty(exit.cause))
    }))

  it("a shared store's encoding round-trips the record (it reveals the secrets, on purpose)", () => {
    const json = Schema.encodeSync(UserTokenStore.SessionRecordJson)(record)
    expect(json).toContain("rt-SECRET")
    const back = Schema.decodeSync(UserTokenStore.SessionRecordJson)(json)
    expect(Redacted.value(Option.getOrThrow(back.refreshToken))).toBe("rt-SECRET")
    expect(Redacted.value(back.resourceTokens["urn:api"]!.value)).toBe("at-SECRET")
  })

  it.effect("a sealed login shows none of its secrets, and opens to them with the key and its name", () =>
    Effect.gen(function*() {
      const key = yield* LoginCookie.deriveKey(Redacted.make(new TextEncoder().encode("k".repeat(32))))
      const sealed = yield* LoginCookie.seal(key, "__Host-login-x", pending)
      expectNoSecret(sealed)
      const opened = Option.getOrThrow(yield* LoginCookie.open(key, "__Host-login-x", sealed))
      expect(Redacted.value(opened.codeVerifier)).toBe("verifier-SECRET")
      expect(Redacted.value(Option.getOrThrow(opened.dpopKey))).toBe("dpop-SECRET")
      expect(Option.isNone(yield* LoginCookie.open(key, "__Host-login-y", sealed))).toBe(true)
    }))
})
