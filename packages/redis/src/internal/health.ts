import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Ref from "effect/Ref"
import * as RedisClient from "../RedisClient.js"

/**
 * Whether Redis is usable, shared by every source of a store (they talk to one Redis): one warning per outage,
 * and no Redis call for `retryRedisAfter` after a failure.
 */
export interface Health {
  readonly guard: <A>(effect: Effect.Effect<A, RedisClient.RedisError>) => Effect.Effect<A, RedisClient.RedisError>
  /**
   * As `guard`, but never skipped: for a background watcher that asks once per interval anyway, and must notice
   * Redis coming back as soon as it does.
   */
  readonly probe: <A>(effect: Effect.Effect<A, RedisClient.RedisError>) => Effect.Effect<A, RedisClient.RedisError>
}

/** What an outage means for the store that logs it: said once when Redis fails, once when it answers again. */
export interface Messages {
  readonly down: string
  readonly up: string
}

/** The `command` of the error a skipped call fails with: nothing reached Redis. */
export const notSent = "(not sent)"

/**
 * Whether a failed call may still take effect: it was sent, and Redis did not refuse it. A call whose timeout fired
 * while Redis stalled waits in Redis's socket and is applied when Redis resumes.
 */
export const mayHaveLanded = (error: RedisClient.RedisError): boolean =>
  error.command !== notSent && error.reason._tag !== "ErrorReply"

/**
 * Sends `effect` to Redis (never held back by the outage gate) until it succeeds or `forMillis` have passed, trying
 * every `pollMillis`, the first try after one interval: what must reach Redis once it answers again (releasing a
 * lease, ending a spend), bounded by how long it could still matter. Whether it got through.
 */
export const untilAnswered = <A>(
  effect: Effect.Effect<A, RedisClient.RedisError>,
  options: { readonly pollMillis: number; readonly forMillis: number }
): Effect.Effect<boolean> =>
  Effect.gen(function*() {
    const until = (yield* Clock.currentTimeMillis) + options.forMillis
    while ((yield* Clock.currentTimeMillis) < until) {
      yield* Effect.sleep(Duration.millis(options.pollMillis))
      if ((yield* Effect.either(effect))._tag === "Right") return true
    }
    return false
  })

/** {@link untilAnswered} in the background, past its caller's life: the caller has already moved on. */
export const inBackground = <A>(effect: Effect.Effect<A>): Effect.Effect<void> =>
  Effect.asVoid(Effect.forkDaemon(Effect.interruptible(effect)))

export const makeHealth = (retryAfter: Duration.Duration, messages: Messages): Effect.Effect<Health> =>
  Effect.gen(function*() {
    const retryMillis = Duration.toMillis(retryAfter)
    // `down` since the first failure of an outage; `retryAt`: when Redis may be tried again.
    const state = yield* Ref.make<{ readonly down: boolean; readonly retryAt: number }>({ down: false, retryAt: 0 })
    const skipped = new RedisClient.RedisError({
      command: notSent,
      reason: new RedisClient.Unavailable({ description: "Redis failed moments ago" })
    })
    const run = (skip: boolean) => <A>(effect: Effect.Effect<A, RedisClient.RedisError>) =>
      Effect.flatMap(Ref.get(state), (current) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) => {
          if (skip && current.down && now < current.retryAt) return Effect.fail(skipped)
          return effect.pipe(
            Effect.tap(() =>
              current.down
                ? Effect.flatMap(
                  Ref.modify(state, (s) => [s.down, { down: false, retryAt: 0 }] as const),
                  (wasDown) =>
                    wasDown
                      ? Effect.logInfo(messages.up)
                      : Effect.void
                )
                : Effect.void
            ),
            Effect.tapError((error) =>
              Effect.flatMap(
                Ref.modify(state, (s) => [s.down, { down: true, retryAt: now + retryMillis }] as const),
                (wasDown) =>
                  wasDown ? Effect.void : Effect.logWarning(messages.down).pipe(
                    Effect.annotateLogs({
                      reason: error.reason._tag,
                      command: error.command,
                      detail: error.reason.message
                    })
                  )
              )
            )
          )
        }))
    return { guard: run(true), probe: run(false) }
  })
