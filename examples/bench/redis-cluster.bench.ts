/**
 * A fleet on Redis: 8 instances (OS processes, `cluster-instance.ts`) of a service ask a real oidc-provider for
 * client-credentials tokens that live 2 s, with 20 callers each every 20 ms, over several expiries.
 *
 * 1. Token requests per expiry: through `RedisTokenStore.shared` vs the same 8 processes each with its own
 *    `TokenCache` only (the baseline: one request per process per expiry). Expiries are counted as the tokens one
 *    instance used (median over instances).
 * 2. The hot path: `TokenCache.get` on a valid token over a shared source vs over the plain source, in this process
 *    (the shared source is only asked when the local token must be replaced, so the goal is no cost at all).
 * 3. During a refresh, the p99 time a follower instance's fetch took (waiting for the leader's token through Redis)
 *    vs the leader's own fetch (its token request), cold start included.
 * 4. Faults at a refresh (issue 18), each against the same fleet without a fault in the same run: the instance that
 *    asks the server is stopped (SIGSTOP) for 3 s, Redis is stalled (`CLIENT PAUSE`) for 1.5 s, Redis is killed and
 *    restarted empty. The longest any caller of the other instances waited, against the bound the design states
 *    (a Redis fault: one Redis timeout, 1 s by default, plus the slowest token request of the run; a stopped lease
 *    holder: its stop, at most the lease's TTL, plus the same), their failed calls and the token requests per expiry.
 *
 * Needs `redis-server` on the PATH (`scripts/system-deps.sh` installs it); without it the rows say so.
 */
import { TokenCache } from "@effect-token/core"
import { KeyRing, RedisClient, RedisTokenStore } from "@effect-token/redis"
import { RedisIoredis } from "@effect-token/redis/ioredis"
import { OidcProvider } from "@effect-token/testing/oidc-provider"
import { Duration, Effect, Redacted } from "effect"
import { spawn } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as Net from "node:net"
import * as Path from "node:path"
import * as RedisServer from "../src/RedisServer.js"
import type { Benchmark, Row } from "./harness.js"
import { benchDirectory, BenchSettings, Goal, median, now, percentile, row } from "./harness.js"
import { countingSource } from "./support.js"

const name = "redis-cluster"

interface InstanceReport {
  readonly tokens: number
  readonly failures: number
  readonly asked: number
  readonly worstWaitMs: number
  readonly requestsMs: ReadonlyArray<number>
  readonly fetches: ReadonlyArray<{ readonly role: "leader" | "follower" | "alone"; readonly ms: number }>
}

const lines = (child: ChildProcess, onLine: (line: string) => void) => {
  let buffer = ""
  child.stdout!.on("data", (chunk: Buffer) => {
    buffer += chunk.toString()
    let newline = buffer.indexOf("\n")
    while (newline >= 0) {
      onLine(buffer.slice(0, newline))
      buffer = buffer.slice(newline + 1)
      newline = buffer.indexOf("\n")
    }
  })
}

/**
 * A fault to inject into a running fleet: called each time an instance asks the server for a token, with the time
 * since the run began, until it returns true (it struck).
 */
type Fault = (asking: { readonly index: number; readonly child: ChildProcess; readonly sinceStart: number }) => boolean

