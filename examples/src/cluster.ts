/**
 * `pnpm demo:cluster`: instances sharing one token through a local redis-server (see `ClusterProgram.ts`).
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Console, Effect } from "effect"
import { hasRedisServer, program } from "./ClusterProgram.js"

const main = hasRedisServer()
  ? program.pipe(
    Effect.provide(NodeHttpClient.layerUndici),
    Effect.zipRight(Console.log("\nDone: Redis and every server stopped.")),
    Effect.tapError(() => Console.error("\nThe cluster demo failed."))
  )
  : Effect.zipRight(
    Console.error(
      "demo:cluster needs redis-server on the PATH: `sudo apt-get install redis-server` (Debian, Ubuntu), " +
        "`brew install redis` (macOS), or `bash scripts/system-deps.sh` from the repository root."
    ),
    Effect.sync(() => process.exitCode = 1)
  )

NodeRuntime.runMain(main)
