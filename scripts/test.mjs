// `pnpm test`: type-check, lint, build, then every test, each phase announced, stopping at the first failure.
// Arguments go to vitest (`pnpm test -- packages/core`).
import { spawnSync } from "node:child_process"
import { performance } from "node:perf_hooks"
import process from "node:process"

const vitestArgs = process.argv.slice(2).filter((arg, i) => !(i === 0 && arg === "--"))
const phases = [
  { name: "type-check", command: ["--silent", "check"] },
  { name: "lint", command: ["--silent", "lint"] },
  { name: "build", command: ["--silent", "build"] },
  { name: "tests", command: ["--silent", "exec", "vitest", "run", ...vitestArgs] }
]

const seconds = (ms) => `${(ms / 1000).toFixed(1)} s`
const done = []
const start = performance.now()
for (const { name, command } of phases) {
  process.stdout.write(`\n==> ${name} (pnpm ${command.filter((arg) => arg !== "--silent").join(" ")})\n`)
  const phaseStart = performance.now()
  const { status, error } = spawnSync("pnpm", command, { stdio: "inherit", shell: process.platform === "win32" })
  const elapsed = performance.now() - phaseStart
  if (status !== 0) {
    process.stderr.write(`\n==> ${name} FAILED after ${seconds(elapsed)}${error ? `: ${error.message}` : ""}\n`)
    process.exit(status ?? 1)
  }
  done.push(`${name} ${seconds(elapsed)}`)
}
process.stdout.write(`\n==> all passed in ${seconds(performance.now() - start)} (${done.join(", ")})\n`)
