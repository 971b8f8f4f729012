/**
 * `pnpm demo:cluster`: several instances of one service share their token through a local `redis-server`.
 *
 * It starts `redis-server` on a free port (it must be installed: `apt-get install redis-server`, `brew install
 * redis`), the demo's authorization server (6 s tokens, so expiries come quickly) and its protected API. Each instance
 * has what it would have as its own process: a Redis connection, a `RedisTokenStore`, a shared source, a
 * `TokenCache` and an `AuthHttpClient`.
 */
import { AuthHttpClient, ClientCredentials, TokenCache } from "@effect-token/core"
import { KeyRing, RedisClient, RedisTokenStore } from "@effect-token/redis"
import { RedisIoredis } from "@effect-token/redis/ioredis"
import * as HttpClient from "@effect/platform/HttpClient"
import { Array as Arr, Effect, Redacted } from "effect"
import type { Scope } from "effect"
import * as AuthServer from "./AuthServer.js"
import * as ProtectedApi from "./ProtectedApi.js"
import * as RedisServer from "./RedisServer.js"
import * as Story from "./Story.js"

const instanceCount = 4

/**
 * The demo's token lifetime in seconds: short, so expiries come quickly, and long enough that a token still arrives
 * usable on a starved CPU (a busy CI machine), where one token request can take a second or more.
 */
const tokenSeconds = 6
/** How long a token is served: its lifetime less the cache's default 1 s skew for short tokens. */
const servedMillis = (tokenSeconds - 1) * 1_000

/**
 * The most token requests `elapsed` ms of calls may cost the cluster when it shares: one per half a served lifetime,
 * plus the one a step may begin with. Half, because a slow answer shortens the token's time in service (its lifetime
 * counts from when it was requested); each instance alone would make one per expiry each.
 */
const sharedBound = (elapsed: number) => 1 + Math.ceil(elapsed / (servedMillis / 2))

export interface ClusterEnv {
  readonly authServer: AuthServer.AuthServer
  readonly api: ProtectedApi.ProtectedApi
  readonly redis: RedisServer.RedisServer
}

/** Whether `redis-server` is on the PATH. */
export const hasRedisServer = RedisServer.isInstalled

type Client = HttpClient.HttpClient.With<unknown>

interface Instance {
  readonly client: Client
}

const tokensIssued = ({ authServer }: ClusterEnv) => authServer.tokenRequests()["client_credentials"] ?? 0

/** `perInstance` concurrent GET /invoices on every instance; their statuses. */
const callEverywhere = (instances: ReadonlyArray<Instance>, url: string, perInstance: number) =>
  Effect.map(
    Effect.all(
      instances.flatMap((instance) =>
        Arr.replicate(Effect.map(instance.client.get(`${url}/invoices`), (response) => response.status), perInstance)
      ),
      { concurrency: "unbounded" }
    ),
    (statuses) => ({ statuses, ok: statuses.every((status) => status === 200) })
  )

/** Keeps every instance busy (a few calls every 100 ms) for `millis`; the statuses seen. */
const busyFor = (instances: ReadonlyArray<Instance>, url: string, millis: number) =>
  Effect.gen(function*() {
    const end = Date.now() + millis
    const statuses: Array<number> = []
    while (Date.now() < end) {
      statuses.push(...(yield* callEverywhere(instances, url, 2)).statuses)
      yield* Effect.sleep("100 millis")
    }
    return statuses
  })

const summary = (statuses: ReadonlyArray<number>) => {
  const counts = new Map<number, number>()
  for (const status of statuses) counts.set(status, (counts.get(status) ?? 0) + 1)
  return [...counts].map(([status, n]) => `${n} x ${status}`).join(", ")
}

export const startInstances = Story.step<ClusterEnv, ReadonlyArray<Instance>, HttpClient.HttpClient | Scope.Scope>(
  `${instanceCount} instances`,
  ({ api, authServer, redis }) =>
    Effect.gen(function*() {
      // Every instance is configured alike; the encryption key would come from REDIS_TOKEN_KEYS.
      const keyRing = yield* KeyRing.make([{
        kid: "demo",
        key: Redacted.make(crypto.getRandomValues(new Uint8Array(32)))
      }])
      const instances = yield* Effect.forEach(Arr.range(1, instanceCount), (n) =>
        Effect.gen(function*() {
          const connection = yield* RedisIoredis.make({ url: redis.url })
          const store = yield* RedisTokenStore.make({ keyRing, retryRedisAfter: "200 millis" }).pipe(
            Effect.provideService(RedisClient.RedisClient, connection)
          )
          const source = yield* ClientCredentials.make({
            tokenUrl: authServer.tokenUrl,
            clientAuth: authServer.clientAuth,
            scope: "api:read"
          })
          const shared = yield* RedisTokenStore.shared(source).pipe(
            Effect.provideService(RedisTokenStore.RedisTokenStore, store)
          )
          const cache = yield* TokenCache.make(shared, { name: `instance-${n}` })
          const client = AuthHttpClient.authenticate(yield* HttpClient.HttpClient, { baseUrl: api.url, tokens: cache })
          return { client: client as Client }
        }))
      return {
        summary: `Started ${instanceCount} instances of the invoices service on one Redis (${redis.url}): each with ` +
          "its own connection, RedisTokenStore, shared source, TokenCache and AuthHttpClient",
        value: instances
      }
    })
)

