import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, FastCheck as fc, Option, Redacted, TestClock } from "effect"
import * as FakeIssuer from "./support/fakeIssuer.js"

/**
 * Random batches of concurrent requests over random sessions at random times: every session whose token is due
 * refreshes exactly once (in its refresh window behind the current token, past expiry while the batch waits),
 * everyone in a batch gets that session's one token, no refresh token is ever presented twice, and sessions never
 * share a token.
 */
describe("single flight per session (property)", () => {
  it.scoped.prop(
    "one refresh per due session per batch, no replay, no sharing",
    [
      fc.integer({ min: 1, max: 4 }),
      fc.array(fc.record({ advance: fc.integer({ min: 0, max: 400 }), requests: fc.integer({ min: 1, max: 15 }) }), {
        minLength: 1,
        maxLength: 4
      })
    ],
    ([sessionCount, batches]) =>
      Effect.gen(function*() {
        const fake = yield* FakeIssuer.make
        const { sessions } = yield* FakeIssuer.sessions(fake)
        const ids = yield* Effect.forEach(Array.from({ length: sessionCount }, (_, i) => i), (i) =>
          Effect.flatMap(
            FakeIssuer.loginToken({ lifetime: Duration.seconds(300), refreshTokenValue: `rt-login-${i}` }),
            (token) => sessions.create({ subject: `user-${i}`, token, idToken: Option.none() })
          ))
        // When each session's current token was issued (the login's, then each refresh's), in seconds.
        const issuedAt = ids.map(() => 0)
        let elapsed = 0
        let refreshes = 0
        for (const batch of batches) {
          // TestClock.adjust also lets the refreshes started behind the previous batch finish.
          yield* TestClock.adjust(Duration.seconds(batch.advance))
          expect(fake.refreshRequests.length).toBe(refreshes)
          elapsed += batch.advance
          // 300 s tokens: the refresh window opens at 235 s, the token is expired (minus the 5 s skew) at 295 s.
          const due = issuedAt.map((at) => elapsed - at >= 235)
          const expired = issuedAt.map((at) => elapsed - at >= 295)
          const served = yield* Effect.forEach(
            ids.flatMap((id, i) => Array.from({ length: batch.requests }, () => [i, id] as const)),
            ([i, id]) => Effect.map(sessions.accessToken(id), (token) => [i, Redacted.value(token.value)] as const),
            { concurrency: "unbounded" }
          )
          const bySession = new Map<number, Set<string>>()
          for (const [i, token] of served) bySession.set(i, (bySession.get(i) ?? new Set()).add(token))
          for (const tokens of bySession.values()) expect(tokens.size).toBe(1)
          const all = [...bySession.values()].map((tokens) => [...tokens][0])
          if (expired.every(Boolean)) expect(new Set(all).size).toBe(sessionCount)
          refreshes += due.filter(Boolean).length
          due.forEach((isDue, i) => {
            if (isDue) issuedAt[i] = elapsed
          })
        }
        yield* TestClock.adjust(0)
        expect(fake.refreshRequests.length).toBe(refreshes)
        const presented = fake.refreshRequests.map((r) => r.refreshToken)
        expect(new Set(presented).size).toBe(presented.length)
      }),
    { fastCheck: { numRuns: 40 } }
  )
})