/** Starts `instances` processes, waits until all are ready, lets them run together and collects their reports. */
const fleet = (instances: number, env: Record<string, string>, fault?: Fault) =>
  Effect.gen(function*() {
    const children = yield* Effect.acquireRelease(
      Effect.sync(() =>
        Array.from({ length: instances }, () =>
          spawn(process.execPath, ["--import", "tsx", Path.join(benchDirectory, "cluster-instance.ts")], {
            env: { ...process.env, ...env },
            stdio: ["pipe", "pipe", "inherit"]
          }))
      ),
      (children) =>
        Effect.sync(() =>
          children.forEach((child) => child.kill("SIGKILL"))
        )
    )
    const ready: Array<Promise<void>> = []
    const reports: Array<Promise<InstanceReport>> = []
    let startedAt = 0
    let struck = fault === undefined
    const onAsking = (index: number) => {
      if (!struck) struck = fault!({ index, child: children[index]!, sinceStart: performance.now() - startedAt })
    }
    for (const [index, child] of children.entries()) {
      let onReady: () => void = () => {}
      let onReport: (report: InstanceReport) => void = () => {}
      ready.push(new Promise((resolve) => (onReady = resolve)))
      const report = new Promise<InstanceReport>((resolve, reject) => {
        onReport = resolve
        child.once("exit", (code) => reject(new Error(`instance exited with ${code}`)))
      })
      // Killed with the scope after its report (or after another instance failed): not an unhandled rejection.
      report.catch(() => {})
      reports.push(report)
      lines(child, (line) =>
        line === "ready"
          ? onReady()
          : line === "asking"
          ? onAsking(index)
          : onReport(JSON.parse(line) as InstanceReport))
    }
    yield* Effect.promise(() => Promise.all(ready))
    startedAt = performance.now()
    for (const child of children) child.stdin!.write("go\n")
    return yield* Effect.tryPromise(() => Promise.all(reports))
  }).pipe(Effect.scoped)

const requestsPerExpiry = (requests: number, reports: ReadonlyArray<InstanceReport>) =>
  requests / Math.max(1, median(reports.map((r) => r.tokens)))

const fleetRows = (redis: RedisServer.RedisServer) =>
  Effect.gen(function*() {
    const redisUrl = redis.url
    const { pick } = yield* BenchSettings
    const runMs = pick(7_000, 1_500)
    const instances = pick(8, 3)
    const secret = randomBytes(18).toString("base64url")
    const as = yield* OidcProvider.make({
      accessTokenTtl: 2,
      clients: [{
        client_id: "fleet",
        client_secret: secret,
        grant_types: ["client_credentials"],
        response_types: [],
        redirect_uris: [],
        scope: "api:read"
      }]
    })
    const requests = () => as.tokenRequests()["client_credentials"] ?? 0
    const env = {
      TOKEN_URL: as.tokenUrl,
      CLIENT_ID: "fleet",
      CLIENT_SECRET: secret,
      SCOPE: "api:read",
      RUN_MS: String(runMs),
      CALLERS: String(pick(20, 5)),
      REDIS_TOKEN_KEYS: Redacted.value(KeyRing.format([yield* KeyRing.generateKey("k1")])),
      REDIS_TOKEN_PREFIX: `bench-${randomBytes(4).toString("hex")}`
    }

    const before = requests()
    const alone = yield* fleet(instances, env)
    const aloneRequests = requests() - before
    const middle = requests()
    const shared = yield* fleet(instances, { ...env, REDIS_URL: redisUrl })
    const sharedRequests = requests() - middle

    const faults = yield* faultRows(redis, { instances, runMs, env, requests, quiet: shared })
    const failures = [...alone, ...shared].reduce((sum, r) => sum + r.failures, 0)
    const fetches = shared.flatMap((r) => r.fetches)
    const leaders = fetches.filter((f) => f.role === "leader").map((f) => f.ms)
    const followers = fetches.filter((f) => f.role === "follower").map((f) => f.ms)
    return [
      row(name, {
        metric: `token requests per expiry, ${instances} processes, 2 s tokens, ${runMs / 1000} s`,
        unit: "requests",
        ours: requestsPerExpiry(sharedRequests, shared),
        baseline: { name: "each process its own TokenCache", value: requestsPerExpiry(aloneRequests, alone) },
        goal: Goal.atMost(1.25, "requests"),
        note: `${sharedRequests} requests shared vs ${aloneRequests} alone; ${failures} failed calls in both runs; ` +
          "a fetch that starts right at a boundary can add one"
      }),
      row(name, {
        metric: `fetch time of a follower instance vs the leader's (p99 of ${followers.length} vs ${leaders.length})`,
        unit: "ms",
        ours: followers.length > 0 ? percentile(followers, 99) : 0,
        baseline: { name: "the leader's own token request", value: leaders.length > 0 ? percentile(leaders, 99) : 0 },
        note: "a follower waits for the leader's token (notification, else polling) instead of asking the server; " +
          `medians ${round1(median(followers))} ms vs ${round1(median(leaders))} ms`
      }),
      ...faults
    ] satisfies ReadonlyArray<Row>
  })

