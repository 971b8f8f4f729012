import { AccessToken } from "@effect-token/core"
import { UserTokenStore } from "@effect-token/session"
import { describe, expect, it } from "@effect/vitest"
import { DateTime, Duration, Effect, Option, Redacted } from "effect"
import * as FakeIssuer from "./support/fakeIssuer.js"

const recordOf = (subject: string, refreshToken = `rt-${subject}`) =>
  Effect.map(DateTime.now, (now) =>
    UserTokenStore.SessionRecord.make({
      subject,
      accessToken: AccessToken.make({ value: Redacted.make(`at-${subject}`), issuedAt: now }),
      refreshToken: Option.some(Redacted.make(refreshToken)),
      idToken: Option.none(),
      resourceTokens: {},
      createdAt: now,
      lastSeenAt: now
    }))

const created = { expectedVersion: undefined, timeToLive: Duration.hours(2) } as const

describe("the memory store's bounds", () => {
  it.effect("one account signing in 10,000 times does not evict other users' sessions", () =>
    Effect.gen(function*() {
      const store = yield* UserTokenStore.makeMemory()
      yield* store.set(Redacted.make("bob-session"), yield* recordOf("bob"), created)
      const alice = yield* recordOf("alice")
      for (let i = 0; i < 10_000; i++) yield* store.set(Redacted.make(`alice-${i}`), alice, created)
      expect(Option.isSome(yield* store.get(Redacted.make("bob-session")))).toBe(true)
      // Alice keeps her most recent sessions, up to the bound per subject (16 by default).
      const kept: Array<number> = []
      for (let i = 0; i < 10_000; i++) {
        if (Option.isSome(yield* store.get(Redacted.make(`alice-${i}`)))) kept.push(i)
      }
      expect(kept).toEqual(Array.from({ length: 16 }, (_, i) => 10_000 - 16 + i))
    }))

  it.effect("the subject's least recently used session goes first", () =>
    Effect.gen(function*() {
      const store = yield* UserTokenStore.makeMemory({ maxSessionsPerSubject: 2 })
      const alice = yield* recordOf("alice")
      yield* store.set(Redacted.make("a1"), alice, created)
      yield* store.set(Redacted.make("a2"), alice, created)
      yield* store.get(Redacted.make("a1"))
      yield* store.set(Redacted.make("a3"), alice, created)
      expect(Option.isSome(yield* store.get(Redacted.make("a1")))).toBe(true)
      expect(Option.isNone(yield* store.get(Redacted.make("a2")))).toBe(true)
      expect(Option.isSome(yield* store.get(Redacted.make("a3")))).toBe(true)
    }))

  it.scoped("evicted sessions' refresh tokens are revoked (per subject and past the capacity); expired or deleted ones are not evictions", () =>
    Effect.gen(function*() {
      const fake = yield* FakeIssuer.make
      const store = yield* UserTokenStore.makeMemory({ capacity: 3, maxSessionsPerSubject: 2 })
      const { sessions } = yield* FakeIssuer.sessions(fake, { store })
      const login = (subject: string, refreshToken: string) =>
        Effect.flatMap(
          FakeIssuer.loginToken({ lifetime: Duration.minutes(5), refreshTokenValue: refreshToken }),
          (token) => sessions.create({ subject, token, idToken: Option.none() })
        )
      yield* login("alice", "rt-alice-1")
      yield* login("alice", "rt-alice-2")
      yield* login("alice", "rt-alice-3") // over alice's 2
      const ended = yield* login("bob", "rt-bob-1")
      yield* sessions.end(ended) // ended, not evicted
      yield* login("carol", "rt-carol-1")
      yield* login("dave", "rt-dave-1") // over the capacity of 3: the least recently used (alice-2) goes
      yield* Effect.repeat(Effect.yieldNow(), { until: () => fake.revoked.length >= 2, times: 1000 })
      expect([...fake.revoked].sort()).toEqual(["rt-alice-1", "rt-alice-2"])
    }))
})
