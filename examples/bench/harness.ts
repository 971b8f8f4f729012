/**
 * The benchmark harness: what a benchmark module exports, helpers to time and summarize, and the runner that finds
 * every `*.bench.ts` next to this file and runs them one after the other.
 *
 * Add a benchmark by adding a file `bench/<name>.bench.ts` that exports `benchmark` (see {@link Benchmark}); the
 * runner needs no change. Benchmarks never assert on time: each row says whether its goal was met, and only a
 * crash makes the run fail.
 */
import { Context, Effect } from "effect"
import type { Scope } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import * as V8 from "node:v8"
import * as Vm from "node:vm"

// ---------------------------------------------------------------------------------------------------------------
// What a benchmark is
// ---------------------------------------------------------------------------------------------------------------

/** How hard to run. `quick` cuts every loop to a minimum: it proves the benchmark still runs, nothing more. */
export interface Settings {
  readonly quick: boolean
  /** `full` in a real run, `quick` in a quick one. */
  readonly pick: <A>(full: A, quick: A) => A
}

/** The settings of the current run, provided by the runner. */
export class BenchSettings extends Context.Tag("effect-token/bench/BenchSettings")<BenchSettings, Settings>() {}

export const settings = (quick: boolean): Settings => ({ quick, pick: (full, small) => (quick ? small : full) })

/** Whether a measured value met its goal. `info` rows have no goal, `crashed` marks a benchmark that failed. */
export type Verdict = "met" | "MISSED" | "info" | "crashed"

/**
 * A goal: its text for the table, and the test. `ratio` is `ours / baseline` (undefined without a baseline).
 */
export interface Goal {
  readonly text: string
  readonly met: (ours: number, baseline: number | undefined, ratio: number | undefined) => boolean
}

export const Goal = {
  /** `ours / baseline <= limit`: ours costs at most `limit` times the baseline. */
  ratioAtMost: (limit: number): Goal => ({
    text: `<= ${limit}x`,
    met: (_, __, ratio) => ratio !== undefined && ratio <= limit
  }),
  /** `ours / baseline >= limit`: for rates, where more is better. */
  ratioAtLeast: (limit: number): Goal => ({
    text: `>= ${round(limit, 3)}x`,
    met: (_, __, ratio) => ratio !== undefined && ratio >= limit
  }),
  /** An absolute ceiling on our value, in the row's unit. */
  atMost: (limit: number, unit: string): Goal => ({
    text: `<= ${limit} ${unit}`.trim(),
    met: (ours) => ours <= limit
  }),
  /** An absolute floor, in the row's unit. */
  atLeast: (limit: number, unit: string): Goal => ({
    text: `>= ${limit} ${unit}`.trim(),
    met: (ours) => ours >= limit
  }),
  below: (limit: number, unit: string): Goal => ({
    text: `< ${limit} ${unit}`.trim(),
    met: (ours) => ours < limit
  }),
  exactly: (value: number, unit = ""): Goal => ({
    text: `= ${value} ${unit}`.trim(),
    met: (ours) => ours === value
  }),
  /** Several goals that must all hold. */
  all: (...goals: ReadonlyArray<Goal>): Goal => ({
    text: goals.map((g) => g.text).join(" and "),
    met: (ours, baseline, ratio) => goals.every((g) => g.met(ours, baseline, ratio))
  })
}

/** One line of the results table. */
export interface Row {
  readonly benchmark: string
  readonly metric: string
  readonly unit: string
  readonly ours: number
  /** The same metric measured on the baseline in the same run, if the row compares. */
  readonly baseline: number | null
  /** What the baseline is, e.g. "plain HttpClient". */
  readonly baselineName: string | null
  /** `ours / baseline`. */
  readonly ratio: number | null
  readonly goal: string | null
  readonly verdict: Verdict
  /** Anything a reader needs to interpret the row. */
  readonly note?: string
}

/** A benchmark module's `benchmark` export. */
export interface Benchmark {
  /** Short, kebab-case: the table's first column. */
  readonly name: string
  /** One sentence: what is measured against what. */
  readonly description: string
  /**
   * Measures ours and the baseline (in this same run) and returns the rows. It may use the scope for servers and
   * fibers: the runner closes it when the benchmark ends.
   */
  readonly run: Effect.Effect<ReadonlyArray<Row>, unknown, BenchSettings | Scope.Scope>
}

