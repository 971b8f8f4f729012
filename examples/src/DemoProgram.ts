/**
 * The demo, as an Effect that can be run (`pnpm demo` runs `demo.ts`) or imported by a test without starting anything.
 *
 * It starts an authorization server and a protected API in this process, then tells the stories in `stories/`.
 * To add a story: write a `Story.Story<DemoEnv, ...>` in `stories/`, and append it to `stories` below.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import type * as HttpClient from "@effect/platform/HttpClient"
import { Effect } from "effect"
import type { Scope } from "effect"
import * as AuthServer from "./AuthServer.js"
import * as ProtectedApi from "./ProtectedApi.js"
import { clientCredentials } from "./stories/clientCredentials.js"
import { recovery } from "./stories/recovery.js"
import * as Story from "./Story.js"

/** What every story can use: the two running servers. */
export interface DemoEnv {
  readonly authServer: AuthServer.AuthServer
  readonly api: ProtectedApi.ProtectedApi
}

/** The stories, told in this order. */
export const stories: ReadonlyArray<Story.Story<DemoEnv, HttpClient.HttpClient | Scope.Scope>> = [
  clientCredentials,
  recovery
]

/** Starts both servers, tells the stories, and stops the servers. Needs an `HttpClient` for the client side. */
export const program = Effect.scoped(
  Effect.gen(function*() {
    const authServer = yield* AuthServer.make()
    const api = yield* ProtectedApi.make({
      issuer: authServer.issuer,
      jwksUrl: authServer.jwksUrl,
      audience: authServer.audience
    })
    const results = yield* Story.run(stories, { authServer, api })
    return { results, authServer, api, apiStats: yield* api.stats, tokenRequests: authServer.tokenRequests() }
  })
)

/** The whole demo over Node's HTTP client (undici). */
export const main = program.pipe(Effect.provide(NodeHttpClient.layerUndici))
