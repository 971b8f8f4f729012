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
import { OidcProvider } from "@effect-token/testing/oidc-provider"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import type { KoaContextWithOIDC } from "oidc-provider"
import { randomKey } from "../support/fixtures.js"
import * as Instances from "../support/instances.js"
import * as Load from "../support/load.js"
import * as RedisServer from "../support/redisServer.js"

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

const clients = [{
  client_id: "reporting",
  client_secret: "reporting-secret",
  grant_types: ["authorization_code", "refresh_token"],
  response_types: ["code" as const],
  redirect_uris: ["http://127.0.0.1/callback"],
  scope: "openid offline_access api:read",
  token_endpoint_auth_method: "client_secret_basic" as const
}]

/** The provider, with every refresh token presented, revoked grants and refresh errors recorded. */
const provider = Effect.gen(function*() {
  const presented: Array<string> = []
  const revoked: Array<string> = []
  const errors: Array<string> = []
  const arrived: Array<() => void> = []
  const answered: Array<() => void> = []
  const as = yield* OidcProvider.make({
    clients,
    accessTokenTtl: accessTokenTtlSeconds,
    configuration: { rotateRefreshToken: true },
    setup: (provider) => {
      provider.use(async (ctx, next) => {
        if (ctx.path === "/token" && arrived.length > 0) {
          for (const f of arrived.splice(0)) f()
          // Held a moment, so that its sender is stopped before the answer (and the rotation) happens.
          await new Promise((resolve) => setTimeout(resolve, 300))
        }
        await next()
      })
      const refreshTokenOf = (ctx: KoaContextWithOIDC) =>
        (ctx.oidc.params as Record<string, unknown> | undefined)?.refresh_token
      provider.on("grant.success", (ctx: KoaContextWithOIDC) => {
        const token = refreshTokenOf(ctx)
        if (typeof token === "string") presented.push(token)
        for (const f of answered.splice(0)) f()
      })
      provider.on("grant.error", (ctx: KoaContextWithOIDC, error: Error) => {
        const token = refreshTokenOf(ctx)
        if (typeof token === "string") presented.push(token)
        errors.push(error.message)
      })
      provider.on("grant.revoked", (_ctx: unknown, grantId: string) => {
        revoked.push(grantId)
      })
    }
  })
  return {
    as,
    presented,
    revoked,
    errors,
    /** Resolves at the next token request's arrival; the provider handles that request 300 ms later. */
    nextArrival: Effect.async<void>((resume) => {
      arrived.push(() => resume(Effect.void))
    }),
    /** Resolves when the next grant has been answered (the refresh token rotated). */
    nextAnswer: Effect.async<void>((resume) => {
      answered.push(() => resume(Effect.void))
    })
  }
})

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

type Recorder = Effect.Effect.Success<typeof provider>

const check = (
  name: string,
  recorder: Recorder,
  results: ReadonlyArray<Load.Tagged>,
  paused: ReadonlyArray<number>,
  pauseMillis: number,
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
      if (result.minRemainingMs !== null) expect(result.minRemainingMs).toBeGreaterThan(0)
      if (paused.includes(result.instance)) continue
      expect(result.failed, result.errors.join("; ")).toBe(0)
    }
    // A stopped process's own callers: their deadline (ATTEMPT_TIMEOUT) passes while the process is stopped, which
    // from inside looks like a slow server; when it resumes, the timer fires before the buffered answer is read. So
    // they may fail, with Timeout, in the one round that spans the stop, and in no other: the answer is still read
    // and stored (no refresh token presented twice, none revoked, the next rounds served).
    for (const index of paused) {
      const rounds = results.filter((r) => r.instance === index)
      const failing = rounds.filter((r) => r.failed > 0)
      expect(failing.length, "rounds with failed calls on the stopped instance").toBeLessThanOrEqual(1)
      for (const round of failing) {
        expect(round.ms).toBeGreaterThanOrEqual(pauseMillis)
        for (const error of round.errors) expect(error).toMatch(/Timeout/)
      }
      expect(rounds.at(-1)?.failed ?? 0).toBe(0)
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
      yield* check(name, recorder, results, [holder.index], pauseMillis, waitBound(pauseMillis))
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
      yield* check("Redis restarted empty", recorder, results, [], 0, waitBound(0))
    }), { timeout: 120_000 })
})
