/**
 * A refresh token is spent at most once, and its successor is never lost: the refresh source's side of the spend
 * protocol (`RefreshTokenStore.spend`), against in-process token endpoints under TestClock.
 */
import type { AccessToken } from "@effect-token/core"
import { ClientAuth, RefreshToken, RefreshTokenStore, TokenCache } from "@effect-token/core"
import { HttpClient, HttpClientError, HttpClientResponse } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import type { Duration } from "effect"
import { Effect, Exit, Fiber, Logger, Option, Redacted, Ref, TestClock } from "effect"
import { fake, json, tokenResponse } from "./support/http.js"

const tokenUrl = "https://as.example/token"
const clientAuth = ClientAuth.none({ clientId: "cli" })

/**
 * A token endpoint with rotation and reuse detection: `rt-n` in, `rt-(n+1)` out, after `delay` of TestClock. A
 * token presented twice is `invalid_grant`, and counted.
 */
const rotating = (delay: Duration.DurationInput = 0) =>
  Effect.gen(function*() {
    const presented: Array<string> = []
    const { client, requests } = yield* fake((request) => {
      const token = request.form.get("refresh_token")!
      const reused = presented.includes(token)
      presented.push(token)
      return Effect.as(
        Effect.sleep(delay),
        reused
          ? json({ error: "invalid_grant", error_description: "grant request is invalid" }, 400)
          : tokenResponse({ access_token: `at-for-${token}`, refresh_token: `rt-${Number(token.slice(3)) + 1}` })
      )
    })
    const reusedCount = () => presented.length - new Set(presented).size
    return { client, requests, presented, reusedCount }
  })

const valueOf = (token: AccessToken.AccessToken) => Redacted.value(token.value)

