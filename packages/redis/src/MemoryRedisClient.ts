/**
 * A `RedisClient` in memory, for tests: strings and hashes with TTLs on Effect's `Clock` (so `TestClock` expires
 * leases, tokens and sessions), pub/sub, and this package's Lua scripts run with the semantics they have on Redis
 * (each atomically). Like Effect's in-memory persistence stores, it stands in for the server in unit tests; the
 * scripts themselves, Cluster routing and real faults are tested against a real `redis-server`.
 *
 * It can be made to fail: `setStatus("down")` fails every call at once as `Unavailable` (a refused connection),
 * `setStatus("hung")` answers nothing until the client's timeout (on the `Clock`), then fails as `Timeout`, and
 * `flushAll` empties it (a restart without persistence).
 *
 * Scripts are recognised by name: those of `@effect-token/redis` run; any other fails as a `Command` error.
 *
 * @example
 * ```ts
 * import { RedisClient } from "@effect-token/redis"
 * import { MemoryRedisClient } from "@effect-token/redis/testing"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const redis = yield* MemoryRedisClient.make()
 *   yield* redis.setStatus("down") // every call now fails as Unavailable, as with a refused connection
 *   const ping = yield* Effect.either(redis.send("PING"))
 *   return yield* Effect.provideService(Effect.succeed(ping), RedisClient.RedisClient, redis)
 * })
 * ```
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Stream from "effect/Stream"
import * as RedisClient from "./RedisClient.js"

/**
 * How the fake server behaves: `up` answers; `down` refuses every call at once (`Unavailable`); `hung` answers
 * nothing, so every call fails as `Timeout` once the client's timeout has passed on the `Clock`.
 *
 * @example
 * ```ts
 * import type { MemoryRedisClient } from "@effect-token/redis/testing"
 *
 * const status: MemoryRedisClient.Status = "hung"
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export type Status = "up" | "down" | "hung"

/**
 * A {@link RedisClient.RedisClient} with the controls a test needs.
 *
 * @example
 * ```ts
 * import { MemoryRedisClient } from "@effect-token/redis/testing"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const redis = yield* MemoryRedisClient.make()
 *   yield* redis.set("k", "v")
 *   return yield* redis.commands // ["SET"]
 * })
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface MemoryRedisClient extends RedisClient.RedisClient {
  /** Changes how every following call behaves (calls in flight are not affected). */
  readonly setStatus: (status: Status) => Effect.Effect<void>
  /** Forgets every key, as a restart without persistence does. Subscriptions stay. */
  readonly flushAll: Effect.Effect<void>
  /** The names of the commands sent so far (`GET`, `SET`, `EVALSHA`, ...), in order, refused ones included. */
  readonly commands: Effect.Effect<ReadonlyArray<string>>
  /** The live keys, sorted. */
  readonly keys: Effect.Effect<ReadonlyArray<string>>
}

/**
 * Options of {@link make}.
 *
 * @example
 * ```ts
 * import type { MemoryRedisClient } from "@effect-token/redis/testing"
 *
 * const options: MemoryRedisClient.Options = { timeout: "500 millis" }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** How long a call waits while the fake is `hung` before failing as `Timeout`. Default 1 s, as a real client. */
  readonly timeout?: Duration.DurationInput | undefined
}

type Value = string | Map<string, string>

interface Entry {
  value: Value
  /** Epoch ms on the `Clock`; absent: no TTL. */
  expiresAt: number | undefined
}

/** A script's implementation: runs atomically against the data at `now`. */
type ScriptImpl = (
  db: Db,
  keys: ReadonlyArray<string>,
  argv: ReadonlyArray<string>,
  now: number
) => unknown

class WrongType extends Error {}

class Db {
  readonly data = new Map<string, Entry>()
  readonly subscribers = new Map<string, Set<Queue.Queue<string>>>()
  now = 0

