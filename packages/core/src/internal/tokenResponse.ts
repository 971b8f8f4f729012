import * as DateTime from "effect/DateTime"
import * as Duration from "effect/Duration"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Predicate from "effect/Predicate"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { decodeJwt } from "jose"
import * as AccessToken from "../AccessToken.js"
import { MalformedResponse, TokenError } from "../TokenError.js"

/** One year: an `expires_in` beyond it is a server bug, and caching such a token would outlive any key rotation. */
export const maxExpiresInSeconds = 365 * 24 * 60 * 60

const TokenTypeFromString = Schema.transform(Schema.String, AccessToken.TokenType, {
  strict: false,
  // RFC 6749 §7.1: the type is case-insensitive; anything but Bearer/DPoP fails the target literal.
  decode: (s) => {
    const lower = s.toLowerCase()
    return lower === "bearer" ? "Bearer" : lower === "dpop" ? "DPoP" : s
  },
  encode: (s) => s
})

// Some servers (older Azure AD among them) send expires_in as a string of digits.
const ExpiresIn = Schema.Union(
  Schema.Number,
  Schema.String.pipe(Schema.pattern(/^\d+$/), Schema.compose(Schema.NumberFromString))
).pipe(
  Schema.int(),
  Schema.between(1, maxExpiresInSeconds)
)

// Some servers send `null` for an absent optional member; it means the same as leaving it out.
const OptionalString = Schema.optionalWith(Schema.String, { nullable: true })

/**
 * RFC 6750 §2.1 `b64token`: the only values a client can put after `Bearer ` (or `DPoP `) in an `Authorization`
 * header. Anything else (a NUL, a CJK character, a space) makes every API call fail in the HTTP stack as if it were a
 * transport fault, so such a token is refused on arrival and never cached.
 */
export const b64token = /^[A-Za-z0-9\-._~+/]+=*$/

/**
 * RFC 6749 appendix A.12 `refresh-token = 1*VSCHAR`, without the space: a refresh token is sent back in a form body,
 * where a space would survive, but no server issues one and a trimmed copy in a store would silently differ.
 */
export const refreshTokenChars = /^[\x21-\x7E]+$/

/** RFC 6749 §5.1 successful response (plus RFC 8693's `issued_token_type`). */
export const TokenResponse = Schema.Struct({
  access_token: Schema.String.pipe(Schema.pattern(b64token)),
  token_type: TokenTypeFromString,
  expires_in: Schema.optionalWith(ExpiresIn, { nullable: true }),
  scope: OptionalString,
  refresh_token: Schema.optionalWith(Schema.String.pipe(Schema.pattern(refreshTokenChars)), { nullable: true }),
  issued_token_type: OptionalString,
  /** OpenID Connect Core §3.1.3.3; kept as it came (a login verifies it). */
  id_token: Schema.optionalWith(Schema.String.pipe(Schema.pattern(refreshTokenChars)), { nullable: true })
})

/** RFC 6749 §5.2 error response. */
export const ErrorResponse = Schema.Struct({
  error: Schema.String.pipe(Schema.pattern(/^[\x20-\x21\x23-\x5B\x5D-\x7E]+$/)),
  error_description: OptionalString,
  error_uri: OptionalString
})

// errors: "all" so the detail names every offending field, not just the first.
const decodeTokenResponse = Schema.decodeUnknownEither(TokenResponse, { errors: "all" })
const decodeErrorResponse = Schema.decodeUnknownOption(ErrorResponse)

/**
 * Names the offending fields only: ParseResult messages quote actual values, and the value may be a token. Shared by
 * every decoder of an authorization server's answers (token responses, metadata).
 */
export const invalidFields = (error: ParseResult.ParseError): Array<string> => [
  ...new Set(
    ParseResult.ArrayFormatter.formatErrorSync(error).map((issue) => issue.path.map(String).join(".") || "body")
  )
]

/** The access token's JWT `exp` (seconds), read without verifying: the client only needs to know when to refresh. */
const jwtExp = (token: string): Option.Option<number> => {
  try {
    const exp = decodeJwt(token).exp
    return Predicate.isNumber(exp) && Number.isFinite(exp) ? Option.some(exp) : Option.none()
  } catch {
    return Option.none()
  }
}

/**
 * The expiry a JWT `exp` gives, when the response has no `expires_in`. A token whose `exp` is not after `now` is
 * expired on arrival: handing it out would only earn a 401 (and a cache could not even hold it), so it is a malformed
 * answer, and the detail points at the usual cause, clocks apart. An `exp` further ahead than any `expires_in` we
 * accept is refused for the same reason as such an `expires_in`.
 */
