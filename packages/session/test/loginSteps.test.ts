/**
 * The login's pure steps, each on its own: the authorization URL, the callback's checks in their order, the code
 * grant, what a failed exchange means, which earlier logins a new one retires, and where logout goes.
 */
import { TokenError } from "@effect-token/core"
import { describe, expect, it } from "@effect/vitest"
import { Duration, Either, FastCheck as fc, Option, Redacted } from "effect"
import * as steps from "../src/internal/loginSteps.js"

const protocolParams = [
  "response_type",
  "client_id",
  "redirect_uri",
  "scope",
  "state",
  "nonce",
  "code_challenge",
  "code_challenge_method",
  "resource",
  "dpop_jkt"
] as const

const request: steps.AuthorizationRequest = {
  authorizationEndpoint: "https://issuer.example/authorize?tenant=acme",
  clientId: "web",
  redirectUri: "https://app.example/callback",
  scope: "openid offline_access",
  state: "s".repeat(43),
  nonce: "n".repeat(43),
  codeChallenge: "c".repeat(43),
  resource: "https://api.example",
  dpopJkt: "j".repeat(43)
}

describe("the authorization URL", () => {
  it("carries every protocol parameter and keeps the endpoint's own", () => {
    const url = new URL(steps.authorizationUrl({ ...request, extraParams: { prompt: "consent" } }))
    expect(url.origin + url.pathname).toBe("https://issuer.example/authorize")
    expect(Object.fromEntries(url.searchParams)).toEqual({
      tenant: "acme",
      prompt: "consent",
      response_type: "code",
      client_id: "web",
      redirect_uri: "https://app.example/callback",
      scope: "openid offline_access",
      state: request.state,
      nonce: request.nonce,
      code_challenge: request.codeChallenge,
      code_challenge_method: "S256",
      resource: "https://api.example",
      dpop_jkt: request.dpopJkt
    })
  })

  it("leaves out what the login does not use", () => {
    const url = new URL(steps.authorizationUrl({ ...request, resource: undefined, dpopJkt: undefined }))
    expect(url.searchParams.has("resource")).toBe(false)
    expect(url.searchParams.has("dpop_jkt")).toBe(false)
  })

  it.prop(
    "no application parameter replaces a protocol parameter, and each appears once",
    [fc.dictionary(fc.oneof(fc.constantFrom(...protocolParams), fc.string({ minLength: 1 })), fc.string())],
    ([extraParams]) => {
      const url = new URL(steps.authorizationUrl({ ...request, extraParams }))
      const expected: Record<string, string> = {
        response_type: "code",
        client_id: request.clientId,
        redirect_uri: request.redirectUri,
        scope: request.scope,
        state: request.state,
        nonce: request.nonce,
        code_challenge: request.codeChallenge,
        code_challenge_method: "S256",
        resource: request.resource!,
        dpop_jkt: request.dpopJkt!
      }
      for (const [name, value] of Object.entries(expected)) expect(url.searchParams.getAll(name)).toEqual([value])
      for (const [name, value] of Object.entries(extraParams)) {
        if (!(name in expected)) expect(url.searchParams.getAll(name)).toEqual([value])
      }
    }
  )

  it("openid is added to a scope that lacks it, once", () => {
    expect(steps.withOpenid("orders:read  offline_access")).toBe("openid orders:read offline_access")
    expect(steps.withOpenid("offline_access openid")).toBe("offline_access openid")
  })
})

describe("reading the callback's query", () => {
  it("an overlong URL is not parsed", () => {
    expect(Option.isNone(steps.queryOf(`/callback?code=${"a".repeat(steps.maxUrlLength)}`))).toBe(true)
    expect(Option.map(steps.queryOf("/callback?code=abc"), (q) => q.get("code"))).toEqual(Option.some("abc"))
  })

  it.prop(
    "a parameter is one bounded, printable value or nothing",
    [fc.array(fc.string(), { maxLength: 3 }), fc.integer({ min: 1, max: 64 })],
    ([values, max]) => {
      const query = new URLSearchParams(values.map((value) => ["code", value]))
      const got = steps.param(query, "code", max)
      if (Option.isSome(got)) {
        expect(values).toEqual([got.value])
        expect(got.value.length).toBeLessThanOrEqual(max)
        expect(got.value).toMatch(/^[\x20-\x7e]+$/)
      } else {
        const [only] = values
        expect(values.length !== 1 || only!.length === 0 || only!.length > max || !/^[\x20-\x7e]+$/.test(only!))
          .toBe(true)
      }
    }
  )
})

