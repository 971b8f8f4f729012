/**
 * Real redis-server processes for tests: a single node or a 3-master Cluster on 127.0.0.1, on free ports, killed
 * (and their folders removed) when the scope closes.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { type ChildProcess, execFile, spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"

/** A port the OS just handed out on loopback. Another process could take it before we bind: callers retry. */
export const freePort: Effect.Effect<number> = Effect.async<number>((resume) => {
  const server = Net.createServer()
  server.unref()
  server.listen(0, "127.0.0.1", () => {
    const address = server.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    server.close(() => resume(Effect.succeed(port)))
  })
})

/** Sends one inline command and resolves with the first reply line, or fails. */
export const rawCommand = (port: number, command: string): Promise<string> =>
  new Promise((resolve, reject) => {
    const socket = Net.connect({ port, host: "127.0.0.1" })
    let data = ""
    socket.setTimeout(1_000, () => socket.destroy(new Error("timeout")))
    socket.on("connect", () => socket.write(`${command}\r\n`))
    socket.on("data", (chunk) => {
      data += chunk.toString("latin1")
      if (data.includes("\r\n")) {
        socket.end()
        resolve(data)
      }
    })
    socket.on("error", reject)
  })

const waitFor = (what: string, check: () => Promise<boolean>, timeout = Duration.seconds(10)) =>
  Effect.gen(function*() {
    const deadline = Date.now() + Duration.toMillis(timeout)
    while (Date.now() < deadline) {
      const ok = yield* Effect.promise(() => check().catch(() => false))
      if (ok) return
      yield* Effect.sleep("50 millis")
    }
    return yield* Effect.dieMessage(`timed out waiting for ${what}`)
  })

const exited = (child: ChildProcess): Promise<void> =>
  new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve()
    else child.once("exit", () => resolve())
  })

/** Kills a process and waits for it to be gone. */
export const kill = (child: ChildProcess, signal: NodeJS.Signals = "SIGKILL"): Effect.Effect<void> =>
  Effect.promise(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal)
    return exited(child)
  })

export interface RedisServer {
  readonly port: number
  readonly url: string
  /** Kills the server now (SIGKILL: as a crash or a pulled cable looks to clients). */
  readonly stop: Effect.Effect<void>
  /** Starts it again on the same port, empty. */
  readonly start: Effect.Effect<void>
  /** The current process, if running. */
  readonly process: () => ChildProcess | undefined
}

const spawnRedis = (port: number, args: ReadonlyArray<string>, cwd?: string): ChildProcess =>
  spawn("redis-server", [
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--save",
    "",
    "--appendonly",
    "no",
    // A replica's full sync goes over the socket, not through a dump.rdb in the working directory.
    "--repl-diskless-sync",
    "yes",
    "--repl-diskless-sync-delay",
    "0",
    "--repl-diskless-load",
    "on-empty-db",
    ...args
  ], {
    stdio: "ignore",
    ...(cwd !== undefined ? { cwd } : {})
  })

const startOn = (port: number, args: ReadonlyArray<string> = [], cwd?: string) =>
  Effect.gen(function*() {
    const child = spawnRedis(port, args, cwd)
    const ready = yield* waitFor(
      `redis-server on ${port}`,
      async () => {
        if (child.exitCode !== null) throw new Error("exited")
        return (await rawCommand(port, "PING")).startsWith("+PONG")
      }
    ).pipe(Effect.either)
    if (ready._tag === "Left" || child.exitCode !== null) {
      yield* kill(child)
      return undefined
    }
    return child
  })

/** A single redis-server, on a free port, with extra `args` (e.g. `--enable-debug-command yes`). */
export const singleWith = (args: ReadonlyArray<string>): Effect.Effect<RedisServer, never, Scope.Scope> =>
  Effect.gen(function*() {
    let current: ChildProcess | undefined
    let port = 0
    // A port can be taken between `freePort` and the bind: try a few.
    for (let attempt = 0; attempt < 5 && current === undefined; attempt++) {
      port = yield* freePort
      current = yield* startOn(port, args)
    }
    if (current === undefined) return yield* Effect.dieMessage("could not start redis-server")
    yield* Effect.addFinalizer(() => current === undefined ? Effect.void : kill(current))
    const server: RedisServer = {
      port,
      url: `redis://127.0.0.1:${port}`,
      stop: Effect.suspend(() => current === undefined ? Effect.void : kill(current)).pipe(
        Effect.tap(() => {
          current = undefined
        })
      ),
      start: Effect.gen(function*() {
        if (current !== undefined) return
        current = yield* startOn(port, args)
        if (current === undefined) return yield* Effect.dieMessage(`could not restart redis-server on ${port}`)
      }),
      process: () => current
    }
    return server
  })

