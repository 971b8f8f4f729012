import type { AccessToken } from "@effect-token/core"
import { TokenCache, TokenSource } from "@effect-token/core"
import { TestTokenSource } from "@effect-token/testing"
import { describe, expect, it } from "@effect/vitest"
import { Array as Arr, Duration, Effect, Exit, FastCheck as fc, Fiber, Option, Ref, TestClock } from "effect"
import { forkStarted } from "./support/fibers.js"

/*
 * Random interleavings of gets, invalidations, clock advances and fetch outcomes, checking the cache's invariants:
 * - it never hands out a token at or past `expiresAt - skew` (skew capped at 10 % of the lifetime, 1 s floor);
 * - at most one fetch is ever in flight;
 * - no fetch without a reason: every fetch after the first follows a failure, a successful invalidation, or the
 *   previous token reaching its refresh point (expiries + invalidations + failures bound the fetch count).
 */

const skewMillis = 5_000

type Command =
  | { readonly _tag: "Get" }
  | { readonly _tag: "Advance"; readonly millis: number }
  | { readonly _tag: "InvalidateCurrent" }
  | { readonly _tag: "InvalidateStale" }
  | { readonly _tag: "Script"; readonly outcome: Outcome }

type Outcome =
  | { readonly _tag: "Token"; readonly lifetimeSeconds: number }
  | { readonly _tag: "Fail"; readonly transient: boolean }

const outcome: fc.Arbitrary<Outcome> = fc.oneof(
  // Zero and negative lifetimes: a source handing out tokens that are already expired.
  fc.record({ _tag: fc.constant("Token" as const), lifetimeSeconds: fc.integer({ min: -5, max: 60 }) }),
  fc.record({ _tag: fc.constant("Fail" as const), transient: fc.boolean() })
)

const command: fc.Arbitrary<Command> = fc.oneof(
  { arbitrary: fc.constant({ _tag: "Get" as const }), weight: 5 },
  {
    arbitrary: fc.record({
      _tag: fc.constant("Advance" as const),
      // Short steps land inside fetches and refresh windows; long ones cross expiries.
      millis: fc.oneof(fc.integer({ min: 0, max: 2_000 }), fc.integer({ min: 0, max: 40_000 }))
    }),
    weight: 4
  },
  { arbitrary: fc.constant({ _tag: "InvalidateCurrent" as const }), weight: 1 },
  { arbitrary: fc.constant({ _tag: "InvalidateStale" as const }), weight: 1 },
  { arbitrary: fc.record({ _tag: fc.constant("Script" as const), outcome }), weight: 2 }
)

type Event =
  | { readonly _tag: "FetchStart"; readonly at: number }
  | { readonly _tag: "FetchEnd"; readonly at: number; readonly token: Option.Option<AccessToken.AccessToken> }
  | { readonly _tag: "Invalidated"; readonly at: number }

/** `expiresAt` minus the skew, capped at 10 % of the lifetime but keeping one second where the lifetime allows. */
const validUntil = (token: AccessToken.AccessToken) => {
  const expiresAt = Option.getOrThrow(token.expiresAt).epochMillis
  const lifetime = Math.max(0, expiresAt - token.issuedAt.epochMillis)
  return expiresAt - Math.min(skewMillis, Math.max(lifetime * 0.1, Math.min(1_000, lifetime / 2)))
}

/** The earliest a refresh may start: the window grows with the observed fetch time, up to half the usable lifetime. */
const earliestRefresh = (token: AccessToken.AccessToken, refreshAhead: number) => {
  const until = validUntil(token)
  return refreshAhead === 0 ? until : until - (until - token.issuedAt.epochMillis) / 2
}

