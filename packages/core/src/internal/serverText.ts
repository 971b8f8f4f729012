/*
 * Text a server wrote (`error_description`, `error_uri`, a content type, an issuer) on its way into our messages,
 * logs and spans. A server may echo the request it got, so the secrets of that request are redacted; control and
 * bidirectional-override characters are removed so the text cannot forge log lines or hide what follows; and the
 * length is capped so one answer cannot flood a log.
 */
import * as Redacted from "effect/Redacted"

/** The most characters of server text a message keeps. */
export const maxServerTextLength = 256

const redactedMark = "<redacted>"

// C0, DEL, C1, and the bidi embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069).
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const unsafeCharacters = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g

/** The ways a secret can come back: as sent in a form, URL-encoded, JSON-escaped, or as it is. */
const variants = (secret: string): Array<string> => {
  const form = new URLSearchParams({ s: secret }).toString().slice(2)
  return [secret, form, encodeURIComponent(secret), JSON.stringify(secret).slice(1, -1)]
}

/**
 * Values shorter than this are not redacted: they cannot be told from ordinary words (a test's token `t` would eat
 * every `t` of the message), and no client secret, assertion or token is that short.
 */
export const minRedactedLength = 6

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

/**
 * `text` with every variant of every secret replaced by a mark, in one pass, longest first, so the mark itself is
 * never redacted again. Nothing else changes: for text kept whole (a header, a body), where {@link serverText} is
 * for text shown in a message.
 */
export const redact = (text: string, secrets: ReadonlyArray<string>): string => {
  const all = [...new Set(secrets.filter((s) => s.length >= minRedactedLength).flatMap(variants))]
    .sort((a, b) => b.length - a.length)
  if (all.length === 0) return text
  return text.replace(new RegExp(all.map(escapeRegExp).join("|"), "g"), redactedMark)
}

/** `text` without our `secrets`, without control characters, at most {@link maxServerTextLength} characters. */
export const serverText = (text: string, secrets: ReadonlyArray<string> = []): string => {
  // Stripping can join the halves of a secret the server split with a control character: redact on both sides.
  const clean = redact(redact(text, secrets).replace(unsafeCharacters, ""), secrets)
  if (clean.length <= maxServerTextLength) return clean
  let cut = clean.slice(0, maxServerTextLength)
  // Never leave half a surrogate pair.
  if (/[\ud800-\udbff]$/.test(cut)) cut = cut.slice(0, -1)
  return `${cut}…`
}

/** The secrets of one request: every `Redacted` parameter, and what the client's credentials carry. */
export const secretsOf = (
  params: Readonly<Record<string, unknown>>,
  credentials: {
    readonly headers: Readonly<Record<string, Redacted.Redacted<string>>>
    readonly params: Readonly<Record<string, unknown>>
  }
): Array<string> => {
  const secrets: Array<string> = []
  for (const value of [...Object.values(params), ...Object.values(credentials.params)]) {
    if (Redacted.isRedacted(value)) secrets.push(String(Redacted.value(value)))
  }
  for (const value of Object.values(credentials.headers)) {
    const header = Redacted.value(value)
    secrets.push(header)
    // `Basic base64(urlencoded(id) ":" urlencoded(secret))`: the encoded part, and the secret inside it.
    const [scheme, encoded] = header.split(" ")
    if (scheme?.toLowerCase() === "basic" && encoded !== undefined) {
      secrets.push(encoded)
      try {
        const decoded = atob(encoded)
        const colon = decoded.indexOf(":")
        if (colon >= 0) {
          const secret = decoded.slice(colon + 1)
          secrets.push(secret, decodeURIComponent(secret.replace(/\+/g, " ")))
        }
      } catch {
        // Not Base64 or not URL-encoded: the header and its encoded part are redacted already.
      }
    }
  }
  return secrets.filter((secret) => secret.length > 0)
}
