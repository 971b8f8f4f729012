import { RedisClient } from "@effect-token/redis"
import { RedisIoredis } from "@effect-token/redis/ioredis"
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Either, Fiber, Option, Schedule, Stream } from "effect"
import * as RedisServer from "./support/redisServer.js"
import * as ScriptedRedis from "./support/scriptedRedis.js"

const waitUntil = (condition: () => boolean) =>
  Effect.suspend(() => condition() ? Effect.void : Effect.fail("not yet")).pipe(
    Effect.retry({ schedule: Schedule.spaced("10 millis"), times: 500 }),
    Effect.orDie
  )

const echoKeys = RedisClient.script<Array<string>>("echo", "return {KEYS[1], ARGV[1]}")

describe("RedisClient over ioredis, single node", () => {
  it.scopedLive("get, set NX PX, del, eval with NOSCRIPT fallback, publish/subscribe", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.single
      const client = yield* RedisIoredis.make({ url: server.url })

      expect(yield* client.get("k")).toEqual(Option.none())
      expect(yield* client.set("k", "v1", { nx: true, px: "10 seconds" })).toBe(true)
      expect(yield* client.set("k", "v2", { nx: true, px: "10 seconds" })).toBe(false)
      expect(yield* client.get("k")).toEqual(Option.some("v1"))
      const pttl = yield* client.send<number>("PTTL", "k")
      expect(pttl).toBeGreaterThan(9_000)
      expect(yield* client.del("k")).toBe(1)

      // First run: the node never saw the script, so EVALSHA says NOSCRIPT and EVAL loads it.
      expect(yield* client.eval(echoKeys, ["a"], ["b"])).toEqual(["a", "b"])
      expect(yield* client.send<Array<number>>("SCRIPT", "EXISTS", yield* echoKeys.sha)).toEqual([1])
      yield* client.send("SCRIPT", "FLUSH")
      expect(yield* client.eval(echoKeys, ["c"], [1])).toEqual(["c", "1"])

      const received = yield* client.subscribe("news").pipe(Stream.take(2), Stream.runCollect, Effect.fork)
      // The subscription is made asynchronously: publish until both messages were seen by a subscriber.
      let delivered = 0
      while (delivered < 2) {
        delivered += yield* client.publish("news", `m${delivered}`)
        yield* Effect.sleep("20 millis")
      }
      expect(Chunk.toReadonlyArray(yield* Fiber.join(received))).toEqual(["m0", "m1"])
    }))

  it.scopedLive("fails fast while Redis is down and recovers when it is back", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.single
      const client = yield* RedisIoredis.make({ url: server.url, timeout: "1 second" })
      yield* client.set("k", "v")
      yield* server.stop

      const started = Date.now()
      const failure = yield* Effect.either(client.get("k"))
      const elapsed = Date.now() - started
      expect(Either.isLeft(failure) && failure.left.reason._tag).toBe("Unavailable")
      // No offline queue: the failure is immediate, not the 1 s timeout.
      expect(elapsed).toBeLessThan(500)

      yield* server.start
      // The client reconnects in the background (at most 2 s between attempts).
      const deadline = Date.now() + 5_000
      let value = yield* Effect.either(client.get("k"))
      while (Either.isLeft(value) && Date.now() < deadline) {
        yield* Effect.sleep("100 millis")
        value = yield* Effect.either(client.get("k"))
      }
      // A restarted server is empty (no persistence).
      expect(value).toEqual(Either.right(Option.none()))
    }))

  it.scopedLive("a hung server is a Timeout after the configured time", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.single
      const client = yield* RedisIoredis.make({ url: server.url, timeout: "300 millis" })
      // SIGSTOP: the connection stays up but nothing answers, as with an overloaded or partitioned server.
      server.process()!.kill("SIGSTOP")
      yield* Effect.addFinalizer(() => Effect.sync(() => server.process()?.kill("SIGCONT")))
      const started = Date.now()
      const failure = yield* Effect.either(client.get("k"))
      const elapsed = Date.now() - started
      expect(Either.isLeft(failure) && failure.left.reason._tag).toBe("Timeout")
      expect(elapsed).toBeGreaterThanOrEqual(290)
      expect(elapsed).toBeLessThan(1_500)
      server.process()!.kill("SIGCONT")
    }))

  it.scopedLive("a subscription survives its connection being dropped: it subscribes again when it reconnects", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.single
      const client = yield* RedisIoredis.make({ url: server.url })
      const received = yield* client.subscribe("news").pipe(Stream.take(2), Stream.runCollect, Effect.fork)
      const publishUntil = (count: number, message: string) =>
        Effect.gen(function*() {
          for (let attempt = 0; attempt < 250; attempt++) {
            if ((yield* client.publish("news", message)) >= count) return
            yield* Effect.sleep("20 millis")
          }
          return yield* Effect.die(`no subscriber got ${message}`)
        })
      yield* publishUntil(1, "before")
      expect(yield* client.send<number>("CLIENT", "KILL", "TYPE", "pubsub")).toBe(1)
      yield* publishUntil(1, "after")
      expect(Chunk.toReadonlyArray(yield* Fiber.join(received))).toEqual(["before", "after"])
    }))

  it.live("a subscription closed while its connection comes back leaves no unhandled rejection", () =>
    Effect.gen(function*() {
      const rejections: Array<unknown> = []
      const onRejection = (reason: unknown) => rejections.push(reason)
      process.on("unhandledRejection", onRejection)
      yield* Effect.addFinalizer(() => Effect.sync(() => process.off("unhandledRejection", onRejection)))
      // Connection 0 is the client's own, 1 its subscriber; the subscriber's reconnection (2) is ready only after
      // the subscription was closed, as when Redis comes back at the moment an application shuts down.
      const redis = yield* ScriptedRedis.start((connection) => connection >= 2)
      const client = yield* RedisIoredis.make({ url: `redis://127.0.0.1:${redis.port}`, timeout: "1 second" })
      const subscription = yield* client.subscribe("news").pipe(Stream.runDrain, Effect.forkScoped)
      yield* waitUntil(() => redis.connections[1]?.commands.some(([name]) => name === "SUBSCRIBE") === true)

      redis.connections[1]!.socket.destroy()
      yield* waitUntil(() => redis.connections[2]?.commands.some(([name]) => name === "INFO") === true)
      yield* Fiber.interrupt(subscription)
      // The held ready check is answered when the closed client ends its side; give the reply time to be read.
      yield* waitUntil(() => redis.connections[2]!.socket.closed)
      yield* Effect.sleep("100 millis")
      expect(rejections.map(String)).toEqual([])
    }).pipe(Effect.scoped))

  it("errors never carry the command's arguments", () => {
    const error = new RedisClient.RedisError({
      command: "EVALSHA",
      reason: new RedisClient.ErrorReply({ reply: "NOSCRIPT x" })
    })
    expect(error.message).toBe("Redis EVALSHA failed (ErrorReply): NOSCRIPT x")
  })
})

