import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { discover, formatTable, runAll } from "../bench/harness.js"

describe("pnpm bench", () => {
  it.live("runs every benchmark in quick mode and each one produces rows", () =>
    Effect.gen(function*() {
      const report = yield* runAll({ quick: true })
      const crashed = report.rows.filter((r) => r.verdict === "crashed")
      // The reason of a crash is in its row's note, which the table leaves out.
      expect(crashed.map((r) => `${r.benchmark}: ${r.note}`)).toEqual([])
      expect(report.benchmarks.length).toBe(discover().length)
      expect(report.benchmarks.length).toBeGreaterThanOrEqual(5)
      for (const benchmark of report.benchmarks) {
        const rows = report.rows.filter((r) => r.benchmark === benchmark.name)
        expect(rows.length, benchmark.name).toBeGreaterThan(0)
        for (const r of rows) expect(r.metric, benchmark.name).not.toBe("")
      }
      // The counting benchmarks count the same at any size: one fetch however many callers.
      const asRequests = report.rows.filter((r) => r.benchmark === "cold-start" && r.metric.startsWith("AS requests"))
      expect(asRequests.map((r) => r.ours)).toEqual([1, 1])
      expect(formatTable(report.rows)).toContain("| benchmark")
    }), 900_000)
})
