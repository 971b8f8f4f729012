/**
 * One service instance for `redis-cluster.bench.ts`, as its own OS process: a client-credentials source (shared
 * through Redis when `REDIS_URL` is set, else on its own as every instance is without the package) with a
 * `TokenCache` in front. It waits for a line on stdin, then has `CALLERS` callers ask for a token every 20 ms for
 * `RUN_MS`, and prints one JSON line: the distinct tokens it used, its failed calls, the longest round (the longest
 * any caller waited), the duration of each token request it sent, and each fetch its cache made (its duration and
 * whether this instance asked the server itself). It prints `asking` each time it asks the server, so that a fault
 * benchmark can stop the instance that holds the lease.
 */
import type { AccessToken } from "@effect-token/core"
import { ClientCredentials, TokenCache, TokenSource } from "@effect-token/core"
import { KeyRing, RedisClient, RedisTokenStore } from "@effect-token/redis"
import { RedisIoredis } from "@effect-token/redis/ioredis"
import { NodeHttpClient } from "@effect/platform-node"
import { Config, Effect, Either, Logger, LogLevel, Option, Redacted } from "effect"
import * as Readline from "node:readline"

interface FetchRecord {
  readonly role: "leader" | "follower" | "alone"
  readonly ms: number
}

const program = Effect.gen(function*() {
  const runMs = yield* Config.integer("RUN_MS")
  const callers = yield* Config.integer("CALLERS")
  const redisUrl = yield* Config.option(Config.string("REDIS_URL"))
  const inner = yield* ClientCredentials.make(yield* ClientCredentials.config)
  let asked = 0
  /** How long each token request this instance sent took. */
  const requestsMs: Array<number> = []
  const observed = TokenSource.make({
    key: inner.key,
    fetch: Effect.suspend(() => {
      asked++
      process.stdout.write("asking\n")
      const start = performance.now()
      return Effect.ensuring(inner.fetch, Effect.sync(() => requestsMs.push(performance.now() - start)))
    })
  })

  const fetches: Array<FetchRecord> = []
  const timed = (source: TokenSource.TokenSource, shared: boolean) =>
    TokenSource.make({
      key: source.key,
      fetch: Effect.suspend(() => {
        const start = performance.now()
        const askedBefore = asked
        return Effect.tap(source.fetch, () =>
          Effect.sync(() =>
            fetches.push({
              role: !shared ? "alone" : asked > askedBefore ? "leader" : "follower",
              ms: performance.now() - start
            })
          ))
      })
    })

  // The store and its connection live in this program's scope, as long as the cache that uses them.
  const shareThroughRedis = (url: string) =>
    Effect.gen(function*() {
      const { keys, ...options } = yield* RedisTokenStore.config
      const store = yield* RedisTokenStore.make({ ...options, keyRing: yield* KeyRing.make(keys) }).pipe(
        Effect.provideService(RedisClient.RedisClient, yield* RedisIoredis.make({ url }))
      )
      return yield* RedisTokenStore.shared(observed).pipe(Effect.provideService(RedisTokenStore.RedisTokenStore, store))
    })
  const source = Option.isSome(redisUrl)
    ? timed(yield* shareThroughRedis(redisUrl.value), true)
    : timed(observed, false)
  const cache = yield* TokenCache.make(source, { name: "bench-instance" })
  process.stdout.write("ready\n")

  yield* Effect.async<void>((resume) => {
    const lines = Readline.createInterface({ input: process.stdin })
    lines.once("line", () => {
      lines.close()
      resume(Effect.void)
    })
  })

  const tokens = new Set<string>()
  let failures = 0
  let worstWaitMs = 0
  const record = (result: Either.Either<AccessToken.AccessToken, unknown>) => {
    if (Either.isRight(result)) tokens.add(Redacted.value(result.right.value).slice(-16))
    else failures++
  }
  const end = Date.now() + runMs
  while (Date.now() < end) {
    const start = performance.now()
    const round = yield* Effect.all(Array.from({ length: callers }, () => Effect.either(cache.get)), {
      concurrency: "unbounded"
    })
    worstWaitMs = Math.max(worstWaitMs, performance.now() - start)
    round.forEach(record)
    yield* Effect.sleep("20 millis")
  }
  process.stdout.write(
    `${JSON.stringify({ tokens: tokens.size, failures, asked, worstWaitMs, requestsMs, fetches })}\n`
  )
})

program.pipe(
  Effect.scoped,
  Effect.provide(NodeHttpClient.layerUndici),
  Effect.provide(Logger.minimumLogLevel(LogLevel.Error)),
  Effect.runPromise
).then(
  () => process.exit(0),
  (error) => {
    process.stderr.write(`${String(error)}\n`)
    process.exit(1)
  }
)