describe("RedisClient over ioredis, 3-master Cluster", () => {
  it.scopedLive("routes hash-tagged keys and scripts to their node; NOSCRIPT on each node falls back", () =>
    Effect.gen(function*() {
      const cluster = yield* RedisServer.cluster
      const client = yield* RedisIoredis.make({ nodes: cluster.nodes })
      // Keys chosen to land on different nodes; each script call carries one hash tag.
      for (const tag of ["a", "b", "c", "d", "e", "f"]) {
        expect(yield* client.set(`{${tag}}:lease`, "owner", { nx: true, px: "5 seconds" })).toBe(true)
        expect(yield* client.eval(echoKeys, [`{${tag}}:token`], [tag])).toEqual([`{${tag}}:token`, tag])
      }
      const slots = new Set<number>()
      for (const tag of ["a", "b", "c", "d", "e", "f"]) {
        slots.add(yield* client.send<number>("CLUSTER", "KEYSLOT", `{${tag}}:token`))
        expect(yield* client.send<number>("CLUSTER", "KEYSLOT", `{${tag}}:lease`)).toBe(
          yield* client.send<number>("CLUSTER", "KEYSLOT", `{${tag}}:token`)
        )
      }
      expect(slots.size).toBe(6)

      const received = yield* client.subscribe("news").pipe(Stream.take(1), Stream.runCollect, Effect.fork)
      let delivered = 0
      while (delivered === 0) {
        // In a cluster PUBLISH reaches subscribers on every node; the count is those of the node it was sent to.
        yield* client.publish("news", "hello")
        yield* Effect.sleep("50 millis")
        delivered = Option.isSome(yield* Fiber.poll(received)) ? 1 : 0
      }
      expect(Chunk.toReadonlyArray(yield* Fiber.join(received))).toEqual(["hello"])
    }))
})
