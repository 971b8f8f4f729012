/*
 * Issue 18, access tokens: client-credentials tokens shared through a real redis-server by instance processes under
 * continuous load (rounds of concurrent `cache.get` on every instance), while the lease holder is paused with
 * SIGSTOP, Redis is paused (`CLIENT PAUSE`, `DEBUG SLEEP`), or Redis is killed and restarted empty.
 *
 * Asserted for every scenario: no call fails (a valid token always exists or can be fetched), no served token is
 * past its `exp`, the slowest round of an instance that was not itself paused stays within `waitBound`, and the
 * token server saw no more requests than the scenario's stated bound. Every bound comes from the settings below
 * plus `margin`, which is sized for a starved CPU (8 busy processes on 2 cores), not for an idle machine.
 */
import { Fault, TestAuthorizationServer } from "@effect-token/testing"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { randomKey } from "../support/fixtures.js"
import * as Instances from "../support/instances.js"
import * as Load from "../support/load.js"
import * as RedisServer from "../support/redisServer.js"

const instanceCount = 6
const callers = 20
const leaseTtlMillis = 3_000
const redisTimeoutMillis = 2_000
/** The token server holds the request being faulted this long: "during a fetch". */
const fetchMillis = 1_500
const lifetimeMillis = 4_000
/**
 * Token requests that plain expiry may cause over a run: one per half lifetime (tokens are refreshed no earlier
 * than that), plus the cold one.
 */
const expiryRequests = (runMillis: number) => 1 + Math.ceil(runMillis / (lifetimeMillis / 2))

/** Room for two starved event loops (the caller's and the token server's) and a poll or two. */
const margin = 6_000
/**
 * The longest a caller may wait: one Redis timeout, the lease of a holder that no longer answers, one token fetch,
 * plus the margin.
 */
const waitBound = redisTimeoutMillis + leaseTtlMillis + fetchMillis + margin

afterAll(() => Instances.removeBundle())

const tokenRequests = (as: TestAuthorizationServer.TestAuthorizationServer) =>
  Effect.map(as.requests, (requests) => requests.client_credentials ?? 0)

const environment = (as: TestAuthorizationServer.TestAuthorizationServer, url: string): Record<string, string> => ({
  REDIS_URL: url,
  REDIS_TOKEN_KEYS: `k1:${btoa(String.fromCharCode(...Redacted.value(randomKey())))}`,
  REDIS_TOKEN_PREFIX: `faults-${Math.random().toString(36).slice(2)}`,
  REDIS_TOKEN_LEASE_TTL: `${leaseTtlMillis} millis`,
  REDIS_TOKEN_POLL_INTERVAL: "100 millis",
  REDIS_TOKEN_RETRY_AFTER: "500 millis",
  REDIS_TIMEOUT: `${redisTimeoutMillis} millis`,
  TOKEN_URL: as.tokenUrl,
  CLIENT_ID: "test-client",
  CLIENT_SECRET: "test-secret",
  CACHE_SKEW: "100 millis"
})

const check = (
  name: string,
  results: ReadonlyArray<Load.Tagged>,
  requests: number,
  requestBound: number,
  paused: ReadonlyArray<number> = []
) =>
  Effect.gen(function*() {
    for (const result of results) {
      expect(result.failed, result.errors.join("; ")).toBe(0)
      expect(result.ok).toBe(callers)
      // null: no expiry (never here); otherwise every served token still had life left when it was served.
      if (result.minRemainingMs !== null) expect(result.minRemainingMs).toBeGreaterThan(0)
    }
    const waits = results.filter((r) => !paused.includes(r.instance)).map((r) => r.ms)
    const worst = Math.max(...waits)
    const minRemaining = Math.min(...results.map((r) => r.minRemainingMs ?? Number.POSITIVE_INFINITY))
    yield* Load.log(
      `${name}: ${results.length} rounds x ${callers} callers, 0 failed, ${requests} token requests (bound ${requestBound}), worst wait ${worst} ms (bound ${waitBound}), least token life left ${minRemaining} ms`
    )
    expect(worst).toBeLessThanOrEqual(waitBound)
    expect(requests).toBeLessThanOrEqual(requestBound)
  })

/** Waits for the first fetch to reach the token server (it is held `fetchMillis` there); returns its sender. */
const holderOfSlowFetch = (
  as: TestAuthorizationServer.TestAuthorizationServer,
  instances: ReadonlyArray<Instances.Instance>
) =>
  Effect.gen(function*() {
    const holder = yield* Effect.raceAll(instances.map((instance) => Effect.as(instance.fetchStarted, instance)))
    while ((yield* tokenRequests(as)) === 0) yield* Effect.sleep("5 millis")
    return holder
  })

