/**
 * The pure protocol rules of a web session: PKCE, state comparison, the return-to check, cookies. (The refresh
 * window is core's `TokenTiming`.) No I/O and no clock here, so each rule is a function a property test can drive.
 */

const encoder = new TextEncoder()

/** Bytes as base64url without padding (RFC 4648 §5), as PKCE, `state` and session ids use. */
export const base64url = (bytes: Uint8Array): string => {
  let binary = ""
  for (let i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]!)
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "")
}

/** `n` bytes from the platform's CSPRNG (never `Math.random` nor Effect's `Random`, which is not cryptographic). */
export const randomToken = (bytes: number): string => base64url(crypto.getRandomValues(new Uint8Array(bytes)))

/** RFC 7636 §4.2: `BASE64URL(SHA256(ASCII(code_verifier)))`. */
export const pkceChallenge = async (verifier: string): Promise<string> =>
  base64url(new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(verifier))))

/** RFC 7636 §4.1: 43 to 128 characters of `[A-Za-z0-9-._~]`. */
export const isValidVerifier = (verifier: string): boolean => /^[A-Za-z0-9\-._~]{43,128}$/.test(verifier)

/**
 * Compares two strings in time that depends only on their lengths, so that a wrong `state` reveals nothing about
 * the right one through timing. Different lengths are unequal at once (the length of a random value is public).
 */
export const constantTimeEqual = (a: string, b: string): boolean => {
  const x = encoder.encode(a)
  const y = encoder.encode(b)
  if (x.length !== y.length) return false
  let diff = 0
  for (let i = 0; i < x.length; i++) diff |= x[i]! ^ y[i]!
  return diff === 0
}

/**
 * The longest return-to path kept; a longer one is replaced by `/`. It travels sealed in the login cookie, and a
 * browser holds a few of those: 1 KiB keeps them together well under a server's request-header limit (16 KiB in Node).
 */
export const maxReturnToLength = 1024

/**
 * Where to send the user after login: a path on this origin, else `/`. Only a relative path that starts with one
 * `/` passes: never `//host` or `/\host` (browsers read both as another origin), nor a scheme, nor control
 * characters or backslashes anywhere (some browsers turn `\` into `/` and drop tabs and newlines inside URLs).
 *
 * The input is normalized as a URL parser (and so the browser) does, and the rules are checked on that result, which
 * is what is returned: dot segments and their encodings (`/.//host`, `/%2e%2e//host`, `/a/..//host`) normalize to a
 * scheme-relative `//host`, so checking the input and returning the parser's path would be an open redirect.
 */
export const safeReturnTo = (input: unknown): string => {
  if (typeof input !== "string" || !isLocalPath(input)) return "/"
  const base = "http://return-to.invalid"
  if (!URL.canParse(input, base)) return "/"
  const url = new URL(input, base)
  if (url.origin !== base) return "/"
  const normalized = url.pathname + url.search + url.hash
  return isLocalPath(normalized) ? normalized : "/"
}

/** A path of this origin as written: one leading `/`, no control characters or backslashes, not too long. */
const isLocalPath = (path: string): boolean =>
  path.length > 0 && path.length <= maxReturnToLength && path[0] === "/" && path[1] !== "/" && path[1] !== "\\" &&
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
  !/[\u0000-\u001f\u007f\\]/.test(path)

/**
 * Whether a state-changing request comes from another site (Fetch Metadata, else `Origin`): `Sec-Fetch-Site` other
 * than `same-origin` or `none` (a user's own navigation), or an `Origin` that is not `appOrigin` (`null` included).
 * A request with neither header is not a browser's cross-site one (every browser sends `Origin` on a POST), and passes.
 */
export const isCrossSite = (
  headers: { readonly [name: string]: string | undefined },
  appOrigin: string
): boolean => {
  const site = headers["sec-fetch-site"]
  if (site !== undefined && site !== "same-origin" && site !== "none") return true
  const origin = headers["origin"]
  return origin !== undefined && origin !== appOrigin
}

/** Session ids, login ids: the base64url of 16 to 96 random bytes. Anything else is not looked up at all. */
export const isWellFormedId = (value: string): boolean => /^[A-Za-z0-9_-]{22,128}$/.test(value)

/** The cookie attributes this package sets (RFC 6265 §4.1). */
export interface CookieAttributes {
  readonly path: string
  readonly httpOnly: boolean
  readonly secure: boolean
  readonly sameSite: "Lax" | "Strict" | "None"
  /** Seconds; `0` expires the cookie now; absent: a browser-session cookie. */
  readonly maxAge?: number | undefined
}

/** A cookie name or path RFC 6265 accepts; checked once, at start-up, on the configured values. */
export const isCookieName = (name: string): boolean => /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(name)
export const isCookiePath = (path: string): boolean => /^\/[\x21-\x3a\x3c-\x7e]*$/.test(path)

/**
 * The name a cookie is set under. With `Secure`, the `__Host-` prefix is kept whatever name is configured, unless
 * `hostPrefix` is `false`: a browser then refuses the cookie from any subdomain and pins it to `Path=/` on this
 * host, so a sibling site cannot plant a session id (session fixation) or shadow ours. Without `Secure` the prefix is
 * impossible (browsers drop such a cookie). Returns a reason when the result is not a name to use.
 */
export const cookieName = (
  name: string,
  options: { readonly secure: boolean; readonly hostPrefix: boolean }
): { readonly name: string } | { readonly invalid: string } => {
  const prefixed = name.startsWith(hostPrefix)
  if (!options.secure && prefixed) return { invalid: `a ${hostPrefix} cookie needs Secure` }
  const full = options.secure && options.hostPrefix && !prefixed ? `${hostPrefix}${name}` : name
  return isCookieName(name) && isCookieName(full) ? { name: full } : { invalid: "not an RFC 6265 cookie name" }
}

const hostPrefix = "__Host-"

/** One `Set-Cookie` value. The value must already be cookie-safe (our ids are base64url, or empty). */
export const serializeCookie = (name: string, value: string, attributes: CookieAttributes): string => {
  const parts = [`${name}=${value}`, `Path=${attributes.path}`]
  if (attributes.maxAge !== undefined) parts.push(`Max-Age=${Math.max(0, Math.floor(attributes.maxAge))}`)
  if (attributes.httpOnly) parts.push("HttpOnly")
  if (attributes.secure) parts.push("Secure")
  parts.push(`SameSite=${attributes.sameSite}`)
  return parts.join("; ")
}
