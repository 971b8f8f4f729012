/**
 * The refresh source and its store, against an in-process token endpoint.
 */
import { ClientAuth, RefreshToken, RefreshTokenStore, TokenCache, TokenError } from "@effect-token/core"
import { HttpClient, HttpClientError, HttpClientResponse } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Option, Redacted, Ref, TestClock } from "effect"
import { fake, json, tokenResponse } from "./support/http.js"

const tokenUrl = "https://as.example/token"
const clientAuth = ClientAuth.none({ clientId: "cli" })

describe("refresh source and a store that fails", () => {
  it.effect("set fails: the fetch fails with the store's typed error and no access token is handed out", () =>
    Effect.gen(function*() {
      const { client, requests } = yield* fake(() => tokenResponse({ refresh_token: "rotated" }))
      const inner = yield* RefreshTokenStore.make(Redacted.make("first"))
      const failing: RefreshTokenStore.RefreshTokenStore = {
        ...inner,
        set: () => Effect.fail(RefreshTokenStore.unavailable("redis: connection refused"))
      }
      const source = yield* RefreshToken.make({ tokenUrl, clientAuth }).pipe(
        Effect.provideService(RefreshTokenStore.RefreshTokenStore, failing),
        Effect.provideService(HttpClient.HttpClient, client)
      )
      const exit = yield* Effect.exit(source.fetch)
      // A typed failure, not a defect, and no token.
      expect(Exit.isFailure(exit) && exit.cause._tag === "Fail").toBe(true)
      const error = yield* Effect.flip(source.fetch)
      expect(TokenError.isTokenError(error)).toBe(true)
      expect(error.reason._tag).toBe("Unavailable")
      expect(error.operation).toBe("refresh token store")
      expect(error.message).toContain("connection refused")
      expect(error.message).not.toContain("rotated")
      expect((yield* requests).length).toBe(2)
    }))

  it.effect("get fails: the fetch fails with that error without a request", () =>
    Effect.gen(function*() {
      const { client, requests } = yield* fake(() => tokenResponse({ refresh_token: "rotated" }))
      const down: RefreshTokenStore.RefreshTokenStore = {
        get: Effect.fail(RefreshTokenStore.unavailable("session backend down")),
        set: () => Effect.void,
        clear: Effect.void
      }
      const source = yield* RefreshToken.make({ tokenUrl, clientAuth }).pipe(
        Effect.provideService(RefreshTokenStore.RefreshTokenStore, down),
        Effect.provideService(HttpClient.HttpClient, client)
      )
      const error = yield* Effect.flip(source.fetch)
      expect(error.reason._tag).toBe("Unavailable")
      expect(TokenError.isTransient(error)).toBe(true)
      expect((yield* requests).length).toBe(0)
    }))

  it.effect("the in-memory store still never fails and keeps the rotated token", () =>
    Effect.gen(function*() {
      const { client } = yield* fake(() => tokenResponse({ refresh_token: "rotated" }))
      const store = yield* RefreshTokenStore.make(Redacted.make("first"))
      const writes = yield* Ref.make(0)
      const counting: RefreshTokenStore.RefreshTokenStore = {
        ...store,
        set: (token) => Effect.zipRight(Ref.update(writes, (n) => n + 1), store.set(token))
      }
      const source = yield* RefreshToken.make({ tokenUrl, clientAuth }).pipe(
        Effect.provideService(RefreshTokenStore.RefreshTokenStore, counting),
        Effect.provideService(HttpClient.HttpClient, client)
      )
      const token = yield* source.fetch
      expect(Option.isNone(token.refreshToken)).toBe(true)
      expect(Option.map(yield* store.get, Redacted.value)).toEqual(Option.some("rotated"))
      expect(yield* Ref.get(writes)).toBe(1)
    }))
})