describe("checking the callback against the pending login", () => {
  const issuer = "https://issuer.example"
  const state = "S".repeat(43)
  const pending: steps.PendingLogin = { state: Redacted.make(state), createdAt: 1_000 }
  const context: steps.CallbackContext = {
    issuer,
    issParameterSupported: true,
    now: 2_000,
    loginTimeoutMillis: Duration.toMillis("10 minutes")
  }
  const check = (params: Record<string, string | ReadonlyArray<string>>, over: Partial<steps.CallbackContext> = {}) =>
    steps.checkCallback(
      new URLSearchParams(
        Object.entries(params).flatMap(([k, v]) => (typeof v === "string" ? [v] : v).map((one) => [k, one]))
      ),
      pending,
      { ...context, ...over }
    )
  const refusal = (result: ReturnType<typeof check>) =>
    Either.match(result, {
      onLeft: (reason) => reason._tag === "AuthorizationDenied" ? `denied:${reason.code}` : reason.description,
      onRight: () => "accepted"
    })

  it("an answer of our issuer, for this login, in time, gives its code", () => {
    expect(check({ state, iss: issuer, code: "the-code" })).toEqual(Either.right({ code: "the-code" }))
    // An issuer that does not promise `iss` may leave it out.
    expect(check({ state, code: "the-code" }, { issParameterSupported: false })).toEqual(
      Either.right({ code: "the-code" })
    )
  })

  it("each refusal, by its cause", () => {
    expect(refusal(check({ iss: issuer, code: "c" }))).toBe("the callback has no state")
    expect(refusal(check({ state: [state, state], iss: issuer, code: "c" }))).toBe("the callback has no state")
    expect(refusal(check({ state: "T".repeat(43), iss: issuer, code: "c" }))).toBe("state mismatch")
    expect(refusal(check({ state, iss: "https://evil.example", code: "c" }))).toBe("the answer names another issuer")
    expect(refusal(check({ state, iss: [issuer, issuer], code: "c" }))).toBe("the answer names another issuer")
    expect(refusal(check({ state, code: "c" }))).toBe("the answer does not name its issuer")
    expect(refusal(check({ state, iss: issuer, code: "c" }, { now: 1_000 + context.loginTimeoutMillis + 1 }))).toBe(
      "the login took too long"
    )
    expect(refusal(check({ state, iss: issuer }))).toBe("no authorization code")
    expect(refusal(check({ state, iss: issuer, code: "c".repeat(steps.maxCodeLength + 1) }))).toBe(
      "no authorization code"
    )
    expect(refusal(check({ state, iss: issuer, error: "access_denied" }))).toBe("denied:access_denied")
    // The error code is shown and logged: anything but an OAuth-shaped word becomes `invalid_error`.
    expect(refusal(check({ state, iss: issuer, error: "<script>" }))).toBe("denied:invalid_error")
  })

  it.prop(
    "nothing in an answer is believed before its state matches: no code, no error, whatever else it says",
    [
      fc.string({ minLength: 1, maxLength: 64 }).filter((s) => s !== state),
      fc.constantFrom(issuer, "https://evil.example", undefined),
      fc.option(fc.string({ minLength: 1 }), { nil: undefined }),
      fc.option(fc.constantFrom("access_denied", "login_required"), { nil: undefined })
    ],
    ([otherState, iss, code, error]) => {
      const params: Record<string, string> = { state: otherState }
      if (iss !== undefined) params.iss = iss
      if (code !== undefined) params.code = code
      if (error !== undefined) params.error = error
      const result = check(params)
      expect(Either.isLeft(result)).toBe(true)
      if (Either.isLeft(result)) expect(result.left._tag).toBe("LoginStateInvalid")
    }
  )

  it.prop(
    "an error is reported only from our issuer, for a login still in time",
    [fc.constantFrom(issuer, "https://evil.example"), fc.integer({ min: 0, max: 2 * 600_000 })],
    ([iss, elapsed]) => {
      const result = check({ state, iss, error: "access_denied" }, { now: pending.createdAt + elapsed })
      const denied = Either.isLeft(result) && result.left._tag === "AuthorizationDenied"
      expect(denied).toBe(iss === issuer && elapsed <= context.loginTimeoutMillis)
    }
  )
})

