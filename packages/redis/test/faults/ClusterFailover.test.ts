/*
 * Issue 18, failover: instance processes over a 3-master + 3-replica Redis Cluster (real redis-server processes on
 * free loopback ports, `cluster-node-timeout` 1 s), under continuous load, while the master serving the shared
 * record's slot is killed and its replica promoted.
 *
 * (a) Access tokens (client credentials, RedisTokenStore.shared): the master serving the shared token is SIGKILLed
 *     and the cluster itself promotes its replica. Asserted: no failed call, no served token past its `exp`, the
 *     slowest round within `accessWaitBound`, token requests within the stated bound.
 * (b) Rotating refresh tokens (RedisRefreshTokenStore with `REFRESH_TOKEN_REPLICAS=1` against oidc-provider with
 *     `rotateRefreshToken`, which revokes the grant when a spent token comes back): the replica of the master serving
 *     the refresh token's slot has its replication link cut, a rotation happens (its `WAIT` times out: no replica
 *     acknowledged it), the master is SIGKILLed and the stale replica promoted (TAKEOVER). The promoted node holds a
 *     spent token; the fleet must repair it from what its instances remember instead of sending it. Asserted by
 *     counting at the provider: no refresh token presented twice, no grant revoked, no refresh error; and no failed
 *     call, no served token past its `exp`, the slowest round within `refreshWaitBound`.
 *
 * Every bound is derived from the settings below plus `margin`, sized for a starved CPU (8 busy processes on 2
 * cores), as in the sibling fault tests.
 */
import { TestAuthorizationServer } from "@effect-token/testing"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { randomKey } from "../support/fixtures.js"
import * as Instances from "../support/instances.js"
import * as Load from "../support/load.js"
import * as RedisServer from "../support/redisServer.js"

const instanceCount = 4
const callers = 20
/** Every node's `cluster-node-timeout`: a master silent this long is marked failing, and its replica elected. */
const nodeTimeoutMillis = 1_000
const redisTimeoutMillis = 2_000
/** Room for starved event loops (the callers', the token server's, Redis') and a few polls. */
const margin = 6_000

afterAll(() => Instances.removeBundle())

/** The master serving the keys that match `pattern` (KEYS on every master: the test's keyspace is tiny). */
const masterHolding = (cluster: RedisServer.ReplicatedCluster, pattern: string) =>
  Effect.gen(function*() {
    for (const node of yield* cluster.topology) {
      if (node.role !== "master" || node.flags.includes("fail")) continue
      const found = (yield* RedisServer.cli(node.port, "KEYS", pattern)).trim()
      if (found !== "") return node.port
    }
    return yield* Effect.dieMessage(`no master holds ${pattern}`)
  })

describe("access tokens across a Cluster failover, instance processes", () => {
  const leaseTtlMillis = 3_000
  const lifetimeMillis = 4_000
  /**
   * The cluster's own failover: the master is marked failing after `nodeTimeoutMillis` without an answer and the
   * others' agreement (gossip, within another node timeout); its replica then waits 500 ms plus up to 500 ms (random)
   * before it asks for votes, and an election runs for at most max(2 node timeouts, 2 s). Asserted (with the margin),
   * so that the bounds below rest on it.
   */
  const failoverMillis = 2 * nodeTimeoutMillis + 1_000 + Math.max(2 * nodeTimeoutMillis, 2_000)
  /**
   * A caller waits at most: one Redis timeout (a call to the dead master), the lease of a holder whose Redis went
   * away, one token fetch (within the margin: the token server answers at once), plus the margin. The failover itself
   * is not in it: while the slot has no master, Redis calls fail and each instance fetches its own token.
   */
  const accessWaitBound = redisTimeoutMillis + leaseTtlMillis + margin
  /**
   * Token requests over a run: one per half lifetime (tokens are refreshed no earlier than that) plus the cold one;
   * and while the slot has no master (the failover, and until each client has the new slot map), each instance may
   * fetch alone once per half lifetime.
   */
  const requestBound = (runMillis: number) =>
    1 + Math.ceil(runMillis / (lifetimeMillis / 2)) +
    instanceCount * (1 + Math.ceil((failoverMillis + margin) / (lifetimeMillis / 2)))

  it.scopedLive(
    "the master serving the shared token is killed; the cluster promotes its replica",
    () =>
      Effect.gen(function*() {
        const cluster = yield* RedisServer.replicatedCluster({ nodeTimeoutMillis })
        const as = yield* TestAuthorizationServer.make({ tokenLifetime: `${lifetimeMillis} millis` })
        const prefix = `failover-${Math.random().toString(36).slice(2)}`
        const instances = yield* Instances.startAll(instanceCount, {
          REDIS_CLUSTER_NODES: cluster.nodes.join(","),
          REDIS_TOKEN_KEYS: `k1:${btoa(String.fromCharCode(...Redacted.value(randomKey())))}`,
          REDIS_TOKEN_PREFIX: prefix,
          REDIS_TOKEN_LEASE_TTL: `${leaseTtlMillis} millis`,
          REDIS_TOKEN_POLL_INTERVAL: "100 millis",
          REDIS_TOKEN_RETRY_AFTER: "500 millis",
          REDIS_TIMEOUT: `${redisTimeoutMillis} millis`,
          TOKEN_URL: as.tokenUrl,
          CLIENT_ID: "test-client",
          CLIENT_SECRET: "test-secret",
          CACHE_SKEW: "100 millis"
        })
        const { results, runMillis, value } = yield* Load.underLoad(
          instances,
          callers,
          Effect.gen(function*() {
            yield* Effect.sleep("1 second")
            const master = yield* masterHolding(cluster, `{${prefix}:*}:token`)
            const replica = yield* cluster.replicaOf(master)
            yield* cluster.kill(master)
            const promotedIn = yield* cluster.awaitPromoted(replica)
            // Through an expiry after the failover, so that a refresh happens on the promoted master.
            yield* Effect.sleep(`${lifetimeMillis + 1_000} millis`)
            return { promotedIn }
          })
        )
        const requests = (yield* as.requests).client_credentials ?? 0
        const worst = Math.max(...results.map((r) => r.ms))
        const failed = results.reduce((n, r) => n + r.failed, 0)
        const minRemaining = Math.min(...results.map((r) => r.minRemainingMs ?? Number.POSITIVE_INFINITY))
        yield* Load.log(
          `access failover: promoted in ${value.promotedIn} ms (bound ${
            failoverMillis + margin
          }), ${results.length} rounds x ${callers} callers, ${failed} failed, ${requests} token requests (bound ${
            requestBound(runMillis)
          }), worst wait ${worst} ms (bound ${accessWaitBound}), least token life left ${minRemaining} ms, run ${runMillis} ms`
        )
        expect(value.promotedIn).toBeLessThanOrEqual(failoverMillis + margin)
        for (const result of results) {
          expect(result.failed, result.errors.join("; ")).toBe(0)
          expect(result.ok).toBe(callers)
          if (result.minRemainingMs !== null) expect(result.minRemainingMs).toBeGreaterThan(0)
        }
        expect(worst).toBeLessThanOrEqual(accessWaitBound)
        expect(requests).toBeLessThanOrEqual(requestBound(runMillis))
      }),
    { timeout: 120_000 }
  )
})
