/**
 * User sessions (`@effect-token/session`): what the session middleware costs per request, and what a session costs
 * in memory, held in the process (memory store) or in Redis (`RedisUserTokenStore`).
 *
 * 1. Signed-in requests (a valid session cookie, a token far from expiry) to a `NodeHttpServer` app wrapped in
 *    `UserSession.middleware` vs the same app without it, on the same server and the same undici client, the same
 *    cookie sent to both. Sequential requests in interleaved blocks (plain/ours, then ours/plain); medians.
 * 2. 100,000 idle sessions in `UserTokenStore.makeMemory`, created through `UserSessions.create` with realistic token
 *    sizes (1,000-character access and ID tokens, a 43-character refresh token): heap per session after a full GC,
 *    against the same records in a plain `Map` (the floor any in-process store pays for the tokens themselves).
 * 3. The same sessions in `RedisUserTokenStore` on a local `redis-server`: the process heap per session (should be
 *    flat: the records live in Redis), and Redis's `used_memory` per session (encrypted records) for information.
 *
 * Needs `redis-server` on the PATH for 3 (`scripts/system-deps.sh` installs it); without it the row says so.
 */
import { AccessToken, ClientAuth, Discovery } from "@effect-token/core"
import { KeyRing, RedisClient } from "@effect-token/redis"
import { RedisIoredis } from "@effect-token/redis/ioredis"
import * as RedisUserTokenStore from "@effect-token/redis/RedisUserTokenStore"
import { UserSession, UserTokenStore } from "@effect-token/session"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { DateTime, Effect, Option, Redacted } from "effect"
import * as Http from "node:http"
import * as RedisServer from "../src/RedisServer.js"
import type { Benchmark, Row } from "./harness.js"
import { BenchSettings, Goal, heapUsed, median, now, row } from "./harness.js"
import { getText, timeEach, undiciClient } from "./support.js"

const name = "session"

// ---------------------------------------------------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------------------------------------------------

/** No request reaches it: every token is valid for an hour, and discovery is fetched only for a refresh. */
const noIssuer = HttpClient.make((request) =>
  Effect.succeed(HttpClientResponse.fromWeb(request, new Response("not in this benchmark", { status: 503 })))
)

const makeSessions = (store: UserTokenStore.UserTokenStore) =>
  Effect.gen(function*() {
    const discovery = yield* Discovery.makeWith(noIssuer, { issuer: "https://issuer.bench" })
    return yield* UserSession.make({
      discovery,
      clientAuth: ClientAuth.clientSecretBasic({ clientId: "web", clientSecret: Redacted.make("bench-secret") })
    }).pipe(
      Effect.provideService(UserTokenStore.UserTokenStore, store),
      Effect.provideService(HttpClient.HttpClient, noIssuer)
    )
  })

/**
 * A flat string, as one decoded from a token response is. (A `padEnd` result is a rope sharing its padding with every
 * other token, which would flatter the memory rows.)
 */
const flat = (text: string): string => JSON.parse(JSON.stringify(text)) as string

/** A login's tokens, distinct per session (no string shared between sessions), sized as real ones. */
const loginOf = (i: number, at: DateTime.Utc) => ({
  subject: `user-${i}`,
  token: AccessToken.make({
    value: Redacted.make(flat(`eyJ-access-${i}-`.padEnd(1_000, "a"))),
    issuedAt: at,
    expiresAt: Option.some(DateTime.add(at, { hours: 1 })),
    refreshToken: Option.some(Redacted.make(flat(`rt-${i}-`.padEnd(43, "r"))))
  }),
  idToken: Option.some(Redacted.make(flat(`eyJ-id-${i}-`.padEnd(1_000, "i"))))
})

// ---------------------------------------------------------------------------------------------------------------
// 1. Middleware overhead
// ---------------------------------------------------------------------------------------------------------------