describe("one process: an answer nobody waits for any more is still read and stored", () => {
  it.effect("a timeout after sending: the rotation is stored; the next fetch never sends the spent token", () =>
    Effect.gen(function*() {
      // The answer takes 15 s; the caller waits 10 s.
      const as = yield* rotating("15 seconds")
      const store = yield* RefreshTokenStore.make(Redacted.make("rt-0"))
      const source = yield* RefreshToken.make({ tokenUrl, clientAuth }).pipe(
        Effect.provideService(RefreshTokenStore.RefreshTokenStore, store),
        Effect.provideService(HttpClient.HttpClient, as.client)
      )
      const first = yield* Effect.fork(Effect.flip(source.fetch))
      yield* TestClock.adjust("10 seconds")
      expect((yield* Fiber.join(first)).reason).toMatchObject({ _tag: "Timeout", sent: true })
      // The next fetch starts while the first answer is still on its way: it waits for it.
      const second = yield* Effect.fork(source.fetch)
      yield* TestClock.adjust("5 seconds")
      const token = yield* Fiber.join(second)
      expect(Option.map(yield* store.get, Redacted.value)).toEqual(Option.some("rt-1"))
      // ...and takes the late answer's access token: no second request at all.
      expect(valueOf(token)).toBe("at-for-rt-0")
      expect(as.presented).toEqual(["rt-0"])
      // The one after spends the successor (and times out again: this server is slow).
      const third = yield* Effect.fork(Effect.either(source.fetch))
      yield* TestClock.adjust("15 seconds")
      yield* Fiber.join(third)
      expect(as.presented).toEqual(["rt-0", "rt-1"])
      expect(Option.map(yield* store.get, Redacted.value)).toEqual(Option.some("rt-2"))
      expect(as.reusedCount()).toBe(0)
    }))

  it.effect("an answer that never comes: the next fetch waits up to answerTimeout, never sending the token twice meanwhile", () =>
    Effect.gen(function*() {
      const { client, requests } = yield* fake(() => Effect.never)
      const store = yield* RefreshTokenStore.make(Redacted.make("rt-0"))
      const source = yield* RefreshToken.make({ tokenUrl, clientAuth, answerTimeout: "30 seconds" }).pipe(
        Effect.provideService(RefreshTokenStore.RefreshTokenStore, store),
        Effect.provideService(HttpClient.HttpClient, client)
      )
      const first = yield* Effect.fork(Effect.flip(source.fetch))
      yield* TestClock.adjust("10 seconds")
      yield* Fiber.join(first)
      const second = yield* Effect.fork(Effect.flip(source.fetch))
      yield* TestClock.adjust("19 seconds")
      expect((yield* requests).length).toBe(1)
      expect(Option.isNone(yield* Fiber.poll(second))).toBe(true)
      // Past the first request's bound, the memory store's token is sent again: a store that only this process
      // uses has nobody else to ask, and no answer came.
      yield* TestClock.adjust("1 second")
      yield* TestClock.adjust("10 seconds")
      yield* Fiber.join(second)
      expect((yield* requests).length).toBe(2)
    }))

  it.effect("an interrupted caller waits at most attemptTimeout; the answer is stored when it comes", () =>
    Effect.gen(function*() {
      const as = yield* rotating("20 seconds")
      const store = yield* RefreshTokenStore.make(Redacted.make("rt-0"))
      const source = yield* RefreshToken.make({ tokenUrl, clientAuth, attemptTimeout: "5 seconds" }).pipe(
        Effect.provideService(RefreshTokenStore.RefreshTokenStore, store),
        Effect.provideService(HttpClient.HttpClient, as.client)
      )
      const fetching = yield* Effect.fork(source.fetch)
      yield* TestClock.adjust("1 second")
      const interrupting = yield* Effect.fork(Fiber.interrupt(fetching))
      yield* TestClock.adjust("3999 millis")
      expect(Option.isNone(yield* Fiber.poll(interrupting))).toBe(true)
      yield* TestClock.adjust("1 millis")
      expect(Exit.isInterrupted(yield* Fiber.join(interrupting))).toBe(true)
      expect(Option.map(yield* store.get, Redacted.value)).toEqual(Option.some("rt-0"))
      yield* TestClock.adjust("15 seconds")
      expect(Option.map(yield* store.get, Redacted.value)).toEqual(Option.some("rt-1"))
    }))

  it.effect("through a TokenCache: a slow refresh costs one request, and the cache gets a token on its next fetch", () =>
    Effect.gen(function*() {
      const as = yield* rotating("12 seconds")
      const store = yield* RefreshTokenStore.make(Redacted.make("rt-0"))
      const source = yield* RefreshToken.make({ tokenUrl, clientAuth }).pipe(
        Effect.provideService(RefreshTokenStore.RefreshTokenStore, store),
        Effect.provideService(HttpClient.HttpClient, as.client)
      )
      const cache = yield* TokenCache.make(source)
      const first = yield* Effect.fork(Effect.either(cache.get))
      yield* TestClock.adjust("10 seconds")
      expect((yield* Fiber.join(first))._tag).toBe("Left")
      const second = yield* Effect.fork(cache.get)
      yield* TestClock.adjust("2 seconds")
      expect(valueOf(yield* Fiber.join(second))).toBe("at-for-rt-0")
      expect(as.presented).toEqual(["rt-0"])
    }).pipe(Effect.scoped))
})

/** A store that records what the source does with its spends, with scripted decisions. */
const scriptedStore = (decisions: Array<RefreshTokenStore.SpendDecision | "grant">) =>
  Effect.gen(function*() {
    const inner = yield* RefreshTokenStore.make(Redacted.make("rt-0"))
    const events = yield* Ref.make<ReadonlyArray<string>>([])
    const record = (event: string) => Ref.update(events, (all) => [...all, event])
    const spend = (takeover: boolean): RefreshTokenStore.Spend => ({
      takeover,
      provenance: "the initial refresh token from REFRESH_TOKEN; sign in again and store the new one",
      complete: (answer) =>
        Effect.zipRight(
          record(`complete ${Option.getOrElse(Option.map(answer.refreshToken, Redacted.value), () => "-")}`),
          Option.match(answer.refreshToken, { onNone: () => Effect.void, onSome: inner.set })
        ),
      withdraw: record("withdraw"),
      reject: record("reject")
    })
    const store: RefreshTokenStore.RefreshTokenStore = {
      ...inner,
      spend: (token) =>
        Effect.gen(function*() {
          yield* record(`spend ${Redacted.value(token)}`)
          const next = decisions.shift() ?? "grant"
          return next === "grant" ? RefreshTokenStore.granted(spend(false)) : next
        })
    }
    return { store, events: Ref.get(events), spend, inner }
  })