const expiryFromExp = (exp: number, options: DecodeOptions): Either.Either<DateTime.Utc, TokenError> => {
  const lifetimeMillis = exp * 1000 - DateTime.toEpochMillis(options.now)
  if (lifetimeMillis <= 0) {
    return Either.left(
      new TokenError({
        operation: options.operation,
        reason: new MalformedResponse({
          fields: ["access_token"],
          description: `the access token expired on arrival: there is no expires_in and its JWT exp is ${
            Math.floor(-lifetimeMillis / 1000)
          } s before this host's clock (check the clock skew between this host and the authorization server)`
        })
      })
    )
  }
  if (lifetimeMillis > maxExpiresInSeconds * 1000) {
    return Either.left(
      new TokenError({
        operation: options.operation,
        reason: new MalformedResponse({
          fields: ["access_token"],
          description: `there is no expires_in and the access token's JWT exp is more than ${
            maxExpiresInSeconds / 86_400
          } days ahead of this host's clock (check the clock skew between this host and the authorization server)`
        })
      })
    )
  }
  return Either.right(DateTime.unsafeMake(exp * 1000))
}

export interface DecodeOptions {
  readonly operation: string
  readonly now: DateTime.Utc
  readonly defaultLifetime: Option.Option<Duration.Duration>
  /** Whether this answers a token exchange, the one grant whose answer may say `token_type` `N_A`. */
  readonly tokenExchange?: boolean | undefined
}

/** RFC 8693 §3: the `issued_token_type` of an access token. */
export const accessTokenType = "urn:ietf:params:oauth:token-type:access_token"

/**
 * RFC 8693 §2.2.1: `token_type` `N_A` says the issued token is not an access token (an ID token, a SAML assertion).
 * Only a token exchange answer can say so, and it names what it issued in `issued_token_type`; anywhere else `N_A`
 * stays a malformed answer. `AccessToken.type` is how a token is presented to a resource server, and such a token is
 * not presented as one: rather than widen that type for every user, the token is read as `Bearer` and
 * `issuedTokenType` tells what it really is (see `TokenExchange.make`).
 */
const isNotApplicable = (body: Record<string, unknown>): boolean =>
  typeof body.token_type === "string" && body.token_type.toUpperCase() === "N_A" &&
  typeof body.issued_token_type === "string" && body.issued_token_type !== accessTokenType

/** Lifetime from `expires_in`, else from the JWT `exp`, else from the configured default, else unknown. */
const expiryOf = (
  response: typeof TokenResponse.Type,
  options: DecodeOptions
): Either.Either<Option.Option<DateTime.Utc>, TokenError> => {
  if (response.expires_in !== undefined) {
    return Either.right(Option.some(DateTime.addDuration(options.now, Duration.seconds(response.expires_in))))
  }
  const exp = jwtExp(response.access_token)
  if (Option.isSome(exp)) return Either.map(expiryFromExp(exp.value, options), Option.some)
  return Either.right(
    Option.map(options.defaultLifetime, (lifetime) => DateTime.addDuration(options.now, lifetime))
  )
}

export const decodeTokenBody = (
  body: unknown,
  options: DecodeOptions
): Either.Either<AccessToken.AccessToken, TokenError> => {
  if (!Predicate.isRecord(body)) {
    return Either.left(
      new TokenError({
        operation: options.operation,
        reason: new MalformedResponse({ description: "the body is not a JSON object" })
      })
    )
  }
  return Either.match(
    decodeTokenResponse(
      options.tokenExchange === true && isNotApplicable(body) ? { ...body, token_type: "Bearer" } : body
    ),
    {
      onLeft: (error) =>
        Either.left(
          new TokenError({
            operation: options.operation,
            reason: new MalformedResponse({
              fields: invalidFields(error),
              description: `invalid token response field(s): ${invalidFields(error).join(", ")}`
            })
          })
        ),
      onRight: (response) =>
        Either.map(expiryOf(response, options), (expiresAt) =>
          AccessToken.make({
            value: Redacted.make(response.access_token),
            type: response.token_type,
            issuedAt: options.now,
            expiresAt,
            scope: Option.fromNullable(response.scope),
            refreshToken: Option.map(Option.fromNullable(response.refresh_token), Redacted.make),
            issuedTokenType: Option.fromNullable(response.issued_token_type),
            idToken: Option.map(Option.fromNullable(response.id_token), Redacted.make)
          }))
    }
  )
}

export const decodeErrorBody = (body: unknown) => decodeErrorResponse(body)