const overheadRows = Effect.gen(function*() {
  const { pick } = yield* BenchSettings
  const rounds = pick(5, 1)
  const perRound = pick(2_000, 100)
  const block = pick(200, 50)
  const warmup = pick(1_000, 20)

  const sessions = yield* makeSessions(yield* UserTokenStore.makeMemory())
  const at = yield* DateTime.now
  const id = yield* sessions.create(loginOf(0, at))

  // The same app twice: `/plain` as it is, `/session` inside the middleware (which loads the session and its token).
  const app = Effect.as(HttpServerRequest.HttpServerRequest, HttpServerResponse.text("ok"))
  const withSession = UserSession.middleware(app).pipe(Effect.provideService(UserSession.UserSessions, sessions))
  const router = Effect.flatMap(
    HttpServerRequest.HttpServerRequest,
    (request) => request.url.startsWith("/session") ? withSession : app
  )
  const nodeServer = Http.createServer()
  const server = yield* NodeHttpServer.make(() => nodeServer, { port: 0, host: "127.0.0.1" })
  yield* Effect.addFinalizer(() => Effect.sync(() => nodeServer.closeAllConnections()))
  yield* server.serve(router)
  const port = server.address._tag === "TcpAddress" ? server.address.port : 0

  const client = HttpClient.mapRequest(
    yield* undiciClient,
    HttpClientRequest.setHeader("cookie", `${sessions.cookieName}=${Redacted.value(id)}`)
  )
  const check = (response: readonly [number, string]) =>
    response[0] === 200 ? Effect.void : Effect.dieMessage(`unexpected answer ${response[0]}`)
  const plainRequest = Effect.flatMap(getText(client, `http://127.0.0.1:${port}/plain`), check)
  const ourRequest = Effect.flatMap(getText(client, `http://127.0.0.1:${port}/session`), check)
  yield* timeEach(plainRequest, warmup, [])
  yield* timeEach(ourRequest, warmup, [])

  const plainLatencies: Array<number> = []
  const ourLatencies: Array<number> = []
  const plainRates: Array<number> = []
  const ourRates: Array<number> = []
  for (let round = 0; round < rounds; round++) {
    let plainTime = 0
    let ourTime = 0
    for (let b = 0; b < perRound / block; b++) {
      const timed = (request: typeof plainRequest, into: Array<number>, add: (ms: number) => void) =>
        Effect.suspend(() => {
          const start = now()
          return Effect.ensuring(timeEach(request, block, into), Effect.sync(() => add(now() - start)))
        })
      const runPlain = timed(plainRequest, plainLatencies, (ms) => plainTime += ms)
      const runOurs = timed(ourRequest, ourLatencies, (ms) => ourTime += ms)
      yield* (round + b) % 2 === 0 ? Effect.zipRight(runPlain, runOurs) : Effect.zipRight(runOurs, runPlain)
    }
    plainRates.push(perRound / (plainTime / 1000))
    ourRates.push(perRound / (ourTime / 1000))
  }

  // The middleware's own work, without a network or a server: both apps run in process on a request built once per
  // call, as the server would hand it over.
  const cookie = `${sessions.cookieName}=${Redacted.value(id)}`
  const requestOf = () => HttpServerRequest.fromWeb(new Request(`http://127.0.0.1/session`, { headers: { cookie } }))
  const inProcessN = pick(20_000, 200)
  const inProcessPlain: Array<number> = []
  const inProcessOurs: Array<number> = []
  for (let r = 0; r < pick(5, 1); r++) {
    for (const [handler, into] of [[app, inProcessPlain], [withSession, inProcessOurs]] as const) {
      const start = now()
      yield* Effect.gen(function*() {
        for (let i = 0; i < inProcessN; i++) {
          yield* Effect.provideService(handler, HttpServerRequest.HttpServerRequest, requestOf())
        }
      })
      into.push(((now() - start) * 1000) / inProcessN)
    }
  }

  const baseline = "same app without the middleware"
  return [
    row(name, {
      metric: `signed-in request latency, loopback, median of ${ourLatencies.length}`,
      unit: "µs",
      ours: median(ourLatencies) * 1000,
      baseline: { name: baseline, value: median(plainLatencies) * 1000 },
      goal: Goal.ratioAtMost(1.05),
      note: "memory store; the middleware parses the cookie, loads the session and its (valid) access token"
    }),
    row(name, {
      metric: `signed-in throughput, loopback, median of ${rounds} rounds`,
      unit: "req/s",
      ours: median(ourRates),
      baseline: { name: baseline, value: median(plainRates) },
      goal: Goal.ratioAtLeast(1 / 1.05)
    }),
    row(name, {
      metric: "middleware cost without network (in process)",
      unit: "µs/req",
      ours: median(inProcessOurs),
      baseline: { name: baseline, value: median(inProcessPlain) },
      note: "the absolute extra work per signed-in request (cookie, two store reads, expiry rules, the request's " +
        "session service, error mapping), without network noise; on loopback the same work is added to each request"
    })
  ] satisfies ReadonlyArray<Row>
})

// ---------------------------------------------------------------------------------------------------------------
// 2. and 3. Memory per idle session
// ---------------------------------------------------------------------------------------------------------------

/** Creates `count` sessions through `UserSessions.create`; the ids go to the browsers, so nothing here keeps them. */
const createSessions = (sessions: UserSession.UserSessions, count: number, concurrency: number) =>
  Effect.gen(function*() {
    const at = yield* DateTime.now
    let last: Redacted.Redacted<string> | undefined
    yield* Effect.forEach(
      Array.from({ length: count }, (_, i) => i),
      (i) => Effect.map(sessions.create(loginOf(i, at)), (id) => void (last = id)),
      { concurrency, discard: true }
    )
    return last!
  })