/** Builds a row of `benchmark`, computing the ratio and the verdict. */
export const row = (
  benchmark: string,
  fields: {
    readonly metric: string
    readonly unit: string
    readonly ours: number
    readonly baseline?: { readonly name: string; readonly value: number } | undefined
    readonly goal?: Goal | undefined
    readonly note?: string | undefined
  }
): Row => {
  const baseline = fields.baseline?.value
  const ratio = baseline === undefined || baseline === 0 ? undefined : fields.ours / baseline
  return {
    benchmark,
    metric: fields.metric,
    unit: fields.unit,
    ours: fields.ours,
    baseline: baseline ?? null,
    baselineName: fields.baseline?.name ?? null,
    ratio: ratio ?? null,
    goal: fields.goal?.text ?? null,
    verdict: fields.goal === undefined ? "info" : fields.goal.met(fields.ours, baseline, ratio) ? "met" : "MISSED",
    ...(fields.note !== undefined ? { note: fields.note } : {})
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Measuring
// ---------------------------------------------------------------------------------------------------------------

/** Wall-clock milliseconds, high resolution. Benches only: library code reads time through `Clock`. */
export const now = (): number => performance.now()

export const elapsed = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<readonly [A, number], E, R> =>
  Effect.suspend(() => {
    const start = now()
    return Effect.map(self, (a) => [a, now() - start] as const)
  })

/** The `p`-th percentile (0..100), nearest-rank, of unsorted values. */
export const percentile = (values: ReadonlyArray<number>, p: number): number => {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[rank]!
}

export const median = (values: ReadonlyArray<number>): number => {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

export const round = (value: number, digits: number): number => {
  const f = 10 ** digits
  return Math.round(value * f) / f
}

let gcFunction: (() => void) | undefined

/**
 * A full garbage collection. Uses `global.gc` (node --expose-gc); without it, turns the flag on at run time and
 * takes `gc` from a fresh context, so that the benches also run under vitest.
 */
export const gc = (): void => {
  if (gcFunction === undefined) {
    const global = globalThis as { gc?: () => void }
    if (typeof global.gc === "function") {
      gcFunction = global.gc
    } else {
      V8.setFlagsFromString("--expose-gc")
      gcFunction = Vm.runInNewContext("gc") as () => void
    }
  }
  // Several passes: weak references and finalization registries need more than one to settle.
  for (let i = 0; i < 4; i++) gcFunction()
}

/** Heap in use after a full collection, in bytes. */
export const heapUsed = (): Effect.Effect<number> =>
  Effect.gen(function*() {
    // Let pending timers and microtasks run first, so that what they hold is released.
    yield* Effect.sleep("20 millis")
    gc()
    yield* Effect.yieldNow()
    gc()
    return process.memoryUsage().heapUsed
  })

// ---------------------------------------------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------------------------------------------

export const benchDirectory = Path.dirname(fileURLToPath(import.meta.url))

export interface Machine {
  readonly node: string
  readonly os: string
  readonly cpu: string
  readonly cores: number
  readonly memoryGiB: number
  /** 1-, 5- and 15-minute load averages, at the start and at the end of the run. */
  readonly loadAverageStart: ReadonlyArray<number>
  readonly loadAverageEnd: ReadonlyArray<number>
  readonly gcExposed: boolean
}

export interface Report {
  readonly date: string
  readonly quick: boolean
  readonly durationSeconds: number
  readonly machine: Machine
  readonly benchmarks: ReadonlyArray<
    { readonly name: string; readonly description: string; readonly file: string; readonly seconds: number }
  >
  readonly rows: ReadonlyArray<Row>
}

const isBenchmark = (value: unknown): value is Benchmark =>
  typeof value === "object" && value !== null &&
  typeof (value as Benchmark).name === "string" &&
  typeof (value as Benchmark).description === "string" &&
  Effect.isEffect((value as Benchmark).run)

/** The benchmark files next to this module, in name order. */
export const discover = (directory: string = benchDirectory): ReadonlyArray<string> =>
  Fs.readdirSync(directory).filter((file) => file.endsWith(".bench.ts")).sort().map((file) =>
    Path.join(directory, file)
  )

export interface RunOptions {
  readonly quick: boolean
  /** Run only benchmarks whose name or file contains one of these. Default: all. */
  readonly only?: ReadonlyArray<string> | undefined
  /** Called as each benchmark starts and ends, e.g. to print progress. */
  readonly onProgress?: ((message: string) => void) | undefined
}

/**
 * Imports and runs every benchmark in sequence. A benchmark that fails to load or crashes gets one `crashed` row
 * (with the error) and the run goes on.
 */
export const runAll = (options: RunOptions): Effect.Effect<Report> =>
  Effect.gen(function*() {
    const started = now()
    const loadAverageStart = Os.loadavg().map((l) => round(l, 2))
    const progress = options.onProgress ?? (() => undefined)
    const files = discover().filter((file) =>
      options.only === undefined || options.only.length === 0 ||
      options.only.some((name) => Path.basename(file).includes(name))
    )
    const rows: Array<Row> = []
    const benchmarks: Array<Report["benchmarks"][number]> = []
    for (const file of files) {
      const fileName = Path.basename(file)
      const loaded = yield* Effect.tryPromise(() =>
        import(pathToFileURL(file).href) as Promise<{ benchmark?: unknown }>
      )
        .pipe(Effect.either)
      if (loaded._tag === "Left" || !isBenchmark(loaded.right.benchmark)) {
        const reason = loaded._tag === "Left"
          ? String(loaded.left.error)
          : "does not export `benchmark: { name, description, run }`"
        progress(`${fileName}: ${reason}`)
        rows.push(crashRow(fileName, reason))
        continue
      }
      const benchmark = loaded.right.benchmark
      progress(`running ${benchmark.name} (${fileName}): ${benchmark.description}`)
      const t0 = now()
      const result = yield* benchmark.run.pipe(
        Effect.scoped,
        Effect.provideService(BenchSettings, settings(options.quick)),
        Effect.exit
      )
      const seconds = round((now() - t0) / 1000, 1)
      benchmarks.push({ name: benchmark.name, description: benchmark.description, file: fileName, seconds })
      if (result._tag === "Success") {
        rows.push(...result.value)
        progress(`  done in ${seconds} s (${result.value.length} rows)`)
      } else {
        const reason = String(result.cause).split("\n").slice(0, 6).join(" | ")
        progress(`  CRASHED after ${seconds} s: ${reason}`)
        rows.push(crashRow(benchmark.name, reason))
      }
    }
    const cpus = Os.cpus()
    return {
      date: new Date().toISOString(),
      quick: options.quick,
      durationSeconds: round((now() - started) / 1000, 1),
      machine: {
        node: process.version,
        os: `${Os.type()} ${Os.release()} ${Os.arch()}`,
        cpu: cpus[0]?.model.trim() ?? "unknown",
        cores: cpus.length,
        memoryGiB: round(Os.totalmem() / 2 ** 30, 1),
        loadAverageStart,
        loadAverageEnd: Os.loadavg().map((l) => round(l, 2)),
        gcExposed: typeof (globalThis as { gc?: unknown }).gc === "function"
      },
      benchmarks,
      rows
    } satisfies Report
  })

const crashRow = (benchmark: string, reason: string): Row => ({
  benchmark,
  metric: "crashed",
  unit: "",
  ours: Number.NaN,
  baseline: null,
  baselineName: null,
  ratio: null,
  goal: null,
  verdict: "crashed",
  note: reason
})

// ---------------------------------------------------------------------------------------------------------------
// Printing
// ---------------------------------------------------------------------------------------------------------------

/** A value with its unit, at a precision that suits its size. */
export const formatValue = (value: number | null, unit: string): string => {
  if (value === null) return "-"
  if (Number.isNaN(value)) return "n/a"
  const abs = Math.abs(value)
  const digits = Number.isInteger(value) ? 0 : abs >= 100 ? 0 : abs >= 10 ? 1 : abs >= 1 ? 2 : 3
  const text = value.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 })
  return unit === "" ? text : `${text} ${unit}`
}

export const formatRatio = (ratio: number | null): string =>
  ratio === null ? "-" : `${ratio >= 100 ? Math.round(ratio).toLocaleString("en-US") : round(ratio, 3)}x`

/** The results as a Markdown table (readable in a terminal and in the README alike). */
export const formatTable = (rows: ReadonlyArray<Row>): string => {
  const header = ["benchmark", "metric", "ours", "baseline", "ratio", "goal", "verdict"]
  const lines = rows.map((r) => [
    r.benchmark,
    r.metric,
    formatValue(r.ours, r.unit),
    r.baseline === null ? "-" : `${formatValue(r.baseline, r.unit)} (${r.baselineName})`,
    formatRatio(r.ratio),
    r.goal ?? "-",
    r.verdict
  ])
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)))
  const format = (cells: ReadonlyArray<string>) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`
  return [format(header), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...lines.map(format)].join("\n")
}

/** The notes of rows that have one, as a list. */
export const formatNotes = (rows: ReadonlyArray<Row>): string =>
  rows.flatMap((r) => (r.note === undefined ? [] : [`- ${r.benchmark} / ${r.metric}: ${r.note}`])).join("\n")
