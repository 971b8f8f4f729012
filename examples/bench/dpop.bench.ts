/**
 * DPoP: what a proof per request costs. The same cached token through `AuthHttpClient` over an instant in-process
 * client (no network, so the difference is the library's own work): bearer (a header) against DPoP (an ES256
 * signature, a SHA-256 for `ath` and a random `jti` per request). Interleaved repetitions, medians. Also the proof
 * alone (`DPoP.proof`), to show where the time goes.
 */
import { AccessToken, AuthHttpClient, DPoP, TokenCache } from "@effect-token/core"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { DateTime, Duration, Effect, Option, Redacted } from "effect"
import type { Benchmark, Row } from "./harness.js"
import { BenchSettings, median, now, row } from "./harness.js"

const name = "dpop"
const baseUrl = "https://api.bench.test"

const cacheOf = (type: AccessToken.TokenType) =>
  Effect.gen(function*() {
    const issuedAt = yield* DateTime.now
    const token = AccessToken.make({
      value: Redacted.make(`bench.${type}.token-value-of-a-usual-length-0123456789abcdefghijklmnopqrstuvwxyz`),
      type,
      issuedAt,
      expiresAt: Option.some(DateTime.addDuration(issuedAt, Duration.hours(1)))
    })
    const cache = yield* TokenCache.make({ key: `bench-${type}`, fetch: Effect.succeed(token) }, {
      name: `bench-${type}`
    })
    yield* cache.get
    return cache
  })

const run = Effect.gen(function*() {
  const { pick } = yield* BenchSettings
  const n = pick(5_000, 100)
  const repetitions = pick(5, 1)

  const instant = HttpClient.make((request) =>
    Effect.succeed(HttpClientResponse.fromWeb(request, new Response("ok", { status: 200 })))
  )
  const key = yield* DPoP.generate()
  const bearer = AuthHttpClient.authenticate(instant, { baseUrl, tokens: yield* cacheOf("Bearer") })
  const dpop = AuthHttpClient.authenticate(instant, { baseUrl, tokens: yield* cacheOf("DPoP"), dpop: key })
  const request = HttpClientRequest.get(`${baseUrl}/orders?page=1`)
  const proofOnly = DPoP.proof(key, { method: "GET", url: `${baseUrl}/orders`, accessToken: "bench-token" })

  const variants = [
    { label: "bearer", loop: (k: number) => loop(bearer.execute(request), k), times: [] as Array<number> },
    { label: "dpop", loop: (k: number) => loop(dpop.execute(request), k), times: [] as Array<number> },
    { label: "proof", loop: (k: number) => loop(proofOnly, k), times: [] as Array<number> }
  ]
  // Warm-up: let the JIT see every variant.
  for (const variant of variants) yield* variant.loop(pick(500, 20))
  for (let r = 0; r < repetitions; r++) {
    for (let i = 0; i < variants.length; i++) {
      const variant = variants[(i + r) % variants.length]!
      const start = now()
      yield* variant.loop(n)
      variant.times.push(((now() - start) * 1000) / n)
    }
  }
  const [bearerUs, dpopUs, proofUs] = variants.map((v) => median(v.times)) as [number, number, number]
  return [
    row(name, {
      metric: `request through AuthHttpClient, instant client, median of ${repetitions} x ${n}`,
      unit: "µs/req",
      ours: dpopUs,
      baseline: { name: "same client, bearer token", value: bearerUs },
      note: "DPoP adds one ES256 signature, one SHA-256 (ath) and a random jti per request; on a network this " +
        "absolute extra is added to each request's latency"
    }),
    row(name, {
      metric: "DPoP.proof alone (ES256, with ath)",
      unit: "µs/proof",
      ours: proofUs,
      note: "most of the DPoP row's extra cost"
    })
  ] satisfies ReadonlyArray<Row>
})

const loop = (effect: Effect.Effect<unknown, unknown>, n: number) =>
  Effect.gen(function*() {
    for (let i = 0; i < n; i++) yield* effect
  })

export const benchmark: Benchmark = {
  name,
  description: "cost per request of DPoP (a proof per request) against bearer through AuthHttpClient, instant client",
  run
}
