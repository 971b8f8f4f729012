/**
 * Parsing of `WWW-Authenticate` challenges (RFC 9110 §11.6.1, RFC 6750 §3), e.g.
 * `Bearer realm="api", error="invalid_token", error_description="The access token expired"`.
 *
 * @since 0.1.0
 */

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

const tchar = /[!#$%&'*+\-.^_`|~0-9A-Za-z]/

/**
 * Parses a header value into its challenges. Lenient: what it cannot read it skips, it never throws.
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
export const parse = (header: string): Array<Challenge> => {
  const challenges: Array<{ scheme: string; params: Record<string, string>; token68?: string }> = []
  let i = 0
  const n = header.length
  const skipSpace = () => {
    while (i < n && (header[i] === " " || header[i] === "\t")) i++
  }
  const readToken = () => {
    const start = i
    while (i < n && tchar.test(header[i]!)) i++
    return header.slice(start, i)
  }
  const readQuoted = () => {
    let out = ""
    i++ // opening quote
    while (i < n && header[i] !== "\"") {
      if (header[i] === "\\" && i + 1 < n) i++
      out += header[i]
      i++
    }
    i++ // closing quote
    return out
  }
  while (i < n) {
    skipSpace()
    if (header[i] === ",") {
      i++
      continue
    }
    const scheme = readToken()
    if (scheme === "") {
      // Unreadable character: skip it rather than fail the whole header.
      i++
      continue
    }
    const challenge: { scheme: string; params: Record<string, string>; token68?: string } = { scheme, params: {} }
    challenges.push(challenge)
    skipSpace()
    const token68 = /^([A-Za-z0-9\-._~+/]+=*)[ \t]*(?:,|$)/.exec(header.slice(i))
    if (token68 !== null) {
      challenge.token68 = token68[1]!
      i += token68[1]!.length
      continue
    }
    // auth-params until something that is not `name=value`: that is the next challenge's scheme.
    while (i < n) {
      skipSpace()
      if (header[i] === ",") {
        i++
        continue
      }
      const save = i
      const name = readToken()
      skipSpace()
      if (name === "" || header[i] !== "=") {
        i = save
        break
      }
      i++
      skipSpace()
      challenge.params[name.toLowerCase()] = header[i] === "\"" ? readQuoted() : readToken()
    }
  }
  return challenges
}

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
