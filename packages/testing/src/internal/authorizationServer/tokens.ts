/*
 * Issuing tokens: RS256 JWT access tokens in the RFC 9068 shape, and opaque refresh tokens. Times come from the
 * Effect `Clock`, so under `TestClock` tokens expire on test time.
 */
import * as Clock from "effect/Clock"
import * as DateTime from "effect/DateTime"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Ref from "effect/Ref"
import { decodeJwt, exportJWK, generateKeyPair } from "jose"
import type * as jose from "jose"
import { randomBytes } from "node:crypto"
import type { Client, IssuedToken, SigningKey, TokenLike } from "../../TestAuthorizationServer.js"
import { signRs256 } from "./jws.js"
import type { ServerState, State } from "./state.js"

export const generateSigningKey: Effect.Effect<SigningKey> = Effect.gen(function*() {
  const { privateKey, publicKey } = yield* Effect.promise(() => generateKeyPair("RS256"))
  const kid = `test-key-${randomBytes(6).toString("base64url")}`
  const publicJwk: jose.JWK = { ...(yield* Effect.promise(() => exportJWK(publicKey))), kid, alg: "RS256", use: "sig" }
  return { kid, privateKey: Redacted.make(privateKey), publicKey, publicJwk }
})

export const rawValue = (token: TokenLike): string =>
  typeof token === "string" ? token : Redacted.isRedacted(token) ? Redacted.value(token) : Redacted.value(token.value)

export const jtiOf = (token: TokenLike): string => {
  const raw = rawValue(token)
  try {
    const jti = decodeJwt(raw).jti
    return typeof jti === "string" ? jti : raw
  } catch {
    return raw
  }
}

/** The signed-in user a token is for (the code grant and its refreshes); an ID token comes with `idToken`. */
export interface User {
  readonly subject: string
  readonly idToken: boolean
  readonly nonce?: string | undefined
}

export interface Issuer {
  /** Signs an access token for `client`, records it, and answers with the RFC 6749 §5.1 body. */
  readonly issue: (
    client: Client,
    grantType: string,
    scope: Option.Option<string>,
    withRefresh: boolean,
    user?: User | undefined
  ) => Effect.Effect<Record<string, string | number>>
  /** A new active refresh token for a client's grant (for `subject`, a user, when given). */
  readonly newRefreshToken: (
    clientId: string,
    scope: Option.Option<string>,
    subject?: string | undefined
  ) => Effect.Effect<string>
}

export const makeIssuer = (options: {
  readonly issuer: string
  readonly audience: string
  readonly signingKey: SigningKey
  readonly includeExpiresIn: boolean
  readonly state: ServerState
}): Issuer => {
  const { audience, includeExpiresIn, issuer, signingKey, state } = options

  const newRefreshToken = (clientId: string, scope: Option.Option<string>, subject?: string | undefined) =>
    Ref.modify(state, (s): [string, State] => {
      // Unguessable like a real one, so a test that scans logs for secrets has something to find.
      const value = `rt-${randomBytes(16).toString("base64url")}`
      const refreshTokens = new Map(s.refreshTokens)
      refreshTokens.set(value, { clientId, scope, state: "active", ...(subject !== undefined ? { subject } : {}) })
      return [value, { ...s, refreshTokens }]
    })

  const issue = (
    client: Client,
    grantType: string,
    scope: Option.Option<string>,
    withRefresh: boolean,
    user?: User | undefined
  ) =>
    Effect.gen(function*() {
      const nowMillis = yield* Clock.currentTimeMillis
      const { lifetime, sequence } = yield* Ref.modify(state, (s) => {
        const [next, ...rest] = s.nextLifetimes
        return [
          { lifetime: next ?? s.lifetime, sequence: s.issued.length + 1 },
          { ...s, nextLifetimes: next === undefined ? s.nextLifetimes : rest }
        ]
      })
      const lifetimeSeconds = Math.max(1, Math.round(Duration.toSeconds(lifetime)))
      const iat = Math.floor(nowMillis / 1000)
      // `exp` is whole seconds; rounding it up keeps it at or after `now + expires_in`, the expiry a client
      // computes, so a client that refreshes on its own schedule is never rejected for a sub-second reason.
      const exp = Math.ceil((nowMillis + lifetimeSeconds * 1000) / 1000)
      const jti = `at-${sequence}`
      const payload: Record<string, string> = { client_id: client.clientId }
      if (Option.isSome(scope)) payload.scope = scope.value
      const value = yield* signRs256(
        { kid: signingKey.kid, typ: "at+jwt" },
        { ...payload, iss: issuer, sub: user?.subject ?? client.clientId, aud: audience, jti, iat, exp },
        Redacted.value(signingKey.privateKey)
      )
      const refreshToken = withRefresh
        ? Option.some(yield* newRefreshToken(client.clientId, scope, user?.subject))
        : Option.none()
      const record: IssuedToken = {
        jti,
        sequence,
        value: Redacted.make(value),
        clientId: client.clientId,
        grantType,
        scope,
        issuedAt: DateTime.unsafeMake(nowMillis),
        expiresAt: DateTime.unsafeMake(exp * 1000),
        refreshToken: Option.map(refreshToken, Redacted.make)
      }
      yield* Ref.update(state, (s) => ({ ...s, issued: [...s.issued, record] }))
      const body: Record<string, string | number> = { access_token: value, token_type: "Bearer" }
      if (includeExpiresIn) body.expires_in = lifetimeSeconds
      if (Option.isSome(scope)) body.scope = scope.value
      if (Option.isSome(refreshToken)) body.refresh_token = refreshToken.value
      if (user?.idToken === true) {
        // OpenID Connect Core §2: the client is the audience; the nonce of the authorization request comes back.
        body.id_token = yield* signRs256(
          { kid: signingKey.kid },
          {
            ...(user.nonce === undefined ? {} : { nonce: user.nonce }),
            iss: issuer,
            sub: user.subject,
            aud: client.clientId,
            iat,
            exp
          },
          Redacted.value(signingKey.privateKey)
        )
      }
      return body
    })

  return { issue, newRefreshToken }
}
