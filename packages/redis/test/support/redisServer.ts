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
/**
 * Stalls `redis` (SIGSTOP: it holds what reaches its socket and answers nothing) and resumes it (SIGCONT); resumed
 * when the scope closes, whatever happened.
 */
export const stallable = (redis: RedisServer): Effect.Effect<
  {
    readonly stall: Effect.Effect<void>
    readonly resume: Effect.Effect<void>
  },
  never,
  Scope.Scope
> =>
  Effect.gen(function*() {
    const pid = redis.process()!.pid!
    const resume = Effect.sync(() => void process.kill(pid, "SIGCONT"))
    yield* Effect.addFinalizer(() => resume)
    return { stall: Effect.sync(() => void process.kill(pid, "SIGSTOP")), resume }
  })

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

/** One node of a {@link ReplicatedCluster} as `CLUSTER NODES` describes it. */
export interface ClusterNodeInfo {
  readonly id: string
  readonly port: number
  readonly role: "master" | "replica"
  /** The master's id, for a replica. */
  readonly masterId: string | undefined
  /** `fail`, `fail?`, `myself`, ... */
  readonly flags: ReadonlyArray<string>
  /** Slot ranges served, inclusive, for a master. */
  readonly slots: ReadonlyArray<readonly [number, number]>
}

export interface ReplicatedCluster {
  /** `host:port` of every node (masters and replicas), as `REDIS_CLUSTER_NODES` wants them: any may be a seed. */
  readonly nodes: ReadonlyArray<string>
  /** `cluster-node-timeout` of every node. */
  readonly nodeTimeoutMillis: number
  /** The cluster as a live node sees it. */
  readonly topology: Effect.Effect<ReadonlyArray<ClusterNodeInfo>>
  /** The port of the master serving `key`'s slot. */
  readonly masterOf: (key: string) => Effect.Effect<number>
  /** The port of the (one) replica of the master on `masterPort`. */
  readonly replicaOf: (masterPort: number) => Effect.Effect<number>
  /** SIGKILLs the node on `port` (a crash): it stays down. */
  readonly kill: (port: number) => Effect.Effect<void>
  /**
   * Cuts the replica's replication link and keeps it cut: the replica is told to authenticate to its master as a
   * user that does not exist (`masteruser`/`masterauth`), then its link is killed (`CLIENT KILL TYPE master`), so
   * every resync fails and it receives no write from then on. The cluster bus is untouched: the master still lists
   * it as its replica (`CLUSTER REPLICAS`), with no replication connection (`connected_slaves:0`).
   */
  readonly cutReplication: (replicaPort: number) => Effect.Effect<void>
  /**
   * Promotes the replica on `port` at once (`CLUSTER FAILOVER TAKEOVER`: no agreement from its master, which may be
   * dead), then waits until every live node sees it serving its slots and says `cluster_state:ok`. Returns the
   * milliseconds this took.
   */
  readonly promote: (replicaPort: number) => Effect.Effect<number>
  /**
   * Waits for the cluster's own failover (its master failed: no answer for `cluster-node-timeout`, agreed by the
   * other masters) to promote the replica on `port`, as `promote` waits after its TAKEOVER. Returns the milliseconds
   * this took.
   */
  readonly awaitPromoted: (replicaPort: number) => Effect.Effect<number>
  /** Waits until every live node says `cluster_state:ok` and agrees on who serves every slot. */
  readonly awaitOk: Effect.Effect<void>
  /** A read on any node, replicas included (`READONLY` first); raw `redis-cli --raw` output. */
  readonly read: (port: number, ...args: ReadonlyArray<string>) => Effect.Effect<string>
}

const parseClusterNodes = (text: string): ReadonlyArray<ClusterNodeInfo> =>
  text.trim().split("\n").filter((line) => line.trim() !== "").map((line) => {
    const [id, address, flags, master, , , , , ...slots] = line.trim().split(" ")
    const flagList = (flags ?? "").split(",")
    return {
      id: id!,
      port: Number(/:(\d+)@/.exec(address ?? "")?.[1] ?? 0),
      role: flagList.includes("master") ? "master" : "replica",
      masterId: master === "-" ? undefined : master,
      flags: flagList,
      slots: slots.filter((slot) => !slot.startsWith("[")).map((slot) => {
        const [from, to] = slot.split("-")
        return [Number(from), Number(to ?? from)] as const
      })
    }
  })