const coldStart = Story.step<ClusterEnv, number, never>("cold start", (env, results) =>
  Effect.gen(function*() {
    const before = tokensIssued(env)
    const { ok, statuses } = yield* callEverywhere(results.get(startInstances), env.api.url, 25)
    const issued = tokensIssued(env) - before
    yield* Story.expect(ok, `expected 200s, got ${summary(statuses)}`)
    yield* Story.expect(issued === 1, `expected 1 token request for the cluster, saw ${issued}`)
    return {
      summary: `${statuses.length} concurrent calls across ${instanceCount} cold instances -> ${
        summary(statuses)
      }, ${issued} token request for the whole cluster`,
      value: issued
    }
  }))

const expiries = Story.step<ClusterEnv, number, never>(
  "refresh across expiries",
  (env, results) =>
    Effect.gen(function*() {
      const before = tokensIssued(env)
      const started = Date.now()
      const statuses = yield* busyFor(results.get(startInstances), env.api.url, 12_000)
      const issued = tokensIssued(env) - before
      yield* Story.expect(statuses.every((s) => s === 200), `expected 200s, got ${summary(statuses)}`)
      // A 6 s token is served for 5 s and refreshed in the last 10 % of that: 12 s hold 2 or 3 refreshes for the
      // cluster, where the instances alone would make that many each.
      const most = sharedBound(Date.now() - started)
      yield* Story.expect(
        issued >= 2 && issued <= most,
        `expected one token request per expiry (2 to ${most}), saw ${issued}`
      )
      return {
        summary: `12 s of calls on every instance with ${tokenSeconds} s tokens -> ${
          summary(statuses)
        }, ${issued} token requests (one per expiry, made by one instance; ${instanceCount} instances alone would make ${
          issued * instanceCount
        })`,
        value: issued
      }
    })
)

const revoked = Story.step<ClusterEnv, number, never>("a revoked token", (env, results) =>
  Effect.gen(function*() {
    const count = yield* env.api.rejectAcceptedTokens
    const before = tokensIssued(env)
    const { ok, statuses } = yield* callEverywhere(results.get(startInstances), env.api.url, 10)
    const issued = tokensIssued(env) - before
    yield* Story.expect(ok, `expected 200s, got ${summary(statuses)}`)
    // One for the revocation, shared by every instance (alone, each would fetch its own). With short tokens the regular
    // refresh may fall due in the same moment and add one; a refresh just before it may have made it none.
    yield* Story.expect(issued <= 2, `expected one new token for the cluster, saw ${issued}`)
    return {
      summary: `The API revokes the ${count} token(s) it accepted; ${statuses.length} calls across the instances -> ` +
        `each instance's 401 clears the shared token only if it is still the rejected one: ${issued} new token, ` +
        `then ${summary(statuses)}`,
      value: issued
    }
  }))

const redisDown = Story.step<ClusterEnv, number, never>("Redis goes down", (env, results) =>
  Effect.gen(function*() {
    yield* env.redis.stop
    const before = tokensIssued(env)
    const statuses = yield* busyFor(results.get(startInstances), env.api.url, servedMillis + 1_000)
    const issued = tokensIssued(env) - before
    yield* Story.expect(statuses.every((s) => s === 200), `expected 200s, got ${summary(statuses)}`)
    return {
      summary:
        `Redis is killed; ${servedMillis / 1_000 + 1} s of calls -> ${
          summary(statuses)
        }: no call fails, each instance fetched its own ` +
        `token at expiry (${issued} token requests) and logged one warning`,
      value: issued
    }
  }))

const redisBack = Story.step<ClusterEnv, number, never>("Redis comes back", (env, results) =>
  Effect.gen(function*() {
    yield* env.redis.start
    // One expiry for the instances to find Redis again, then count a clean one.
    yield* busyFor(results.get(startInstances), env.api.url, servedMillis + 500)
    const before = tokensIssued(env)
    const started = Date.now()
    const statuses = yield* busyFor(results.get(startInstances), env.api.url, servedMillis)
    const issued = tokensIssued(env) - before
    const most = sharedBound(Date.now() - started)
    yield* Story.expect(statuses.every((s) => s === 200), `expected 200s, got ${summary(statuses)}`)
    yield* Story.expect(issued <= most, `expected the cluster to share again (at most ${most}), saw ${issued}`)
    return {
      summary: `Redis restarts (empty); the instances share again: the next ${servedMillis / 1_000} s of calls -> ${
        summary(statuses)
      }, ${issued} token request(s) for the cluster`,
      value: issued
    }
  }))

export const stories: ReadonlyArray<Story.Story<ClusterEnv, HttpClient.HttpClient | Scope.Scope>> = [{
  title: "RedisTokenStore: one token and one refresh for every instance; Redis down is no outage",
  steps: [startInstances, coldStart, expiries, revoked, redisDown, redisBack]
}]

/** Starts Redis and both servers, tells the story, stops everything. Needs an `HttpClient`. */
export const program = Effect.scoped(
  Effect.gen(function*() {
    const redis = yield* Effect.mapError(
      RedisServer.make,
      (error) => new Story.StoryFailure({ message: error.message })
    )
    const authServer = yield* AuthServer.make({ accessTokenTtl: tokenSeconds })
    const api = yield* ProtectedApi.make({
      issuer: authServer.issuer,
      jwksUrl: authServer.jwksUrl,
      audience: authServer.audience
    })
    return yield* Story.run(stories, { authServer, api, redis })
  })
)
