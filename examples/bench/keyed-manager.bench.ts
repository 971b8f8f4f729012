/**
 * The keyed manager: many tokens in one service.
 *
 * 1. Heap per idle cached key with 100,000 keys (one token each, an 800-character value like a typical JWT),
 *    against the same tokens in a plain `Map` (the floor: what any cache pays for the token itself).
 * 2. `TokenManager.get` on a hit against `TokenCache.get` on a hit: both read in one `Effect.gen` loop run with
 *    `Effect.runSync`, as the hot-path benchmark reads `TokenCache.get`. The manager's key is a tenant id string.
 */
import { AccessToken, TokenCache, TokenManager, TokenSource } from "@effect-token/core"
import { DateTime, Effect, Exit, Option, Redacted, Scope } from "effect"
import type { Benchmark, Row } from "./harness.js"
import { BenchSettings, Goal, heapUsed, median, now, row } from "./harness.js"

const name = "keyed-manager"

/**
 * A token whose value is a flat 800-character string, as one decoded from a token response is. (A `padEnd` result is a
 * rope sharing its padding with every other token; the cache's check that a value can be sent flattens it, which
 * would charge the manager for the flattening and flatter the baseline.)
 */
const makeToken = (i: number, issuedAt: DateTime.Utc) =>
  AccessToken.make({
    value: Redacted.make(JSON.parse(JSON.stringify(`tenant-${i}-`.padEnd(800, "x"))) as string),
    issuedAt,
    expiresAt: Option.some(DateTime.add(issuedAt, { hours: 1 }))
  })

const memoryRows = Effect.gen(function*() {
  const { pick } = yield* BenchSettings
  const keys = pick(100_000, 2_000)
  const issuedAt = yield* DateTime.now
  const repeat = pick(3, 1)

  const ours: Array<number> = []
  const baseline: Array<number> = []
  // Each measurement in a phase of its own, so that nothing of one is still reachable while the other is measured.
  const managerPhase = Effect.gen(function*() {
    const before = yield* heapUsed()
    const scope = yield* Scope.make()
    const manager = yield* Scope.extend(
      TokenManager.make({
        key: (tenant: number) => `tenant-${tenant}`,
        source: (tenant: number) =>
          Effect.succeed(
            TokenSource.make({ key: `tenant-${tenant}`, fetch: Effect.sync(() => makeToken(tenant, issuedAt)) })
          ),
        capacity: keys,
        name: "bench-keyed"
      }),
      scope
    )
    for (let i = 0; i < keys; i++) yield* manager.get(i)
    const perKey = ((yield* heapUsed()) - before) / keys
    if ((yield* manager.size) !== keys) return yield* Effect.dieMessage("the manager dropped keys under capacity")
    yield* Scope.close(scope, Exit.void)
    return perKey
  })
  const mapPhase = Effect.gen(function*() {
    const before = yield* heapUsed()
    const map = new Map<string, { token: AccessToken.AccessToken; expiresAt: number }>()
    for (let i = 0; i < keys; i++) {
      map.set(`tenant-${i}`, { token: makeToken(i, issuedAt), expiresAt: DateTime.toEpochMillis(issuedAt) + 3_600_000 })
    }
    const perToken = ((yield* heapUsed()) - before) / keys
    map.clear()
    return perToken
  })
  for (let r = 0; r < repeat; r++) {
    baseline.push(yield* mapPhase)
    ours.push(yield* managerPhase)
  }
  const perKey = median(ours)
  const perToken = median(baseline)
  return [
    row(name, {
      metric: `heap per idle cached key (${keys.toLocaleString("en-US")} keys)`,
      unit: "bytes",
      ours: Math.round(perKey),
      baseline: { name: "token in a Map", value: Math.round(perToken) },
      goal: Goal.atMost(1024, "bytes"),
      note: "tokens carry a flat 800-character value, as a JWT decoded from a token response does; the token alone " +
        `takes ${Math.round(perToken)} bytes (median of ${repeat} runs)`
    }),
    row(name, {
      metric: "manager's own heap per idle key (ours minus the token in a Map)",
      unit: "bytes",
      ours: Math.round(perKey - perToken),
      goal: Goal.atMost(256, "bytes"),
      note: "the cell, its key string, its map entry; a TokenCache costs about 4 KB more than its token"
    })
  ] satisfies ReadonlyArray<Row>
})

const speedRows = Effect.gen(function*() {
  const { pick } = yield* BenchSettings
  const n = pick(1_000_000, 10_000)
  const repetitions = pick(7, 1)
  const issuedAt = yield* DateTime.now

  const cache = yield* TokenCache.make(
    TokenSource.make({ key: "one", fetch: Effect.sync(() => makeToken(0, issuedAt)) }),
    { name: "bench-keyed-cache" }
  )
  const manager = yield* TokenManager.make({
    key: (tenant: string) => tenant,
    source: (tenant: string) =>
      Effect.succeed(TokenSource.make({ key: tenant, fetch: Effect.sync(() => makeToken(1, issuedAt)) })),
    name: "bench-keyed"
  })
  // A few hundred other tenants, so that the lookup is not in a one-entry map.
  for (let i = 0; i < 500; i++) yield* manager.get(`tenant-${i}`)
  yield* cache.get
  // Each iteration asks as an application does: `manager.get(key)` builds its effect per call, `cache.get` is one.
  const loop = (next: () => Effect.Effect<unknown, unknown>) =>
    Effect.gen(function*() {
      for (let i = 0; i < n; i++) yield* next()
    })
  const variants = [
    { label: "TokenManager.get", loop: loop(() => manager.get("tenant-42")), times: [] as Array<number> },
    { label: "TokenCache.get", loop: loop(() => cache.get), times: [] as Array<number> }
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
  const [managerGet, cacheGet] = variants.map((v) => median(v.times)) as [number, number]
  return [
    row(name, {
      metric: `TokenManager.get on a hit (500 keys), ${n.toLocaleString("en-US")} ops in an Effect loop`,
      unit: "ns/op",
      ours: managerGet,
      baseline: { name: "TokenCache.get on a hit", value: cacheGet },
      goal: Goal.ratioAtMost(1.5),
      note: "the key is a tenant id; the manager's get includes the key function and the map lookup"
    })
  ] satisfies ReadonlyArray<Row>
})

export const benchmark: Benchmark = {
  name,
  description: "TokenManager: heap per idle key at 100,000 keys; get on a hit against TokenCache.get",
  run: Effect.map(Effect.all([memoryRows, Effect.scoped(speedRows)]), ([a, b]) => [...a, ...b])
}