  entry(key: string): Entry | undefined {
    const entry = this.data.get(key)
    if (entry !== undefined && entry.expiresAt !== undefined && entry.expiresAt <= this.now) {
      this.data.delete(key)
      return undefined
    }
    return entry
  }
  string(key: string): string | null {
    const entry = this.entry(key)
    if (entry === undefined) return null
    if (typeof entry.value !== "string") throw new WrongType()
    return entry.value
  }
  hash(key: string): Map<string, string> | undefined {
    const entry = this.entry(key)
    if (entry === undefined) return undefined
    if (typeof entry.value === "string") throw new WrongType()
    return entry.value
  }
  exists(key: string): boolean {
    return this.entry(key) !== undefined
  }
  del(key: string): number {
    return this.entry(key) !== undefined && this.data.delete(key) ? 1 : 0
  }
  set(key: string, value: string, px: number | undefined): void {
    this.data.set(key, { value, expiresAt: px === undefined ? undefined : this.now + px })
  }
  hget(key: string, field: string): string | null {
    return this.hash(key)?.get(field) ?? null
  }
  hset(key: string, ...pairs: ReadonlyArray<string | number>): number {
    let hash = this.hash(key)
    if (hash === undefined) {
      hash = new Map()
      this.data.set(key, { value: hash, expiresAt: undefined })
    }
    let added = 0
    for (let i = 0; i + 1 < pairs.length; i += 2) {
      const field = String(pairs[i])
      if (!hash.has(field)) added++
      hash.set(field, String(pairs[i + 1]))
    }
    return added
  }
  hdel(key: string, ...fields: ReadonlyArray<string>): number {
    const hash = this.hash(key)
    if (hash === undefined) return 0
    let removed = 0
    for (const field of fields) if (hash.delete(field)) removed++
    if (hash.size === 0) this.data.delete(key)
    return removed
  }
  pexpire(key: string, millis: number): number {
    const entry = this.entry(key)
    if (entry === undefined) return 0
    if (millis <= 0) this.data.delete(key)
    else entry.expiresAt = this.now + millis
    return 1
  }
  pttl(key: string): number {
    const entry = this.entry(key)
    if (entry === undefined) return -2
    return entry.expiresAt === undefined ? -1 : entry.expiresAt - this.now
  }
  publish(channel: string, message: string): number {
    const queues = this.subscribers.get(channel)
    if (queues === undefined) return 0
    for (const queue of queues) queue.unsafeOffer(message)
    return queues.size
  }
}

const num = (value: string | null | undefined): number | undefined =>
  value === null || value === undefined || value.trim() === "" || Number.isNaN(Number(value))
    ? undefined
    : Number(value)

/** A Lua table as Redis replies it: it ends at the first `nil`; integers are truncated. */
const table = (...items: ReadonlyArray<unknown>): Array<unknown> => {
  const end = items.indexOf(undefined)
  return (end < 0 ? items : items.slice(0, end)).map((item) => typeof item === "number" ? Math.trunc(item) : item)
}

