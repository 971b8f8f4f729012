import { NodeHttpClient } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Logger } from "effect"
import { hasRedisServer, program, stories } from "../src/ClusterProgram.js"

describe("the cluster demo (pnpm demo:cluster)", () => {
  it("runs where it is tested: redis-server is installed (scripts/system-deps.sh)", () => {
    expect(hasRedisServer()).toBe(true)
  })

  it.live(
    "tells its story to the end against a real redis-server, authorization server and API",
    () =>
      Effect.gen(function*() {
        const lines: Array<string> = []
        const base = yield* Effect.console
        const capture = (...args: ReadonlyArray<unknown>) =>
          Effect.sync(() => void lines.push(args.map(String).join(" ")))
        yield* program.pipe(
          Effect.provide(NodeHttpClient.layerUndici),
          Effect.withConsole({ ...base, log: capture, error: capture }),
          // The outage warnings are the story's, not the test run's.
          Effect.provide(Logger.replace(Logger.defaultLogger, Logger.none))
        )
        const stepCount = stories.reduce((n, story) => n + story.steps.length, 0)
        const numbered = lines.filter((line) => /^\d+\. /.test(line))
        expect(numbered).toHaveLength(stepCount)
        expect(numbered[1]).toMatch(/1 token request for the whole cluster$/)
        expect(lines.join("\n")).not.toMatch(/eyJ[\w-]+\.[\w-]+\./)
      }),
    300_000
  )
})
