import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import type * as HttpApp from "@effect/platform/HttpApp"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Http from "node:http"

/** Serves what `build` makes for its origin on 127.0.0.1, on a port the OS picks, until the scope closes. */
export const onLoopback = <A extends { readonly app: HttpApp.Default }>(
  build: (origin: string) => Effect.Effect<A>
): Effect.Effect<A, never, Scope.Scope> =>
  Effect.gen(function*() {
    const server = yield* NodeHttpServer.make(() => Http.createServer(), { port: 0, host: "127.0.0.1" }).pipe(
      // Port 0 on loopback cannot be taken; a failure here is an environment defect, not a test outcome.
      Effect.orDie
    )
    if (server.address._tag !== "TcpAddress") return yield* Effect.dieMessage("expected a TCP address")
    const self = yield* build(`http://127.0.0.1:${server.address.port}`)
    yield* server.serve(self.app)
    return self
  })
