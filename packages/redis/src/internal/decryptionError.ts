/*
 * `KeyRing.DecryptionError`, in a module of its own: `internal/keyRing.ts` raises it without importing the public module.
 */
import * as Schema from "effect/Schema"

/**
 * A value that cannot be decrypted: written with a key this ring does not hold, tampered with, or moved to another
 * storage key (the storage key is authenticated as associated data).
 *
 * @example
 * ```ts
 * import { KeyRing } from "@effect-token/redis"
 * import { Effect } from "effect"
 *
 * declare const ring: KeyRing.KeyRing
 * const plain = ring.decrypt("v1.k1.x.y", "storage-key").pipe(
 *   Effect.catchTag("DecryptionError", (e) => Effect.succeed(`unreadable: ${e.reason}`))
 * )
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class DecryptionError extends Schema.TaggedError<DecryptionError>("@effect-token/redis/DecryptionError")(
  "DecryptionError",
  {
    reason: Schema.Literal("Malformed", "UnknownKey", "Rejected"),
    /** The key id the value names, when it names one. */
    kid: Schema.optional(Schema.String)
  }
) {
  /**
   * @since 0.1.0
   */
  override get message(): string {
    return `cannot decrypt a stored value (${this.reason}${this.kid !== undefined ? `, key id ${this.kid}` : ""})`
  }
}