describe("a store that fences across processes (RefreshTokenStore.spend)", () => {
  it.effect("Pending waits and asks again; Stale reads again; Granted sends once and completes with the answer", () =>
    Effect.gen(function*() {
      const as = yield* rotating()
      const { events, inner, store } = yield* scriptedStore([
        RefreshTokenStore.pending("2 seconds"),
        RefreshTokenStore.stale,
        "grant"
      ])
      const source = yield* RefreshToken.make({ tokenUrl, clientAuth }).pipe(
        Effect.provideService(RefreshTokenStore.RefreshTokenStore, store),
        Effect.provideService(HttpClient.HttpClient, as.client)
      )
      const fetching = yield* Effect.fork(source.fetch)
      yield* TestClock.adjust("1999 millis")
      expect(as.presented).toEqual([])
      yield* TestClock.adjust("1 millis")
      expect(valueOf(yield* Fiber.join(fetching))).toBe("at-for-rt-0")
      expect(yield* events).toEqual(["spend rt-0", "spend rt-0", "spend rt-0", "complete rt-1"])
      expect(Option.map(yield* inner.get, Redacted.value)).toEqual(Option.some("rt-1"))
    }))

  it.effect("each failure resolves the spend by what it says of the token: withdraw, reject, or unresolved", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<
        readonly [
          string,
          (
            request: Parameters<Parameters<typeof HttpClient.make>[0]>[0]
          ) => Effect.Effect<HttpClientResponse.HttpClientResponse, HttpClientError.HttpClientError>,
          string
        ]
      > = [
        ["refused", (request) => Effect.fail(transport(request, "ECONNREFUSED")), "withdraw"],
        [
          "503",
          (request) => Effect.succeed(HttpClientResponse.fromWeb(request, new Response("busy", { status: 503 }))),
          "withdraw"
        ],
        [
          "invalid_client",
          (request) => Effect.succeed(HttpClientResponse.fromWeb(request, json({ error: "invalid_client" }, 401))),
          "withdraw"
        ],
        [
          "invalid_grant",
          (request) => Effect.succeed(HttpClientResponse.fromWeb(request, json({ error: "invalid_grant" }, 400))),
          "reject"
        ],
        ["reset after sending", (request) => Effect.fail(transport(request, "ECONNRESET")), "(none)"],
        [
          "a 200 that does not decode",
          (request) => Effect.succeed(HttpClientResponse.fromWeb(request, json({ token_type: "Bearer" }))),
          "(none)"
        ]
      ]
      for (const [name, answer, expected] of cases) {
        const { events, store } = yield* scriptedStore([])
        const source = yield* RefreshToken.make({ tokenUrl, clientAuth }).pipe(
          Effect.provideService(RefreshTokenStore.RefreshTokenStore, store),
          Effect.provideService(HttpClient.HttpClient, HttpClient.make(answer))
        )
        yield* Effect.flip(source.fetch)
        const resolution = (yield* events).filter((event) => !event.startsWith("spend"))
        expect([name, resolution.length === 0 ? "(none)" : resolution.join(",")]).toEqual([name, expected])
      }
    }))

  it.effect("a rejection names where the token came from and what to do", () =>
    Effect.gen(function*() {
      const { client } = yield* fake(() => json({ error: "invalid_grant" }, 400))
      const { store } = yield* scriptedStore([])
      const source = yield* RefreshToken.make({ tokenUrl, clientAuth }).pipe(
        Effect.provideService(RefreshTokenStore.RefreshTokenStore, store),
        Effect.provideService(HttpClient.HttpClient, client)
      )
      const error = yield* Effect.flip(source.fetch)
      expect(error.reason._tag).toBe("RefreshTokenRejected")
      expect(error.message).toContain(
        "the initial refresh token from REFRESH_TOKEN; sign in again and store the new one"
      )
    }))

  it.effect("a takeover is logged as such before the token goes out again", () =>
    Effect.gen(function*() {
      const as = yield* rotating()
      const { spend, store: base } = yield* scriptedStore([])
      const store: RefreshTokenStore.RefreshTokenStore = {
        ...base,
        spend: () => Effect.succeed(RefreshTokenStore.granted(spend(true)))
      }
      const logs: Array<string> = []
      const source = yield* RefreshToken.make({ tokenUrl, clientAuth }).pipe(
        Effect.provideService(RefreshTokenStore.RefreshTokenStore, store),
        Effect.provideService(HttpClient.HttpClient, as.client)
      )
      yield* source.fetch.pipe(
        Effect.provide(Logger.replace(Logger.defaultLogger, Logger.make(({ message }) => logs.push(String(message)))))
      )
      expect(logs.some((line) => line.includes("stayed unresolved past its deadline"))).toBe(true)
    }))

  it.effect("a process held up between the record and the send does not send (no time left before the deadline)", () =>
    Effect.gen(function*() {
      const as = yield* rotating()
      const { events, spend, store: base } = yield* scriptedStore([])
      let calls = 0
      const store: RefreshTokenStore.RefreshTokenStore = {
        ...base,
        // The first grant comes back 55 s late (a paused process): of the 60 s the spend holds, 5 are left, less
        // than the 10 s a request may take.
        spend: (token, options) =>
          Effect.zipRight(
            calls++ === 0 ? Effect.sleep("55 seconds") : Effect.void,
            Effect.flatMap(base.spend!(token, options), () => Effect.succeed(RefreshTokenStore.granted(spend(false))))
          )
      }
      const source = yield* RefreshToken.make({ tokenUrl, clientAuth }).pipe(
        Effect.provideService(RefreshTokenStore.RefreshTokenStore, store),
        Effect.provideService(HttpClient.HttpClient, as.client)
      )
      const fetching = yield* Effect.fork(source.fetch)
      yield* TestClock.adjust("55 seconds")
      yield* Fiber.join(fetching)
      expect(yield* events).toEqual(["spend rt-0", "withdraw", "spend rt-0", "complete rt-1"])
      expect(as.presented).toEqual(["rt-0"])
    }))
})

const transport = (request: Parameters<Parameters<typeof HttpClient.make>[0]>[0], code: string) =>
  new HttpClientError.RequestError({
    request,
    reason: "Transport",
    cause: Object.assign(new Error(`${code}: socket`), { code })
  })

describe("two sources over one store", () => {
  it.effect("share the spend in flight: the second waits for the first's late answer instead of sending", () =>
    Effect.gen(function*() {
      const as = yield* rotating("15 seconds")
      const store = yield* RefreshTokenStore.make(Redacted.make("rt-0"))
      const make = RefreshToken.make({ tokenUrl, clientAuth }).pipe(
        Effect.provideService(RefreshTokenStore.RefreshTokenStore, store),
        Effect.provideService(HttpClient.HttpClient, as.client)
      )
      const [a, b] = [yield* make, yield* make]
      const first = yield* Effect.fork(Effect.either(a.fetch))
      yield* TestClock.adjust("10 seconds")
      yield* Fiber.join(first)
      const second = yield* Effect.fork(b.fetch)
      yield* TestClock.adjust("5 seconds")
      yield* Fiber.join(second)
      expect(as.presented).toEqual(["rt-0"])
    }))
})
