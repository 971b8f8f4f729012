import { AccessToken, TokenCache, TokenError, TokenSource } from "@effect-token/core"
import { describe, expect, it } from "@effect/vitest"
import {
  Array as Arr,
  DateTime,
  Duration,
  Effect,
  FastCheck as fc,
  Fiber,
  Option,
  Redacted,
  Ref,
  TestClock
} from "effect"

/*
 * Random interleavings of gets, invalidations, clock advances and fetch outcomes, checking the cache's invariants:
 * - it never hands out a token at or past `expiresAt - skew` (skew capped at 10 % of the lifetime);
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

const validUntil = (token: AccessToken.AccessToken) => {
  const expiresAt = Option.getOrThrow(token.expiresAt).epochMillis
  const lifetime = expiresAt - token.issuedAt.epochMillis
  return expiresAt - Math.min(skewMillis, Math.max(0, lifetime) * 0.1)
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
        const script = yield* Ref.make<ReadonlyArray<Outcome>>([])
        const inFlight = yield* Ref.make(0)
        const maxInFlight = yield* Ref.make(0)
        let n = 0

        const fetch = Effect.gen(function*() {
          yield* log({ _tag: "FetchStart", at: yield* TestClock.currentTimeMillis })
          const now = yield* Ref.updateAndGet(inFlight, (k) => k + 1)
          yield* Ref.update(maxInFlight, (k) => Math.max(k, now))
          yield* Effect.sleep(Duration.millis(fetchMillis))
          const next = yield* Ref.modify(script, (s) =>
            s.length === 0
              ? [{ _tag: "Token", lifetimeSeconds: 60 } as Outcome, s] as const
              : [s[0]!, s.slice(1)] as const)
          yield* Ref.update(inFlight, (k) => k - 1)
          const at = yield* TestClock.currentTimeMillis
          if (next._tag === "Fail") {
            yield* log({ _tag: "FetchEnd", at, token: Option.none() })
            return yield* new TokenError.TokenError({
              operation: "property",
              reason: next.transient
                ? new TokenError.Unavailable({ status: 503 })
                : new TokenError.OAuthError({ code: "invalid_client", status: 401 })
            })
          }
          const issuedAt = yield* DateTime.now
          const token = AccessToken.make({
            value: Redacted.make(`token-${++n}`),
            issuedAt,
            expiresAt: Option.some(DateTime.addDuration(issuedAt, Duration.seconds(next.lifetimeSeconds)))
          })
          yield* log({ _tag: "FetchEnd", at, token: Option.some(token) })
          return token
        })

        const cache = yield* TokenCache.make(TokenSource.make({ key: "property", fetch }), {
          skew: Duration.millis(skewMillis),
          refreshAhead,
          refreshAheadJitter: 0
        })

        const handedOut = yield* Ref.make<ReadonlyArray<{ token: AccessToken.AccessToken; at: number }>>([])
        const getters: Array<Fiber.RuntimeFiber<unknown>> = []
        const getAndRecord = cache.get.pipe(
          Effect.tap((token) =>
            Effect.flatMap(TestClock.currentTimeMillis, (at) => Ref.update(handedOut, Arr.append({ token, at })))
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
              getters.push(yield* Effect.fork(getAndRecord))
              break
            case "Advance":
              yield* TestClock.adjust(Duration.millis(cmd.millis))
              break
            case "Script":
              yield* Ref.update(script, Arr.append(cmd.outcome))
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
          yield* Effect.repeatN(Effect.yieldNow(), 5)
        }
        // Let every fetch, retry and waiter finish.
        yield* TestClock.adjust(Duration.minutes(10))
        for (const fiber of getters) yield* Fiber.join(fiber)

        for (const { at, token } of yield* Ref.get(handedOut)) {
          expect(at).toBeLessThan(validUntil(token))
        }
        expect(yield* Ref.get(maxInFlight)).toBeLessThanOrEqual(1)

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
    { timeout: 120_000, fastCheck: { numRuns: 100 } }
  )
})
