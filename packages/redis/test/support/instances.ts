/**
 * Starts service instances (`instance.ts`, bundled) as OS processes and talks to them; every process is killed when the
 * scope closes.
 */
import { Deferred, Effect, PubSub, Queue } from "effect"
import type { Scope } from "effect"
import { build } from "esbuild"
import { type ChildProcess, spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Readline from "node:readline"
import { fileURLToPath } from "node:url"
import { kill } from "./redisServer.js"

const here = Path.dirname(fileURLToPath(import.meta.url))
const root = Path.resolve(here, "../../../..")

export interface RoundResult {
  readonly id: number
  readonly ok: number
  readonly failed: number
  readonly errors: ReadonlyArray<string>
  readonly tokens: ReadonlyArray<string>
  readonly ms: number
  /** The least lifetime left on a token served in the round (JSON turns Infinity into null: no expiry). */
  readonly minRemainingMs: number | null
  /** When the instance reported the round (epoch ms, its clock: the machine's). */
  readonly at?: number
}

export interface Instance {
  readonly index: number
  readonly process: ChildProcess
  /** Every event so far, in order. */
  readonly events: Array<Record<string, any>>
  readonly round: (callers: number) => Effect.Effect<RoundResult>
  /**
   * Takes this instance's `fetch-start`s in order, from its start: one that happened before the call (a cold start's
   * fetch) resolves it at once. To catch the fetch in flight now, use `nextFetchStart`.
   */
  readonly fetchStarted: Effect.Effect<void>
  /** Resolves at this instance's next `fetch-start` after the call, never at an earlier one. */
  readonly nextFetchStart: Effect.Effect<void>
  readonly warnings: () => ReadonlyArray<string>
  readonly kill: Effect.Effect<void>
}

let roundIds = 0

/*
 * The instance script and the workspace sources it imports, bundled once into one file (esbuild resolves the
 * `@effect-token/*` aliases through tsconfig paths). Loading it takes a node process well under a second, where
 * `node --import tsx` resolving and transforming every module took several: eight of them share two cores.
 */
let bundle: { readonly dir: string; readonly file: Promise<string> } | undefined

const bundled = (): Promise<string> => {
  if (bundle === undefined) {
    const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-token-instance-"))
    const file = Path.join(dir, "instance.mjs")
    bundle = {
      dir,
      file: build({
        entryPoints: [Path.join(here, "instance.ts")],
        bundle: true,
        platform: "node",
        format: "esm",
        target: "node20",
        outfile: file,
        tsconfig: Path.join(root, "tsconfig.json"),
        // Bundled CommonJS dependencies (ioredis) call `require` for Node built-ins.
        banner: {
          js:
            "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);"
        },
        logLevel: "error"
      }).then(() => file)
    }
  }
  return bundle.file
}

/** Removes the bundle (call once, after the file's tests). */
export const removeBundle = (): void => {
  if (bundle !== undefined) Fs.rmSync(bundle.dir, { recursive: true, force: true })
  bundle = undefined
}

const start = (index: number, env: Record<string, string>): Effect.Effect<Instance, never, Scope.Scope> =>
  Effect.gen(function*() {
    const script = yield* Effect.promise(bundled)
    const child = spawn(process.execPath, [script], {
      cwd: root,
      env: { ...process.env, ...env },
      stdio: ["pipe", "pipe", "pipe"]
    })
    yield* Effect.addFinalizer(() => kill(child))
    const events: Array<Record<string, any>> = []
    const pending = new Map<number, Deferred.Deferred<RoundResult>>()
    const fetchStarts = yield* Queue.unbounded<void>()
    const laterFetchStarts = yield* PubSub.unbounded<void>()
    const ready = yield* Deferred.make<void, string>()
    let stderr = ""
    child.stderr!.on("data", (chunk) => {
      stderr += chunk.toString()
    })
    child.on("exit", (code, signal) => {
      Deferred.unsafeDone(ready, Effect.fail(`instance ${index} exited (${code ?? signal}) before ready:\n${stderr}`))
    })
    Readline.createInterface({ input: child.stdout! }).on("line", (line) => {
      let event: Record<string, any>
      try {
        event = JSON.parse(line)
      } catch {
        return
      }
      events.push(event)
      if (event.event === "ready") Deferred.unsafeDone(ready, Effect.void)
      if (event.event === "fetch-start") {
        Queue.unsafeOffer(fetchStarts, undefined)
        Effect.runSync(PubSub.publish(laterFetchStarts, undefined))
      }
      if (event.event === "round") {
        const deferred = pending.get(event.id)
        if (deferred) Deferred.unsafeDone(deferred, Effect.succeed(event as unknown as RoundResult))
      }
    })
    yield* Deferred.await(ready).pipe(Effect.timeout("60 seconds"), Effect.orDie)
    return {
      index,
      process: child,
      events,
      round: (callers) =>
        Effect.gen(function*() {
          const id = ++roundIds
          const deferred = yield* Deferred.make<RoundResult>()
          pending.set(id, deferred)
          child.stdin!.write(`${JSON.stringify({ cmd: "round", id, callers })}\n`)
          return yield* Deferred.await(deferred)
        }),
      fetchStarted: Queue.take(fetchStarts),
      nextFetchStart: Effect.scoped(Effect.flatMap(PubSub.subscribe(laterFetchStarts), Queue.take)),
      warnings: () => events.filter((e) => e.event === "log" && e.level === "WARN").map((e) => String(e.message)),
      kill: kill(child)
    }
  })

/** `count` instances with the same environment, started concurrently. */
export const startAll = (count: number, env: Record<string, string>) =>
  Effect.forEach(Array.from({ length: count }, (_, i) => i), (i) => start(i, env), { concurrency: "unbounded" })

/** One round on every instance at once. */
export const roundAll = (instances: ReadonlyArray<Instance>, callers: number) =>
  Effect.forEach(instances, (instance) => instance.round(callers), { concurrency: "unbounded" })
