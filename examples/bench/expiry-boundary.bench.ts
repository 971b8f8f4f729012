/**
 * Expiry boundary: request latency across refresh points, with refresh-ahead (the default) vs without
 * (`refreshAhead: 0`).
 *
 * Tokens live 2 s (real clock; the default skew is capped at half of that, so each is handed out for 1 s) and the
 * source takes 50 ms. Requests arrive open-loop, one every millisecond (a request is started on schedule whether
 * or not earlier ones finished, so a stall shows in every request it delays), through `AuthHttpClient` to a
 * loopback API, for several seconds: several refreshes per run. Latency runs from a request's start to its body;
 * the time each request spent in `cache.get` is recorded too.
 */
import { AuthHttpClient, TokenCache } from "@effect-token/core"
import { Effect, Fiber } from "effect"
import type { Benchmark, Row } from "./harness.js"
import { BenchSettings, Goal, median, now, percentile, row } from "./harness.js"
import { countingSource, getText, makeApi, undiciClient } from "./support.js"

const name = "expiry-boundary"
const fetchMillis = 50
const tokenWaitMillis = 10

interface Outcome {
  readonly requests: number
  readonly failed: number
  readonly refreshes: number
  readonly p50: number
  readonly p99: number
  readonly max: number
  /** Requests whose `cache.get` took at least `tokenWaitMillis`: they waited for a fetch. */
  readonly tokenWaits: number
  readonly maxTokenWait: number
}

export const benchmark: Benchmark = {
  name,
  description: "p99 latency across token refreshes (2 s tokens, 50 ms source): refresh-ahead vs refreshAhead: 0",
  run: Effect.gen(function*() {
    const { pick } = yield* BenchSettings
    const lifetime = pick("2 seconds", "1 second")
    const runMillis = pick(6_000, 1_500)
    const rounds = pick(2, 1)

    const api = yield* makeApi()
    const client = yield* undiciClient

    const run = (refreshAhead: number | undefined, runMillis: number) =>
      Effect.scoped(Effect.gen(function*() {
        const counting = countingSource({ prefix: "expiry", latency: `${fetchMillis} millis`, lifetime })
        const cache = yield* TokenCache.make(counting.source, { name: "bench-expiry", refreshAhead })
        // The same cache, with each `get` timed: a read of a ready token takes microseconds, a wait for a fetch
        // takes the fetch. This isolates token waits from the loopback and load noise in request latencies.
        const getWaits: Array<number> = []
        const timedGet = Effect.suspend(() => {
          const start = now()
          return Effect.ensuring(cache.get, Effect.sync(() => void getWaits.push(now() - start)))
        })
        const authed = AuthHttpClient.authenticate(client, { baseUrl: api.url, tokens: { ...cache, get: timedGet } })
        const request = getText(authed, api.url)
        yield* cache.get
        // Warm-up: connections and JIT, on the first token.
        for (let i = 0; i < 200; i++) yield* request
        const before = counting.fetches()
        getWaits.length = 0
        const latencies: Array<number> = []
        let failed = 0
        const fibers: Array<Fiber.RuntimeFiber<void>> = []
        const end = now() + runMillis
        while (now() < end) {
          const start = now()
          fibers.push(
            yield* Effect.fork(
              request.pipe(
                Effect.matchEffect({
                  onFailure: () => Effect.sync(() => void failed++),
                  onSuccess: () => Effect.sync(() => void latencies.push(now() - start))
                })
              )
            )
          )
          yield* Effect.sleep("1 millis")
        }
        yield* Fiber.joinAll(fibers)
        return {
          requests: fibers.length,
          failed,
          refreshes: counting.fetches() - before,
          p50: percentile(latencies, 50),
          p99: percentile(latencies, 99),
          max: Math.max(...latencies),
          tokenWaits: getWaits.filter((w) => w >= tokenWaitMillis).length,
          maxTokenWait: Math.max(...getWaits)
        } satisfies Outcome
      }))

    // Warm-up of the whole open-loop machinery, not recorded.
    yield* run(undefined, pick(1_500, 300))
    yield* run(0, pick(1_500, 300))
    const ahead: Array<Outcome> = []
    const without: Array<Outcome> = []
    for (let r = 0; r < rounds; r++) {
      const a = Effect.map(run(undefined, runMillis), (o) => ahead.push(o))
      const b = Effect.map(run(0, runMillis), (o) => without.push(o))
      yield* r % 2 === 0 ? Effect.zip(a, b) : Effect.zip(b, a)
    }
    const m = (outcomes: ReadonlyArray<Outcome>, f: (o: Outcome) => number) => median(outcomes.map(f))
    const sum = (outcomes: ReadonlyArray<Outcome>, f: (o: Outcome) => number) => outcomes.reduce((n, o) => n + f(o), 0)
    const baseline = "refreshAhead: 0"
    return [
      row(name, {
        metric: `request latency p99 (${sum(ahead, (o) => o.requests).toLocaleString("en-US")} requests, ` +
          `${sum(ahead, (o) => o.refreshes)} refreshes)`,
        unit: "ms",
        ours: m(ahead, (o) => o.p99),
        baseline: { name: baseline, value: m(without, (o) => o.p99) },
        goal: Goal.ratioAtMost(0.5)
      }),
      row(name, {
        metric: "request latency p50",
        unit: "ms",
        ours: m(ahead, (o) => o.p50),
        baseline: { name: baseline, value: m(without, (o) => o.p50) }
      }),
      row(name, {
        metric: `requests that waited >= ${tokenWaitMillis} ms for a token (all rounds)`,
        unit: "",
        ours: sum(ahead, (o) => o.tokenWaits),
        baseline: { name: baseline, value: sum(without, (o) => o.tokenWaits) },
        goal: Goal.exactly(0)
      }),
      row(name, {
        metric: "longest wait for a token in cache.get",
        unit: "ms",
        ours: Math.max(...ahead.map((o) => o.maxTokenWait)),
        baseline: { name: baseline, value: Math.max(...without.map((o) => o.maxTokenWait)) }
      }),
      row(name, {
        metric: "request latency max (worst round)",
        unit: "ms",
        ours: Math.max(...ahead.map((o) => o.max)),
        baseline: { name: baseline, value: Math.max(...without.map((o) => o.max)) },
        note: "includes GC pauses and scheduling delays of a loaded machine, which hit both variants alike"
      }),
      row(name, {
        metric: "failed requests",
        unit: "",
        ours: sum(ahead, (o) => o.failed),
        baseline: { name: baseline, value: sum(without, (o) => o.failed) },
        goal: Goal.exactly(0)
      })
    ] satisfies ReadonlyArray<Row>
  })
}
