import { ClientCredentials, TokenCache } from "@effect-token/core"
import { TestTokenSource } from "@effect-token/testing"
import type { HttpClientResponse } from "@effect/platform"
import { HttpClient } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Array as Arr, Duration, Effect, Fiber, Option, TestClock } from "effect"
import { forkStarted } from "./support/fibers.js"

/*
 * Refresh timing for any token lifetime, and the bound on a caller's whole wait. Time is the TestClock's; a caller
 * "waited" when its `get` did not complete without the clock moving.
 */

/** A source whose every fetch takes `delay` and returns a new token living `lifetime`. */
const timedSource = (options: { readonly delay: Duration.DurationInput; readonly lifetime: Duration.DurationInput }) =>
  TestTokenSource.make({ key: "timed", delay: options.delay, lifetime: options.lifetime })

/**
 * Calls `get` every `step` for `duration`, moving the clock only between calls, and counts the calls that could not
 * complete at once (they had to wait for a fetch). The first call, on an empty cache, always waits and is not counted.
 */
const drive = (
  get: Effect.Effect<unknown, unknown>,
  options: { readonly step: Duration.DurationInput; readonly duration: Duration.DurationInput }
) =>
  Effect.gen(function*() {
    const step = Duration.toMillis(options.step)
    const steps = Math.floor(Duration.toMillis(options.duration) / step)
    let waited = 0
    const first = yield* Effect.fork(get)
    while (first.unsafePoll() === null) yield* TestClock.adjust(Duration.millis(1))
    for (let i = 0; i < steps; i++) {
      yield* TestClock.adjust(Duration.millis(step))
      // Returns once the get has run as far as it can without the clock moving: done, or waiting for a fetch.
      const fiber = yield* forkStarted(get)
      if (fiber.unsafePoll() === null) {
        waited++
        while (fiber.unsafePoll() === null) yield* TestClock.adjust(Duration.millis(1))
      }
      yield* Fiber.join(fiber)
    }
    return waited
  })

describe("TokenCache refresh timing", () => {
  it.scoped("a 20 s token from a fast server is fetched 3 or 4 times in 60 s, and no caller waits", () =>
    Effect.gen(function*() {
      const { fetches, source } = yield* timedSource({ delay: "5 millis", lifetime: "20 seconds" })
      const cache = yield* TokenCache.make(source)
      const waited = yield* drive(cache.get, { step: "100 millis", duration: "60 seconds" })
      expect(waited).toBe(0)
      expect(yield* fetches).toBeGreaterThanOrEqual(3)
      expect(yield* fetches).toBeLessThanOrEqual(4)
    }))

  it.scoped("short tokens keep one second for expires_in's rounding: a 2 s token is served for 1 s, 20 s for 18 s", () =>
    Effect.gen(function*() {
      for (const [lifetime, served] of [[2_000, 1_000], [3_000, 2_000], [10_000, 9_000], [20_000, 18_000]] as const) {
        const { source } = yield* timedSource({ delay: "0 millis", lifetime: Duration.millis(lifetime) })
        const cache = yield* TokenCache.make(source)
        const token = yield* cache.get
        const state = yield* cache.state
        expect(state._tag === "Ready" && state.validUntil - token.issuedAt.epochMillis).toBe(served)
        expect(TokenCache.validUntil(token) - token.issuedAt.epochMillis).toBe(served)
      }
      // A skew the application set lower still wins.
      const { source } = yield* timedSource({ delay: "0 millis", lifetime: "2 seconds" })
      const token = yield* Effect.flatMap(TokenCache.make(source, { skew: "100 millis" }), (cache) => cache.get)
      expect(TokenCache.validUntil(token, { skew: "100 millis" }) - token.issuedAt.epochMillis).toBe(1_900)
    }))

  it.scoped("a 300 ms server and 3 s tokens: the refresh starts early enough that no caller waits", () =>
    Effect.gen(function*() {
      const { fetches, source } = yield* timedSource({ delay: "300 millis", lifetime: "3 seconds" })
      const cache = yield* TokenCache.make(source)
      const waited = yield* drive(cache.get, { step: "50 millis", duration: "12 seconds" })
      expect(waited).toBe(0)
      expect(yield* fetches).toBeGreaterThanOrEqual(4)
    }))

  it.scoped("a one-hour token is served until 30 s before its end and refreshed in the last 10 % to 5 %", () =>
    Effect.gen(function*() {
      const { source } = yield* timedSource({ delay: "100 millis", lifetime: "1 hour" })
      const cache = yield* TokenCache.make(source)
      const fiber = yield* Effect.fork(cache.get)
      yield* TestClock.adjust("100 millis")
      const token = yield* Fiber.join(fiber)
      const state = yield* cache.state
      const expiresAt = Option.getOrThrow(token.expiresAt).epochMillis
      expect(state._tag === "Ready" && state.validUntil).toBe(expiresAt - 30_000)
      const usable = 3_600_000 - 30_000
      if (state._tag === "Ready") {
        expect(state.refreshAt).toBeGreaterThanOrEqual(state.validUntil - usable * 0.1)
        expect(state.refreshAt).toBeLessThanOrEqual(state.validUntil - usable * 0.05)
      }
    }))

  it.scoped("a refresh answered with the same token (no later expiry) does not loop", () =>
    Effect.gen(function*() {
      // Every fetch, however many there are (one per get at worst), hands back the same token and expiry.
      const test = yield* TestTokenSource.make({
        key: "stubborn",
        script: Arr.replicate(TestTokenSource.succeed({ value: "same", expiresAt: 100_000 }), 251)
      })
      const cache = yield* TokenCache.make(test.source, { skew: 0, refreshAheadJitter: 0 })
      yield* cache.get
      // The refresh window is the last 10 s; a get every 40 ms in it must not send a request every 40 ms.
      for (let at = 90_000; at < 100_000; at += 40) {
        yield* TestClock.setTime(at)
        yield* cache.get
      }
      // One fetch at the start, then retries at least 1 s apart, halving the time left: a handful, not 250.
      expect(yield* test.fetches).toBeLessThanOrEqual(8)
    }))
})

