import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Encoding from "effect/Encoding"
import * as Fiber from "effect/Fiber"
import * as Random from "effect/Random"
import type * as RedisClient from "../RedisClient.js"
import { type Health, inBackground, mayHaveLanded, untilAnswered } from "./health.js"
import * as Scripts from "./scripts.js"

/**
 * A lock held across processes: `SET NX PX` with a random owner, extended every third of its TTL while its holder
 * runs (a holder that dies stops extending it, and it lapses within the TTL), released by compare-and-delete. Used by
 * the refresh-token store and the session store; each puts its own local lock in front, so that one process polls
 * Redis for a key once.
 */
export interface Lease {
  /**
   * Runs `use(owner)` while this caller holds the lease on `key` (`owner` is its random value, for scripts that check
   * the lease at the moment of a side effect). When Redis fails while taking it, runs `onUnavailable(error)` instead:
   * the caller decides whether its local lock is enough or the work must fail.
   */
  readonly withLease: <A, E, R, A2, E2, R2>(
    key: string,
    use: (owner: string) => Effect.Effect<A, E, R>,
    onUnavailable: (error: RedisClient.RedisError) => Effect.Effect<A2, E2, R2>
  ) => Effect.Effect<A | A2, E | E2, R | R2>
}

export interface LeaseSettings {
  readonly ttl: Duration.Duration
  readonly pollInterval: Duration.Duration
}

const randomOwner = (): string => Encoding.encodeBase64Url(globalThis.crypto.getRandomValues(new Uint8Array(16)))

export const makeLease = (client: RedisClient.RedisClient, health: Health, settings: LeaseSettings): Lease => {
  const guard = health.guard
  const ttlMillis = Math.max(1, Math.round(Duration.toMillis(settings.ttl)))
  const pollMillis = Duration.toMillis(settings.pollInterval)
  // The lease outlives any one holder's work because the holder keeps extending it.
  const renewEvery = Duration.millis(Math.max(1, Math.floor(ttlMillis / 3)))

  /** Waits while another process holds the lease. */
  const acquire = (key: string) =>
    Effect.gen(function*() {
      const owner = randomOwner()
      while (true) {
        const taken = yield* guard(client.set(key, owner, { nx: true, px: ttlMillis })).pipe(
          // A `SET NX` that timed out here may still be applied when Redis answers, leaving a lease nobody holds
          // (every process would wait out its TTL): released as soon as Redis answers, a no-op if it never landed.
          Effect.tapError((error) =>
            !mayHaveLanded(error)
              ? Effect.void
              : releaseLater(key, owner)
          )
        )
        if (taken) return owner
        // Jittered, so that waiting processes do not ask in step.
        yield* Effect.sleep(Duration.millis(pollMillis * (0.5 + (yield* Random.next))))
      }
    })

  const releaseNow = (key: string, owner: string, run: Health["guard"]) =>
    run(client.eval(Scripts.release, [key], [owner]))

  /**
   * Releases at once or, when Redis fails (a blip, a failover: the gate skips it), as soon as it answers, in the
   * background: a lease left to lapse keeps every process that waits for it waiting for the whole TTL.
   */
  const release = (key: string, owner: string) =>
    releaseNow(key, owner, guard).pipe(Effect.catchAll(() => releaseLater(key, owner)), Effect.asVoid)

  const releaseLater = (key: string, owner: string) =>
    inBackground(untilAnswered(releaseNow(key, owner, health.probe), { pollMillis, forMillis: ttlMillis }))

  const renewing = (key: string, owner: string) =>
    guard(client.eval(Scripts.renew, [key], [owner, ttlMillis])).pipe(
      Effect.ignore,
      Effect.delay(renewEvery),
      Effect.forever
    )

  const withLease = <A, E, R, A2, E2, R2>(
    key: string,
    use: (owner: string) => Effect.Effect<A, E, R>,
    onUnavailable: (error: RedisClient.RedisError) => Effect.Effect<A2, E2, R2>
  ): Effect.Effect<A | A2, E | E2, R | R2> =>
    Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(
        restore(Effect.either(acquire(key))),
        (lease): Effect.Effect<A | A2, E | E2, R | R2> =>
          lease._tag === "Left"
            ? restore(onUnavailable(lease.left))
            : Effect.flatMap(
              // Interruptible: a fiber forked in an uninterruptible region inherits it and could never be stopped.
              Effect.fork(Effect.interruptible(renewing(key, lease.right))),
              (renewal) =>
                restore(use(lease.right)).pipe(
                  Effect.ensuring(Effect.zipRight(Fiber.interrupt(renewal), release(key, lease.right)))
                )
            )
      )
    )

  return { withLease }
}
