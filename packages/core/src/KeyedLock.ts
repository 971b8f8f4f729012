/**
 * One lock per key, held only while someone holds or waits for it: the map keeps just the keys in use right now, so
 * any number of keys (sessions, subjects) costs nothing once their work is done. A store's `withLock` in this
 * process, in front of whatever lock it takes across processes.
 *
 * @since 0.2.0
 */
import * as Effect from "effect/Effect"

/**
 * @since 0.2.0
 * @category models
 */
export interface KeyedLock {
  /** Runs `effect` while holding `key`'s lock; callers of one key take turns, other keys run freely. */
  readonly withLock: (key: string) => <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** How many keys have a holder or a waiter now (for tests and diagnostics). */
  readonly size: () => number
}

interface Entry {
  readonly semaphore: Effect.Semaphore
  users: number
}

/**
 * @example
 * ```ts
 * import { KeyedLock } from "@effect-token/core"
 * import { Effect } from "effect"
 *
 * const locks = KeyedLock.make()
 * const program = locks.withLock("session-1")(Effect.succeed("refreshed"))
 * ```
 *
 * @since 0.2.0
 * @category constructors
 */
export const make = (): KeyedLock => {
  const entries = new Map<string, Entry>()
  const acquire = (key: string) =>
    Effect.sync(() => {
      let entry = entries.get(key)
      if (entry === undefined) {
        entry = { semaphore: Effect.unsafeMakeSemaphore(1), users: 0 }
        entries.set(key, entry)
      }
      entry.users++
      return entry
    })
  const release = (key: string) => (entry: Entry) =>
    Effect.sync(() => {
      entry.users--
      if (entry.users === 0 && entries.get(key) === entry) entries.delete(key)
    })
  return {
    withLock: (key) => (effect) =>
      Effect.acquireUseRelease(acquire(key), (entry) => entry.semaphore.withPermits(1)(effect), release(key)),
    size: () => entries.size
  }
}
