/**
 * A throwaway `redis-server` for the cluster demo, the README's Redis test and the Redis benchmarks: 127.0.0.1, a
 * free port, no persistence, killed with the scope. It needs `redis-server` on the PATH (`scripts/system-deps.sh`).
 */
import { Data, Effect } from "effect"
import type { Scope } from "effect"
import { spawn, spawnSync } from "node:child_process"
import * as Net from "node:net"

export interface RedisServer {
  readonly url: string
  /** Kills it now (SIGKILL: what a crash looks like to clients). */
  readonly stop: Effect.Effect<void>
  /** Starts it again on the same port, empty. */
  readonly start: Effect.Effect<void>
}

export class RedisServerError extends Data.TaggedError("RedisServerError")<{ readonly message: string }> {}

/** Whether `redis-server` is on the PATH. */
export const isInstalled = (): boolean => spawnSync("redis-server", ["--version"], { stdio: "ignore" }).status === 0

const freePort = Effect.async<number>((resume) => {
  const server = Net.createServer()
  server.listen(0, "127.0.0.1", () => {
    const address = server.address()
    server.close(() => resume(Effect.succeed(typeof address === "object" && address !== null ? address.port : 0)))
  })
})

const answersPing = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = Net.connect(port, "127.0.0.1")
    socket.once("data", (data) => {
      socket.destroy()
      resolve(data.toString().startsWith("+PONG"))
    })
    socket.once("error", () => resolve(false))
    socket.once("connect", () => socket.write("PING\r\n"))
  })

export const make: Effect.Effect<RedisServer, RedisServerError, Scope.Scope> = Effect.gen(function*() {
  const port = yield* freePort
  let child: ReturnType<typeof spawn> | undefined
  const start = Effect.gen(function*() {
    child = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
      stdio: "ignore"
    })
    for (let i = 0; i < 100; i++) {
      if (yield* Effect.promise(() => answersPing(port))) return
      if (child.exitCode !== null) break
      yield* Effect.sleep("50 millis")
    }
    return yield* new RedisServerError({ message: `redis-server did not start on port ${port}` })
  })
  const stop = Effect.sync(() => {
    child?.kill("SIGKILL")
    child = undefined
  })
  yield* Effect.addFinalizer(() => stop)
  yield* start
  return { url: `redis://127.0.0.1:${port}`, stop, start: Effect.orDie(start) }
})
