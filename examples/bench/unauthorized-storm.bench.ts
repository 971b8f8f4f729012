/**
 * 401 storm: the API revokes the cached token while 1,000 requests are about to use it.
 *
 * A loopback API accepts only tokens the source issued and that were not revoked. Each round: the client holds a
 * token, the API revokes it, 1,000 concurrent requests go out with it, all get 401. Ours (`AuthHttpClient` over
 * `TokenCache`) invalidates exactly the rejected token and the retries join one refresh. The baseline is the
 * handler of axios-auth-refresh without its queue (and of seed 004's Polly policy): on every 401 fetch a new token,
 * store it, and retry once.
 */
import { AuthHttpClient, TokenCache } from "@effect-token/core"
import type { AccessToken } from "@effect-token/core"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { Effect, Redacted } from "effect"
import type { Benchmark, Row } from "./harness.js"
import { BenchSettings, Goal, median, now, percentile, row } from "./harness.js"
import { countingSource, getText, makeApi, undiciClient } from "./support.js"

const name = "401-storm"

interface Outcome {
  readonly refreshes: number
  readonly succeeded: number
  readonly p99: number
}

export const benchmark: Benchmark = {
  name,
  description: "1,000 concurrent requests rejected for one revoked token: refreshes, ours vs refresh-on-every-401",
  run: Effect.gen(function*() {
    const { pick } = yield* BenchSettings
    const concurrent = pick(1_000, 100)
    const rounds = pick(3, 1)

    const valid = new Set<string>()
    const api = yield* makeApi((authorization) =>
      authorization !== undefined && valid.has(authorization.slice("Bearer ".length))
    )
    const client = yield* undiciClient
    const bearer = (token: AccessToken.AccessToken) => `Bearer ${Redacted.value(token.value)}`

    /** One storm: revoke what `current` returns, then fire `concurrent` requests through `send`. */
    const storm = (
      send: Effect.Effect<number, unknown>,
      current: Effect.Effect<AccessToken.AccessToken, unknown>,
      fetches: () => number
    ) =>
      Effect.gen(function*() {
        const token = yield* current
        valid.delete(Redacted.value(token.value))
        const before = fetches()
        const latencies: Array<number> = []
        const statuses = yield* Effect.forEach(
          Array.from({ length: concurrent }),
          () =>
            Effect.suspend(() => {
              const start = now()
              return Effect.ensuring(send, Effect.sync(() => latencies.push(now() - start)))
            }).pipe(Effect.orElseSucceed(() => 0)),
          { concurrency: "unbounded" }
        )
        return {
          refreshes: fetches() - before,
          succeeded: statuses.filter((s) => s === 200).length,
          p99: percentile(latencies, 99)
        } satisfies Outcome
      })

    // Ours.
    const oursSource = countingSource({ prefix: "storm-ours", latency: "20 millis", onIssue: (v) => valid.add(v) })
    const cache = yield* TokenCache.make(oursSource.source, { name: "bench-storm" })
    const ours = AuthHttpClient.authenticate(client, { baseUrl: api.url, tokens: cache })
    const oursSend = Effect.map(getText(ours, api.url), ([status]) => status)

    // Baseline: refresh on every 401, no queue, no compare-and-clear.
    const baseSource = countingSource({ prefix: "storm-base", latency: "20 millis", onIssue: (v) => valid.add(v) })
    let baseToken: AccessToken.AccessToken | undefined
    const baseCurrent = Effect.suspend(() =>
      baseToken !== undefined
        ? Effect.succeed(baseToken)
        : Effect.tap(baseSource.source.fetch, (t) => Effect.sync(() => baseToken = t))
    )
    const sendWith = (token: AccessToken.AccessToken) =>
      Effect.flatMap(
        client.execute(
          HttpClientRequest.get(api.url).pipe(HttpClientRequest.setHeader("authorization", bearer(token)))
        ),
        (response) => Effect.as(response.text, response.status)
      )
    const baseSend = Effect.gen(function*() {
      const token = yield* baseCurrent
      const status = yield* sendWith(token)
      if (status !== 401) return status
      const fresh = yield* baseSource.source.fetch
      baseToken = fresh
      return yield* sendWith(fresh)
    })

    // Warm-up: connections, JIT.
    yield* Effect.forEach(Array.from({ length: 50 }), () => Effect.zip(oursSend, baseSend), { concurrency: 10 })

    const oursOutcomes: Array<Outcome> = []
    const baseOutcomes: Array<Outcome> = []
    for (let r = 0; r < rounds; r++) {
      const runOurs = Effect.map(storm(oursSend, cache.get, oursSource.fetches), (o) => oursOutcomes.push(o))
      const runBase = Effect.map(storm(baseSend, baseCurrent, baseSource.fetches), (o) => baseOutcomes.push(o))
      yield* r % 2 === 0 ? Effect.zip(runOurs, runBase) : Effect.zip(runBase, runOurs)
    }

    const worst = (outcomes: ReadonlyArray<Outcome>, f: (o: Outcome) => number) => Math.max(...outcomes.map(f))
    const baseline = "refresh on every 401"
    return [
      row(name, {
        metric: `token refreshes for ${concurrent.toLocaleString("en-US")} rejected requests (max of ${rounds})`,
        unit: "",
        ours: worst(oursOutcomes, (o) => o.refreshes),
        baseline: { name: baseline, value: worst(baseOutcomes, (o) => o.refreshes) },
        goal: Goal.exactly(1)
      }),
      row(name, {
        metric: "requests that succeeded after the retry (min of rounds)",
        unit: "",
        ours: Math.min(...oursOutcomes.map((o) => o.succeeded)),
        baseline: { name: baseline, value: Math.min(...baseOutcomes.map((o) => o.succeeded)) },
        goal: Goal.exactly(concurrent)
      }),
      row(name, {
        metric: "request latency p99 during the storm",
        unit: "ms",
        ours: median(oursOutcomes.map((o) => o.p99)),
        baseline: { name: baseline, value: median(baseOutcomes.map((o) => o.p99)) }
      })
    ] satisfies ReadonlyArray<Row>
  })
}