describe("the code exchange", () => {
  it("sends the code, the verifier, the redirect URI and the resource", () => {
    const grant = steps.codeGrant({
      code: "the-code",
      codeVerifier: Redacted.make("v".repeat(43)),
      redirectUri: "https://app.example/callback",
      resource: "https://api.example"
    })
    expect(grant.grant_type).toBe("authorization_code")
    expect(Redacted.value(grant.code)).toBe("the-code")
    expect(Redacted.value(grant.code_verifier)).toBe("v".repeat(43))
    expect(grant.redirect_uri).toBe("https://app.example/callback")
    expect(grant.resource).toBe("https://api.example")
  })

  const failure = (reason: TokenError.TokenError["reason"]) =>
    steps.exchangeFailure(new TokenError.TokenError({ operation: "authorization_code", reason }))

  it("a refusal ends the login with the OAuth code; a fault of the issuer may be tried again", () => {
    const refused = failure(new TokenError.OAuthError({ code: "invalid_grant", status: 400 }))
    expect(refused._tag).toBe("CodeExchangeFailed")
    if (refused._tag === "CodeExchangeFailed") expect(refused.code).toBe("invalid_grant")
    expect(failure(new TokenError.OAuthError({ code: "invalid_client", status: 401 }))._tag).toBe(
      "CodeExchangeFailed"
    )
    expect(failure(new TokenError.MalformedResponse({ description: "not JSON" }))._tag).toBe("CodeExchangeFailed")
    expect(failure(new TokenError.Unavailable({ status: 503 }))).toEqual({
      _tag: "Transient",
      description: "the code exchange: Unavailable"
    })
    expect(failure(new TokenError.Timeout({ bound: "attempt", after: Duration.seconds(10) }))._tag).toBe("Transient")
    expect(failure(new TokenError.OAuthError({ code: "temporarily_unavailable", status: 400 }))._tag).toBe(
      "Transient"
    )
  })
})

describe("earlier logins a new one retires", () => {
  const timeout = 600_000
  const now = 10_000_000

  it("unreadable and timed-out logins go, and all but the newest few", () => {
    const expired = steps.loginsToExpire([
      { name: "forged", createdAt: Option.none() },
      { name: "old", createdAt: Option.some(now - timeout - 1) },
      { name: "a", createdAt: Option.some(now - 4) },
      { name: "b", createdAt: Option.some(now - 3) },
      { name: "c", createdAt: Option.some(now - 2) },
      { name: "d", createdAt: Option.some(now - 1) }
    ], { now, loginTimeoutMillis: timeout, keep: 3 })
    expect([...expired].sort()).toEqual(["a", "forged", "old"])
  })

  it.prop(
    "the newest `keep` live logins stay, and everything else goes",
    [
      fc.uniqueArray(
        fc.record({ name: fc.string({ minLength: 1 }), age: fc.option(fc.integer({ min: 0, max: 2 * timeout })) }),
        { selector: (login) => login.name, maxLength: 20 }
      ),
      fc.integer({ min: 0, max: 5 })
    ],
    ([logins, keep]) => {
      const earlier = logins.map((login) => ({
        name: login.name,
        createdAt: login.age === null ? Option.none() : Option.some(now - login.age)
      }))
      const expired = new Set(steps.loginsToExpire(earlier, { now, loginTimeoutMillis: timeout, keep }))
      const live = logins.filter((login) => login.age !== null && login.age <= timeout)
      const kept = logins.filter((login) => !expired.has(login.name))
      expect(expired.size + kept.length).toBe(logins.length)
      expect(kept.length).toBe(Math.min(keep, live.length))
      for (const stays of kept) {
        expect(stays.age !== null && stays.age <= timeout).toBe(true)
        // None that goes while live is newer than one that stays.
        for (const goes of live) if (expired.has(goes.name)) expect(goes.age!).toBeGreaterThanOrEqual(stays.age!)
      }
    }
  )
})

describe("where logout goes", () => {
  it("the issuer's end_session_endpoint with the client, the ID token hint and the return URI", () => {
    const location = new URL(steps.logoutLocation({
      endSessionEndpoint: "https://issuer.example/session/end?ui=compact",
      clientId: "web",
      idTokenHint: Option.some(Redacted.make("the.id.token")),
      postLogoutRedirectUri: "https://app.example/",
      afterLogout: "/"
    }))
    expect(Object.fromEntries(location.searchParams)).toEqual({
      ui: "compact",
      client_id: "web",
      id_token_hint: "the.id.token",
      post_logout_redirect_uri: "https://app.example/"
    })
  })

  it("the application's page when the issuer has no end_session_endpoint", () => {
    expect(steps.logoutLocation({
      endSessionEndpoint: undefined,
      clientId: "web",
      idTokenHint: Option.some(Redacted.make("the.id.token")),
      postLogoutRedirectUri: "https://app.example/",
      afterLogout: "/bye"
    })).toBe("/bye")
  })
})
