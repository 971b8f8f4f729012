/*
 * DPoP (RFC 9449) protocol detail: proof claims as pure functions, the key object (whose private half is held in a
 * closure so no printing or serialization reaches it), the per-origin nonce memory, and the challenge tests the
 * token endpoint and the authenticated client share.
 */
import * as Headers from "@effect/platform/Headers"
import * as Effect from "effect/Effect"
import * as Inspectable from "effect/Inspectable"
import * as Redacted from "effect/Redacted"
import type * as jose from "jose"
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, SignJWT } from "jose"
import type { DPoPKey } from "../DPoP.js"
import { Misconfigured, TokenError } from "../TokenError.js"
import * as WwwAuthenticate from "../WwwAuthenticate.js"

export const TypeId: unique symbol = Symbol.for("@effect-token/core/DPoP/DPoPKey")
export type TypeId = typeof TypeId

/** The asymmetric JWS algorithms a DPoP key may use (RFC 9449 §4.2: no `none`, no MAC). */
export const algorithms = [
  "ES256",
  "ES384",
  "ES512",
  "PS256",
  "PS384",
  "PS512",
  "RS256",
  "RS384",
  "RS512",
  "EdDSA",
  "Ed25519"
] as const

/** The private members a JWK may carry: none of them may reach a proof header or a printout. */
const privateMembers = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] as const

/** The public half of a JWK: only the members that describe the public key. */
export const publicPart = (jwk: jose.JWK): jose.JWK => {
  const out: Record<string, unknown> = {}
  for (const [name, value] of Object.entries(jwk)) {
    if ((privateMembers as ReadonlyArray<string>).includes(name)) continue
    if (name === "key_ops" || name === "ext" || name === "use" || name === "alg" || name === "kid") continue
    out[name] = value
  }
  return out as jose.JWK
}

/**
 * RFC 9449 §4.2 `htu`: the request URL without query and fragment. Parsing also normalizes what a server compares
 * after its own parse (scheme and host case, default port, dot segments).
 */
export const htu = (url: string): string => {
  const parsed = new URL(url)
  parsed.search = ""
  parsed.hash = ""
  // Userinfo is not part of the target URI (RFC 9110 §4.2.4), and a proof is logged by servers: never a password.
  parsed.username = ""
  parsed.password = ""
  return parsed.href
}

/** The origin of `url`, the unit nonces are kept by (RFC 9449 §8: a nonce is the server's). */
export const originOf = (url: string): string | undefined => URL.canParse(url) ? new URL(url).origin : undefined

const base64url = (bytes: Uint8Array): string => {
  let binary = ""
  for (let i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]!)
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "")
}

/** RFC 9449 §4.2 `ath`: base64url of the SHA-256 of the access token's ASCII bytes. */
export const ath = (accessToken: string): Effect.Effect<string> =>
  Effect.promise(() => globalThis.crypto.subtle.digest("SHA-256", new TextEncoder().encode(accessToken))).pipe(
    Effect.map((digest) => base64url(new Uint8Array(digest)))
  )

/** What one proof is for. */
export interface ProofInput {
  readonly method: string
  readonly url: string
  /** The access token the request carries (resource requests only): gives `ath`. */
  readonly accessToken?: string | undefined
  readonly nonce?: string | undefined
}

/** The claims of one proof: pure, so they can be tested without signing. */
export const proofClaims = (
  input: ProofInput & { readonly jti: string; readonly iat: number; readonly ath?: string | undefined }
): jose.JWTPayload => {
  const claims: Record<string, unknown> = {
    jti: input.jti,
    htm: input.method.toUpperCase(),
    htu: htu(input.url),
    iat: input.iat
  }
  if (input.ath !== undefined) claims.ath = input.ath
  if (input.nonce !== undefined) claims.nonce = input.nonce
  return claims
}

/** The protected header of a proof: `typ`, `alg` and the public key only. */
export const proofHeader = (algorithm: string, publicJwk: jose.JWK): jose.JWTHeaderParameters => ({
  typ: "dpop+jwt",
  alg: algorithm,
  jwk: publicPart(publicJwk)
})