const scripts: Record<string, ScriptImpl> = {
  "effect-token/write": (db, [token, lease], argv) => {
    const [owner, expected, fp, exp, data, ttl, channel, id] = argv
    if (db.string(lease!) !== owner) return -1
    const current = num(db.hget(token!, "v")) ?? 0
    if (current !== num(expected)) return -2
    const version = current + 1
    db.del(token!)
    db.hset(token!, "v", version, "fp", fp!, "exp", exp!, "data", data!)
    db.pexpire(token!, num(ttl) ?? 0)
    db.publish(channel!, `${id} ${version}`)
    return version
  },
  "effect-token/compare-and-clear": (db, [token], argv) => {
    const fp = db.hget(token!, "fp")
    if (fp === null) return 0
    if (!argv.includes(fp)) return 0
    db.hdel(token!, "fp", "exp", "data")
    db.hset(token!, "v", (num(db.hget(token!, "v")) ?? 0) + 1)
    return 1
  },
  "effect-token/release-lease": (db, [lease], [owner]) => db.string(lease!) === owner ? db.del(lease!) : 0,
  "effect-token/renew-lease": (db, [lease], [owner, ttl]) =>
    db.string(lease!) === owner ? db.pexpire(lease!, num(ttl) ?? 0) : 0,
  "effect-token/rt-seed": (db, [record], [data, fp, lineage, channel, id], now) => {
    if (db.exists(record!)) return table(0, 0)
    db.hset(record!, "v", 1, "data", data!, "fp", fp!, "lineage", lineage!, "seedfp", fp!, "origin", "seed", "at", now)
    db.publish(channel!, `${id} 1`)
    return table(1, 0)
  },
  "effect-token/rt-set": (db, [record], [data, fp, lineage, channel, id], now) => {
    const version = (num(db.hget(record!, "v")) ?? 0) + 1
    db.del(record!)
    db.hset(record!, "v", version, "data", data!, "fp", fp!, "lineage", lineage!, "origin", "set", "at", now)
    db.publish(channel!, `${id} ${version}`)
    return table(version, 0)
  },
  "effect-token/rt-spend": (db, [record, lock], argv, now) => {
    const [owner, spendId, spendMillis, lockFloor, seedSettle] = argv
    if (db.string(lock!) !== owner) return table(-1)
    const get = (field: string) => db.hget(record!, field)
    const version = get("v")
    if (version === null) return table(-3)
    const fp = get("fp")
    if (fp === null || !argv.slice(5).includes(fp)) return table(-3)
    const origin = get("origin")
    const at = num(get("at"))
    const settle = num(seedSettle) ?? 0
    if (origin === "seed" && now - (at ?? 0) < settle) return table(-2, settle - (now - (at ?? 0)))
    let takeover = 0
    if (get("sid") !== null) {
      const deadline = num(get("sdl")) ?? 0
      if (deadline > now) return table(-2, deadline - now)
      takeover = 1
    }
    db.hset(record!, "sid", spendId!, "sdl", now + (num(spendMillis) ?? 0))
    if (db.pttl(lock!) < (num(lockFloor) ?? 0)) db.pexpire(lock!, num(lockFloor) ?? 0)
    return table(1, num(version), takeover, get("lineage"), get("seedfp") ?? "", origin, at)
  },
  "effect-token/rt-complete": (db, [record], [spendId, channel, id, data, fp], now) => {
    if (db.hget(record!, "sid") !== spendId) return table(-1, 0)
    let version = num(db.hget(record!, "v")) ?? 0
    db.hdel(record!, "sid", "sdl")
    if (data !== undefined) {
      version = version + 1
      db.hset(record!, "v", version, "data", data, "fp", fp!, "origin", "rotation", "at", now)
      db.publish(channel!, `${id} ${version}`)
    }
    return table(version, 0)
  },
  "effect-token/rt-clear": (db, [record], [channel, id], now) => {
    const version = (num(db.hget(record!, "v")) ?? 0) + 1
    db.del(record!)
    db.hset(record!, "v", version, "lineage", "cleared", "origin", "cleared", "at", now)
    db.publish(channel!, `${id} ${version}`)
    return version
  },
  "effect-token/rt-end-spend": (db, [record], [spendId]) => {
    if (db.hget(record!, "sid") !== spendId) return 0
    db.hdel(record!, "sid", "sdl")
    return 1
  },
  "effect-token/rt-repair": (db, [record], argv, now) => {
    const [version, data, fp, lineage, seedfp, channel, id] = argv
    const stored = db.hget(record!, "v")
    if (stored !== null) {
      const older = db.hget(record!, "lineage") === lineage && (num(stored) ?? 0) < (num(version) ?? 0)
      const storedFp = db.hget(record!, "fp")
      const staleSeed = db.hget(record!, "origin") === "seed" && seedfp !== "" && storedFp !== null &&
        argv.slice(7).includes(storedFp)
      if (!older && !staleSeed) return table(0, 0)
    }
    db.del(record!)
    db.hset(record!, "v", version!, "data", data!, "fp", fp!, "lineage", lineage!, "origin", "repair", "at", now)
    if (seedfp !== "") db.hset(record!, "seedfp", seedfp!)
    db.publish(channel!, `${id} ${version}`)
    return table(1, 0)
  },
  "effect-token/write-session": (db, [session], [expected, data, ttl]) => {
    const current = db.hget(session!, "v")
    if (expected === "") {
      if (db.exists(session!)) return -1
    } else if (current !== expected) {
      return -1
    }
    const version = (num(current) ?? 0) + 1
    db.hset(session!, "v", version, "data", data!)
    db.pexpire(session!, num(ttl) ?? 0)
    return version
  }
}