describe("TokenCache invariants", () => {
  it.scoped.prop(
    "hold over random interleavings",
    [
      fc.array(command, { minLength: 10, maxLength: 80, size: "max" }),
      fc.integer({ min: 0, max: 10_000 }),
      fc.constantFrom(0, 0.1, 0.5, 0.9)
    ],
    ([commands, fetchMillis, refreshAhead]) =>
      Effect.gen(function*() {
        const events = yield* Ref.make<ReadonlyArray<Event>>([])
        const log = (event: Event) => Ref.update(events, Arr.append(event))
        // Every fetch takes `fetchMillis`; with nothing scripted it brings a token living 60 s.
        const test = yield* TestTokenSource.make({
          key: "property",
          delay: Duration.millis(fetchMillis),
          lifetime: "60 seconds"
        })
        // The source as the cache sees it, logging when each fetch starts and ends among the invalidations.
        const fetch = Effect.zipRight(
          Effect.flatMap(TestClock.currentTimeMillis, (at) => log({ _tag: "FetchStart", at })),
          test.source.fetch
        ).pipe(Effect.onExit((exit) =>
          Effect.flatMap(TestClock.currentTimeMillis, (at) =>
            log({ _tag: "FetchEnd", at, token: Exit.isSuccess(exit) ? Option.some(exit.value) : Option.none() }))
        ))

        const cache = yield* TokenCache.make(TokenSource.make({ key: test.source.key, fetch }), {
          skew: Duration.millis(skewMillis),
          refreshAhead,
          refreshAheadJitter: 0
        })

        const handedOut = yield* Ref.make<ReadonlyArray<{ token: AccessToken.AccessToken; at: number }>>([])
        const getters: Array<Fiber.RuntimeFiber<unknown>> = []
        const getAndRecord = cache.get.pipe(
          Effect.tap((token) =>
            Effect.flatMap(TestClock.currentTimeMillis, (at) =>
              Ref.update(handedOut, Arr.append({ token, at })))
          ),
          Effect.ignore
        )
        const invalidate = (token: AccessToken.AccessToken) =>
          Effect.flatMap(cache.invalidate(token), (cleared) =>
            cleared
              ? Effect.flatMap(TestClock.currentTimeMillis, (at) => log({ _tag: "Invalidated", at }))
              : Effect.void)

        for (const cmd of commands) {
          switch (cmd._tag) {
            case "Get":
              // Returns once the get has run until it got a token or waits for a fetch.
              getters.push(yield* forkStarted(getAndRecord))
              break
            case "Advance":
              yield* TestClock.adjust(Duration.millis(cmd.millis))
              break
            case "Script":
              yield* test.script(
                cmd.outcome._tag === "Token"
                  ? TestTokenSource.succeed({ lifetime: Duration.seconds(cmd.outcome.lifetimeSeconds) })
                  : cmd.outcome.transient
                  ? TestTokenSource.fail("Unavailable", { status: 503 })
                  : TestTokenSource.fail("OAuthError", { code: "invalid_client", status: 401 })
              )
              break
            case "InvalidateCurrent": {
              const state = yield* cache.state
              if (state._tag === "Ready" || state._tag === "Refreshing") yield* invalidate(state.token)
              break
            }
            case "InvalidateStale": {
              const seen = yield* Ref.get(handedOut)
              if (seen.length > 0) yield* invalidate(seen[0]!.token)
              break
            }
          }
        }
        // Let every fetch, retry and waiter finish.
        yield* TestClock.adjust(Duration.minutes(10))
        for (let i = 0; i < 10; i++) yield* Effect.yieldNow()
        // No caller waits forever: ten minutes later every get has its answer.
        for (const fiber of getters) expect(Option.isSome(yield* Fiber.poll(fiber))).toBe(true)

        for (const { at, token } of yield* Ref.get(handedOut)) {
          expect(at).toBeLessThan(validUntil(token))
        }
        expect(yield* test.maxInFlight).toBeLessThanOrEqual(1)

        // Every fetch after the first has a reason.
        let previous: Option.Option<Option.Option<AccessToken.AccessToken>> = Option.none()
        let invalidatedSince = false
        for (const event of yield* Ref.get(events)) {
          if (event._tag === "Invalidated") invalidatedSince = true
          if (event._tag === "FetchEnd") {
            previous = Option.some(event.token)
            invalidatedSince = false
          }
          if (event._tag === "FetchStart" && Option.isSome(previous)) {
            const last = previous.value
            const justified = Option.isNone(last) || invalidatedSince ||
              event.at >= earliestRefresh(last.value, refreshAhead)
            expect(justified).toBe(true)
          }
        }
      }),
    { timeout: 600_000, fastCheck: { numRuns: Number(process.env.PROPERTY_RUNS ?? 100) } }
  )
})