/** How long after the run began a fault waits for a token request: past the cold start, at a refresh. */
const faultAfterMs = { full: 1_500, quick: 500 }
const stopMillis = 3_000
/** The instances use the defaults. */
const redisTimeoutMillis = Duration.toMillis(RedisClient.defaultTimeout)
const redisPauseMillis = 1_500

/** Sends one command to Redis on a socket of its own (CLIENT PAUSE must not wait behind the instances' commands). */
const redisCommand = (url: string, command: string) => {
  const socket = Net.connect(Number(new URL(url).port), "127.0.0.1", () => socket.end(`${command}\r\n`))
  socket.on("error", () => socket.destroy())
  socket.on("data", () => socket.destroy())
}

const faultRows = (
  redis: RedisServer.RedisServer,
  fleetRun: {
    readonly instances: number
    readonly runMs: number
    readonly env: Record<string, string>
    readonly requests: () => number
    readonly quiet: ReadonlyArray<InstanceReport>
  }
) =>
  Effect.gen(function*() {
    const { pick } = yield* BenchSettings
    const { env, instances, quiet, requests, runMs } = fleetRun
    const after = pick(faultAfterMs.full, faultAfterMs.quick)
    const quietWorst = Math.max(...quiet.map((r) => r.worstWaitMs))
    interface Struck {
      readonly stopped: Set<number>
      at: number | undefined
      /** Settles when the fault is over (Redis back, unpaused): the next scenario must not start inside it. */
      over: Promise<void>
    }
    const scenarios: ReadonlyArray<{
      readonly name: string
      readonly fault: (struck: Struck) => Fault
      /** What the design lets this fault cost a caller beyond one Redis timeout and one token request. */
      readonly holds: { readonly millis: number; readonly why: string }
    }> = [
      {
        name: `the instance asking the server stopped (SIGSTOP) ${stopMillis / 1_000} s`,
        // The others may not fetch while it holds the lease (they wait for its token), up to the lease's TTL.
        holds: {
          millis: Math.min(stopMillis, Duration.toMillis(RedisTokenStore.defaults.leaseTtl)),
          why: "its stop + "
        },
        fault: (struck) => ({ child, index, sinceStart }) => {
          if (sinceStart < after) return false
          struck.at = sinceStart
          struck.stopped.add(index)
          child.kill("SIGSTOP")
          setTimeout(() => child.kill("SIGCONT"), stopMillis)
          return true
        }
      },
      {
        name: `Redis stalled (CLIENT PAUSE) ${redisPauseMillis / 1_000} s`,
        holds: { millis: 0, why: "" },
        fault: (struck) => ({ sinceStart }) => {
          if (sinceStart < after) return false
          struck.at = sinceStart
          redisCommand(redis.url, `CLIENT PAUSE ${redisPauseMillis} ALL`)
          struck.over = new Promise((resolve) => setTimeout(resolve, redisPauseMillis))
          return true
        }
      },
      {
        name: "Redis killed and restarted empty 0.5 s later",
        holds: { millis: 0, why: "" },
        fault: (struck) => ({ sinceStart }) => {
          if (sinceStart < after) return false
          struck.at = sinceStart
          struck.over = Effect.runPromise(Effect.andThen(redis.stop, Effect.delay(redis.start, "500 millis")))
          return true
        }
      }
    ]
    const rows: Array<Row> = []
    for (const [index, scenario] of scenarios.entries()) {
      const struck: Struck = { stopped: new Set(), at: undefined, over: Promise.resolve() }
      // Each scenario starts cold, on a key of its own.
      const shared = { ...env, REDIS_URL: redis.url, REDIS_TOKEN_PREFIX: `${env["REDIS_TOKEN_PREFIX"]}-fault-${index}` }
      const before = requests()
      const reports = yield* fleet(instances, shared, scenario.fault(struck))
      yield* Effect.promise(() => struck.over)
      const issued = requests() - before
      const others = reports.filter((_, index) => !struck.stopped.has(index))
      const failed = others.reduce((sum, r) => sum + r.failures, 0)
      const slowestRequest = Math.max(0, ...others.flatMap((r) => r.requestsMs))
      const bound = Math.round(scenario.holds.millis + redisTimeoutMillis + slowestRequest)
      rows.push(row(name, {
        metric: `worst caller wait, ${scenario.name} at a refresh (${others.length} other instances)`,
        unit: "ms",
        ours: Math.max(...others.map((r) => r.worstWaitMs)),
        baseline: { name: "the same fleet without a fault", value: quietWorst },
        // A fault that did not strike proves nothing: the row is information, not a goal met.
        goal: struck.at === undefined ? undefined : Goal.atMost(bound, "ms"),
        note:
          `bound: ${scenario.holds.why}one Redis timeout + the slowest token request (${
            Math.round(slowestRequest)
          } ms); ` +
          (struck.at === undefined
            ? "the fault did not strike (no token request after the cold start); "
            : `struck ${Math.round(struck.at)} ms into the run; `) +
          `${failed} failed calls; ${round1(requestsPerExpiry(issued, others))} token requests per expiry ` +
          `(${issued} in ${runMs / 1_000} s)`
      }))
    }
    return rows
  })