/** A single redis-server, on a free port. */
export const single: Effect.Effect<RedisServer, never, Scope.Scope> = singleWith([])

export interface RedisCluster {
  readonly ports: ReadonlyArray<number>
  /** `host:port` of every master, as `REDIS_CLUSTER_NODES` wants them. */
  readonly nodes: ReadonlyArray<string>
}

const exec = (file: string, args: ReadonlyArray<string>) =>
  Effect.async<string, Error>((resume) => {
    execFile(file, [...args], { timeout: 20_000 }, (error, stdout, stderr) => {
      if (error) resume(Effect.fail(new Error(`${file} ${args.join(" ")}: ${error.message}\n${stderr}`)))
      else resume(Effect.succeed(stdout))
    })
  })

/** Three masters, no replicas, all slots assigned, `cluster_state:ok` on every node. */
export const cluster: Effect.Effect<RedisCluster, never, Scope.Scope> = Effect.gen(function*() {
  const dir = yield* Effect.acquireRelease(
    Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-token-cluster-"))),
    (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
  )
  const ports: Array<number> = []
  for (let i = 0; i < 3; i++) {
    const nodeDir = Path.join(dir, `node${i}`)
    Fs.mkdirSync(nodeDir)
    let child: ChildProcess | undefined
    for (let attempt = 0; attempt < 5 && child === undefined; attempt++) {
      const port = yield* freePort
      if (ports.includes(port)) continue
      child = yield* startOn(port, [
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
        "--cluster-node-timeout",
        "2000"
      ], nodeDir)
      if (child !== undefined) ports.push(port)
    }
    if (child === undefined) return yield* Effect.dieMessage("could not start a cluster node")
    const started = child
    yield* Effect.addFinalizer(() => kill(started))
  }
  const nodes = ports.map((port) => `127.0.0.1:${port}`)
  yield* exec("redis-cli", ["--cluster", "create", ...nodes, "--cluster-replicas", "0", "--cluster-yes"]).pipe(
    Effect.orDie
  )
  for (const port of ports) {
    yield* waitFor(`cluster_state:ok on ${port}`, async () => {
      const info = await Effect.runPromise(exec("redis-cli", ["-p", String(port), "cluster", "info"]))
      return info.includes("cluster_state:ok")
    }, Duration.seconds(20))
  }
  return { ports, nodes }
})

/** Runs redis-cli against a node and returns its raw output (`--no-raw` off: bytes as stored). */
export const cli = (port: number, ...args: ReadonlyArray<string>): Effect.Effect<string> =>
  exec("redis-cli", ["-p", String(port), "--raw", ...args]).pipe(Effect.orDie)

/**
 * A replica of `primary` (`--replicaof`), on a free port, synced before it is returned. Stop it with SIGSTOP to
 * let it fall behind (its link stays up, it just stops acknowledging), SIGCONT to let it catch up.
 */
export const replicaOf = (primary: RedisServer): Effect.Effect<RedisServer, never, Scope.Scope> =>
  Effect.gen(function*() {
    let child: ChildProcess | undefined
    let port = 0
    for (let attempt = 0; attempt < 5 && child === undefined; attempt++) {
      port = yield* freePort
      child = yield* startOn(port, ["--replicaof", "127.0.0.1", String(primary.port)])
    }
    if (child === undefined) return yield* Effect.dieMessage("could not start a replica")
    const started = child
    yield* Effect.addFinalizer(() => kill(started))
    yield* waitFor(
      `replica on ${port} in sync`,
      async () => (await infoReplication(port)).includes("master_link_status:up")
    )
    return {
      port,
      url: `redis://127.0.0.1:${port}`,
      stop: kill(started),
      start: Effect.dieMessage("a replica is not restarted"),
      process: () => started
    }
  })

/** `INFO replication` of a node, whole (rawCommand reads only the first line). */
export const infoReplication = (port: number): Promise<string> =>
  new Promise((resolve, reject) => {
    const socket = Net.connect({ port, host: "127.0.0.1" })
    let data = ""
    socket.setTimeout(1_000, () => socket.destroy(new Error("timeout")))
    socket.on("connect", () => socket.write("INFO replication\r\n"))
    socket.on("data", (chunk) => {
      data += chunk.toString("latin1")
      const header = /^\$(\d+)\r\n/.exec(data)
      if (header !== null && data.length >= header[0].length + Number(header[1])) {
        socket.end()
        resolve(data)
      }
    })
    socket.on("error", reject)
  })
