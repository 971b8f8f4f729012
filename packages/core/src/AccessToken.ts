/**
 * The token value handed out by sources and caches.
 *
 * @since 0.1.0
 */
import * as DateTime from "effect/DateTime"
import * as Duration from "effect/Duration"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"

/**
 * How the token is presented to a resource server (RFC 6750 `Bearer`, RFC 9449 `DPoP`).
 *
 * @since 0.1.0
 * @category models
 */
export const TokenType = Schema.Literal("Bearer", "DPoP")

/**
 * @since 0.1.0
 * @category models
 */
export type TokenType = typeof TokenType.Type

/**
 * An access token with what is known of its lifetime.
 *
 * The token and the refresh token are `Redacted`: printing, logging or serializing an `AccessToken` for an error
 * or a span never shows them. Encoding it with its own Schema (for a shared store) does reveal them, on purpose.
 *
 * @example
 * ```ts
 * import { AccessToken } from "@effect-token/core"
 * import { DateTime, Duration, Option, Redacted } from "effect"
 *
 * const now = DateTime.unsafeMake(0)
 * const token = AccessToken.make({
 *   value: Redacted.make("eyJ..."),
 *   issuedAt: now,
 *   expiresAt: Option.some(DateTime.addDuration(now, Duration.hours(1)))
 * })
 * String(token) // never contains "eyJ..."
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export class AccessToken extends Schema.Class<AccessToken>("@effect-token/core/AccessToken")({
  value: Schema.Redacted(Schema.String),
  type: TokenType,
  /** When this process received the token; the start of its lifetime as far as caching is concerned. */
  issuedAt: Schema.DateTimeUtc,
  expiresAt: Schema.OptionFromNullOr(Schema.DateTimeUtc),
  scope: Schema.OptionFromNullOr(Schema.String),
  refreshToken: Schema.OptionFromNullOr(Schema.Redacted(Schema.String)),
  /** RFC 8693 `issued_token_type`, set by token exchange. */
  issuedTokenType: Schema.OptionFromNullOr(Schema.String),
  /**
   * The OpenID Connect `id_token` of the same answer (an authorization code or refresh grant with `openid`), not
   * verified here: a login verifies it against the issuer's keys. Optional in the constructor and in stored
   * encodings that predate it.
   */
  idToken: Schema.optionalWith(Schema.OptionFromNullOr(Schema.Redacted(Schema.String)), {
    default: () => Option.none()
  })
}) {}

/**
 * Builds a token, defaulting the optional parts (`Bearer`, no scope, no refresh token).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (fields: {
  readonly value: Redacted.Redacted<string>
  readonly issuedAt: DateTime.Utc
  readonly type?: TokenType | undefined
  readonly expiresAt?: Option.Option<DateTime.Utc> | undefined
  readonly scope?: Option.Option<string> | undefined
  readonly refreshToken?: Option.Option<Redacted.Redacted<string>> | undefined
  readonly issuedTokenType?: Option.Option<string> | undefined
  readonly idToken?: Option.Option<Redacted.Redacted<string>> | undefined
}): AccessToken =>
  new AccessToken({
    value: fields.value,
    type: fields.type ?? "Bearer",
    issuedAt: fields.issuedAt,
    expiresAt: fields.expiresAt ?? Option.none(),
    scope: fields.scope ?? Option.none(),
    refreshToken: fields.refreshToken ?? Option.none(),
    issuedTokenType: fields.issuedTokenType ?? Option.none(),
    idToken: fields.idToken ?? Option.none()
  }, { disableValidation: true })

/**
 * The `Authorization` header value, e.g. `Bearer eyJ...`, still redacted.
 *
 * @example
 * ```ts
 * import { AccessToken } from "@effect-token/core"
 * import { Redacted } from "effect"
 *
 * declare const token: AccessToken.AccessToken
 * const header: string = Redacted.value(AccessToken.authorization(token))
 * ```
 *
 * @since 0.1.0
 * @category accessors
 */
export const authorization = (token: AccessToken): Redacted.Redacted<string> =>
  Redacted.make(`${token.type} ${Redacted.value(token.value)}`)

/**
 * Whether two tokens carry the same token value (what a resource server sees).
 *
 * @since 0.1.0
 * @category predicates
 */
export const sameValue = (self: AccessToken, that: AccessToken): boolean =>
  Redacted.value(self.value) === Redacted.value(that.value)

/**
 * The lifetime from receipt to expiry, if the expiry is known.
 *
 * @since 0.1.0
 * @category accessors
 */
export const lifetime = (token: AccessToken): Option.Option<Duration.Duration> =>
  Option.map(token.expiresAt, (expiresAt) => DateTime.distanceDuration(token.issuedAt, expiresAt))

/**
 * Whether the token is expired at `now`, treating it as expired `skew` early. A token without a known expiry never
 * expires by this test.
 *
 * @since 0.1.0
 * @category predicates
 */
export const isExpired = (
  token: AccessToken,
  now: DateTime.Utc,
  skew: Duration.DurationInput = Duration.zero
): boolean =>
  Option.match(token.expiresAt, {
    onNone: () => false,
    onSome: (expiresAt) => DateTime.lessThanOrEqualTo(DateTime.subtractDuration(expiresAt, skew), now)
  })

/**
 * The token without the secrets that travel beside it: `refreshToken`, and `idToken` too when asked. A cache or a
 * session record keeps the refresh token (and the ID token) in a place of its own, once, never inside the token it
 * hands out.
 *
 * @example
 * ```ts
 * import { AccessToken } from "@effect-token/core"
 * import { DateTime, Option, Redacted } from "effect"
 *
 * const token = AccessToken.make({
 *   value: Redacted.make("at"),
 *   issuedAt: DateTime.unsafeMake(0),
 *   refreshToken: Option.some(Redacted.make("rt"))
 * })
 * Option.isNone(AccessToken.without(token, "refreshToken").refreshToken) // true
 * ```
 *
 * @since 0.2.0
 * @category utils
 */
export const without = (token: AccessToken, ...fields: ReadonlyArray<"refreshToken" | "idToken">): AccessToken =>
  make({
    value: token.value,
    type: token.type,
    issuedAt: token.issuedAt,
    expiresAt: token.expiresAt,
    scope: token.scope,
    issuedTokenType: token.issuedTokenType,
    refreshToken: fields.includes("refreshToken") ? Option.none() : token.refreshToken,
    idToken: fields.includes("idToken") ? Option.none() : token.idToken
  })
