/*
 * What a resource server asks of the test authorization server: does this access token verify (signature, issuer,
 * audience, `exp` on the Effect `Clock`), and was it revoked. Revocation of refresh tokens lives here too.
 */
import type { AccessToken } from "@effect-token/core"
import * as Clock from "effect/Clock"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Redacted from "effect/Redacted"
import * as Ref from "effect/Ref"
import type { Claims, SigningKey, TokenLike } from "../../TestAuthorizationServer.js"
import { verifyRs256 } from "./jws.js"
import type { ServerState } from "./state.js"
import { jtiOf, rawValue } from "./tokens.js"

// Defined here rather than in the public module, which re-exports it: the verifier constructs it, and an internal
// module importing a value from the module that imports it would be a cycle.
export class InvalidToken extends Data.TaggedError("InvalidToken")<{
  readonly reason: "Malformed" | "Signature" | "Expired" | "Issuer" | "Audience" | "Revoked" | "Unknown"
  readonly description: string
}> {
  override get message(): string {
    return `${this.reason}: ${this.description}`
  }
}

const invalid = (reason: InvalidToken["reason"], description: string) => new InvalidToken({ reason, description })

const requiredClaims = ["jti", "exp", "iat", "client_id"] as const

/**
 * The claims of an access token this server signed for `audience`, valid at `nowMillis` (whole seconds, as JWT
 * times are; no tolerance). Synchronous: see `jws.ts`.
 */
const verifyAccessToken = (
  token: string,
  key: CryptoKey,
  expected: { readonly issuer: string; readonly audience: string },
  nowMillis: number
): Either.Either<Claims, InvalidToken> =>
  Either.flatMap(
    Either.mapLeft(
      verifyRs256(token, key),
      (failure) =>
        failure === "Signature"
          ? invalid("Signature", "the signature does not verify")
          : invalid("Malformed", "the access token is not a valid JWT")
    ),
    (payload) => {
      const missing = requiredClaims.find((claim) => payload[claim] === undefined)
      if (missing !== undefined) return Either.left(invalid("Malformed", `invalid claim ${missing}`))
      if (typeof payload.exp !== "number" || typeof payload.iat !== "number") {
        return Either.left(invalid("Malformed", "invalid claim exp or iat"))
      }
      if (payload.iss !== expected.issuer) return Either.left(invalid("Issuer", "the access token has another issuer"))
      const audiences = Array.isArray(payload.aud) ? payload.aud : [payload.aud]
      if (!audiences.includes(expected.audience)) {
        return Either.left(invalid("Audience", "the access token is for another audience"))
      }
      if (payload.exp <= Math.floor(nowMillis / 1000)) {
        return Either.left(invalid("Expired", "the access token expired"))
      }
      return Either.right(payload as unknown as Claims)
    }
  )

export const makeVerifier = (options: {
  readonly issuer: string
  readonly audience: string
  readonly signingKey: SigningKey
  readonly state: ServerState
}) =>
(
  token: string | Redacted.Redacted<string> | AccessToken.AccessToken,
  verifyOptions?: { readonly audience?: string | undefined }
): Effect.Effect<Claims, InvalidToken> =>
  Effect.gen(function*() {
    const nowMillis = yield* Clock.currentTimeMillis
    const claims = yield* verifyAccessToken(
      rawValue(token),
      options.signingKey.publicKey,
      { issuer: options.issuer, audience: verifyOptions?.audience ?? options.audience },
      nowMillis
    )
    const revoked = yield* Effect.map(Ref.get(options.state), (s) => s.revoked.has(claims.jti))
    if (revoked) return yield* new InvalidToken({ reason: "Revoked", description: "the access token was revoked" })
    return claims
  })

export const revoke = (state: ServerState, tokenOrJti: TokenLike): Effect.Effect<void> =>
  Ref.update(state, (s) => ({ ...s, revoked: new Set([...s.revoked, jtiOf(tokenOrJti)]) }))

export const isRevoked = (state: ServerState, tokenOrJti: TokenLike): Effect.Effect<boolean> =>
  Effect.map(Ref.get(state), (s) => s.revoked.has(jtiOf(tokenOrJti)))

/** The next refresh with it gives `invalid_grant`; an unknown refresh token is left alone. */
export const revokeRefreshToken = (
  state: ServerState,
  refreshToken: string | Redacted.Redacted<string>
): Effect.Effect<void> =>
  Ref.update(state, (s) => {
    const value = Redacted.isRedacted(refreshToken) ? Redacted.value(refreshToken) : refreshToken
    const grant = s.refreshTokens.get(value)
    if (grant === undefined) return s
    const refreshTokens = new Map(s.refreshTokens)
    refreshTokens.set(value, { ...grant, state: "revoked" })
    return { ...s, refreshTokens }
  })