describe("TokenCache acquireTimeout", () => {
  const silentServer = silentClient()

  it.scoped("each attempt has its own bound: a server that never answers fails the call after the retries", () =>
    Effect.gen(function*() {
      const source = yield* ClientCredentials.make({
        tokenUrl: "https://as.test/token",
        clientAuth: { _tag: "None", clientId: "c" },
        attemptTimeout: "1 second"
      }).pipe(Effect.provideService(HttpClient.HttpClient, silentServer))
      const cache = yield* TokenCache.make(source)
      const fiber = yield* Effect.fork(Effect.flip(cache.get))
      let elapsed = 0
      while (fiber.unsafePoll() === null) {
        yield* TestClock.adjust("100 millis")
        elapsed += 100
      }
      const error = yield* Fiber.join(fiber)
      expect(error.reason).toMatchObject({ _tag: "Timeout", bound: "attempt" })
      expect(elapsed).toBeGreaterThanOrEqual(4_000)
    }))

  it.scoped("acquireTimeout bounds the whole wait, retries included", () =>
    Effect.gen(function*() {
      const source = yield* ClientCredentials.make({
        tokenUrl: "https://as.test/token",
        clientAuth: { _tag: "None", clientId: "c" },
        attemptTimeout: "1 second"
      }).pipe(Effect.provideService(HttpClient.HttpClient, silentServer))
      const cache = yield* TokenCache.make(source, { acquireTimeout: "1 second" })
      const fiber = yield* Effect.fork(Effect.flip(cache.get))
      let elapsed = 0
      while (fiber.unsafePoll() === null) {
        yield* TestClock.adjust("100 millis")
        elapsed += 100
      }
      const error = yield* Fiber.join(fiber)
      expect(error.reason).toMatchObject({ _tag: "Timeout", bound: "acquire" })
      expect(error.message).toContain("acquireTimeout")
      expect(elapsed).toBeLessThanOrEqual(1_100)
    }))
})

function silentClient(): HttpClient.HttpClient {
  return HttpClient.make(() => Effect.never as Effect.Effect<HttpClientResponse.HttpClientResponse>)
}