/** The most origins whose nonce is remembered: a client talks to a handful of servers. */
export const maxNonces = 64

/** Per-origin nonces, least recently updated dropped first (a `Map` keeps insertion order). */
export class Nonces {
  private readonly map = new Map<string, string>()
  constructor(private readonly capacity: number = maxNonces) {}
  get(origin: string): string | undefined {
    return this.map.get(origin)
  }
  set(origin: string, nonce: string): void {
    this.map.delete(origin)
    this.map.set(origin, nonce)
    if (this.map.size > this.capacity) this.map.delete(this.map.keys().next().value!)
  }
  get size(): number {
    return this.map.size
  }
}

/**
 * RFC 9449 §8: a nonce is a non-empty `NQCHAR` string. Anything else from a server is ignored rather than echoed
 * into a signed proof.
 */
export const isNonce = (value: unknown): value is string =>
  typeof value === "string" && value.length > 0 && value.length <= 1024 && /^[\x21\x23-\x5B\x5D-\x7E]+$/.test(value)

/** Remembers the server's `DPoP-Nonce`, if the answer has one; returns whether it did. */
export const rememberNonce = (
  key: DPoPKey,
  url: string,
  headers: Readonly<Record<string, string | undefined>>
): boolean => {
  const nonce = headers["dpop-nonce"]
  const origin = originOf(url)
  if (origin === undefined || !isNonce(nonce)) return false
  key.nonces.set(origin, nonce)
  return true
}

/** RFC 9449 §9: a resource server's 401 asking for a nonce. */
export const isResourceNonceChallenge = (headers: Readonly<Record<string, string | undefined>>): boolean =>
  WwwAuthenticate.parse(headers["www-authenticate"] ?? "").some((challenge) =>
    challenge.scheme.toLowerCase() === "dpop" && challenge.params["error"] === "use_dpop_nonce"
  )

/** RFC 9449 §8: the authorization server's 400 `use_dpop_nonce`. */
export const isServerNonceChallenge = (status: number, body: unknown): boolean =>
  status === 400 && typeof body === "object" && body !== null &&
  (body as Record<string, unknown>).error === "use_dpop_nonce"

const misconfigured = (description: string) =>
  new TokenError({ operation: "DPoP key", reason: new Misconfigured({ description }) })

const describe = (cause: unknown): string => cause instanceof Error ? cause.message : "unknown error"

/** Builds the key object around a private `CryptoKey`. The private key lives only in this closure. */
export const fromKeys = (
  algorithm: string,
  privateKey: jose.CryptoKey,
  publicKey: jose.CryptoKey
): Effect.Effect<DPoPKey, TokenError> =>
  Effect.tryPromise({
    try: async () => {
      const publicJwk = publicPart(await exportJWK(publicKey))
      const thumbprint = await calculateJwkThumbprint(publicJwk, "sha256")
      return { publicJwk, thumbprint }
    },
    catch: (cause) => misconfigured(`cannot export the public key: ${describe(cause)}`)
  }).pipe(Effect.map(({ publicJwk, thumbprint }) => makeKey(algorithm, privateKey, publicJwk, thumbprint)))

const makeKey = (
  algorithm: string,
  privateKey: jose.CryptoKey,
  publicJwk: jose.JWK,
  thumbprint: string
): DPoPKey => {
  const header = proofHeader(algorithm, publicJwk)
  const nonces = new Nonces()
  const sign = (claims: jose.JWTPayload): Effect.Effect<string> =>
    // A key that was imported for signing signs; a failure here is a defect of the runtime, not of the request.
    Effect.promise(() => new SignJWT(claims).setProtectedHeader(header).sign(privateKey))
  const exportPrivate = Effect.tryPromise({
    try: () => exportJWK(privateKey),
    catch: (cause) =>
      misconfigured(`the private key cannot be exported (generate it with extractable: true): ${describe(cause)}`)
  }).pipe(Effect.map((jwk) => Redacted.make<jose.JWK>({ ...jwk, alg: algorithm })))
  const shown = () => ({ _id: "DPoPKey", algorithm, thumbprint })
  return {
    [TypeId]: TypeId,
    algorithm,
    publicJwk,
    thumbprint,
    nonces,
    sign,
    exportPrivateJwk: exportPrivate,
    toJSON: shown,
    toString: () => Inspectable.format(shown()),
    [Inspectable.NodeInspectSymbol]: shown
  } as DPoPKey
}

