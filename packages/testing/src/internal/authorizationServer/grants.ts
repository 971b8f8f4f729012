/*
 * The grants the test authorization server implements, each from an authenticated client and the request's form
 * to the token response's body: `client_credentials` (RFC 6749 §4.4), `authorization_code` (§4.1, with PKCE S256,
 * RFC 7636, and an OpenID Connect ID token) and `refresh_token` (§6) with rotation.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import { createHash } from "node:crypto"
import type { Client } from "../../TestAuthorizationServer.js"
import { type OAuthFailure, oauthFailure, type ServerState } from "./state.js"
import type { Issuer } from "./tokens.js"

export type Grant = (
  client: Client,
  form: URLSearchParams
) => Effect.Effect<Record<string, string | number>, OAuthFailure>

/** The requested scope if the client may have it; the client's scopes when the request names none. */
const grantScope = (client: Client, requested: string | null): Effect.Effect<Option.Option<string>, OAuthFailure> => {
  if (requested === null || requested.trim() === "") {
    return Effect.succeed(
      client.scopes === undefined || client.scopes.length === 0
        ? Option.none()
        : Option.some(client.scopes.join(" "))
    )
  }
  const scopes = requested.trim().split(/\s+/)
  const allowed = client.scopes
  if (allowed !== undefined && !scopes.every((scope) => allowed.includes(scope))) {
    return Effect.fail(oauthFailure("invalid_scope", "the requested scope is not allowed for this client"))
  }
  return Effect.succeed(Option.some(scopes.join(" ")))
}

export const clientCredentials = (issuing: Issuer): Grant => (client, form) =>
  Effect.gen(function*() {
    if (client.clientSecret === undefined) {
      return yield* Effect.fail(oauthFailure("unauthorized_client", "public clients cannot use this grant"))
    }
    const scope = yield* grantScope(client, form.get("scope"))
    return yield* issuing.issue(client, "client_credentials", scope, false)
  })

/**
 * With `rotate`, each use retires the presented refresh token and issues a new one, so a second use of the old one
 * (a stale copy elsewhere) is `invalid_grant`, as servers that rotate answer.
 */
export const refreshToken = (options: {
  readonly issuing: Issuer
  readonly state: ServerState
  readonly rotate: boolean
}): Grant =>
(client, form) =>
  Effect.gen(function*() {
    const { issuing, rotate, state } = options
    const presented = form.get("refresh_token")
    if (presented === null) return yield* Effect.fail(oauthFailure("invalid_request", "missing refresh_token"))
    const s = yield* Ref.get(state)
    const grant = s.refreshTokens.get(presented)
    if (grant === undefined || grant.clientId !== client.clientId || grant.state !== "active") {
      return yield* Effect.fail(
        oauthFailure("invalid_grant", "the refresh token is invalid, revoked, or was already used")
      )
    }
    const requested = form.get("scope")
    let scope = grant.scope
    if (requested !== null && requested.trim() !== "") {
      const original = new Set(Option.getOrElse(grant.scope, () => "").split(" "))
      const scopes = requested.trim().split(/\s+/)
      // RFC 6749 §6: a refresh may narrow the scope, never widen it.
      if (!scopes.every((scopeItem) => original.has(scopeItem))) {
        return yield* Effect.fail(oauthFailure("invalid_scope", "the scope exceeds the original grant"))
      }
      scope = Option.some(scopes.join(" "))
    }
    if (rotate) {
      yield* Ref.update(state, (s) => {
        const refreshTokens = new Map(s.refreshTokens)
        refreshTokens.set(presented, { ...grant, state: "rotated" })
        return { ...s, refreshTokens }
      })
    }
    const user = grant.subject === undefined ? undefined : { subject: grant.subject, idToken: false }
    return yield* issuing.issue(client, "refresh_token", scope, rotate, user)
  })

/** RFC 7636 §4.6: BASE64URL(SHA256(code_verifier)) must equal the code challenge. */
const s256 = (verifier: string): string => createHash("sha256").update(verifier).digest("base64url")

/**
 * A code is redeemed once, by the client it was issued to, with the same `redirect_uri` and the PKCE verifier of its
 * challenge; anything else is `invalid_grant` (and the code is gone, as RFC 6749 §4.1.2 asks of a reused code).
 */
export const authorizationCode = (options: {
  readonly issuing: Issuer
  readonly state: ServerState
}): Grant =>
(client, form) =>
  Effect.gen(function*() {
    const { issuing, state } = options
    const code = form.get("code")
    if (code === null) return yield* Effect.fail(oauthFailure("invalid_request", "missing code"))
    const pending = yield* Ref.modify(state, (s) => {
      const found = s.codes.get(code)
      if (found === undefined) return [undefined, s] as const
      const codes = new Map(s.codes)
      codes.delete(code)
      return [found, { ...s, codes }] as const
    })
    if (pending === undefined || pending.clientId !== client.clientId) {
      return yield* Effect.fail(oauthFailure("invalid_grant", "the code is invalid, expired, or was already used"))
    }
    if (form.get("redirect_uri") !== pending.redirectUri) {
      return yield* Effect.fail(oauthFailure("invalid_grant", "redirect_uri differs from the authorization request's"))
    }
    const verifier = form.get("code_verifier")
    if (verifier === null) return yield* Effect.fail(oauthFailure("invalid_grant", "missing code_verifier"))
    if (s256(verifier) !== pending.codeChallenge) {
      return yield* Effect.fail(oauthFailure("invalid_grant", "code_verifier does not match the code challenge"))
    }
    return yield* issuing.issue(client, "authorization_code", pending.scope, true, {
      subject: pending.subject,
      idToken: Option.exists(pending.scope, (scope) => scope.split(" ").includes("openid")),
      nonce: pending.nonce
    })
  })