describe("refresh source and interruption", () => {
  it.effect("interrupted during the HTTP request: the answer is still read and the rotated token stored", () =>
    Effect.gen(function*() {
      const requested = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      // The server has received the request (and rotated the refresh token) but its answer is still on the way.
      const { client } = yield* fake(() =>
        Deferred.succeed(requested, undefined).pipe(
          Effect.zipRight(Deferred.await(release)),
          Effect.as(tokenResponse({ refresh_token: "rotated" }))
        )
      )
      const store = yield* RefreshTokenStore.make(Redacted.make("first"))
      const source = yield* RefreshToken.make({ tokenUrl, clientAuth }).pipe(
        Effect.provideService(RefreshTokenStore.RefreshTokenStore, store),
        Effect.provideService(HttpClient.HttpClient, client)
      )
      const fetching = yield* Effect.fork(source.fetch)
      yield* Deferred.await(requested)
      // The app shuts down: the fetch's fiber is interrupted while the request is in flight.
      const interrupting = yield* Effect.fork(Fiber.interrupt(fetching))
      // Time passes (well within the request's timeout) and the interruption still waits: for the answer, not a clock.
      yield* TestClock.adjust("1 second")
      expect(Option.isNone(yield* Fiber.poll(interrupting))).toBe(true)
      yield* Deferred.succeed(release, undefined)
      const exit = yield* Fiber.join(interrupting)
      // The caller still sees its interruption, but the rotated token made it into the store.
      expect(Exit.isInterrupted(exit)).toBe(true)
      expect(Option.map(yield* store.get, Redacted.value)).toEqual(Option.some("rotated"))
    }))

  it.effect("the request's timeout still bounds an interrupted refresh (a server that never answers)", () =>
    Effect.gen(function*() {
      const requested = yield* Deferred.make<void>()
      const { client } = yield* fake(() => Effect.zipRight(Deferred.succeed(requested, undefined), Effect.never))
      const store = yield* RefreshTokenStore.make(Redacted.make("first"))
      const source = yield* RefreshToken.make({ tokenUrl, clientAuth, attemptTimeout: "5 seconds" }).pipe(
        Effect.provideService(RefreshTokenStore.RefreshTokenStore, store),
        Effect.provideService(HttpClient.HttpClient, client)
      )
      const fetching = yield* Effect.fork(source.fetch)
      yield* Deferred.await(requested)
      const interrupting = yield* Effect.fork(Fiber.interrupt(fetching))
      yield* TestClock.adjust("4999 millis")
      expect(Option.isNone(yield* Fiber.poll(interrupting))).toBe(true)
      yield* TestClock.adjust("1 millis")
      yield* Fiber.join(interrupting)
      expect(Option.map(yield* store.get, Redacted.value)).toEqual(Option.some("first"))
    }))
})

