/**
 * Parsing of `WWW-Authenticate` challenges (RFC 9110 §11.6.1, RFC 6750 §3), e.g.
 * `Bearer realm="api", error="invalid_token", error_description="The access token expired"`.
 *
 * @since 0.1.0
 */
import * as internal from "./internal/wwwAuthenticate.js"

/**
 * One challenge: its scheme and its auth-params (names lower-cased, values unquoted). A `token68` value (as in
 * `Basic xyz==`) is kept under `token68`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Challenge {
  readonly scheme: string
  readonly params: Readonly<Record<string, string>>
  readonly token68?: string | undefined
}

/**
 * How much of a header is read: 16 KiB (16,384 UTF-16 code units). What follows is ignored, and so is the challenge
 * the cut falls into. Real challenge lists are a few hundred bytes.
 *
 * @since 0.1.0
 * @category constants
 */
export const maxHeaderLength: number = internal.maxHeaderLength

/**
 * Parses a header value into its challenges. Lenient: what it cannot read it skips, it never throws. One pass over
 * at most {@link maxHeaderLength} characters, so its time is linear in the header's length whatever the server sends.
 * Parameter names are lower-cased; a repeated parameter keeps its last value.
 *
 * @example
 * ```ts
 * import { WwwAuthenticate } from "@effect-token/core"
 *
 * const [bearer] = WwwAuthenticate.parse('Bearer realm="api", error="invalid_token"')
 * bearer?.params.error // "invalid_token"
 * ```
 *
 * @since 0.1.0
 * @category parsing
 */
export const parse = (header: string): Array<Challenge> => internal.scan(header).challenges

/**
 * The first challenge of `scheme` (case-insensitive), if any.
 *
 * @example
 * ```ts
 * import { WwwAuthenticate } from "@effect-token/core"
 *
 * WwwAuthenticate.find(WwwAuthenticate.parse('DPoP algs="ES256", Bearer error="invalid_token"'), "bearer")
 * ```
 *
 * @since 0.1.0
 * @category accessors
 */
export const find = (challenges: ReadonlyArray<Challenge>, scheme: string): Challenge | undefined =>
  challenges.find((challenge) => challenge.scheme.toLowerCase() === scheme.toLowerCase())