export const generate = (
  algorithm: string,
  extractable: boolean
): Effect.Effect<DPoPKey, TokenError> =>
  Effect.tryPromise({
    try: () => generateKeyPair(algorithm, { extractable }),
    catch: (cause) => misconfigured(`cannot generate a ${algorithm} key pair: ${describe(cause)}`)
  }).pipe(Effect.flatMap(({ privateKey, publicKey }) => fromKeys(algorithm, privateKey, publicKey)))

/** Imports a private JWK (its public half is derived from it). */
export const fromPrivateJwk = (
  jwk: Redacted.Redacted<jose.JWK>,
  algorithm: string | undefined,
  extractable: boolean
): Effect.Effect<DPoPKey, TokenError> => {
  const value = Redacted.value(jwk)
  const alg = algorithm ?? value.alg
  if (alg === undefined || !(algorithms as ReadonlyArray<string>).includes(alg)) {
    return Effect.fail(misconfigured("the DPoP key needs an asymmetric JWS algorithm (alg)"))
  }
  if (value.d === undefined) return Effect.fail(misconfigured("the DPoP key JWK has no private part"))
  return Effect.tryPromise({
    try: async () => {
      const privateKey = await importJWK({ ...value, ext: extractable }, alg) as jose.CryptoKey
      const publicJwk = publicPart(value)
      const thumbprint = await calculateJwkThumbprint(publicJwk, "sha256")
      return { privateKey, publicJwk, thumbprint }
    },
    // jose's messages name the algorithm or key type, never key material.
    catch: (cause) => misconfigured(`cannot import the DPoP key: ${describe(cause)}`)
  }).pipe(
    Effect.map(({ privateKey, publicJwk, thumbprint }) => makeKey(alg, privateKey, publicJwk, thumbprint))
  )
}

/** Signs a fresh proof (new `jti`, current `iat`) for one request, with the remembered nonce of its origin. */
export const proof = (
  key: DPoPKey,
  input: ProofInput,
  nowMillis: number
): Effect.Effect<string> =>
  input.accessToken === undefined
    ? signed(key, input, undefined, nowMillis)
    : Effect.flatMap(ath(input.accessToken), (value) => signed(key, input, value, nowMillis))

/** A proof whose `ath` is already known (the client hashes each token once, not once per request). */
export const signed = (
  key: DPoPKey,
  input: ProofInput,
  athValue: string | undefined,
  nowMillis: number
): Effect.Effect<string> => {
  const origin = originOf(input.url)
  const nonce = input.nonce ?? (origin === undefined ? undefined : key.nonces.get(origin))
  return key.sign(proofClaims({
    ...input,
    nonce,
    jti: globalThis.crypto.randomUUID(),
    iat: Math.floor(nowMillis / 1000),
    ath: athValue
  }))
}

/** `ath` of the last token seen: a cached token is sent many times, and its hash never changes. */
export const athMemo = (): (accessToken: string) => Effect.Effect<string> => {
  let last: readonly [string, string] | undefined
  return (accessToken) =>
    last !== undefined && last[0] === accessToken
      ? Effect.succeed(last[1])
      : Effect.map(ath(accessToken), (value) => {
        last = [accessToken, value]
        return value
      })
}

const withProofName = (names: ReadonlyArray<string | RegExp>): ReadonlyArray<string | RegExp> =>
  names.includes("dpop") ? names : [...names, "dpop"]

/**
 * Runs `effect`, a request that carries a proof, with `dpop` among the header names platform redacts
 * (`Headers.currentRedactedNames`): its `http.client` span records every request header, and a proof is a signed
 * credential for a minute, as the `Authorization` header next to it is. Only proof-carrying requests pay for it.
 */
export const redactingProof = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.locallyWith(effect, Headers.currentRedactedNames, withProofName)

/** Whether `u` is a DPoP key. */
export const isKey = (u: unknown): u is DPoPKey => typeof u === "object" && u !== null && TypeId in u
