/*
 * The `WWW-Authenticate` scanner (RFC 9110 §11.6.1). One pass, left to right: every loop moves the cursor forward,
 * and the only look-ahead (is this a token68?) is followed by reading the same characters at most twice more, so the
 * work is linear in the length read. The header is a server's text, so a hostile resource server must not be able to
 * make the client spend more than that, and the read itself is capped.
 *
 *   challenge   = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
 *   auth-param  = token BWS "=" BWS ( token / quoted-string )
 *   token68     = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
 */

/** What is read of a header: 16 KiB holds any real challenge list many times over. */
export const maxHeaderLength = 16 * 1024

export interface ScannedChallenge {
  scheme: string
  params: Record<string, string>
  token68?: string
}

// Lookup tables instead of regexes: one array read per character.
const tcharTable = new Uint8Array(128)
for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") {
  tcharTable[c.charCodeAt(0)] = 1
}
const token68Table = new Uint8Array(128)
for (const c of "-._~+/0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") {
  token68Table[c.charCodeAt(0)] = 1
}
const isTchar = (code: number) => code < 128 && tcharTable[code] === 1
const isToken68Char = (code: number) => code < 128 && token68Table[code] === 1
const SP = 0x20
const HTAB = 0x09
const COMMA = 0x2c
const EQUALS = 0x3d
const DQUOTE = 0x22
const BACKSLASH = 0x5c

/**
 * The challenges of `header` and the number of characters visited (`steps`), which tests use to check that the work
 * is linear without measuring time. Params live in objects without a prototype: a parameter named `__proto__` is a
 * parameter like any other.
 */
export const scan = (header: string): { readonly challenges: Array<ScannedChallenge>; readonly steps: number } => {
  const truncated = header.length > maxHeaderLength
  const input = truncated ? header.slice(0, maxHeaderLength) : header
  const n = input.length
  const challenges: Array<ScannedChallenge> = []
  let i = 0
  let steps = 0
  const code = (at: number) => {
    steps++
    return input.charCodeAt(at)
  }
  const skipSpace = () => {
    while (i < n) {
      const c = code(i)
      if (c !== SP && c !== HTAB) break
      i++
    }
  }
  const readToken = () => {
    const start = i
    while (i < n && isTchar(code(i))) i++
    return input.slice(start, i)
  }
  /** A quoted-string from its opening quote; an unterminated one ends with the input. */
  const readQuoted = () => {
    i++ // opening quote
    let out = ""
    let start = i
    while (i < n) {
      const c = code(i)
      if (c === DQUOTE) break
      if (c === BACKSLASH && i + 1 < n) {
        out += input.slice(start, i)
        start = i + 1 // the escaped character is kept as it is
        i += 2
        continue
      }
      i++
    }
    out += input.slice(start, i)
    if (i < n) i++ // closing quote
    return out
  }
  /** The end of a token68 starting at `i` if one is there (followed by OWS and a comma or the end), else -1. */
  const token68End = () => {
    let j = i
    while (j < n && isToken68Char(code(j))) j++
    if (j === i) return -1
    while (j < n && code(j) === EQUALS) j++
    const end = j
    while (j < n && (code(j) === SP || code(j) === HTAB)) j++
    return j === n || code(j) === COMMA ? end : -1
  }

  while (i < n) {
    skipSpace()
    if (i >= n) break
    if (code(i) === COMMA) {
      i++
      continue
    }
    const scheme = readToken()
    if (scheme === "") {
      // Unreadable character: skip it rather than fail the whole header.
      i++
      continue
    }
    const challenge: ScannedChallenge = { scheme, params: Object.create(null) }
    challenges.push(challenge)
    const afterScheme = i
    skipSpace()
    if (i === afterScheme) continue // no space: nothing of this challenge follows
    const end = token68End()
    if (end !== -1) {
      challenge.token68 = input.slice(i, end)
      i = end
      continue
    }
    // auth-params until something that is not `name=value`: that is the next challenge's scheme.
    while (i < n) {
      skipSpace()
      if (i >= n) break
      if (code(i) === COMMA) {
        i++
        continue
      }
      const save = i
      const name = readToken()
      skipSpace()
      if (name === "" || i >= n || code(i) !== EQUALS) {
        i = save
        break
      }
      i++
      skipSpace()
      const value = i < n && code(i) === DQUOTE ? readQuoted() : readToken()
      challenge.params[name.toLowerCase()] = value
    }
  }
  // The cut may have fallen inside the last challenge: rather than report half of it, leave it out.
  if (truncated) challenges.pop()
  return { challenges, steps }
}