const round1 = (value: number) => Math.round(value * 10) / 10

/** TokenCache.get over a shared source vs over the plain source: the hot path never reaches Redis. */
const hotPathRows = (redisUrl: string) =>
  Effect.gen(function*() {
    const { pick } = yield* BenchSettings
    const n = pick(1_000_000, 10_000)
    const repetitions = pick(9, 1)
    const client = yield* RedisIoredis.make({ url: redisUrl })
    const keyRing = yield* KeyRing.make([{ kid: "k1", key: Redacted.make(randomBytes(32)) }])
    const store = yield* RedisTokenStore.make({ keyRing, prefix: `bench-hot-${randomBytes(4).toString("hex")}` }).pipe(
      Effect.provideService(RedisClient.RedisClient, client)
    )
    const plainSource = countingSource({ prefix: "hot-plain", key: "bench:hot-plain" }).source
    const sharedSource = yield* RedisTokenStore.shared(
      countingSource({ prefix: "hot-shared", key: "bench:hot-shared" }).source
    ).pipe(Effect.provideService(RedisTokenStore.RedisTokenStore, store))
    const plain = yield* TokenCache.make(plainSource, { name: "bench-hot-plain" })
    const shared = yield* TokenCache.make(sharedSource, { name: "bench-hot-shared" })
    yield* plain.get
    yield* shared.get

    const loop = (cache: TokenCache.TokenCache) =>
      Effect.gen(function*() {
        for (let i = 0; i < n; i++) yield* cache.get
      })
    const variants = [
      { loop: loop(shared), times: [] as Array<number> },
      { loop: loop(plain), times: [] as Array<number> }
    ]
    for (const variant of variants) Effect.runSync(variant.loop)
    for (let r = 0; r < repetitions; r++) {
      for (let i = 0; i < variants.length; i++) {
        const variant = variants[(i + r) % variants.length]!
        const start = now()
        Effect.runSync(variant.loop)
        variant.times.push(((now() - start) * 1_000_000) / n)
      }
    }
    return [
      row(name, {
        metric: `TokenCache.get (valid token) over a shared source, ${n.toLocaleString("en-US")} ops`,
        unit: "ns/op",
        ours: median(variants[0]!.times),
        baseline: { name: "TokenCache over the plain source", value: median(variants[1]!.times) },
        goal: Goal.ratioAtMost(1.02)
      })
    ] satisfies ReadonlyArray<Row>
  })

export const benchmark: Benchmark = {
  name,
  description: "8 processes sharing tokens through Redis vs each on its own; hot path with and without the store",
  run: Effect.gen(function*() {
    if (!RedisServer.isInstalled()) {
      return [row(name, {
        metric: "not measured: redis-server is not installed (scripts/system-deps.sh installs it)",
        unit: "",
        ours: 0
      })]
    }
    const redis = yield* RedisServer.make
    const hot = yield* hotPathRows(redis.url)
    const fleet = yield* fleetRows(redis)
    return [...fleet, ...hot]
  })
}
