// `pnpm test`: type-check, lint, build, then every test, each phase announced, stopping at the first failure.
// Arguments go to vitest (`pnpm test -- packages/core`).
// Before anything runs, it checks for the two system programs the integration tests start (redis-server and
// chromium) and, when one is missing, prints the one command that installs them (`.ci/run` runs it first).
import { spawnSync } from "node:child_process"
import { existsSync } from "node:fs"
import { performance } from "node:perf_hooks"
import process from "node:process"

const vitestArgs = process.argv.slice(2).filter((arg, i) => !(i === 0 && arg === "--"))

// Only the redis, session and examples tests start these; `pnpm test -- packages/core` runs without them.
const needsSystemPrograms = vitestArgs.length === 0 || vitestArgs.some((arg) => /redis|session|examples/.test(arg))
if (needsSystemPrograms) {
  const onPath = (program) => spawnSync(program, ["--version"], { stdio: "ignore" }).status === 0
  const missing = [
    ...(onPath("redis-server") ? [] : ["redis-server"]),
    ...(existsSync("/usr/bin/chromium") ? [] : ["chromium (at /usr/bin/chromium)"])
  ]
  if (missing.length > 0) {
    process.stderr.write(
      `\n==> missing ${missing.join(" and ")}: run \`bash scripts/system-deps.sh\` first ` +
        `(Debian/Ubuntu: apt-get install redis-server chromium), then \`pnpm test\` again\n`
    )
    process.exit(1)
  }
}
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
