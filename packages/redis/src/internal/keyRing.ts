import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Encoding from "effect/Encoding"
import * as Redacted from "effect/Redacted"
import type { Key, KeyRing } from "../KeyRing.js"
import { DecryptionError, Malformed, Rejected, UnknownKey } from "./decryptionError.js"

export const kidPattern = /^[A-Za-z0-9_-]{1,32}$/

const subtle = () => globalThis.crypto.subtle
const utf8 = new TextEncoder()
const fromUtf8 = new TextDecoder("utf-8", { fatal: true })

// Envelope: `v1.<kid>.<iv>.<ciphertext+tag>`, Base64url without padding. ASCII, so Redis and logs see no binary.
const version = "v1"
const ivLength = 12

// The fingerprint key is derived, not the AES key itself: one key, one purpose.
const fingerprintInfo = utf8.encode("effect-token/redis token fingerprint v1")

/** Web Crypto wants bytes over a plain ArrayBuffer; decoders may hand out views of anything. */
const owned = (bytes: Uint8Array): Uint8Array<ArrayBuffer> => new Uint8Array(bytes)

interface Imported {
  readonly kid: string
  readonly aes: CryptoKey
  readonly hmac: CryptoKey
}

const importKey = (key: Key): Effect.Effect<Imported> =>
  Effect.promise(async () => {
    const raw = owned(Redacted.value(key.key))
    const aes = await subtle().importKey("raw", raw, { name: "AES-GCM" }, false, ["encrypt", "decrypt"])
    const hkdf = await subtle().importKey("raw", raw, "HKDF", false, ["deriveKey"])
    const hmac = await subtle().deriveKey(
      { name: "HKDF", hash: "SHA-256", salt: new Uint8Array(0), info: fingerprintInfo },
      hkdf,
      { name: "HMAC", hash: "SHA-256", length: 256 },
      false,
      ["sign"]
    )
    return { kid: key.kid, aes, hmac }
  })

export const make = (keys: ReadonlyArray<Key>): Effect.Effect<KeyRing> =>
  Effect.gen(function*() {
    if (keys.length === 0) return yield* Effect.dieMessage("a key ring needs at least one key")
    for (const key of keys) {
      if (!kidPattern.test(key.kid)) return yield* Effect.dieMessage("invalid key id in key ring")
      const length = Redacted.value(key.key).length
      if (length !== 16 && length !== 32) {
        return yield* Effect.dieMessage(`key ${key.kid}: AES-GCM needs 16 or 32 bytes`)
      }
    }
    const imported = yield* Effect.forEach(keys, importKey)
    const current = imported[0]!
    const byKid = new Map(imported.map((key) => [key.kid, key]))

    const encrypt = (plaintext: string, associatedData: string) =>
      Effect.promise(async () => {
        const iv = globalThis.crypto.getRandomValues(new Uint8Array(ivLength))
        const sealed = await subtle().encrypt(
          { name: "AES-GCM", iv, additionalData: utf8.encode(associatedData), tagLength: 128 },
          current.aes,
          utf8.encode(plaintext)
        )
        return [version, current.kid, Encoding.encodeBase64Url(iv), Encoding.encodeBase64Url(new Uint8Array(sealed))]
          .join(".")
      })

    const decrypt = (envelope: string, associatedData: string): Effect.Effect<string, DecryptionError> => {
      const parts = envelope.split(".")
      if (parts.length !== 4 || parts[0] !== version) {
        return Effect.fail(new DecryptionError({ reason: new Malformed({}) }))
      }
      const kid = parts[1]!
      const key = byKid.get(kid)
      if (key === undefined) return Effect.fail(new DecryptionError({ reason: new UnknownKey({ kid }) }))
      const iv = Encoding.decodeBase64Url(parts[2]!)
      const sealed = Encoding.decodeBase64Url(parts[3]!)
      if (Either.isLeft(iv) || Either.isLeft(sealed) || iv.right.length !== ivLength) {
        return Effect.fail(new DecryptionError({ reason: new Malformed({ kid }) }))
      }
      return Effect.tryPromise({
        try: async () =>
          fromUtf8.decode(
            await subtle().decrypt(
              { name: "AES-GCM", iv: owned(iv.right), additionalData: utf8.encode(associatedData), tagLength: 128 },
              key.aes,
              owned(sealed.right)
            )
          ),
        // Wrong key, tampered bytes and another storage key all look the same to AES-GCM: authentication failed.
        catch: () => new DecryptionError({ reason: new Rejected({ kid }) })
      })
    }

    const fingerprints = (secret: string, associatedData: string) =>
      Effect.promise(() => {
        // Length-prefixed, so that no (associatedData, secret) pair can spell another's input.
        const data = utf8.encode(`${associatedData.length}:${associatedData}:${secret}`)
        return Promise.all(
          imported.map(async (key) =>
            Encoding.encodeBase64Url(new Uint8Array(await subtle().sign("HMAC", key.hmac, data)))
          )
        )
      })

    return {
      currentKid: current.kid,
      kids: imported.map((key) => key.kid),
      encrypt,
      decrypt,
      fingerprints
    } satisfies KeyRing
  })
