import { AccessToken, TokenError, TokenManager, TokenSource } from "@effect-token/core"
import { TestTokenSource } from "@effect-token/testing"
import { describe, expect, it } from "@effect/vitest"
import {
  Array as Arr,
  DateTime,
  Deferred,
  type Duration,
  Effect,
  FastCheck as fc,
  Fiber,
  Option,
  Redacted,
  TestClock
} from "effect"
import * as V8 from "node:v8"
import * as Vm from "node:vm"
import { forkStarted } from "./support/fibers.js"

/** A full garbage collection, so that heap measurements count what is still reachable. */
const gc = (): void => {
  V8.setFlagsFromString("--expose-gc")
  ;(Vm.runInNewContext("gc") as () => void)()
}

/** One scripted source per key, made on first use, so each key's fetches can be counted and scripted. */
const perKey = (options: TestTokenSource.Options = {}) =>
  Effect.gen(function*() {
    const tests = new Map<string, TestTokenSource.TestTokenSource>()
    const testFor = (key: string) =>
      Effect.suspend(() => {
        const existing = tests.get(key)
        if (existing !== undefined) return Effect.succeed(existing)
        return Effect.tap(TestTokenSource.make({ ...options, prefix: key }), (test) => tests.set(key, test))
      })
    const manager = yield* TokenManager.make({
      key: (tenant: string) => tenant,
      source: (tenant: string) => Effect.map(testFor(tenant), (test) => test.source),
      capacity: 3
    })
    return { manager, testFor }
  })

const value = (token: { readonly value: Redacted.Redacted<string> }) => Redacted.value(token.value)

const tokenAt = (token: string, now: DateTime.Utc, lifetime: Duration.DurationInput) =>
  AccessToken.make({
    value: Redacted.make(token),
    issuedAt: now,
    expiresAt: Option.some(DateTime.addDuration(now, lifetime))
  })

