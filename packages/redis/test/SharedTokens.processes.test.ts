/*
 * Service instances as real OS processes (node + tsx, configured from the environment like an application) against
 * a real redis-server (or a 3-master Cluster) and a real token server on a loopback port. The token server counts
 * token requests: that count is what the shared store exists to keep down.
 */
import { TestAuthorizationServer } from "@effect-token/testing"
import { Fault } from "@effect-token/testing"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { randomKey } from "./support/fixtures.js"
import * as Instances from "./support/instances.js"
import * as RedisServer from "./support/redisServer.js"

const instanceCount = 8
const callers = 100
// Long enough that a token asked for under a slow answer (`Fault.slow("1 second")`) is still usable when a starved
// event loop reads it; short enough that five expiries take seconds, not minutes.
const lifetimeMillis = 4_000

const tokenRequests = (as: TestAuthorizationServer.TestAuthorizationServer) =>
  Effect.map(as.requests, (requests) => requests.client_credentials ?? 0)

const environment = (
  as: TestAuthorizationServer.TestAuthorizationServer,
  redis: { readonly REDIS_URL: string } | { readonly REDIS_CLUSTER_NODES: string },
  extra: Record<string, string> = {}
): Record<string, string> => ({
  ...redis,
  REDIS_TOKEN_KEYS: `k1:${btoa(String.fromCharCode(...Redacted.value(randomKey())))}`,
  REDIS_TOKEN_PREFIX: `test-${Math.random().toString(36).slice(2)}`,
  REDIS_TOKEN_POLL_INTERVAL: "100 millis",
  REDIS_TOKEN_RETRY_AFTER: "500 millis",
  // Eight processes on two shared cores: an event loop can stall for a while.
  REDIS_TIMEOUT: "2 seconds",
  TOKEN_URL: as.tokenUrl,
  CLIENT_ID: "test-client",
  CLIENT_SECRET: "test-secret",
  CACHE_SKEW: "100 millis",
  ...extra
})

/**
 * Every caller of every instance got a token, and all got the same one. A failure says what the instances logged
 * (an instance that found Redis unavailable fetches its own token, and says so).
 */
const expectOneToken = (
  results: ReadonlyArray<Instances.RoundResult>,
  instances: ReadonlyArray<Instances.Instance>,
  expectedCallers = callers
) => {
  const logged = instances.flatMap((instance, i) => instance.warnings().map((warning) => `instance ${i}: ${warning}`))
  for (const result of results) {
    expect(result.failed, [...result.errors, ...logged].join("; ")).toBe(0)
    expect(result.ok).toBe(expectedCallers)
  }
  expect(new Set(results.flatMap((result) => result.tokens)).size, logged.join("; ")).toBe(1)
}

const maxMillis = (results: ReadonlyArray<Instances.RoundResult>) => Math.max(...results.map((r) => r.ms))

// Past the token's usable lifetime, so that every cache needs a new one.
const waitForExpiry = Effect.sleep(`${lifetimeMillis + 200} millis`)

afterAll(() => Instances.removeBundle())

const log = (line: string) => Effect.sync(() => process.stdout.write(`    [measured] ${line}\n`))

