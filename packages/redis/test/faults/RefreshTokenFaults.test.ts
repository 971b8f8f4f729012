/*
 * Issue 18, rotating refresh tokens: instance processes of kind refresh-token (RefreshToken source over
 * RedisRefreshTokenStore, RedisTokenStore.shared in front, all from env) spend one user's refresh token against a
 * real oidc-provider that rotates it on every use and revokes the grant when a spent one comes back (its default
 * reuse detection). The provider's own events count every refresh token presented.
 *
 * Asserted: no refresh token presented twice, no grant revoked, no refresh rejected, no failed call, no served
 * token past its `exp`, the slowest round of an instance that was not itself paused within `waitBound`.
 */
import type { OidcProvider } from "@effect-token/testing/oidc-provider"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { randomKey } from "../support/fixtures.js"
import * as Instances from "../support/instances.js"
import * as Load from "../support/load.js"
import * as RedisServer from "../support/redisServer.js"
import * as RefreshProvider from "../support/refreshProvider.js"

const instanceCount = 4
const callers = 20
const accessTokenTtlSeconds = 4
const lockTtlMillis = 2_000
/**
 * The shared access-token lease (RedisTokenStore.shared) in front of the refresh source: the default, 10 s. With a
 * lease shorter than a holder's pause (3 s against a 4 s pause), another instance takes the lease, finds the refresh
 * token Pending (the stopped holder's spend) and its callers fail after ATTEMPT_TIMEOUT: no valid access token
 * exists anywhere but in the stopped process then. Measured once; see the issue 18 report.
 */
const leaseTtlMillis = 10_000
const redisTimeoutMillis = 2_000
const attemptTimeoutMillis = 4_000
/** Room for starved event loops (8 busy processes on 2 cores) and a few polls. */
const margin = 6_000
/**
 * The longest a caller may wait: one Redis timeout, then the longest of the access-token lease, the refresh lock and
 * a stopped holder's pause (its answer is the only one there is: no one else may spend the token meanwhile), one
 * refresh attempt, plus the margin.
 */
const waitBound = (pauseMillis: number) =>
  redisTimeoutMillis + Math.max(leaseTtlMillis, lockTtlMillis, pauseMillis) + attemptTimeoutMillis + margin

afterAll(() => Instances.removeBundle())

const provider = RefreshProvider.make(accessTokenTtlSeconds)

const environment = (
  as: OidcProvider.OidcProvider,
  url: string,
  initial: string
): Record<string, string> => ({
  INSTANCE_KIND: "refresh-token",
  REDIS_URL: url,
  REDIS_TOKEN_KEYS: `k1:${btoa(String.fromCharCode(...Redacted.value(randomKey())))}`,
  REDIS_TOKEN_PREFIX: `faults-${Math.random().toString(36).slice(2)}`,
  REDIS_TOKEN_LEASE_TTL: `${leaseTtlMillis} millis`,
  REDIS_TOKEN_POLL_INTERVAL: "100 millis",
  REDIS_TOKEN_RETRY_AFTER: "500 millis",
  REDIS_TIMEOUT: `${redisTimeoutMillis} millis`,
  REFRESH_TOKEN_SUBJECT: "alice",
  REFRESH_TOKEN: initial,
  REFRESH_TOKEN_LOCK_TTL: `${lockTtlMillis} millis`,
  REFRESH_TOKEN_POLL_INTERVAL: "100 millis",
  REFRESH_TOKEN_SEED_SETTLE: "500 millis",
  TOKEN_URL: as.tokenUrl,
  CLIENT_ID: "reporting",
  CLIENT_SECRET: "reporting-secret",
  ATTEMPT_TIMEOUT: `${attemptTimeoutMillis} millis`,
  ANSWER_TIMEOUT: "30 seconds",
  SUBJECT_KEY: "alice",
  CACHE_SKEW: "100 millis"
})

