/*
 * Issue 18, rotating refresh tokens: instance processes of kind refresh-token (RefreshToken source over
 * RedisRefreshTokenStore, RedisTokenStore.shared in front, all from env) spend one user's refresh token against a
 * real oidc-provider that rotates it on every use and revokes the grant when a spent one comes back (its default
 * reuse detection). The provider's own events count every refresh token presented.
 *
 * Asserted: no refresh token presented twice, no grant revoked, no refresh rejected, no failed call outside the
 * stopped process (whose own callers may time out in the round that spans its stop), no served token past its `exp`,
 * the slowest round of an instance that was not itself paused within `waitBound`.
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

/**
 * The holder stopped after its grant was answered, for less than the shared lease: the answer (and the rotated refresh
 * token) is in the stopped process only, and nobody else may spend the token meanwhile, so the others wait for the
 * pause (while their current token lasts, they keep serving it). On resuming, the holder stores the rotation, writes
 * the access token and releases the lease: nobody waits for a lease or a lock to lapse. The longest wait is the pause,
 * one token fetch (its attempt timeout), one Redis timeout (issue 18: a Redis fault costs one timeout, then the
 * source is asked directly), plus the margin.
 */
const answeredWaitBound = (pauseMillis: number) => {
  if (pauseMillis >= leaseTtlMillis) throw new Error("the holder's lease lapses during such a pause: use waitBound")
  return pauseMillis + attemptTimeoutMillis + redisTimeoutMillis + margin
}

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
  // A served token's life left is measured when `get` returns, after the starved process got around to it (200 ms
  // and more at load 20): the cache stops serving a token 1 s before it expires.
  CACHE_SKEW: "1 second"
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
    const leastLifeOn = results.find((r) => (r.minRemainingMs ?? Number.POSITIVE_INFINITY) === minRemaining)?.instance
    const distinct = new Set(recorder.presented).size
    yield* Load.log(
      `${name}: ${results.length} rounds x ${callers} callers, ${failed} failed, ${recorder.presented.length} refresh tokens presented (${distinct} distinct), ${recorder.revoked.length} grants revoked, ${recorder.errors.length} refresh errors, worst wait ${worst} ms (bound ${bound}), least token life left ${minRemaining} ms (instance ${leastLifeOn}; paused: ${paused})`
    )
    const failing = [...new Set(results.filter((r) => r.failed > 0).map((r) => r.instance))]
    if (failing.length > 0) yield* Load.log(`${name}: failed calls on instances ${failing} (paused: ${paused})`)
    expect(recorder.revoked).toEqual([])
    expect(recorder.errors).toEqual([])
    expect(distinct).toBe(recorder.presented.length)
    for (const result of results) {
      if (result.minRemainingMs !== null) expect(result.minRemainingMs).toBeGreaterThan(0)
      if (paused.includes(result.instance)) continue
      expect(result.failed, result.errors.join("; ")).toBe(0)
    }
    // A stopped process's own callers: their deadline (ATTEMPT_TIMEOUT) passes while the process is stopped, which
    // from inside looks like a slow server; when it resumes, the timer fires before the buffered answer is read. So
    // they may fail, with Timeout, in the one round that meets the resume, and in no other: the answer is still read
    // and stored (no refresh token presented twice, none revoked, the next rounds served).
    for (const index of paused) {
      const rounds = results.filter((r) => r.instance === index)
      const failing = rounds.filter((r) => r.failed > 0)
      expect(failing.length, "rounds with failed calls on the stopped instance").toBeLessThanOrEqual(1)
      // The round may have been asked for during the stop and begun on resuming: its callers join the fetch whose
      // timer fires then. So its length says nothing; its errors do.
      for (const round of failing) for (const error of round.errors) expect(error).toMatch(/Timeout/)
      expect(rounds.at(-1)?.failed ?? 0).toBe(0)
    }
    expect(worst).toBeLessThanOrEqual(bound)
  })

const pauseHolder = (
  name: string,
  moment: "before" | "after",
  pauseMillis: number,
  bound: (pauseMillis: number) => number = waitBound
) =>
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
            instances.map((instance) => Effect.as(instance.nextFetchStart, instance))
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
      yield* check(name, recorder, results, [holder.index], bound(pauseMillis))
    }), { timeout: 600_000 })

describe("rotating refresh tokens under faults, instance processes, real oidc-provider", () => {
  pauseHolder("the lock holder stopped just before its grant is answered, shorter than the lock TTL", "before", 1_000)
  pauseHolder("the lock holder stopped just before its grant is answered, longer than the lock TTL", "before", 4_000)
  pauseHolder(
    "the lock holder stopped just after its grant is answered, shorter than the lock TTL",
    "after",
    1_000,
    answeredWaitBound
  )
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
    }), { timeout: 600_000 })
})
