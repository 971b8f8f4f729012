/*
 * What a resource server asks of the test authorization server: does this access token verify (signature, issuer,
 * audience, `exp` on the Effect `Clock`), and was it revoked. Revocation of refresh tokens lives here too.
 */
import type { AccessToken } from "@effect-token/core"
import * as Clock from "effect/Clock"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Ref from "effect/Ref"
import { errors as joseErrors, jwtVerify } from "jose"
import type { Claims, SigningKey, TokenLike } from "../../TestAuthorizationServer.js"
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

const toInvalidToken = (cause: unknown): InvalidToken => {
  if (cause instanceof joseErrors.JWTExpired) {
    return new InvalidToken({ reason: "Expired", description: "the access token expired" })
  }
  if (cause instanceof joseErrors.JWTClaimValidationFailed) {
    switch (cause.claim) {
      case "iss":
        return new InvalidToken({ reason: "Issuer", description: "the access token has another issuer" })
      case "aud":
        return new InvalidToken({ reason: "Audience", description: "the access token is for another audience" })
      default:
        return new InvalidToken({ reason: "Malformed", description: `invalid claim ${cause.claim}` })
    }
  }
  if (cause instanceof joseErrors.JWSSignatureVerificationFailed) {
    return new InvalidToken({ reason: "Signature", description: "the signature does not verify" })
  }
  if (cause instanceof joseErrors.JOSEError) {
    return new InvalidToken({ reason: "Malformed", description: "the access token is not a valid JWT" })
  }
  return new InvalidToken({ reason: "Unknown", description: "the access token cannot be verified" })
}

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
    const result = yield* Effect.tryPromise({
      try: () =>
        jwtVerify(rawValue(token), options.signingKey.publicKey, {
          issuer: options.issuer,
          audience: verifyOptions?.audience ?? options.audience,
          algorithms: ["RS256"],
          requiredClaims: ["jti", "exp", "iat", "client_id"],
          // jose reads the wall clock unless told the time: the Effect Clock decides here.
          currentDate: new Date(nowMillis)
        }),
      catch: toInvalidToken
    })
    const claims = result.payload as unknown as Claims
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