const memoryStoreRows = Effect.gen(function*() {
  const { pick } = yield* BenchSettings
  const count = pick(100_000, 2_000)
  yield* heapUsed()

  // The floor: the same records in a plain Map, keyed by a session id of the same length.
  const floor = (count: number) =>
    Effect.gen(function*() {
      const at = yield* DateTime.now
      const before = yield* heapUsed()
      const map = new Map<string, UserTokenStore.SessionRecord>()
      for (let i = 0; i < count; i++) {
        const login = loginOf(i, at)
        map.set(
          flat(`${i}`.padEnd(43, "s")),
          UserTokenStore.SessionRecord.make({
            subject: login.subject,
            accessToken: AccessToken.make({ ...login.token, refreshToken: Option.none() }),
            refreshToken: login.token.refreshToken,
            idToken: login.idToken,
            resourceTokens: {},
            createdAt: at,
            lastSeenAt: at
          })
        )
      }
      const after = yield* heapUsed()
      const perSession = (after - before) / count
      map.clear()
      return perSession
    })
  yield* floor(500)
  const floorPerSession = yield* floor(count)

  const store = yield* UserTokenStore.makeMemory({ capacity: count + 1 })
  const sessions = yield* makeSessions(store)
  // Warm the JIT on a throwaway store first, so that compiled code is not counted as sessions.
  yield* createSessions(yield* makeSessions(yield* UserTokenStore.makeMemory()), 500, 1)
  const before = yield* heapUsed()
  const last = yield* createSessions(sessions, count, 1)
  const after = yield* heapUsed()
  // Still there (the capacity held them all), and served.
  yield* sessions.accessToken(last)
  return [
    row(name, {
      metric: `memory store: heap per idle session, ${count.toLocaleString("en-US")} sessions`,
      unit: "B",
      ours: Math.round((after - before) / count),
      baseline: { name: "same records in a plain Map", value: Math.round(floorPerSession) },
      goal: Goal.atMost(4_096, "B"),
      note: "1,000-character access and ID tokens and a 43-character refresh token per session: about 2 KB of " +
        "token text that any in-process store holds"
    })
  ] satisfies ReadonlyArray<Row>
})

const redisUsedMemory = (client: RedisClient.RedisClient) =>
  Effect.map(client.send<string>("INFO", "memory"), (info) => Number(/used_memory:(\d+)/.exec(info)?.[1] ?? NaN))

const redisStoreRows = Effect.gen(function*() {
  const { pick } = yield* BenchSettings
  // Quick mode: fewer, since each one is a Redis round trip and two Web Crypto calls.
  const count = pick(100_000, 1_000)
  if (!RedisServer.isInstalled()) {
    return [row(name, {
      metric: "Redis store: not measured, redis-server is not installed (scripts/system-deps.sh installs it)",
      unit: "",
      ours: 0
    })]
  }
  // A measurement of memory, not of faults: a busy machine (the suite runs this in quick mode, starved CPU
  // included) can hold a command past the default 1 s, which would end the run rather than slow it.
  const client = yield* RedisIoredis.make({ url: (yield* RedisServer.make).url, timeout: "30 seconds" })
  const keyRing = yield* KeyRing.make([{
    kid: "bench",
    key: Redacted.make(crypto.getRandomValues(new Uint8Array(32)))
  }])
  const store = yield* RedisUserTokenStore.make({ keyRing }).pipe(
    Effect.provideService(RedisClient.RedisClient, client)
  )
  const sessions = yield* makeSessions(store)
  // A first batch, so that the connection's buffers, the scripts and the JIT are warm before measuring: what the
  // process keeps after it is a one-time cost, not a per-session one.
  yield* createSessions(sessions, pick(5_000, 100), 64)
  const redisBefore = yield* redisUsedMemory(client)
  const before = yield* heapUsed()
  const start = now()
  const last = yield* createSessions(sessions, count, 64)
  const seconds = (now() - start) / 1000
  const after = yield* heapUsed()
  const redisAfter = yield* redisUsedMemory(client)
  yield* sessions.accessToken(last)
  return [
    row(name, {
      metric: `Redis store: process heap per idle session, ${count.toLocaleString("en-US")} sessions`,
      unit: "B",
      ours: Math.round((after - before) / count),
      goal: Goal.atMost(64, "B"),
      note: "the records live in Redis; the process keeps nothing per idle session (a negative value is GC noise)"
    }),
    row(name, {
      metric: "Redis store: Redis used_memory per session (encrypted record)",
      unit: "B",
      ours: Math.round((redisAfter - redisBefore) / count),
      note: `created through UserSessions.create, 64 at a time, at ${
        Math.round(count / seconds).toLocaleString("en-US")
      } sessions/s`
    })
  ] satisfies ReadonlyArray<Row>
})

export const benchmark: Benchmark = {
  name,
  description: "session middleware per signed-in request vs the same app without it; heap per idle session " +
    "with 100,000 sessions in the memory store and in the Redis store",
  run: Effect.gen(function*() {
    const overhead = yield* overheadRows
    const memory = yield* memoryStoreRows
    const redis = yield* redisStoreRows
    return [...overhead, ...memory, ...redis]
  })
}
