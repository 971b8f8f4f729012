/**
 * A login in progress, kept in the browser: between `/login` and `/callback` the server stores nothing. Everything
 * the callback needs (state, nonce, PKCE verifier, return path, start time, the DPoP key) is sealed with AES-256-GCM
 * (Web Crypto) under a key derived from the application's secret, in a short-lived `HttpOnly` cookie named after the
 * login's `state`: each login its own cookie (logins in parallel tabs do not overwrite each other), and a callback
 * can only open the cookie of the state it carries (a link from another site with another state touches none).
 *
 * The cookie's name is the associated data of the seal, so a sealed login moved under another name does not open;
 * the state inside is compared with the callback's as well. Opening is bounded: a value longer than a cookie can be,
 * or not of the sealed shape, is refused before any decryption.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { base64url } from "./protocol.js"

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** What a login in progress holds. Its secrets are `Redacted`, so it prints none of them. */
export class PendingLogin extends Schema.Class<PendingLogin>("@effect-token/session/PendingLogin")({
  state: Schema.Redacted(Schema.String),
  nonce: Schema.Redacted(Schema.String),
  codeVerifier: Schema.Redacted(Schema.String),
  /** A same-origin path, already checked. */
  returnTo: Schema.String,
  /** When `/login` ran, epoch milliseconds (the application's clock). */
  createdAt: Schema.Number,
  /** The DPoP private key (a JWK as JSON) the login's `dpop_jkt` names; the session keeps it. */
  dpopKey: Schema.OptionFromNullOr(Schema.Redacted(Schema.String))
}) {}

/** The sealed form: short field names, since it travels in a cookie. */
const Sealed = Schema.parseJson(Schema.Struct({
  s: Schema.String,
  n: Schema.String,
  v: Schema.String,
  r: Schema.String,
  t: Schema.Number,
  k: Schema.NullOr(Schema.String)
}))

/** The most a browser keeps for one cookie (name and value, RFC 6265 §6.1); a seal that would not fit is refused. */
export const maxCookieBytes = 4096

/** Derives the sealing key from the application's secret (HKDF-SHA-256), one key per purpose and version. */
export const deriveKey = (secret: Redacted.Redacted<Uint8Array<ArrayBuffer>>): Effect.Effect<CryptoKey> =>
  Effect.promise(async () => {
    const material = await crypto.subtle.importKey("raw", Redacted.value(secret), "HKDF", false, ["deriveKey"])
    return crypto.subtle.deriveKey(
      {
        name: "HKDF",
        hash: "SHA-256",
        salt: encoder.encode("effect-token/session"),
        info: encoder.encode("login cookie v1 (AES-256-GCM)")
      },
      material,
      { name: "AES-GCM", length: 256 },
      false,
      ["encrypt", "decrypt"]
    )
  })

/**
 * The cookie of the login whose `state` this is: `<prefix>-` and 22 characters of the state's SHA-256. The state is
 * in the callback's URL, so the callback finds its own cookie without trying the others.
 */
export const cookieName = (prefix: string, state: string): Effect.Effect<string> =>
  Effect.map(
    Effect.promise(() => crypto.subtle.digest("SHA-256", encoder.encode(`login-cookie:${state}`))),
    (digest) => `${prefix}-${base64url(new Uint8Array(digest)).slice(0, 22)}`
  )

/** Whether a cookie name is one of this prefix's login cookies (its form, not whether it opens). */
export const isLoginCookie = (prefix: string, name: string): boolean =>
  name.length === prefix.length + 23 && name.startsWith(`${prefix}-`) &&
  /^[A-Za-z0-9_-]{22}$/.test(name.slice(prefix.length + 1))

/** `v1.<iv>.<ciphertext>`, both base64url; anything else is not opened. */
const sealedShape = /^v1\.([A-Za-z0-9_-]{16})\.([A-Za-z0-9_-]{22,4000})$/

const fromBase64url = (text: string): Uint8Array<ArrayBuffer> => {
  const binary = atob(text.replace(/-/g, "+").replace(/_/g, "/"))
  const bytes = new Uint8Array(binary.length)
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i)
  return bytes
}

/** Seals `login` for the cookie `name`: `v1.<iv>.<ciphertext>`, the name as associated data. */
export const seal = (key: CryptoKey, name: string, login: PendingLogin): Effect.Effect<string> =>
  Effect.gen(function*() {
    const plaintext = Schema.encodeSync(Sealed)({
      s: Redacted.value(login.state),
      n: Redacted.value(login.nonce),
      v: Redacted.value(login.codeVerifier),
      r: login.returnTo,
      t: login.createdAt,
      k: Option.getOrNull(Option.map(login.dpopKey, Redacted.value))
    })
    const iv = crypto.getRandomValues(new Uint8Array(12))
    const ciphertext = yield* Effect.promise(() =>
      crypto.subtle.encrypt(
        { name: "AES-GCM", iv, additionalData: encoder.encode(name) },
        key,
        encoder.encode(plaintext)
      )
    )
    return `v1.${base64url(iv)}.${base64url(new Uint8Array(ciphertext))}`
  })

/** The login sealed in `value` for the cookie `name`, or `None` when it is not one this key sealed for that name. */
export const open = (key: CryptoKey, name: string, value: string): Effect.Effect<Option.Option<PendingLogin>> => {
  const match = value.length <= maxCookieBytes ? sealedShape.exec(value) : null
  if (match === null) return Effect.succeed(Option.none())
  // Any failure (not base64url, a wrong key or name, tampered bytes) means the same: not a login of ours.
  return Effect.tryPromise(() =>
    crypto.subtle.decrypt(
      { name: "AES-GCM", iv: fromBase64url(match[1]!), additionalData: encoder.encode(name) },
      key,
      fromBase64url(match[2]!)
    )
  ).pipe(
    Effect.option,
    Effect.map(Option.map((plaintext) => decoder.decode(plaintext))),
    Effect.map(Option.flatMap((json) => Option.getRight(Schema.decodeEither(Sealed)(json)))),
    Effect.map(Option.map((sealed) =>
      PendingLogin.make({
        state: Redacted.make(sealed.s),
        nonce: Redacted.make(sealed.n),
        codeVerifier: Redacted.make(sealed.v),
        returnTo: sealed.r,
        createdAt: sealed.t,
        dpopKey: Option.map(Option.fromNullable(sealed.k), Redacted.make)
      })
    ))
  )
}
