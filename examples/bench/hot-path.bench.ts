/**
 * Hot path: what authentication costs once a token is cached.
 *
 * 1. A request through `AuthHttpClient` vs the same request through the plain `HttpClient` under it, carrying the
 *    same `Authorization` header attached by hand (what a caller without the library sends; platform's span code
 *    does extra work for that header either way): same undici client, same loopback `NodeHttpServer`, same route.
 *    Sequential requests in interleaved blocks (plain/ours, then ours/plain) so that drift and load hit both alike;
 *    medians.
 * 2. `TokenCache.get` on a valid token vs `Ref.get`, both read the same way: `n` reads in one `Effect.gen` loop run
 *    with `Effect.runSync`. The loop over `Effect.void` is shown as the floor of the method.
 */
import { AccessToken, AuthHttpClient, TokenCache } from "@effect-token/core"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { Effect, Redacted, Ref } from "effect"
import type { Benchmark, Row } from "./harness.js"
import { BenchSettings, Goal, median, now, row } from "./harness.js"
import { countingSource, getText, makeApi, timeEach, undiciClient } from "./support.js"

const name = "hot-path"

const httpRows = Effect.gen(function*() {
  const { pick } = yield* BenchSettings
  const rounds = pick(5, 1)
  const perRound = pick(2_000, 100)
  const block = pick(200, 50)
  const warmup = pick(1_000, 20)

  const api = yield* makeApi()
  const plain = yield* undiciClient
  const { source } = countingSource({ prefix: "hot" })
  const cache = yield* TokenCache.make(source, { name: "bench-hot" })
  yield* cache.get
  const ours = AuthHttpClient.authenticate(plain, { baseUrl: api.url, tokens: cache })
  const header = Redacted.value(AccessToken.authorization(yield* cache.get))
  const byHand = HttpClient.mapRequest(plain, HttpClientRequest.setHeader("authorization", header))

  const plainRequest = getText(byHand, api.url)
  const ourRequest = getText(ours, api.url)
  yield* timeEach(plainRequest, warmup, [])
  yield* timeEach(ourRequest, warmup, [])

  const plainLatencies: Array<number> = []
  const ourLatencies: Array<number> = []
  const plainRates: Array<number> = []
  const ourRates: Array<number> = []
  for (let round = 0; round < rounds; round++) {
    let plainTime = 0
    let ourTime = 0
    for (let b = 0; b < perRound / block; b++) {
      const runPlain = Effect.suspend(() => {
        const start = now()
        return Effect.ensuring(
          timeEach(plainRequest, block, plainLatencies),
          Effect.sync(() => plainTime += now() - start)
        )
      })
      const runOurs = Effect.suspend(() => {
        const start = now()
        return Effect.ensuring(timeEach(ourRequest, block, ourLatencies), Effect.sync(() => ourTime += now() - start))
      })
      yield* (round + b) % 2 === 0 ? Effect.zipRight(runPlain, runOurs) : Effect.zipRight(runOurs, runPlain)
    }
    plainRates.push(perRound / (plainTime / 1000))
    ourRates.push(perRound / (ourTime / 1000))
  }

  // The middleware's own cost, without a network: both over a client that answers at once, in process.
  const instant = HttpClient.make((request) =>
    Effect.succeed(HttpClientResponse.fromWeb(request, new Response("ok", { status: 200 })))
  )
  const instantOurs = AuthHttpClient.authenticate(instant, { baseUrl: api.url, tokens: cache })
  const instantByHand = HttpClient.mapRequest(instant, HttpClientRequest.setHeader("authorization", header))
  const instantN = pick(20_000, 200)
  const request = HttpClientRequest.get(api.url)
  const instantPlainTimes: Array<number> = []
  const instantOurTimes: Array<number> = []
  for (let i = 0; i < pick(5, 1); i++) {
    for (const [client, into] of [[instantByHand, instantPlainTimes], [instantOurs, instantOurTimes]] as const) {
      const start = now()
      yield* Effect.gen(function*() {
        for (let j = 0; j < instantN; j++) yield* client.execute(request)
      })
      into.push(((now() - start) * 1000) / instantN)
    }
  }

  const plainP50 = median(plainLatencies) * 1000
  const ourP50 = median(ourLatencies) * 1000
  return [
    row(name, {
      metric: `loopback request latency, median of ${plainLatencies.length}`,
      unit: "µs",
      ours: ourP50,
      baseline: { name: "plain HttpClient, same header by hand", value: plainP50 },
      goal: Goal.ratioAtMost(1.05)
    }),
    row(name, {
      metric: `loopback throughput, median of ${rounds} rounds`,
      unit: "req/s",
      ours: median(ourRates),
      baseline: { name: "plain HttpClient, same header by hand", value: median(plainRates) },
      goal: Goal.ratioAtLeast(1 / 1.05)
    }),
    row(name, {
      metric: "middleware cost without network (instant client)",
      unit: "µs/req",
      ours: median(instantOurTimes),
      baseline: { name: "instant client, header by hand", value: median(instantPlainTimes) },
      note: "the absolute extra work of AuthHttpClient per request (token read, header, 401/transient checks, retry " +
        "wrapper), without network noise; on loopback the same work is added to each request"
    })
  ] satisfies ReadonlyArray<Row>
})

const cacheRows = Effect.gen(function*() {
  const { pick } = yield* BenchSettings
  const n = pick(1_000_000, 10_000)
  const repetitions = pick(7, 1)

  const { source } = countingSource({ prefix: "hot-get" })
  const cache = yield* TokenCache.make(source, { name: "bench-get" })
  yield* cache.get
  const ref = yield* Ref.make(0)

  const loop = (effect: Effect.Effect<unknown, unknown>) =>
    Effect.gen(function*() {
      for (let i = 0; i < n; i++) yield* effect
    })
  const variants = [
    { label: "TokenCache.get", loop: loop(cache.get), times: [] as Array<number> },
    { label: "Ref.get", loop: loop(Ref.get(ref)), times: [] as Array<number> },
    { label: "Effect.void", loop: loop(Effect.void), times: [] as Array<number> }
  ]
  // Warm-up: let the JIT see every variant.
  for (const variant of variants) Effect.runSync(variant.loop)
  for (let r = 0; r < repetitions; r++) {
    // Rotate the order so that no variant always runs right after a GC-heavy one.
    for (let i = 0; i < variants.length; i++) {
      const variant = variants[(i + r) % variants.length]!
      const start = now()
      Effect.runSync(variant.loop)
      variant.times.push(((now() - start) * 1_000_000) / n)
    }
  }
  const [get, refGet, floor] = variants.map((v) => median(v.times)) as [number, number, number]
  return [
    row(name, {
      metric: `TokenCache.get (valid token), ${n.toLocaleString("en-US")} ops in an Effect loop`,
      unit: "ns/op",
      ours: get,
      baseline: { name: "Ref.get", value: refGet },
      goal: Goal.ratioAtMost(3)
    }),
    row(name, {
      metric: "TokenCache.get (valid token), absolute",
      unit: "ns/op",
      ours: get,
      goal: Goal.below(1000, "ns/op")
    }),
    row(name, {
      metric: "loop floor: Effect.void read the same way",
      unit: "ns/op",
      ours: floor,
      note: "cost of the measuring loop itself, included in both rows above"
    })
  ] satisfies ReadonlyArray<Row>
})

export const benchmark: Benchmark = {
  name,
  description: "AuthHttpClient vs plain HttpClient on loopback; TokenCache.get vs Ref.get",
  run: Effect.map(Effect.all([cacheRows, httpRows]), ([a, b]) => [...b, ...a])
}
