/**
 * The keys that encrypt shared tokens at rest: AES-GCM (Web Crypto, no Node-only APIs), a ring of keys named by a
 * key id so that keys can rotate. New values are encrypted with the current (first) key; a value is decrypted with
 * whichever key of the ring its key id names.
 *
 * Rotation without a gap: add the new key second on every instance (`old:...,new:...`), then make it first
 * (`new:...,old:...`), then drop the old one once the tokens it encrypted have expired.
 *
 * @since 0.1.0
 */
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Encoding from "effect/Encoding"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { DecryptionError, DecryptionErrorReason, Malformed, Rejected, UnknownKey } from "./internal/decryptionError.js"
import * as internal from "./internal/keyRing.js"

/**
 * The error and its reasons: see `internal/decryptionError.ts` (a module of its own, so that the implementation
 * raises them without importing this public module at run time).
 *
 * @since 0.1.0
 * @category errors
 */
export { DecryptionError, DecryptionErrorReason, Malformed, Rejected, UnknownKey }

/**
 * @example
 * ```ts
 * import { KeyRing } from "@effect-token/redis"
 * import { Effect } from "effect"
 *
 * declare const ring: KeyRing.KeyRing
 * const roundTrip = Effect.gen(function*() {
 *   const sealed = yield* ring.encrypt("secret", "{app:id}:token")
 *   return yield* ring.decrypt(sealed, "{app:id}:token") // "secret"
 * })
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface KeyRing {
  /** The key id new values are encrypted with. */
  readonly currentKid: string
  /** Every key id of the ring, current first. */
  readonly kids: ReadonlyArray<string>
  /**
   * Encrypts with the current key; `associatedData` is authenticated but not stored (use the storage key, so that a
   * value copied to another key does not decrypt). The result names its key id and is ASCII.
   */
  readonly encrypt: (plaintext: string, associatedData: string) => Effect.Effect<string>
  readonly decrypt: (envelope: string, associatedData: string) => Effect.Effect<string, DecryptionError>
  /**
   * A keyed fingerprint (HMAC-SHA-256 under a key derived from each ring key) of a secret bound to
   * `associatedData`, once per ring key, current first: it identifies a token without revealing it, and a match
   * against any of them survives a rotation.
   */
  readonly fingerprints: (secret: string, associatedData: string) => Effect.Effect<ReadonlyArray<string>>
}

/**
 * @example
 * ```ts
 * import { KeyRing } from "@effect-token/redis"
 * import { Effect } from "effect"
 *
 * const currentKid = Effect.map(KeyRing.KeyRing, (ring) => ring.currentKid)
 * ```
 *
 * @since 0.1.0
 * @category tags
 */
export const KeyRing: Context.Tag<KeyRing, KeyRing> = Context.GenericTag<KeyRing>("@effect-token/redis/KeyRing")

/**
 * One key of a ring: its id (letters, digits, `_`, `-`; at most 32) and 16 or 32 raw bytes (AES-128 or AES-256).
 *
 * @example
 * ```ts
 * import type { KeyRing } from "@effect-token/redis"
 * import { Redacted } from "effect"
 *
 * const key: KeyRing.Key = { kid: "2026-10", key: Redacted.make(crypto.getRandomValues(new Uint8Array(32))) }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Key {
  readonly kid: string
  readonly key: Redacted.Redacted<Uint8Array>
}

/**
 * A ring from keys, current first. The keys are imported non-extractable.
 *
 * @example
 * ```ts
 * import { KeyRing } from "@effect-token/redis"
 * import { Effect, Redacted } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const ring = yield* KeyRing.make([{ kid: "2026-10", key: Redacted.make(crypto.getRandomValues(new Uint8Array(32))) }])
 *   const sealed = yield* ring.encrypt("secret", "storage-key")
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: (keys: ReadonlyArray<Key>) => Effect.Effect<KeyRing> = internal.make

/**
 * Parses `kid1:base64key,kid2:base64key` (current first; standard or URL-safe Base64 of 16 or 32 bytes).
 *
 * @example
 * ```ts
 * import { KeyRing } from "@effect-token/redis"
 * import { Either, Redacted } from "effect"
 *
 * const keys = KeyRing.parse(Redacted.make("k2:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=,k1:AAAAAAAAAAAAAAAAAAAAAA=="))
 * Either.isRight(keys) // true
 * ```
 *
 * @since 0.1.0
 * @category parsing
 */