/** `CLUSTER KEYSLOT`, as Redis computes it (CRC16 of the hash tag or key, mod 16384). */
const keySlot = (port: number, key: string) =>
  Effect.map(cli(port, "CLUSTER", "KEYSLOT", key), (out) => Number(out.trim()))

/**
 * Three masters with one replica each (`redis-cli --cluster create --cluster-replicas 1`), every node on free
 * loopback ports (its cluster bus on a port of its own: the default, port + 10000, may be taken or out of range),
 * `cluster-node-timeout` of `nodeTimeoutMillis`. Returned once every replica is in sync and every node says
 * `cluster_state:ok`. Every process is killed, and the folder removed, when the scope closes.
 */
export const replicatedCluster = (
  options: { readonly nodeTimeoutMillis?: number } = {}
): Effect.Effect<ReplicatedCluster, never, Scope.Scope> =>
  Effect.gen(function*() {
    const nodeTimeoutMillis = options.nodeTimeoutMillis ?? 1_000
    const dir = yield* Effect.acquireRelease(
      Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-token-replicated-"))),
      (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
    )
    const processes = new Map<number, ChildProcess>()
    yield* Effect.addFinalizer(() => Effect.forEach([...processes.values()], (child) => kill(child), { discard: true }))
    for (let i = 0; i < 6; i++) {
      const nodeDir = Path.join(dir, `node${i}`)
      Fs.mkdirSync(nodeDir)
      let child: ChildProcess | undefined
      for (let attempt = 0; attempt < 5 && child === undefined; attempt++) {
        const port = yield* freePort
        const busPort = yield* freePort
        if (processes.has(port) || port === busPort) continue
        child = yield* startOn(port, [
          "--cluster-enabled",
          "yes",
          "--cluster-config-file",
          "nodes.conf",
          "--cluster-port",
          String(busPort),
          "--cluster-node-timeout",
          String(nodeTimeoutMillis),
          // A replica whose link was cut may still be promoted (by TAKEOVER, or by the cluster itself).
          "--cluster-replica-validity-factor",
          "0"
        ], nodeDir)
        if (child !== undefined) processes.set(port, child)
      }
      if (child === undefined) return yield* Effect.dieMessage("could not start a cluster node")
    }
    const ports = [...processes.keys()]
    const nodes = ports.map((port) => `127.0.0.1:${port}`)
    yield* exec("redis-cli", ["--cluster", "create", ...nodes, "--cluster-replicas", "1", "--cluster-yes"]).pipe(
      Effect.orDie
    )
    // A node killed by a signal has `exitCode` null and `signalCode` set.
    const live = () =>
      ports.filter((port) => {
        const child = processes.get(port)
        return child !== undefined && child.exitCode === null && child.signalCode === null
      })
    const topologyAt = (port: number) => Effect.map(cli(port, "CLUSTER", "NODES"), parseClusterNodes)
    const topology = Effect.suspend(() => topologyAt(live()[0]!))

    /** Every live node: `cluster_state:ok`, and the same owner for every slot range. */
    const agreed = async () => {
      const views: Array<string> = []
      for (const port of live()) {
        const info = await Effect.runPromise(exec("redis-cli", ["-p", String(port), "cluster", "info"]))
        if (!info.includes("cluster_state:ok")) return false
        const view = parseClusterNodes(
          await Effect.runPromise(exec("redis-cli", ["-p", String(port), "cluster", "nodes"]))
        )
        views.push(
          view.filter((node) => node.role === "master" && node.slots.length > 0)
            .map((node) => `${node.port}:${node.slots.map(([a, b]) => `${a}-${b}`).join(",")}`).sort().join(" ")
        )
      }
      return views.every((view) => view === views[0])
    }
    const awaitOk = waitFor("cluster_state:ok on every live node, one view of the slots", agreed, Duration.seconds(30))
    yield* awaitOk
    // Every replica attached and in sync.
    yield* waitFor("every replica in sync", async () => {
      let synced = 0
      for (const port of ports) {
        if ((await infoReplication(port)).includes("master_link_status:up")) synced++
      }
      return synced === 3
    }, Duration.seconds(30))

    const masterOf = (key: string) =>
      Effect.gen(function*() {
        const slot = yield* keySlot(live()[0]!, key)
        const master = (yield* topology).find((node) =>
          node.role === "master" && !node.flags.includes("fail") &&
          node.slots.some(([from, to]) => slot >= from && slot <= to)
        )
        if (master === undefined) return yield* Effect.dieMessage(`no master serves slot ${slot}`)
        return master.port
      })

    const replicaOf = (masterPort: number) =>
      Effect.gen(function*() {
        const view = yield* topology
        const master = view.find((node) => node.port === masterPort)
        const replica = view.find((node) => node.role === "replica" && node.masterId === master?.id)
        if (replica === undefined) return yield* Effect.dieMessage(`no replica of ${masterPort}`)
        return replica.port
      })

    const killNode = (port: number) =>
      Effect.suspend(() => {
        const child = processes.get(port)
        return child === undefined ? Effect.void : kill(child)
      })

    const cutReplication = (replicaPort: number) =>
      Effect.gen(function*() {
        yield* cli(replicaPort, "CONFIG", "SET", "masteruser", "effect-token-cut-link")
        yield* cli(replicaPort, "CONFIG", "SET", "masterauth", "effect-token-cut-link")
        yield* cli(replicaPort, "CLIENT", "KILL", "TYPE", "master")
        yield* waitFor(
          `the replication link of ${replicaPort} down`,
          async () => (await infoReplication(replicaPort)).includes("master_link_status:down")
        )
      })

    /** Waits until the node on `replicaPort` is a master that every live node sees serving slots, and all is ok. */
    const awaitServing = (replicaPort: number, id: string) =>
      Effect.gen(function*() {
        yield* waitFor(
          `${replicaPort} a master`,
          async () => (await infoReplication(replicaPort)).includes("role:master"),
          Duration.seconds(30)
        )
        yield* waitFor(`every live node seeing ${replicaPort} serve slots`, async () => {
          for (const port of live()) {
            const view = parseClusterNodes(
              await Effect.runPromise(exec("redis-cli", ["-p", String(port), "cluster", "nodes"]))
            )
            const promoted = view.find((node) => node.id === id)
            if (promoted === undefined || promoted.role !== "master" || promoted.slots.length === 0) return false
          }
          return true
        }, Duration.seconds(30))
        yield* awaitOk
        // Its link settings matter only if it is ever a replica again (a cut link): restore them anyway.
        yield* cli(replicaPort, "CONFIG", "SET", "masteruser", "")
        yield* cli(replicaPort, "CONFIG", "SET", "masterauth", "")
      })

    const idOf = (port: number) =>
      Effect.map(topologyAt(port), (view) => view.find((node) => node.flags.includes("myself"))!.id)

    const promote = (replicaPort: number) =>
      Effect.gen(function*() {
        const started = Date.now()
        const id = yield* idOf(replicaPort)
        const reply = yield* cli(replicaPort, "CLUSTER", "FAILOVER", "TAKEOVER")
        // The cluster may have promoted it by itself meanwhile (its master failed for longer than the node timeout).
        if (
          !reply.startsWith("OK") &&
          !(yield* Effect.promise(() => infoReplication(replicaPort))).includes("role:master")
        ) {
          return yield* Effect.dieMessage(`CLUSTER FAILOVER TAKEOVER on ${replicaPort}: ${reply}`)
        }
        yield* awaitServing(replicaPort, id)
        return Date.now() - started
      })

    const awaitPromoted = (replicaPort: number) =>
      Effect.gen(function*() {
        const started = Date.now()
        yield* awaitServing(replicaPort, yield* idOf(replicaPort))
        return Date.now() - started
      })

    const read = (port: number, ...args: ReadonlyArray<string>) =>
      Effect.async<string, Error>((resume) => {
        const child = execFile("redis-cli", ["-p", String(port), "--raw"], { timeout: 10_000 }, (error, stdout) => {
          if (error) resume(Effect.fail(error))
          // The first line answers READONLY.
          else resume(Effect.succeed(stdout.split("\n").slice(1).join("\n")))
        })
        const quote = (arg: string) => `"${arg.replace(/\\/g, "\\\\").replace(/"/g, "\\\"")}"`
        child.stdin!.end(`READONLY\n${args.map(quote).join(" ")}\n`)
      }).pipe(Effect.orDie)

    return {
      nodes,
      nodeTimeoutMillis,
      topology,
      masterOf,
      replicaOf,
      kill: killNode,
      cutReplication,
      promote,
      awaitPromoted,
      awaitOk,
      read
    }
  })