describe("a refresh token is spent once", () => {
  /** A token endpoint that rotates: `rt-n` in, `rt-(n+1)` out, each answer after 1 s; counts requests in flight. */
  const rotating = Effect.gen(function*() {
    const inFlight = yield* Ref.make(0)
    const maxInFlight = yield* Ref.make(0)
    const { client, requests } = yield* fake((request) =>
      Effect.gen(function*() {
        const now = yield* Ref.updateAndGet(inFlight, (n) => n + 1)
        yield* Ref.update(maxInFlight, (m) => Math.max(m, now))
        yield* Effect.sleep("1 second")
        yield* Ref.update(inFlight, (n) => n - 1)
        const n = Number(request.form.get("refresh_token")!.slice(3))
        return tokenResponse({ refresh_token: `rt-${n + 1}` })
      })
    )
    return { client, requests, maxInFlight: Ref.get(maxInFlight) }
  })

  it.effect("two sources over one store: concurrent fetches send one request at a time, each with the latest token", () =>
    Effect.gen(function*() {
      const { client, maxInFlight, requests } = yield* rotating
      const store = yield* RefreshTokenStore.make(Redacted.make("rt-0"))
      const make = RefreshToken.make({ tokenUrl, clientAuth }).pipe(
        Effect.provideService(RefreshTokenStore.RefreshTokenStore, store),
        Effect.provideService(HttpClient.HttpClient, client)
      )
      const [a, b] = [yield* make, yield* make]
      const both = yield* Effect.fork(Effect.all([a.fetch, b.fetch, a.fetch, b.fetch], { concurrency: "unbounded" }))
      for (let i = 0; i < 4; i++) yield* TestClock.adjust("1 second")
      yield* Fiber.join(both)
      expect(yield* maxInFlight).toBe(1)
      expect((yield* requests).map((r) => r.form.get("refresh_token"))).toEqual(["rt-0", "rt-1", "rt-2", "rt-3"])
      expect(Option.map(yield* store.get, Redacted.value)).toEqual(Option.some("rt-4"))
    }))

  /**
   * A store shared without a common lock, as two processes whose lock lapsed: `sibling` rotates the token while this
   * source's request is on its way.
   */
  const withSibling = Effect.gen(function*() {
    const spent = new Set<string>()
    const { client, requests } = yield* fake((request) => {
      const presented = request.form.get("refresh_token")!
      if (spent.has(presented)) {
        return json({ error: "invalid_grant", error_description: "grant request is invalid" }, 400)
      }
      spent.add(presented)
      return tokenResponse({ refresh_token: `${presented}+` })
    })
    const store = yield* RefreshTokenStore.make(Redacted.make("rt"))
    // The sibling spends `rt` between this source's read and its request.
    const racing: RefreshTokenStore.RefreshTokenStore = {
      get: Effect.tap(
        store.get,
        (token) =>
          Option.isSome(token) && Redacted.value(token.value) === "rt" && !spent.has("rt")
            ? Effect.sync(() => spent.add("rt")).pipe(Effect.zipRight(store.set(Redacted.make("rt-sibling"))))
            : Effect.void
      ),
      set: store.set,
      clear: store.clear
    }
    const source = yield* RefreshToken.make({ tokenUrl, clientAuth }).pipe(
      Effect.provideService(RefreshTokenStore.RefreshTokenStore, racing),
      Effect.provideService(HttpClient.HttpClient, client)
    )
    return { source, store, requests, spent }
  })

  it.effect("invalid_grant after a sibling rotated: the sibling's newer token is spent instead of failing", () =>
    Effect.gen(function*() {
      const { requests, source, store } = yield* withSibling
      const token = yield* source.fetch
      expect(Redacted.value(token.value)).toBe("issued-access-token")
      expect((yield* requests).map((r) => r.form.get("refresh_token"))).toEqual(["rt", "rt-sibling"])
      expect(Option.map(yield* store.get, Redacted.value)).toEqual(Option.some("rt-sibling+"))
    }))

  it.effect("invalid_grant with the same token still in the store: RefreshTokenRejected after one request", () =>
    Effect.gen(function*() {
      const { client, requests } = yield* fake(() => json({ error: "invalid_grant" }, 400))
      const store = yield* RefreshTokenStore.make(Redacted.make("revoked"))
      const source = yield* RefreshToken.make({ tokenUrl, clientAuth }).pipe(
        Effect.provideService(RefreshTokenStore.RefreshTokenStore, store),
        Effect.provideService(HttpClient.HttpClient, client)
      )
      const error = yield* Effect.flip(source.fetch)
      expect(error.reason._tag).toBe("RefreshTokenRejected")
      expect((yield* requests).length).toBe(1)
    }))

  it.effect("the re-read spends the sibling's token once: a second rejection fails without a third request", () =>
    Effect.gen(function*() {
      const { client, requests } = yield* fake(() => json({ error: "invalid_grant" }, 400))
      const store = yield* RefreshTokenStore.make(Redacted.make("a"))
      let reads = 0
      // Every read finds a newer token, as if siblings kept rotating: the source does not chase them.
      const churning: RefreshTokenStore.RefreshTokenStore = {
        ...store,
        get: Effect.suspend(() =>
          Effect.as(store.set(Redacted.make(`t${++reads}`)), Option.some(Redacted.make(`t${reads}`)))
        )
      }
      const source = yield* RefreshToken.make({ tokenUrl, clientAuth }).pipe(
        Effect.provideService(RefreshTokenStore.RefreshTokenStore, churning),
        Effect.provideService(HttpClient.HttpClient, client)
      )
      const error = yield* Effect.flip(source.fetch)
      expect(error.reason._tag).toBe("RefreshTokenRejected")
      expect((yield* requests).map((r) => r.form.get("refresh_token"))).toEqual(["t1", "t2"])
    }))

  it.effect("a timeout after sending is not retried by the cache with the same refresh token", () =>
    Effect.gen(function*() {
      const { client, requests } = yield* fake(() => Effect.never)
      const store = yield* RefreshTokenStore.make(Redacted.make("rt-0"))
      const source = yield* RefreshToken.make({ tokenUrl, clientAuth, attemptTimeout: "5 seconds" }).pipe(
        Effect.provideService(RefreshTokenStore.RefreshTokenStore, store),
        Effect.provideService(HttpClient.HttpClient, client)
      )
      const cache = yield* TokenCache.make(source)
      const getting = yield* Effect.fork(Effect.flip(cache.get))
      yield* TestClock.adjust("5 seconds")
      // Time enough for every retry of the default schedule.
      yield* TestClock.adjust("1 minute")
      const error = yield* Fiber.join(getting)
      expect(error.reason).toMatchObject({ _tag: "Timeout", bound: "attempt", sent: true })
      expect(TokenError.isTransient(error)).toBe(false)
      expect((yield* requests).length).toBe(1)
    }).pipe(Effect.scoped))

  const failingWith = (code: string, then: () => Response) =>
    Effect.gen(function*() {
      const count = yield* Ref.make(0)
      const client = HttpClient.make((request) =>
        Effect.flatMap(Ref.getAndUpdate(count, (n) => n + 1), (n) =>
          n === 0
            ? Effect.fail(
              new HttpClientError.RequestError({
                request,
                reason: "Transport",
                cause: Object.assign(new Error(`${code}: socket`), { code })
              })
            )
            : Effect.succeed(HttpClientResponse.fromWeb(request, then())))
      )
      return { client, requests: Ref.get(count) }
    })

  it.effect("a connection refused (nothing sent) is retried; a reset after sending is not", () =>
    Effect.gen(function*() {
      for (const [code, expected] of [["ECONNREFUSED", 2], ["ECONNRESET", 1]] as const) {
        const { client, requests } = yield* failingWith(code, () => tokenResponse({ refresh_token: "rt-1" }))
        const store = yield* RefreshTokenStore.make(Redacted.make("rt-0"))
        const source = yield* RefreshToken.make({ tokenUrl, clientAuth }).pipe(
          Effect.provideService(RefreshTokenStore.RefreshTokenStore, store),
          Effect.provideService(HttpClient.HttpClient, client)
        )
        const cache = yield* TokenCache.make(source)
        const getting = yield* Effect.fork(Effect.either(cache.get))
        yield* TestClock.adjust("1 second")
        yield* Fiber.join(getting)
        expect([code, yield* requests]).toEqual([code, expected])
      }
    }).pipe(Effect.scoped))
})