export const parse = (spec: Redacted.Redacted<string>): Either.Either<ReadonlyArray<Key>, string> => {
  const entries = Redacted.value(spec).split(",").map((entry) => entry.trim()).filter((entry) => entry.length > 0)
  if (entries.length === 0) return Either.left("no keys")
  const keys: Array<Key> = []
  for (const [index, entry] of entries.entries()) {
    const colon = entry.indexOf(":")
    // Messages name the entry's position and key id only: never a key.
    if (colon < 0) return Either.left(`entry ${index + 1} is not kid:base64key`)
    const kid = entry.slice(0, colon)
    if (!internal.kidPattern.test(kid)) return Either.left(`entry ${index + 1}: invalid key id`)
    if (keys.some((key) => key.kid === kid)) return Either.left(`key id ${kid} appears twice`)
    const raw = entry.slice(colon + 1).replace(/-/g, "+").replace(/_/g, "/")
    const bytes = Encoding.decodeBase64(raw)
    if (Either.isLeft(bytes)) return Either.left(`key ${kid} is not Base64`)
    if (bytes.right.length !== 16 && bytes.right.length !== 32) {
      return Either.left(`key ${kid} has ${bytes.right.length} bytes; AES-GCM needs 16 or 32`)
    }
    keys.push({ kid, key: Redacted.make(bytes.right) })
  }
  return Either.right(keys)
}

/**
 * The keys from `REDIS_TOKEN_KEYS` (see {@link parse}), read as `Redacted`.
 *
 * @example
 * ```ts
 * import { KeyRing } from "@effect-token/redis"
 * import { Config, Effect } from "effect"
 *
 * const ring = Effect.flatMap(KeyRing.keysConfig, KeyRing.make)
 * ```
 *
 * @since 0.1.0
 * @category config
 */
export const keysConfig: Config.Config<ReadonlyArray<Key>> = Config.redacted("REDIS_TOKEN_KEYS").pipe(
  Config.mapOrFail((spec) =>
    Either.mapLeft(parse(spec), (message) => ConfigError.InvalidData(["REDIS_TOKEN_KEYS"], message))
  )
)

/**
 * A ring from configuration (`REDIS_TOKEN_KEYS`).
 *
 * @example
 * ```ts
 * import { KeyRing } from "@effect-token/redis"
 *
 * const KeyRingLive = KeyRing.layerConfig()
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config<ReadonlyArray<Key>> = keysConfig
): Layer.Layer<KeyRing, ConfigError.ConfigError> => Layer.effect(KeyRing, Effect.flatMap(config, make))

/**
 * A new random 256-bit key under `kid`: a {@link Key}, as {@link make} takes it. {@link format} writes keys as
 * `REDIS_TOKEN_KEYS` holds them. An invalid key id (see {@link parse}) is a defect.
 *
 * @example
 * ```ts
 * import { KeyRing } from "@effect-token/redis"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const key = yield* KeyRing.generateKey("2026-10")
 *   const ring = yield* KeyRing.make([key])
 *   const spec = KeyRing.format([key]) // Redacted: "2026-10:<Base64>", for REDIS_TOKEN_KEYS
 * })
 * ```
 *
 * @since 0.3.0
 * @category constructors
 */
export const generateKey = (kid: string): Effect.Effect<Key> =>
  internal.kidPattern.test(kid)
    ? Effect.sync(() => ({ kid, key: Redacted.make(globalThis.crypto.getRandomValues(new Uint8Array(32))) }))
    : Effect.dieMessage(`KeyRing.generateKey: invalid key id ${JSON.stringify(kid)}`)

/**
 * Keys as `REDIS_TOKEN_KEYS` holds them (`kid:base64key,...`, current first): what {@link parse} reads back.
 *
 * @example
 * ```ts
 * import { KeyRing } from "@effect-token/redis"
 * import { Effect, Redacted } from "effect"
 *
 * const spec = Effect.map(KeyRing.generateKey("2026-10"), (key) => KeyRing.format([key]))
 * ```
 *
 * @since 0.3.0
 * @category parsing
 */
export const format = (keys: ReadonlyArray<Key>): Redacted.Redacted<string> =>
  Redacted.make(keys.map(({ key, kid }) => `${kid}:${Encoding.encodeBase64(Redacted.value(key))}`).join(","))