describe("TokenManager", () => {
  it.scoped("each key has its own token and its own single flight", () =>
    Effect.gen(function*() {
      const { manager, testFor } = yield* perKey({ lifetime: "1 hour" })
      const gate = yield* Deferred.make<void>()
      yield* Effect.flatMap(
        testFor("a"),
        (test) => test.script(TestTokenSource.succeed({ gate: Deferred.await(gate) }))
      )
      const calls = Effect.all(
        [...Arr.replicate(manager.get("a"), 500), ...Arr.replicate(manager.get("b"), 500)],
        { concurrency: "unbounded" }
      )
      const fiber = yield* Effect.fork(calls)
      yield* Deferred.succeed(gate, void 0)
      const tokens = yield* Fiber.join(fiber)
      expect(new Set(tokens.map(value))).toEqual(new Set(["a-1", "b-1"]))
      expect(yield* Effect.flatMap(testFor("a"), (test) => test.fetches)).toBe(1)
      expect(yield* Effect.flatMap(testFor("b"), (test) => test.fetches)).toBe(1)
      expect(yield* Effect.flatMap(testFor("a"), (test) => test.maxInFlight)).toBe(1)
    }))

  it.scoped("refresh ahead per key: the first get in the window refreshes in the background", () =>
    Effect.gen(function*() {
      const { manager, testFor } = yield* perKey({ lifetime: "100 seconds" })
      expect(value(yield* manager.get("a"))).toBe("a-1")
      yield* TestClock.adjust("86 seconds") // valid until 90 s (a 10 s skew), refresh window from 81 s at most
      expect(value(yield* manager.get("a"))).toBe("a-1")
      const test = yield* testFor("a")
      // The background fetch was started; let it finish.
      while ((yield* test.fetches) < 2 || (yield* test.inFlight) > 0) yield* TestClock.adjust("10 millis")
      expect(value(yield* manager.get("a"))).toBe("a-2")
    }))

  it.scoped("invalidate is compare-and-clear under the key", () =>
    Effect.gen(function*() {
      const { manager } = yield* perKey({ lifetime: "1 hour" })
      const a1 = yield* manager.get("a")
      const b1 = yield* manager.get("b")
      expect(yield* manager.invalidate("a", b1)).toBe(false)
      expect(yield* manager.invalidate("a", a1)).toBe(true)
      expect(yield* manager.invalidate("a", a1)).toBe(false)
      expect(value(yield* manager.get("a"))).toBe("a-2")
      expect(value(yield* manager.get("b"))).toBe("b-1")
    }))

  it.scoped("a failure is not kept: the next get fetches again", () =>
    Effect.gen(function*() {
      const { manager, testFor } = yield* perKey()
      yield* Effect.flatMap(
        testFor("a"),
        (test) => test.script(TestTokenSource.fail("OAuthError", { code: "invalid_scope", status: 400 }))
      )
      const error = yield* Effect.flip(manager.get("a"))
      expect(error.reason._tag).toBe("OAuthError")
      expect(value(yield* manager.get("a"))).toBe("a-1")
    }))

  it.scoped("a permanent failure holds its key back for permanentFailureHold; other keys are not held", () =>
    Effect.gen(function*() {
      const { manager, testFor } = yield* perKey()
      const a = yield* testFor("a")
      yield* a.script(TestTokenSource.fail("OAuthError", { code: "invalid_client", status: 401 }))
      for (let i = 0; i < 20; i++) {
        expect(TokenError.oauthCode(yield* Effect.flip(manager.get("a")))).toBe("invalid_client")
      }
      expect(yield* a.fetches).toBe(1)
      expect(value(yield* manager.get("b"))).toBe("b-1")
      yield* TestClock.adjust("5 seconds")
      expect(value(yield* manager.get("a"))).toBe("a-1")
    }))

  it.scoped("past its capacity the least recently used idle key goes; a key with a fetch in flight stays", () =>
    Effect.gen(function*() {
      const { manager, testFor } = yield* perKey({ lifetime: "1 hour" })
      yield* manager.get("a")
      yield* TestClock.adjust("2 seconds")
      yield* manager.get("b")
      yield* TestClock.adjust("2 seconds")
      yield* manager.get("c")
      yield* TestClock.adjust("2 seconds")
      yield* manager.get("a") // a is now the most recently used
      yield* manager.get("d") // evicts b, the least recently used
      expect(yield* manager.size).toBe(3)
      yield* manager.get("b")
      expect(yield* Effect.flatMap(testFor("b"), (test) => test.fetches)).toBe(2)
      expect(yield* Effect.flatMap(testFor("a"), (test) => test.fetches)).toBe(1)

      // A key whose fetch is in flight is never dropped: its waiters would otherwise start a second fetch.
      const gate = yield* Deferred.make<void>()
      yield* Effect.flatMap(
        testFor("e"),
        (test) => test.script(TestTokenSource.succeed({ gate: Deferred.await(gate) }))
      )
      const waiting = yield* Effect.fork(manager.get("e"))
      yield* TestClock.adjust("2 seconds")
      for (const key of ["f", "g", "h", "i"]) yield* manager.get(key)
      const late = yield* Effect.fork(manager.get("e"))
      yield* Deferred.succeed(gate, void 0)
      expect(value(yield* Fiber.join(waiting))).toBe("e-1")
      expect(value(yield* Fiber.join(late))).toBe("e-1")
      expect(yield* Effect.flatMap(testFor("e"), (test) => test.fetches)).toBe(1)
    }))

  describe("memory bounded whatever the keys", () => {
    /** A manager whose keys' fetches never end (a hung authorization server), counting fetches started and running. */
    const hung = (options: TokenManager.Options) =>
      Effect.gen(function*() {
        const counts = { started: 0, running: 0, maxRunning: 0 }
        const manager = yield* TokenManager.make({
          ...options,
          key: (scope: string) => scope,
          source: (scope: string) =>
            Effect.succeed(TokenSource.make({
              key: scope,
              fetch: Effect.suspend(() => {
                counts.started++
                counts.maxRunning = Math.max(counts.maxRunning, ++counts.running)
                return Effect.never
              }).pipe(Effect.onInterrupt(() => Effect.sync(() => counts.running--)))
            }))
        })
        return { manager, counts }
      })

    it.scoped("a hung server and 2,000 distinct keys: capacity 100 holds 100, excess callers fail fast with Unavailable", () =>
      Effect.gen(function*() {
        const { counts, manager } = yield* hung({ capacity: 100 })
        const callers: Array<Fiber.RuntimeFiber<unknown, TokenError.TokenError>> = []
        const refused: Array<TokenError.TokenError> = []
        for (let i = 0; i < 2_000; i++) {
          // Once started, a caller runs until it waits for its key's fetch or is refused.
          const caller = yield* forkStarted(manager.get(`scope-${i}`))
          const done = caller.unsafePoll()
          if (done === null) callers.push(caller)
          else if (done._tag === "Failure") refused.push(yield* Effect.flip(Fiber.join(caller)))
          expect(yield* manager.size).toBeLessThanOrEqual(100)
        }
        expect(counts.maxRunning).toBeLessThanOrEqual(100)
        expect(counts.started).toBe(100)
        expect(callers).toHaveLength(100)
        expect(refused).toHaveLength(1_900)
        expect(refused[0]!.reason._tag).toBe("Unavailable")
        expect(refused[0]!.message).toContain("maxInFlight")
        // A key already held is joined, not refused: its callers wait for its one fetch.
        const joining = yield* forkStarted(manager.get("scope-0"))
        expect(joining.unsafePoll()).toBeNull()
      }))

    it.scoped(
      "capacity 100, a hung server, 20,000 distinct 1 KiB scopes: 100 keys, 100 requests, heap bounded",
      () =>
        Effect.gen(function*() {
          const { counts, manager } = yield* hung({ capacity: 100 })
          gc()
          const before = process.memoryUsage().heapUsed
          const callers: Array<Fiber.RuntimeFiber<unknown, TokenError.TokenError>> = []
          let refused = 0
          for (let i = 0; i < 20_000; i++) {
            // A 1 KiB scope each, as request-derived scopes may be.
            const caller = yield* forkStarted(manager.get(`scope-${i}-${"s".repeat(1_024)}`))
            if (caller.unsafePoll() === null) callers.push(caller)
            else refused++
          }
          gc()
          const grown = process.memoryUsage().heapUsed - before
          expect(yield* manager.size).toBe(100)
          expect(counts.started).toBe(100)
          expect(callers).toHaveLength(100)
          expect(refused).toBe(19_900)
          // 100 held keys, each with a hung fetch and a waiting caller: +4.6 MB measured. Before the bound every key
          // was held with its fetch and caller: 20,000 keys, 19,999 token requests, +500 MB.
          expect(grown).toBeLessThan(32 * 1024 * 1024)
        }),
      120_000
    )

    it.scoped("maxInFlight is configurable: with 5 keys fetching, a sixth key fails at once", () =>
      Effect.gen(function*() {
        const { counts, manager } = yield* hung({ capacity: 100, maxInFlight: 5 })
        for (let i = 0; i < 5; i++) yield* forkStarted(manager.get(`hung-${i}`))
        expect((yield* Effect.flip(manager.get("one-more"))).reason._tag).toBe("Unavailable")
        // The refused key is not held, and started nothing.
        expect(yield* manager.size).toBe(5)
        expect(counts.started).toBeLessThanOrEqual(5)
      }))

    it.scoped.prop(
      "property: whatever the keys and which of them hang, at most capacity keys and maxInFlight fetches",
      [fc.array(fc.tuple(fc.integer({ min: 0, max: 40 }), fc.boolean()), { minLength: 1, maxLength: 150 })],
      ([steps]) =>
        Effect.gen(function*() {
          const running = { now: 0, max: 0 }
          const manager = yield* TokenManager.make({
            capacity: 8,
            maxInFlight: 4,
            key: (k: number) => `k${k}`,
            source: (k: number) =>
              Effect.succeed(TokenSource.make({
                key: `k${k}`,
                fetch: Effect.suspend(() => {
                  running.max = Math.max(running.max, ++running.now)
                  // Odd keys hang for a minute, even keys answer at once; each token lives 10 s.
                  return Effect.flatMap(
                    Effect.sleep(k % 2 === 1 ? "1 minute" : 0),
                    () => Effect.map(DateTime.now, (now) => tokenAt(`t${k}`, now, "10 seconds"))
                  ).pipe(Effect.ensuring(Effect.sync(() => running.now--)))
                })
              }))
          })
          for (const [k, advance] of steps) {
            yield* Effect.fork(Effect.either(manager.get(k)))
            if (advance) yield* TestClock.adjust("7 seconds")
            expect(yield* manager.size).toBeLessThanOrEqual(8)
            expect(running.now).toBeLessThanOrEqual(4)
          }
          expect(running.max).toBeLessThanOrEqual(4)
        })
    )

    it.scoped("a key longer than maxKeyLength (a 64 KiB scope) is Misconfigured: nothing held, nothing sent", () =>
      Effect.gen(function*() {
        let fetches = 0
        const tokens = yield* TokenManager.fromShapes(
          {},
          (shape: { readonly scope?: string | undefined }) =>
            Effect.succeed(TokenSource.make({
              key: shape.scope ?? "",
              fetch: Effect.flatMap(DateTime.now, (now) => {
                fetches++
                return Effect.succeed(tokenAt("t", now, "1 hour"))
              })
            }))
        )
        const error = yield* Effect.flip(tokens.get({ scope: "s".repeat(64 * 1024) }))
        expect(error.reason._tag).toBe("Misconfigured")
        expect(error.message).toContain("maxKeyLength")
        expect((yield* Effect.flip(tokens.at({ scope: "s".repeat(64 * 1024) }).get)).reason._tag).toBe("Misconfigured")
        expect(yield* tokens.size).toBe(0)
        expect(fetches).toBe(0)
        // Up to the bound (4,096 characters of key by default) a key is held as any other.
        yield* tokens.get({ scope: "s".repeat(4_000) })
        expect(yield* tokens.size).toBe(1)
      }))
  })

  it.scoped("at(key) is a TokenCache over one key", () =>
    Effect.gen(function*() {
      const { manager } = yield* perKey({ lifetime: "1 hour" })
      const acme = manager.at("acme")
      expect(acme.key).toBe("acme")
      expect((yield* acme.state)._tag).toBe("Empty")
      const token = yield* acme.get
      expect(value(token)).toBe("acme-1")
      expect((yield* acme.state)._tag).toBe("Ready")
      expect(yield* acme.invalidate(token)).toBe(true)
      expect(value(yield* manager.get("acme"))).toBe("acme-2")
    }))

  it.scoped.prop(
    "memory stays bounded: whatever the order of keys, the manager never holds more idle keys than its capacity",
    [fc.array(fc.integer({ min: 0, max: 20 }), { minLength: 1, maxLength: 200 })],
    ([keys]) =>
      Effect.gen(function*() {
        const { manager } = yield* perKey({ lifetime: "1 hour" })
        for (const key of keys) {
          yield* manager.get(`k${key}`)
          expect(yield* manager.size).toBeLessThanOrEqual(3)
        }
        // The last key used is always held.
        const last = `k${keys[keys.length - 1]}`
        expect(value(yield* manager.get(last)).startsWith(last)).toBe(true)
      })
  )

  describe("shapes", () => {
    it("shapeKey is canonical: the order of extra parameters does not matter, empty shapes share one key", () => {
      expect(TokenManager.shapeKey({})).toBe(TokenManager.shapeKey({ extraParams: {} }))
      expect(TokenManager.shapeKey({ extraParams: { a: "1", b: "2" } })).toBe(
        TokenManager.shapeKey({ extraParams: { b: "2", a: "1" } })
      )
      expect(TokenManager.shapeKey({ scope: "a b" })).not.toBe(TokenManager.shapeKey({ audience: "a b" }))
      expect(TokenManager.shapeKey({ scope: "x", audience: "y" })).not.toBe(TokenManager.shapeKey({ scope: "x,y" }))
    })

    it("mergeShape: a request's scope, resource and audience replace the base's; extra parameters add up", () => {
      expect(
        TokenManager.mergeShape(
          { scope: "read", audience: "api", extraParams: { tenant: "a", region: "eu" } },
          { scope: "write", extraParams: { tenant: "b" } }
        )
      ).toEqual({ scope: "write", audience: "api", extraParams: { tenant: "b", region: "eu" } })
    })
  })
})
