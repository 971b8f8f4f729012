/**
 * DPoP (RFC 9449): sender-constrained access tokens. A `DPoPKey` is a key pair held by this client; every request
 * to the token endpoint and every request carrying a DPoP token goes with a fresh proof signed by it, so a stolen
 * token is useless without the key.
 *
 * Turn it on by giving a grant `dpop: key`: its token requests then send proofs and require `token_type: DPoP`, and
 * the key travels with its source (`TokenSource.dpop`), its `TokenCache` and a `TokenManager.fromShapes` over it, so
 * an `AuthHttpClient` over those sends `Authorization: DPoP <token>` with a proof carrying `ath` without being given
 * the key again. The one-layer set-up does it all with `dpop: true` or `DPOP=true`. A key lives as long as the
 * tokens bound to it: a grant's key (and so its cache key) names the key's thumbprint, so a new key means new tokens.
 *
 * @since 0.2.0
 */
import * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Redacted from "effect/Redacted"
import type * as jose from "jose"
import * as internal from "./internal/dpop.js"
import type { TokenError } from "./TokenError.js"

/**
 * The asymmetric JWS algorithms a DPoP key may use.
 *
 * @since 0.2.0
 * @category models
 */
export type Algorithm = typeof internal.algorithms[number]

/**
 * A DPoP key pair. Its private key never leaves it: printing, logging or `JSON.stringify` show the algorithm and
 * thumbprint only, and the only way out is {@link exportPrivateJwk} (a `Redacted`), for a store that keeps a
 * session's key encrypted.
 *
 * @example
 * ```ts
 * import { DPoP } from "@effect-token/core"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const key = yield* DPoP.generate()
 *   return key.thumbprint // RFC 7638 SHA-256 thumbprint: the token's cnf.jkt
 * })
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface DPoPKey {
  readonly [internal.TypeId]: internal.TypeId
  readonly algorithm: string
  /** The public key, as the `jwk` header of every proof. */
  readonly publicJwk: jose.JWK
  /** The RFC 7638 SHA-256 thumbprint of the public key (`cnf.jkt` of bound tokens, `dpop_jkt` of a login). */
  readonly thumbprint: string
  /** @internal the servers' latest nonces, by origin (bounded). */
  readonly nonces: internal.Nonces
  /** @internal signs a proof's claims. */
  readonly sign: (claims: jose.JWTPayload) => Effect.Effect<string>
  /** @internal */
  readonly exportPrivateJwk: Effect.Effect<Redacted.Redacted<jose.JWK>, TokenError>
}

/**
 * The application's DPoP key.
 *
 * @example
 * ```ts
 * import { DPoP } from "@effect-token/core"
 * import { Effect } from "effect"
 *
 * const thumbprint = Effect.map(DPoP.DPoPKey, (key) => key.thumbprint).pipe(Effect.provide(DPoP.layer()))
 * ```
 *
 * @since 0.2.0
 * @category tags
 */
export const DPoPKey: Context.Tag<DPoPKey, DPoPKey> = Context.GenericTag<DPoPKey>("@effect-token/core/DPoP/DPoPKey")

/**
 * Generates a key pair (ES256 by default). The private key is not extractable unless asked: only a key that must
 * outlive the process (a user session's, stored encrypted) needs `extractable: true`.
 *
 * @example
 * ```ts
 * import { DPoP } from "@effect-token/core"
 *
 * const es256 = DPoP.generate()
 * const ed25519 = DPoP.generate({ algorithm: "Ed25519" })
 * ```
 *
 * @since 0.2.0
 * @category constructors
 */
export const generate = (
  options: { readonly algorithm?: Algorithm | undefined; readonly extractable?: boolean | undefined } = {}
): Effect.Effect<DPoPKey, TokenError> => internal.generate(options.algorithm ?? "ES256", options.extractable === true)

/**
 * A key from a private JWK (the algorithm from `algorithm`, else the JWK's `alg`).
 *
 * @example
 * ```ts
 * import { DPoP } from "@effect-token/core"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const first = yield* DPoP.generate({ extractable: true })
 *   const again = yield* DPoP.fromPrivateJwk(yield* DPoP.exportPrivateJwk(first))
 *   return again.thumbprint === first.thumbprint // true
 * })
 * ```
 *
 * @since 0.2.0
 * @category constructors
 */
export const fromPrivateJwk = (
  jwk: Redacted.Redacted<jose.JWK>,
  options: { readonly algorithm?: Algorithm | undefined; readonly extractable?: boolean | undefined } = {}
): Effect.Effect<DPoPKey, TokenError> => internal.fromPrivateJwk(jwk, options.algorithm, options.extractable === true)

/**
 * A key from a key pair made elsewhere (a hardware-backed or non-extractable `CryptoKey`).
 *
 * @example
 * ```ts
 * import { DPoP } from "@effect-token/core"
 * import { Effect } from "effect"
 * import { generateKeyPair } from "jose"
 *
 * const program = Effect.gen(function*() {
 *   const pair = yield* Effect.promise(() => generateKeyPair("ES256"))
 *   return yield* DPoP.fromKeyPair({ algorithm: "ES256", ...pair })
 * })
 * ```
 *
 * @since 0.2.0
 * @category constructors
 */