const globToRegExp = (pattern: string): RegExp =>
  new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".")}$`)

/** The plain commands `send` serves; arguments are strings, as on the wire. */
const commands: Record<string, (db: Db, args: ReadonlyArray<string>) => unknown> = {
  PING: () => "PONG",
  GET: (db, [key]) => db.string(key!),
  SET: (db, [key, value, ...rest]) => {
    const upper = rest.map((arg) => arg.toUpperCase())
    const pxAt = upper.indexOf("PX")
    const px = pxAt >= 0 ? num(rest[pxAt + 1]) : undefined
    if (upper.includes("NX") && db.exists(key!)) return null
    if (upper.includes("XX") && !db.exists(key!)) return null
    db.set(key!, value!, px)
    return "OK"
  },
  DEL: (db, keys) => keys.reduce((removed, key) => removed + db.del(key), 0),
  EXISTS: (db, keys) => keys.filter((key) => db.exists(key)).length,
  HGET: (db, [key, field]) => db.hget(key!, field!),
  HMGET: (db, [key, ...fields]) => fields.map((field) => db.hget(key!, field)),
  HGETALL: (db, [key]) => [...(db.hash(key!) ?? new Map<string, string>())].flat(),
  HSET: (db, [key, ...pairs]) => db.hset(key!, ...pairs),
  HDEL: (db, [key, ...fields]) => db.hdel(key!, ...fields),
  PEXPIRE: (db, [key, millis]) => db.pexpire(key!, num(millis) ?? 0),
  PTTL: (db, [key]) => db.pttl(key!),
  KEYS: (db, [pattern]) => {
    const matcher = globToRegExp(pattern ?? "*")
    return [...db.data.keys()].filter((key) => db.exists(key) && matcher.test(key)).sort()
  },
  PUBLISH: (db, [channel, message]) => db.publish(channel!, message!),
  WAIT: () => 0,
  TIME: (db) => [String(Math.floor(db.now / 1000)), String((db.now % 1000) * 1000)],
  FLUSHALL: (db) => {
    db.data.clear()
    return "OK"
  }
}

/**
 * A new, empty in-memory Redis and a client to it. Every client made from it by {@link layer} or this call sees its
 * own data: give the instances of a test one `MemoryRedisClient` to share.
 *
 * @example
 * ```ts
 * import { MemoryRedisClient } from "@effect-token/redis/testing"
 * import { Effect, Option, TestClock } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const redis = yield* MemoryRedisClient.make()
 *   yield* redis.set("lease", "me", { nx: true, px: "10 seconds" })
 *   yield* TestClock.adjust("10 seconds")
 *   return Option.isNone(yield* redis.get("lease")) // true: the TTL ran out on the TestClock
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options = {}): Effect.Effect<MemoryRedisClient> => Effect.sync(() => unsafeMake(options))

