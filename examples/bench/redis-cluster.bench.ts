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
 *
 * Needs `redis-server` on the PATH (`scripts/system-deps.sh` installs it); without it the rows say so.
 */
import { TokenCache } from "@effect-token/core"
import { KeyRing, RedisClient, RedisTokenStore } from "@effect-token/redis"
import { RedisIoredis } from "@effect-token/redis/ioredis"
import { OidcProvider } from "@effect-token/testing/oidc-provider"
import { Effect, Redacted } from "effect"
import { spawn } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import { randomBytes } from "node:crypto"
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

/** Starts `instances` processes, waits until all are ready, lets them run together and collects their reports. */
const fleet = (instances: number, env: Record<string, string>) =>
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
    for (const child of children) {
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
      lines(child, (line) => line === "ready" ? onReady() : onReport(JSON.parse(line) as InstanceReport))
    }
    yield* Effect.promise(() => Promise.all(ready))
    for (const child of children) child.stdin!.write("go\n")
    return yield* Effect.tryPromise(() => Promise.all(reports))
  }).pipe(Effect.scoped)

const requestsPerExpiry = (requests: number, reports: ReadonlyArray<InstanceReport>) =>
  requests / Math.max(1, median(reports.map((r) => r.tokens)))

const fleetRows = (redisUrl: string) =>
  Effect.gen(function*() {
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
      REDIS_TOKEN_KEYS: `k1:${Redacted.value(yield* KeyRing.generateKey)}`,
      REDIS_TOKEN_PREFIX: `bench-${randomBytes(4).toString("hex")}`
    }

    const before = requests()
    const alone = yield* fleet(instances, env)
    const aloneRequests = requests() - before
    const middle = requests()
    const shared = yield* fleet(instances, { ...env, REDIS_URL: redisUrl })
    const sharedRequests = requests() - middle

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
      })
    ] satisfies ReadonlyArray<Row>
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
    const redisUrl = (yield* RedisServer.make).url
    const hot = yield* hotPathRows(redisUrl)
    const fleet = yield* fleetRows(redisUrl)
    return [...fleet, ...hot]
  })
}
