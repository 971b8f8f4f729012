/**
 * `pnpm bench`: runs every `bench/*.bench.ts`, prints one table and writes it to `bench/results/latest.json`.
 *
 *   pnpm bench                        all benchmarks, full size
 *   pnpm bench -- --quick             every loop cut to a minimum (what the smoke test runs)
 *   pnpm bench -- hot-path cold       only the benchmarks whose file name contains one of the words
 *   pnpm bench -- --out other.json    write the JSON elsewhere (a quick run never overwrites latest.json)
 *
 * `BENCH_QUICK=1` works like `--quick`. Exit code 0 unless a benchmark crashed: goals are reported, not asserted.
 * `pnpm bench` builds first and runs with `bench/tsconfig.json`, which has no source `paths`: the benchmarks import
 * `@effect-token/*` from `dist`, the code users run, not the sources as tsx would transform them.
 */
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { benchDirectory, formatNotes, formatTable, runAll } from "./harness.js"

const args = process.argv.slice(2)
const quick = args.includes("--quick") || process.env["BENCH_QUICK"] === "1"
const outIndex = args.indexOf("--out")
const out = outIndex >= 0 ? args[outIndex + 1] : undefined
const only = args.filter((arg, i) => !arg.startsWith("--") && (outIndex < 0 || i !== outIndex + 1))
const outFile = out !== undefined
  ? Path.resolve(out)
  : Path.join(benchDirectory, "results", quick || only.length > 0 ? "quick.json" : "latest.json")

const program = Effect.gen(function*() {
  const report = yield* runAll({ quick, only, onProgress: (message) => console.error(message) })
  const { machine } = report
  console.log("")
  console.log(formatTable(report.rows))
  const notes = formatNotes(report.rows)
  if (notes !== "") console.log(`\nNotes:\n${notes}`)
  console.log(
    `\n${machine.node} on ${machine.os}, ${machine.cpu} x ${machine.cores}, ${machine.memoryGiB} GiB; load average ` +
      `${machine.loadAverageStart.join(" ")} at start, ${machine.loadAverageEnd.join(" ")} at end; ` +
      `${report.durationSeconds} s${quick ? " (quick mode: numbers mean nothing)" : ""}`
  )
  Fs.mkdirSync(Path.dirname(outFile), { recursive: true })
  Fs.writeFileSync(outFile, JSON.stringify(report, null, 2) + "\n")
  console.log(`written to ${Path.relative(process.cwd(), outFile)}`)
  if (report.rows.some((r) => r.verdict === "crashed")) process.exitCode = 1
})

Effect.runPromise(program).then(
  () => process.exit(),
  (error) => {
    console.error(error)
    process.exit(1)
  }
)
