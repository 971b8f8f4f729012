/*
 * RS256 compact JWS, signed and verified synchronously with node:crypto. The test servers answer in process under
 * `TestClock`: an asynchronous signature (WebCrypto runs it on the thread pool) is real time during which a test that
 * moves the clock along (`Advance.untilDone`) may move it, so that on a busy machine a short-lived token is already
 * expired when it arrives. A synchronous signature takes no real time as far as the fibers can see.
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import { KeyObject, sign, verify as verifySignature } from "node:crypto"

const keyObjects = new WeakMap<object, KeyObject>()

/** The `KeyObject` of a WebCrypto key, converted once. */
const keyObjectOf = (key: CryptoKey): KeyObject => {
  let keyObject = keyObjects.get(key)
  if (keyObject === undefined) {
    keyObject = KeyObject.from(key)
    keyObjects.set(key, keyObject)
  }
  return keyObject
}

const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url")

/** `header.payload.signature`, RS256 under `key`. */
export const signRs256 = (
  header: Record<string, string>,
  payload: Record<string, unknown>,
  key: CryptoKey
): Effect.Effect<string> =>
  Effect.sync(() => {
    const input = `${encode({ ...header, alg: "RS256" })}.${encode(payload)}`
    return `${input}.${sign("sha256", Buffer.from(input), keyObjectOf(key)).toString("base64url")}`
  })

/** Why a compact JWS is refused: not one at all, or its signature does not verify. */
export type JwsFailure = "Malformed" | "Signature"

const decodeJson = (part: string): unknown => {
  try {
    return JSON.parse(Buffer.from(part, "base64url").toString("utf8"))
  } catch {
    return undefined
  }
}

const isObject = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

/** The payload of an RS256 compact JWS whose signature verifies under `key`. */
export const verifyRs256 = (
  token: string,
  key: CryptoKey
): Either.Either<Record<string, unknown>, JwsFailure> => {
  const parts = token.split(".")
  if (parts.length !== 3) return Either.left("Malformed")
  const [header, payload, signature] = parts as [string, string, string]
  const decodedHeader = decodeJson(header)
  if (!isObject(decodedHeader) || decodedHeader.alg !== "RS256") return Either.left("Malformed")
  const decodedPayload = decodeJson(payload)
  if (!isObject(decodedPayload)) return Either.left("Malformed")
  const verified = verifySignature(
    "sha256",
    Buffer.from(`${header}.${payload}`),
    keyObjectOf(key),
    Buffer.from(signature, "base64url")
  )
  return verified ? Either.right(decodedPayload) : Either.left("Signature")
}
