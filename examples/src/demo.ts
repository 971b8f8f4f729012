/**
 * `pnpm demo`: an authorization server, a protected API and a client, all in this process.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Console, Effect } from "effect"
import { main } from "./DemoProgram.js"

NodeRuntime.runMain(
  main.pipe(
    Effect.zipRight(Console.log("\nDone: every server closed.")),
    Effect.tapError(() => Console.error("\nThe demo failed."))
  )
)