const pauseHolder = (pauseMillis: number) =>
  Effect.gen(function*() {
    const redis = yield* RedisServer.single
    const as = yield* TestAuthorizationServer.make({ tokenLifetime: `${lifetimeMillis} millis` })
    const instances = yield* Instances.startAll(instanceCount, environment(as, redis.url))
    yield* as.failNext(Fault.slow(`${fetchMillis} millis`))
    const { results, runMillis, value: holder } = yield* Load.underLoad(
      instances,
      callers,
      Effect.gen(function*() {
        const holder = yield* holderOfSlowFetch(as, instances)
        const pid = holder.process.pid!
        process.kill(pid, "SIGSTOP")
        yield* Effect.addFinalizer(() => Effect.sync(() => holder.process.kill("SIGCONT")))
        yield* Effect.sleep(`${pauseMillis} millis`)
        process.kill(pid, "SIGCONT")
        // Past one more expiry, so that the run covers a refresh after the fault as well.
        yield* Effect.sleep(`${lifetimeMillis + 500} millis`)
        return holder
      })
    )
    return { results, holder, runMillis, requests: yield* tokenRequests(as) }
  })

describe("access tokens under faults, instance processes over one redis-server", () => {
  it.scopedLive(
    `the lease holder stopped (SIGSTOP) mid-fetch for less than the lease, then resumed`,
    () =>
      Effect.gen(function*() {
        const { holder, requests, results, runMillis } = yield* pauseHolder(leaseTtlMillis / 3)
        // Expiry alone, and one for a waiter that gave up on the slow holder.
        yield* check("holder paused < lease", results, requests, expiryRequests(runMillis) + 1, [holder.index])
      }),
    { timeout: 600_000 }
  )

  it.scopedLive(
    `the lease holder stopped (SIGSTOP) mid-fetch for longer than the lease, then resumed`,
    () =>
      Effect.gen(function*() {
        const { holder, requests, results, runMillis } = yield* pauseHolder(leaseTtlMillis + 2_000)
        // Expiry alone, the takeover after the lease lapsed, and the paused holder's own callers once it resumes.
        yield* check("holder paused > lease", results, requests, expiryRequests(runMillis) + 2, [holder.index])
      }),
    { timeout: 600_000 }
  )

  for (
    const [name, command] of [
      ["CLIENT PAUSE", ["CLIENT", "PAUSE", String(fetchMillis), "ALL"]],
      ["DEBUG SLEEP", ["DEBUG", "SLEEP", String(fetchMillis / 1000)]]
    ] as const
  ) {
    it.scopedLive(
      `Redis stalled by ${name} for ${fetchMillis} ms while the lease holder fetches`,
      () =>
        Effect.gen(function*() {
          const redis = yield* RedisServer.singleWith(["--enable-debug-command", "yes"])
          const as = yield* TestAuthorizationServer.make({ tokenLifetime: `${lifetimeMillis} millis` })
          const instances = yield* Instances.startAll(instanceCount, environment(as, redis.url))
          yield* as.failNext(Fault.slow(`${fetchMillis} millis`))
          const { results, runMillis } = yield* Load.underLoad(
            instances,
            callers,
            Effect.gen(function*() {
              yield* holderOfSlowFetch(as, instances)
              // DEBUG SLEEP blocks the connection that sends it: fork it.
              yield* Effect.fork(RedisServer.cli(redis.port, ...command))
              yield* Effect.sleep(`${fetchMillis + lifetimeMillis + 500} millis`)
            })
          )
          const requests = yield* tokenRequests(as)
          // Expiry alone, and one per instance whose Redis call timed out while Redis stalled (it fetches alone
          // rather than fail).
          yield* check(name, results, requests, expiryRequests(runMillis) + instanceCount, [])
        }),
      { timeout: 600_000 }
    )
  }

  it.scopedLive(
    "Redis killed and restarted empty under load",
    () =>
      Effect.gen(function*() {
        const redis = yield* RedisServer.single
        const as = yield* TestAuthorizationServer.make({ tokenLifetime: `${lifetimeMillis} millis` })
        const instances = yield* Instances.startAll(instanceCount, environment(as, redis.url))
        const { results, runMillis } = yield* Load.underLoad(
          instances,
          callers,
          Effect.gen(function*() {
            yield* Effect.sleep("1 second")
            yield* redis.stop
            yield* Effect.sleep(`${lifetimeMillis} millis`)
            yield* redis.start
            yield* Effect.sleep(`${lifetimeMillis + 2_000} millis`)
          })
        )
        const requests = yield* tokenRequests(as)
        // Expiry alone; while down (one lifetime), each instance fetches alone: one per instance per half lifetime;
        // back (empty), each may fetch alone once more until its client reconnects and sharing resumes.
        yield* check("Redis restarted empty", results, requests, expiryRequests(runMillis) + 3 * instanceCount, [])
      }),
    { timeout: 600_000 }
  )
})