const unsafeMake = (options: Options): MemoryRedisClient => {
  const timeout = Duration.decode(options.timeout ?? RedisClient.defaultTimeout)
  const db = new Db()
  const log: Array<string> = []
  let status: Status = "up"

  /** Runs `f` atomically at the Clock's time, as the server would, unless it is down or hung. */
  const run = <A>(command: string, f: () => A): Effect.Effect<A, RedisClient.RedisError> =>
    Effect.suspend(() => {
      log.push(command)
      if (status === "down") {
        return Effect.fail(
          new RedisClient.RedisError({
            command,
            reason: new RedisClient.Unavailable({ description: "connection refused (in-memory)" })
          })
        )
      }
      if (status === "hung") {
        return Effect.zipRight(
          Effect.sleep(timeout),
          Effect.fail(
            new RedisClient.RedisError({ command, reason: new RedisClient.Timeout({ after: timeout }) })
          )
        )
      }
      return Effect.flatMap(Clock.currentTimeMillis, (now) => {
        db.now = now
        try {
          return Effect.succeed(f())
        } catch (error) {
          const detail = error instanceof WrongType
            ? "WRONGTYPE Operation against a key holding the wrong kind of value"
            : error instanceof Error
            ? error.message
            : String(error)
          return Effect.fail(
            new RedisClient.RedisError({ command, reason: new RedisClient.ErrorReply({ reply: detail }) })
          )
        }
      })
    })

  const runScript = (
    command: string,
    name: string,
    keys: ReadonlyArray<string>,
    args: ReadonlyArray<RedisClient.Arg>
  ) =>
    run(command, () => {
      const impl = scripts[name]
      if (impl === undefined) {
        throw new Error(`NOSCRIPT the in-memory client runs only @effect-token/redis's scripts, not ${name}`)
      }
      return impl(db, keys, args.map(String), db.now)
    })

  const send = <A = unknown>(command: string, ...args: ReadonlyArray<RedisClient.Arg>): Effect.Effect<
    A,
    RedisClient.RedisError
  > => {
    const upper = command.toUpperCase()
    return run(upper, () => {
      const impl = commands[upper]
      if (impl === undefined) throw new Error(`ERR unknown command '${command}' (in-memory client)`)
      return impl(db, args.map(String))
    }) as Effect.Effect<A, RedisClient.RedisError>
  }

  return {
    send,
    get: (key) => Effect.map(send<string | null>("GET", key), Option.fromNullable),
    set: (key, value, setOptions) => {
      const args: Array<RedisClient.Arg> = [key, value]
      if (setOptions?.px !== undefined) args.push("PX", Math.max(1, Math.ceil(Duration.toMillis(setOptions.px))))
      if (setOptions?.nx === true) args.push("NX")
      return Effect.map(send<string | null>("SET", ...args), (reply) => reply !== null)
    },
    del: (...keys) => keys.length === 0 ? Effect.succeed(0) : send<number>("DEL", ...keys),
    eval: <A>(script: RedisClient.Script<A>, keys: ReadonlyArray<string>, args: ReadonlyArray<RedisClient.Arg>) =>
      runScript("EVALSHA", script.name, keys, args) as Effect.Effect<A, RedisClient.RedisError>,
    waitForReplicas: () => send<number>("WAIT"),
    publish: (channel, message) => send<number>("PUBLISH", channel, message),
    subscribe: (channel) =>
      Stream.unwrapScoped(
        Effect.gen(function*() {
          yield* run("SUBSCRIBE", () => undefined)
          const queue = yield* Effect.acquireRelease(Queue.unbounded<string>(), (queue) =>
            Effect.sync(() => {
              db.subscribers.get(channel)?.delete(queue)
            }).pipe(Effect.zipRight(Queue.shutdown(queue))))
          const queues = db.subscribers.get(channel) ?? new Set()
          queues.add(queue)
          db.subscribers.set(channel, queues)
          return Stream.fromQueue(queue)
        })
      ),
    setStatus: (next) =>
      Effect.sync(() => {
        status = next
      }),
    flushAll: Effect.sync(() => db.data.clear()),
    commands: Effect.sync(() => [...log]),
    keys: Effect.map(Clock.currentTimeMillis, (now) => {
      db.now = now
      return [...db.data.keys()].filter((key) => db.exists(key)).sort()
    })
  }
}

/**
 * Provides a fresh in-memory client as the application's `RedisClient`.
 *
 * @example
 * ```ts
 * import { RedisTokenStore } from "@effect-token/redis"
 * import { MemoryRedisClient } from "@effect-token/redis/testing"
 * import { Layer } from "effect"
 *
 * declare const options: RedisTokenStore.Options
 * const StoreLive = RedisTokenStore.layer(options).pipe(Layer.provide(MemoryRedisClient.layer()))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<RedisClient.RedisClient> =>
  Layer.effect(RedisClient.RedisClient, make(options))