describe("shared tokens across OS processes", () => {
  it.scopedLive(
    "8 processes x 100 callers, cold: 1 token request; 5 expiries: 5 token requests",
    () =>
      Effect.gen(function*() {
        const redis = yield* RedisServer.single
        const as = yield* TestAuthorizationServer.make({ tokenLifetime: `${lifetimeMillis / 1000} seconds` })
        const instances = yield* Instances.startAll(instanceCount, environment(as, { REDIS_URL: redis.url }))

        const first = yield* Instances.roundAll(instances, callers)
        expectOneToken(first, instances)
        expect(yield* tokenRequests(as)).toBe(1)
        yield* log(
          `cold round: ${instanceCount * callers} callers, 1 token request, slowest instance ${maxMillis(first)} ms`
        )

        for (let expiry = 2; expiry <= 5; expiry++) {
          yield* waitForExpiry
          const round = yield* Instances.roundAll(instances, callers)
          expectOneToken(round, instances)
          expect(yield* tokenRequests(as)).toBe(expiry)
          yield* log(`expiry ${expiry}: slowest instance ${maxMillis(round)} ms`)
        }
        // Nothing went wrong with Redis, so nothing was logged as a warning.
        expect(instances.flatMap((instance) => instance.warnings())).toEqual([])
      }),
    { timeout: 600_000 }
  )

  it.scopedLive(
    "the lease holder killed with SIGKILL mid-fetch: the others get a token within the lease TTL plus one fetch",
    () =>
      Effect.gen(function*() {
        const leaseTtlMillis = 2_000
        const redis = yield* RedisServer.single
        const as = yield* TestAuthorizationServer.make({ tokenLifetime: "30 seconds" })
        const instances = yield* Instances.startAll(
          instanceCount,
          environment(as, { REDIS_URL: redis.url }, { REDIS_TOKEN_LEASE_TTL: `${leaseTtlMillis} millis` })
        )
        // The first token request hangs long enough for its sender to be killed in the middle of it.
        yield* as.failNext(Fault.slow("10 seconds"))

        const rounds = yield* Effect.forEach(instances, (instance) => Effect.fork(instance.round(callers)))
        const holder = yield* Effect.raceAll(instances.map((instance) => Effect.as(instance.fetchStarted, instance)))
        // Killed once its request is at the token server (not before it is sent): it dies holding the lease.
        while ((yield* tokenRequests(as)) === 0) yield* Effect.sleep("5 millis")
        yield* holder.kill
        const killedAt = Date.now()

        const survivors = instances.filter((instance) => instance !== holder)
        const results = yield* Effect.forEach(
          rounds.filter((_, i) => instances[i] !== holder),
          (fiber) => fiber.await.pipe(Effect.flatten)
        )
        const elapsed = Date.now() - killedAt
        expectOneToken(results, survivors)
        // The killed request, then exactly one more.
        expect(yield* tokenRequests(as)).toBe(2)
        yield* log(
          `holder killed: ${survivors.length} instances had a token ${elapsed} ms later (lease TTL ${leaseTtlMillis} ms)`
        )
        // The lease's end plus one fetch (and a poll); the 20 s wait timeout would be far beyond.
        expect(elapsed).toBeLessThan(leaseTtlMillis + 2_000)
      }),
    { timeout: 600_000 }
  )

  it.scopedLive(
    "Redis stopped mid-run: no request fails, one token request per instance, one warning each; restart recovers",
    () =>
      Effect.gen(function*() {
        const redis = yield* RedisServer.single
        const as = yield* TestAuthorizationServer.make({ tokenLifetime: `${lifetimeMillis / 1000} seconds` })
        const instances = yield* Instances.startAll(instanceCount, environment(as, { REDIS_URL: redis.url }))

        expectOneToken(yield* Instances.roundAll(instances, callers), instances)
        expect(yield* tokenRequests(as)).toBe(1)

        // Redis dies while one instance fetches and the seven others wait for it.
        yield* waitForExpiry
        yield* as.failNext(Fault.slow("1 second"))
        const rounds = yield* Effect.forEach(instances, (instance) => Effect.fork(instance.round(callers)))
        yield* Effect.raceAll(instances.map((instance) => instance.fetchStarted))
        yield* redis.stop
        const during = yield* Effect.forEach(rounds, (fiber) => fiber.await.pipe(Effect.flatten))
        for (const result of during) {
          expect(result.failed, result.errors.join("; ")).toBe(0)
          expect(result.ok).toBe(callers)
        }
        const afterStop = (yield* tokenRequests(as)) - 1
        expect(afterStop).toBeLessThanOrEqual(instanceCount)
        yield* log(
          `Redis killed mid-fetch: ${afterStop} token requests for ${instanceCount} instances, slowest ${
            maxMillis(during)
          } ms`
        )

        // Still down, next expiry: each instance asks the token server itself, once.
        yield* waitForExpiry
        const before = yield* tokenRequests(as)
        const down = yield* Instances.roundAll(instances, callers)
        for (const result of down) expect(result.failed).toBe(0)
        expect((yield* tokenRequests(as)) - before).toBe(instanceCount)
        yield* log(`Redis down: ${instanceCount} token requests, slowest instance ${maxMillis(down)} ms`)
        // One warning per instance for the whole outage, not one per call.
        for (const instance of instances) expect(instance.warnings().length).toBe(1)

        // Back: the clients reconnect by themselves (at most 2 s between attempts), sharing resumes.
        yield* redis.start
        yield* Effect.sleep("4 seconds")
        yield* waitForExpiry
        const recovered = yield* tokenRequests(as)
        const back = yield* Instances.roundAll(instances, callers)
        expectOneToken(back, instances)
        expect((yield* tokenRequests(as)) - recovered).toBe(1)
        yield* log(`Redis back: 1 token request for ${instanceCount} instances, slowest instance ${maxMillis(back)} ms`)
        for (const instance of instances) {
          expect(instance.warnings().length).toBe(1)
          const recoveries = instance.events.filter((e) => e.event === "log" && e.level === "INFO")
          expect(recoveries.map((e) => e.message)).toEqual([
            "effect-token/redis: Redis answers again; tokens are shared again"
          ])
        }
      }),
    { timeout: 600_000 }
  )
})

describe("shared tokens across OS processes, 3-master Redis Cluster", () => {
  it.scopedLive("8 processes x 100 callers, cold: 1 token request; next expiry: 1 more", () =>
    Effect.gen(function*() {
      const cluster = yield* RedisServer.cluster
      const as = yield* TestAuthorizationServer.make({ tokenLifetime: `${lifetimeMillis / 1000} seconds` })
      const instances = yield* Instances.startAll(
        instanceCount,
        environment(as, { REDIS_CLUSTER_NODES: cluster.nodes.join(",") })
      )
      const first = yield* Instances.roundAll(instances, callers)
      expectOneToken(first, instances)
      expect(yield* tokenRequests(as)).toBe(1)
      yield* waitForExpiry
      const second = yield* Instances.roundAll(instances, callers)
      expectOneToken(second, instances)
      expect(yield* tokenRequests(as)).toBe(2)
      yield* log(`cluster: slowest instance ${maxMillis(first)} ms cold, ${maxMillis(second)} ms after expiry`)
      expect(instances.flatMap((instance) => instance.warnings())).toEqual([])
    }), { timeout: 600_000 })
})
