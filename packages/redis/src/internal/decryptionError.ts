/*
 * `KeyRing.DecryptionError` and its reasons, in a module of their own: `internal/keyRing.ts` raises them without
 * importing the public module.
 */
import * as Schema from "effect/Schema"

const kid = Schema.optional(Schema.String)

/**
 * Not an envelope this ring writes (another format or version, a truncated value).
 *
 * @example
 * ```ts
 * import { KeyRing } from "@effect-token/redis"
 *
 * const reason = new KeyRing.Malformed({})
 * ```
 *
 * @since 0.3.0
 * @category reasons
 */
export class Malformed extends Schema.TaggedError<Malformed>("@effect-token/redis/DecryptionError/Malformed")(
  "Malformed",
  { kid }
) {
  override get message(): string {
    return "not an envelope this key ring writes"
  }
}

/**
 * Written with a key this ring does not hold (a ring behind in a rolling key rotation, a wrong ring).
 *
 * @example
 * ```ts
 * import { KeyRing } from "@effect-token/redis"
 *
 * const reason = new KeyRing.UnknownKey({ kid: "2026-12" })
 * ```
 *
 * @since 0.3.0
 * @category reasons
 */
export class UnknownKey extends Schema.TaggedError<UnknownKey>("@effect-token/redis/DecryptionError/UnknownKey")(
  "UnknownKey",
  { kid: Schema.String }
) {
  override get message(): string {
    return `no key with id ${this.kid} in this ring`
  }
}

/**
 * The key is known but the value does not authenticate: tampered with, or moved to another storage key (the storage
 * key is authenticated as associated data).
 *
 * @example
 * ```ts
 * import { KeyRing } from "@effect-token/redis"
 *
 * const reason = new KeyRing.Rejected({ kid: "2026-12" })
 * ```
 *
 * @since 0.3.0
 * @category reasons
 */
export class Rejected extends Schema.TaggedError<Rejected>("@effect-token/redis/DecryptionError/Rejected")(
  "Rejected",
  { kid: Schema.String }
) {
  override get message(): string {
    return `the value does not authenticate under key ${this.kid} (tampered with, or stored under another key)`
  }
}

/**
 * @since 0.3.0
 * @category reasons
 */
export const DecryptionErrorReason = Schema.Union(Malformed, UnknownKey, Rejected)

/**
 * @since 0.3.0
 * @category reasons
 */
export type DecryptionErrorReason = typeof DecryptionErrorReason.Type

/**
 * A value that cannot be decrypted, and why (a tagged reason: `Malformed`, `UnknownKey`, `Rejected`).
 *
 * @example
 * ```ts
 * import { KeyRing } from "@effect-token/redis"
 * import { Effect } from "effect"
 *
 * declare const ring: KeyRing.KeyRing
 * const plain = ring.decrypt("v1.k1.x.y", "storage-key").pipe(
 *   Effect.catchTag("DecryptionError", (e) => Effect.succeed(`unreadable: ${e.reason._tag}`))
 * )
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class DecryptionError extends Schema.TaggedError<DecryptionError>("@effect-token/redis/DecryptionError")(
  "DecryptionError",
  { reason: DecryptionErrorReason }
) {
  /**
   * @since 0.1.0
   */
  override get message(): string {
    return `cannot decrypt a stored value (${this.reason._tag}): ${this.reason.message}`
  }
}