export const fromKeyPair = (pair: {
  readonly algorithm: Algorithm
  readonly privateKey: jose.CryptoKey
  readonly publicKey: jose.CryptoKey
}): Effect.Effect<DPoPKey, TokenError> => internal.fromKeys(pair.algorithm, pair.privateKey, pair.publicKey)

/**
 * The private key as a JWK, `Redacted`: only for a store that keeps it encrypted. Fails for a key that is not
 * extractable.
 *
 * @example
 * ```ts
 * import { DPoP } from "@effect-token/core"
 * import { Effect } from "effect"
 *
 * const program = Effect.flatMap(DPoP.generate({ extractable: true }), DPoP.exportPrivateJwk)
 * ```
 *
 * @since 0.2.0
 * @category accessors
 */
export const exportPrivateJwk = (key: DPoPKey): Effect.Effect<Redacted.Redacted<jose.JWK>, TokenError> =>
  key.exportPrivateJwk

/**
 * What one proof is for: the request's method and URL, the access token it carries (resource requests, for
 * `ath`), and a nonce (default: the latest the URL's origin sent).
 *
 * @since 0.2.0
 * @category models
 */
export type ProofInput = internal.ProofInput

/**
 * Signs a fresh proof (`typ: dpop+jwt`, the public `jwk`; claims `jti`, `htm`, `htu`, `iat`, and `ath`, `nonce` when
 * they apply). Every call signs anew: a proof is never reused, retries included.
 *
 * @example
 * ```ts
 * import { DPoP } from "@effect-token/core"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const key = yield* DPoP.generate()
 *   return yield* DPoP.proof(key, { method: "GET", url: "https://api.example.com/orders?page=2", accessToken: "eyJ..." })
 * })
 * ```
 *
 * @since 0.2.0
 * @category proofs
 */
export const proof = (key: DPoPKey, input: ProofInput): Effect.Effect<string> =>
  Effect.flatMap(Clock.currentTimeMillis, (now) => internal.proof(key, input, now))

/**
 * RFC 9449 §4.2 `htu`: the URL without query and fragment, normalized as a URL parser does.
 *
 * @example
 * ```ts
 * import { DPoP } from "@effect-token/core"
 *
 * DPoP.htu("HTTPS://API.Example.com:443/a/../orders?page=2#top") // "https://api.example.com/orders"
 * ```
 *
 * @since 0.2.0
 * @category proofs
 */
export const htu: (url: string) => string = internal.htu

/**
 * RFC 9449 §4.2 `ath`: the base64url SHA-256 of the access token.
 *
 * @example
 * ```ts
 * import { DPoP } from "@effect-token/core"
 *
 * const hash = DPoP.ath("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU")
 * ```
 *
 * @since 0.2.0
 * @category proofs
 */
export const ath: (accessToken: string) => Effect.Effect<string> = internal.ath

/**
 * The claims of a proof, without signing: a pure function for tests and for servers of your own.
 *
 * @example
 * ```ts
 * import { DPoP } from "@effect-token/core"
 *
 * const claims = DPoP.proofClaims({ method: "post", url: "https://as.example/token", jti: "1", iat: 0 })
 * // { jti: "1", htm: "POST", htu: "https://as.example/token", iat: 0 }
 * ```
 *
 * @since 0.2.0
 * @category proofs
 */
export const proofClaims: (
  input: ProofInput & { readonly jti: string; readonly iat: number; readonly ath?: string | undefined }
) => jose.JWTPayload = internal.proofClaims

/**
 * Whether `u` is a {@link DPoPKey}.
 *
 * @example
 * ```ts
 * import { DPoP } from "@effect-token/core"
 *
 * DPoP.isDPoPKey({}) // false
 * ```
 *
 * @since 0.2.0
 * @category guards
 */
export const isDPoPKey: (u: unknown) => u is DPoPKey = internal.isKey

/**
 * Provides a key generated when the layer is built: one key per layer instance, as long-lived as the tokens bound
 * to it.
 *
 * @example
 * ```ts
 * import { DPoP } from "@effect-token/core"
 *
 * const KeyLive = DPoP.layer({ algorithm: "ES256" })
 * ```
 *
 * @since 0.2.0
 * @category layers
 */
export const layer = (
  options: { readonly algorithm?: Algorithm | undefined } = {}
): Layer.Layer<DPoPKey, TokenError> => Layer.effect(DPoPKey, generate(options))

/**
 * `DPOP` (boolean, default false): whether the one-layer set-up binds its tokens to a generated key.
 *
 * @example
 * ```ts
 * import { DPoP } from "@effect-token/core"
 * import { Config } from "effect"
 *
 * const billingDpop = Config.nested(DPoP.enabledConfig, "BILLING") // BILLING_DPOP
 * ```
 *
 * @since 0.2.0
 * @category config
 */
export const enabledConfig: Config.Config<boolean> = Config.withDefault(Config.boolean("DPOP"), false)
