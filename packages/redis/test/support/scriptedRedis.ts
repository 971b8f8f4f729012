import { Effect } from "effect"
import type * as Scope from "effect/Scope"
import * as Net from "node:net"

/**
 * A TCP server that speaks just enough RESP for an ioredis connection to become ready and subscribe, and lets a test
 * decide, connection by connection, when the ready check (`INFO`) is answered: the orderings real Redis produces only
 * by chance (a reconnection that completes after the client was closed) become deterministic.
 */
export interface ScriptedRedis {
  readonly port: number
  /** Every connection accepted so far, in order. */
  readonly connections: Array<ScriptedConnection>
}

export interface ScriptedConnection {
  readonly socket: Net.Socket
  /** Commands received, upper-cased name first. */
  readonly commands: Array<ReadonlyArray<string>>
  /** When true, `INFO` is answered only when the client closes its side (its `end`). */
  holdInfoUntilClientEnds: boolean
}

const bulk = (value: string) => `$${Buffer.byteLength(value)}\r\n${value}\r\n`

/** Parses complete RESP arrays of bulk strings from `buffer`; returns them and what is left over. */
const parseCommands = (buffer: string): [Array<Array<string>>, string] => {
  const commands: Array<Array<string>> = []
  let at = 0
  for (;;) {
    if (buffer[at] !== "*") break
    const headerEnd = buffer.indexOf("\r\n", at)
    if (headerEnd < 0) break
    const count = Number(buffer.slice(at + 1, headerEnd))
    let cursor = headerEnd + 2
    const args: Array<string> = []
    for (let i = 0; i < count; i++) {
      const lengthEnd = buffer.indexOf("\r\n", cursor)
      if (lengthEnd < 0) return [commands, buffer.slice(at)]
      const length = Number(buffer.slice(cursor + 1, lengthEnd))
      if (buffer.length < lengthEnd + 2 + length + 2) return [commands, buffer.slice(at)]
      args.push(buffer.slice(lengthEnd + 2, lengthEnd + 2 + length))
      cursor = lengthEnd + 2 + length + 2
    }
    commands.push([args[0]!.toUpperCase(), ...args.slice(1)])
    at = cursor
  }
  return [commands, buffer.slice(at)]
}

export const start = (
  holdInfo: (connection: number) => boolean
): Effect.Effect<ScriptedRedis, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<{ server: Net.Server; scripted: ScriptedRedis }>((resume) => {
      const connections: Array<ScriptedConnection> = []
      const server = Net.createServer({ allowHalfOpen: true }, (socket) => {
        const connection: ScriptedConnection = {
          socket,
          commands: [],
          holdInfoUntilClientEnds: holdInfo(connections.length)
        }
        connections.push(connection)
        let pending = ""
        let heldInfo = false
        socket.on("error", () => {})
        socket.on("data", (chunk) => {
          const [commands, rest] = parseCommands(pending + chunk.toString("latin1"))
          pending = rest
          for (const command of commands) {
            connection.commands.push(command)
            const [name, ...args] = command
            if (name === "INFO") {
              if (connection.holdInfoUntilClientEnds) heldInfo = true
              else socket.write(bulk("loading:0\r\n"))
            } else if (name === "SUBSCRIBE") {
              for (const [index, channel] of args.entries()) {
                socket.write(`*3\r\n${bulk("subscribe")}${bulk(channel)}:${index + 1}\r\n`)
              }
            } else {
              socket.write("+OK\r\n")
            }
          }
        })
        socket.on("end", () => {
          if (heldInfo) socket.write(bulk("loading:0\r\n"))
          socket.end()
        })
      })
      server.listen(0, "127.0.0.1", () => {
        const address = server.address() as Net.AddressInfo
        resume(Effect.succeed({ server, scripted: { port: address.port, connections } }))
      })
    }),
    ({ server, scripted }) =>
      Effect.async<void>((resume) => {
        for (const connection of scripted.connections) connection.socket.destroy()
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map(({ scripted }) => scripted))
