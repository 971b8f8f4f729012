/**
 * Parsers of server input: a pathological 64 KB `WWW-Authenticate` header against a normal one. The pathological
 * header (`a a/a/a/…!`) made the former parser re-scan the rest of the header at every `a`, which took seconds;
 * the one-pass parser reads at most 16 KiB once.
 */
import { WwwAuthenticate } from "@effect-token/core"
import { Effect } from "effect"
import type { Benchmark } from "./harness.js"
import { BenchSettings, Goal, median, now, row } from "./harness.js"

const name = "parsers"

/** 64 KiB of `a/` after one challenge: every `a` starts a challenge whose token68 look-ahead used to read to the end. */
export const pathologicalHeader = `a ${"a/".repeat(32 * 1024 - 2)}!`

const normalHeader =
  "Bearer realm=\"api\", error=\"invalid_token\", error_description=\"The access token expired\", DPoP algs=\"ES256 PS256\""

/** Median milliseconds of one parse of `header`, over `rounds` rounds of `perRound` parses. */
const timeParse = (header: string, rounds: number, perRound: number): number => {
  const times: Array<number> = []
  let sink = 0
  for (let round = 0; round < rounds; round++) {
    const start = now()
    for (let i = 0; i < perRound; i++) sink += WwwAuthenticate.parse(header).length
    times.push((now() - start) / perRound)
  }
  if (sink < 0) throw new Error("unreachable")
  return median(times)
}

export const benchmark: Benchmark = {
  name,
  description: "WWW-Authenticate: a pathological 64 KB header against a normal one",
  run: Effect.gen(function*() {
    const { pick } = yield* BenchSettings
    const rounds = pick(15, 2)
    // Warm-up: JIT both paths.
    timeParse(normalHeader, 2, pick(10_000, 100))
    timeParse(pathologicalHeader, 2, pick(20, 2))
    const normal = timeParse(normalHeader, rounds, pick(10_000, 100))
    const pathological = timeParse(pathologicalHeader, rounds, pick(20, 2))
    return [
      row(name, {
        metric: `WWW-Authenticate parse, ${pathologicalHeader.length} chars, pathological, median of ${rounds}`,
        unit: "ms",
        ours: pathological,
        baseline: { name: `normal header (${normalHeader.length} chars)`, value: normal },
        goal: Goal.below(5, "ms")
      })
    ]
  })
}