const check = (
  name: string,
  recorder: RefreshProvider.Recorder,
  results: ReadonlyArray<Load.Tagged>,
  paused: ReadonlyArray<number>,
  bound: number
) =>
  Effect.gen(function*() {
    const worst = Math.max(...results.filter((r) => !paused.includes(r.instance)).map((r) => r.ms))
    const failed = results.reduce((n, r) => n + r.failed, 0)
    const minRemaining = Math.min(...results.map((r) => r.minRemainingMs ?? Number.POSITIVE_INFINITY))
    const distinct = new Set(recorder.presented).size
    yield* Load.log(
      `${name}: ${results.length} rounds x ${callers} callers, ${failed} failed, ${recorder.presented.length} refresh tokens presented (${distinct} distinct), ${recorder.revoked.length} grants revoked, ${recorder.errors.length} refresh errors, worst wait ${worst} ms (bound ${bound}), least token life left ${minRemaining} ms`
    )
    const failing = [...new Set(results.filter((r) => r.failed > 0).map((r) => r.instance))]
    if (failing.length > 0) yield* Load.log(`${name}: failed calls on instances ${failing} (paused: ${paused})`)
    expect(recorder.revoked).toEqual([])
    expect(recorder.errors).toEqual([])
    expect(distinct).toBe(recorder.presented.length)
    for (const result of results) {
      expect(result.failed, result.errors.join("; ")).toBe(0)
      if (result.minRemainingMs !== null) expect(result.minRemainingMs).toBeGreaterThan(0)
    }
    expect(worst).toBeLessThanOrEqual(bound)
  })

const pauseHolder = (name: string, moment: "before" | "after", pauseMillis: number) =>
  it.scopedLive(name, () =>
    Effect.gen(function*() {
      const recorder = yield* provider
      const redis = yield* RedisServer.single
      const initial = yield* recorder.as.issueRefreshToken({ clientId: "reporting" })
      const instances = yield* Instances.startAll(instanceCount, environment(recorder.as, redis.url, initial))
      const { results, value: holder } = yield* Load.underLoad(
        instances,
        callers,
        Effect.gen(function*() {
          // Let a refresh or two happen first, then catch the next one.
          yield* Effect.sleep(`${accessTokenTtlSeconds * 1000} millis`)
          const holder = yield* Effect.raceAll(
            instances.map((instance) => Effect.as(instance.fetchStarted, instance))
          )
          yield* moment === "before" ? recorder.nextArrival : recorder.nextAnswer
          const pid = holder.process.pid!
          process.kill(pid, "SIGSTOP")
          yield* Effect.addFinalizer(() => Effect.sync(() => holder.process.kill("SIGCONT")))
          yield* Effect.sleep(`${pauseMillis} millis`)
          process.kill(pid, "SIGCONT")
          // Through the next refresh.
          yield* Effect.sleep(`${accessTokenTtlSeconds * 1000 + 1_000} millis`)
          return holder
        })
      )
      yield* check(name, recorder, results, [holder.index], waitBound(pauseMillis))
    }), { timeout: 120_000 })

describe("rotating refresh tokens under faults, instance processes, real oidc-provider", () => {
  pauseHolder("the lock holder stopped just before its grant is answered, shorter than the lock TTL", "before", 1_000)
  pauseHolder("the lock holder stopped just before its grant is answered, longer than the lock TTL", "before", 4_000)
  pauseHolder("the lock holder stopped just after its grant is answered, shorter than the lock TTL", "after", 1_000)
  pauseHolder("the lock holder stopped just after its grant is answered, longer than the lock TTL", "after", 4_000)

  it.scopedLive("Redis restarted empty mid-run, the initial refresh token long spent", () =>
    Effect.gen(function*() {
      const recorder = yield* provider
      const redis = yield* RedisServer.single
      const initial = yield* recorder.as.issueRefreshToken({ clientId: "reporting" })
      const instances = yield* Instances.startAll(instanceCount, environment(recorder.as, redis.url, initial))
      const { results } = yield* Load.underLoad(
        instances,
        callers,
        Effect.gen(function*() {
          // Two rotations or more, so that REFRESH_TOKEN (the initial one) is long spent.
          yield* Effect.sleep(`${2 * accessTokenTtlSeconds * 1000} millis`)
          yield* redis.stop
          yield* redis.start
          yield* Effect.sleep(`${2 * accessTokenTtlSeconds * 1000} millis`)
        })
      )
      expect(recorder.presented.length).toBeGreaterThanOrEqual(3)
      yield* check("Redis restarted empty", recorder, results, [], waitBound(0))
    }), { timeout: 120_000 })
})
