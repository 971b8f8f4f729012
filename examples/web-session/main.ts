/**
 * `pnpm --filter @effect-token/examples run web-session`: the sign-in example on http://127.0.0.1:3000 (or `PORT`).
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Console, Effect } from "effect"
import { start } from "./WebSessionApp.js"

NodeRuntime.runMain(
  Effect.scoped(Effect.gen(function*() {
    const { appUrl } = yield* start({ port: Number(process.env.PORT ?? 3000) })
    yield* Console.log(`Open ${appUrl}/ and sign in with any name and password (Ctrl-C to stop).`)
    return yield* Effect.never
  }))
)
