/**
 * Memory: 10,000 caches, one per tenant/audience, each `TokenCache.make` in its own `Scope` and holding a token;
 * then every scope closed.
 *
 * Reported: heap per cache with its token (after a full GC), against the same tokens kept in a plain `Map` (the
 * memory cache of the seeds: the floor any cache pays for the token itself); heap left after closing the scopes
 * (vs before creating them). Then 1,000 more caches whose fetch never answers, each with a caller waiting, are
 * closed: fibers still running after that are counted with a `Supervisor.track` around everything they forked.
 */
import { AccessToken, TokenCache, TokenSource } from "@effect-token/core"
import { DateTime, Effect, Exit, Option, Redacted, Scope, Supervisor } from "effect"
import type { Benchmark, Row } from "./harness.js"
import { BenchSettings, Goal, heapUsed, median, row } from "./harness.js"

const name = "memory"

const makeToken = (i: number, now: DateTime.Utc) =>
  AccessToken.make({
    value: Redacted.make(`tenant-${i}-`.padEnd(800, "x")),
    issuedAt: now,
    expiresAt: Option.some(DateTime.add(now, { hours: 1 }))
  })

interface PhaseOutcome {
  readonly perCache: number
  readonly retainedPerCache: number
  readonly retainedKiB: number
  readonly openKiB: number
  readonly running: number
  readonly runningAfter: number
}

export const benchmark: Benchmark = {
  name,
  description: "heap per cached token with 10,000 caches in their own scopes; memory and fibers after closing them",
  run: Effect.gen(function*() {
    const { pick } = yield* BenchSettings
    const caches = pick(10_000, 500)

    const now = yield* DateTime.now
    // Let what earlier benchmarks left behind (sockets, timers) go before measuring anything.
    yield* Effect.sleep("500 millis")
    yield* heapUsed()

    // Ours: `count` caches, each in its own scope; `stuck` ones have a fetch in flight that never ends.
    const phase = (count: number, stuck: boolean) =>
      Effect.gen(function*() {
        const supervisor = yield* Supervisor.track
        const before = yield* heapUsed()
        const scopes: Array<Scope.CloseableScope> = []
        // An application holds its caches (in a Layer's context); so does this benchmark, until the scopes close.
        const held: Array<TokenCache.TokenCache> = []
        yield* Effect.gen(function*() {
          for (let i = 0; i < count; i++) {
            const scope = yield* Scope.make()
            scopes.push(scope)
            const source = TokenSource.make({
              key: `client_credentials:https://as.example/token:tenant-${i}:audience-${i % 7}`,
              fetch: stuck ? Effect.never : Effect.sync(() => makeToken(i, now))
            })
            // A low-cardinality name, as the docs ask: it labels metrics.
            const cache = yield* Scope.extend(TokenCache.make(source, { name: `tier-${i % 4}` }), scope)
            held.push(cache)
            if (stuck) yield* Effect.forkIn(cache.get, scope)
            else yield* cache.get
          }
        }).pipe(Effect.supervised(supervisor))
        const open = yield* heapUsed()
        const running = (yield* supervisor.value).length
        for (const scope of scopes) yield* Scope.close(scope, Exit.void)
        scopes.length = 0
        held.length = 0
        const after = yield* heapUsed()
        return {
          perCache: (open - before) / count,
          retainedPerCache: (after - before) / count,
          retainedKiB: (after - before) / 1024,
          openKiB: (open - before) / 1024,
          running,
          runningAfter: (yield* supervisor.value).length
        }
      })
    // Each phase three times: a leak grows with every repetition, GC noise does not. Medians are reported.
    const repeat = pick(3, 1)
    const summarize = (outcomes: ReadonlyArray<PhaseOutcome>) => ({
      perCache: median(outcomes.map((o) => o.perCache)),
      retainedPerCache: median(outcomes.map((o) => o.retainedPerCache)),
      retainedKiB: median(outcomes.map((o) => o.retainedKiB)),
      openKiB: median(outcomes.map((o) => o.openKiB)),
      running: Math.max(...outcomes.map((o) => o.running)),
      runningAfter: Math.max(...outcomes.map((o) => o.runningAfter))
    })
    const readyRuns: Array<PhaseOutcome> = []
    for (let r = 0; r < repeat; r++) readyRuns.push(yield* phase(caches, false))
    const ready = summarize(readyRuns)
    const stuckCount = Math.round(caches / 10)
    const stuckRuns: Array<PhaseOutcome> = []
    for (let r = 0; r < repeat; r++) stuckRuns.push(yield* phase(stuckCount, true))
    const stuck = summarize(stuckRuns)

    // Baseline: the same tokens in a Map.
    const heapBeforeMap = yield* heapUsed()
    const map = new Map<string, { token: AccessToken.AccessToken; expiresAt: number }>()
    for (let i = 0; i < caches; i++) {
      const token = makeToken(i, now)
      map.set(`tenant-${i}`, { token, expiresAt: DateTime.toEpochMillis(now) + 3_600_000 })
    }
    const mapPerToken = ((yield* heapUsed()) - heapBeforeMap) / caches
    map.clear()

    return [
      row(name, {
        metric: `heap per cache with its token (${caches.toLocaleString("en-US")} caches)`,
        unit: "bytes",
        ours: Math.round(ready.perCache),
        baseline: { name: "token in a Map", value: Math.round(mapPerToken) },
        goal: Goal.atMost(4096, "bytes"),
        note: "tokens carry an 800-character value (a typical JWT); the baseline is the token alone, so the " +
          "difference is what a cache (scope, state machine, closures) costs"
      }),
      row(name, {
        metric: "heap left after closing every scope (vs before creating)",
        unit: "bytes/cache",
        ours: Math.round(ready.retainedPerCache),
        goal: Goal.atMost(64, "bytes/cache"),
        note: `${Math.round(ready.retainedKiB).toLocaleString("en-US")} KiB in all, of ` +
          `${Math.round(ready.openKiB).toLocaleString("en-US")} KiB while open (medians of ${repeat} runs)`
      }),
      row(name, {
        metric: `fibers running with ${stuckCount.toLocaleString("en-US")} fetches in flight`,
        unit: "",
        ours: stuck.running,
        note: "each stuck cache has its fetch fiber and the caller's waiting fiber"
      }),
      row(name, {
        metric: "fibers still running after closing their scopes",
        unit: "",
        ours: stuck.runningAfter,
        goal: Goal.exactly(0)
      }),
      row(name, {
        metric: "heap per cache with a fetch in flight and a waiting caller",
        unit: "bytes/cache",
        ours: Math.round(stuck.perCache),
        note: `${Math.round(stuck.retainedPerCache)} bytes/cache left after close (median of ${repeat} runs)`
      })
    ] satisfies ReadonlyArray<Row>
  })
}
