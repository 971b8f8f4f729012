/**
 * One service instance, as its own OS process: a client-credentials source (or, with
 * `INSTANCE_KIND=refresh-token`, a rotating refresh token spent through `RedisRefreshTokenStore`) shared through
 * Redis, a TokenCache in front, everything configured from the environment as an application would be. Started by `instances.ts` (bundled
 * with esbuild); it reads commands (JSON lines) on stdin and answers on stdout.
 *
 * - `{ "cmd": "round", "id": n, "callers": c }`: c concurrent `cache.get`, answered with
 *   `{ "event": "round", "id": n, "ok", "failed", "tokens": [token hashes], "ms", "minRemainingMs" }`.
 * - Events: `ready`, `fetch-start` (this instance asks the token server), `log` (warnings and above).
 */
import { ClientCredentials, RefreshToken, RefreshTokenStore, TokenCache, TokenSource } from "@effect-token/core"
import { RedisRefreshTokenStore, RedisTokenStore } from "@effect-token/redis"
import { RedisIoredis } from "@effect-token/redis/ioredis"
import { NodeHttpClient } from "@effect/platform-node"
import { Config, Context, DateTime, Effect, Either, Layer, Logger, LogLevel, Option, Redacted, Runtime } from "effect"
import { createHash } from "node:crypto"
import * as Readline from "node:readline"

const emit = (event: Record<string, unknown>) =>
  process.stdout.write(`${JSON.stringify({ ...event, at: Date.now() })}\n`)

const hash = (value: string) => createHash("sha256").update(value).digest("hex").slice(0, 12)

const reportingLogger = Logger.make(({ logLevel, message }) => {
  if (LogLevel.greaterThanEqual(logLevel, LogLevel.Info)) {
    emit({ event: "log", level: logLevel.label, message: Array.isArray(message) ? message.join(" ") : String(message) })
  }
})

const program = Effect.gen(function*() {
  const kind = yield* Config.literal("client-credentials", "refresh-token")("INSTANCE_KIND").pipe(
    Config.withDefault("client-credentials")
  )
  const skew = yield* Config.duration("CACHE_SKEW").pipe(Config.withDefault("100 millis"))
  const inner = kind === "client-credentials"
    ? yield* ClientCredentials.make(yield* ClientCredentials.config)
    : yield* Effect.gen(function*() {
      // One user's rotating refresh token, spent through Redis (RedisRefreshTokenStore, from env).
      const stores = yield* Layer.build(RedisRefreshTokenStore.layerConfig())
      return yield* RefreshToken.make(yield* RefreshToken.config).pipe(
        Effect.provideService(
          RefreshTokenStore.RefreshTokenStore,
          Context.get(stores, RefreshTokenStore.RefreshTokenStore)
        )
      )
    })
  // What the token server sees: only fetches that reach the inner source are token requests.
  const observed = TokenSource.make({
    key: inner.key,
    fetch: Effect.zipRight(Effect.sync(() => emit({ event: "fetch-start" })), inner.fetch)
  })
  const shared = yield* RedisTokenStore.shared(observed, { skew })
  const cache = yield* TokenCache.make(shared, { name: "instance", skew })
  emit({ event: "ready", pid: process.pid })

  // The last time the event loop turned. A process stopped (SIGSTOP) or starved between the cache handing a token
  // out and the measurement below resumes inside the same turn, before any timer: the stop would count against the
  // token, as if the cache had served it late. Life left is measured at the last turn instead. A token that reaches
  // the process after its stop is still measured strictly: timers run before the socket's answer is read.
  let lastTurn = Date.now()
  const turns = setInterval(() => (lastTurn = Date.now()), 10)
  yield* Effect.addFinalizer(() => Effect.sync(() => clearInterval(turns)))

  // Rounds run on this program's runtime, so that its logger (and everything else provided) applies to them.
  const runFork = Runtime.runFork(yield* Effect.runtime<never>())
  const lines = Readline.createInterface({ input: process.stdin })
  yield* Effect.async<void>((resume) => {
    lines.on("line", (line) => {
      const command = JSON.parse(line) as { cmd: string; id: number; callers: number }
      if (command.cmd === "exit") {
        resume(Effect.void)
        return
      }
      if (command.cmd === "round") {
        const started = Date.now()
        let leastLeft = Number.POSITIVE_INFINITY
        runFork(
          Effect.forEach(
            Array.from({ length: command.callers }),
            // Life left on the token at the moment it was served (not when the round ends).
            () =>
              Effect.either(cache.get).pipe(Effect.tap((result) =>
                Effect.sync(() => {
                  if (Either.isRight(result)) {
                    leastLeft = Math.min(
                      leastLeft,
                      Option.match(result.right.expiresAt, {
                        onNone: () => Number.POSITIVE_INFINITY,
                        onSome: (at) => DateTime.toEpochMillis(at) - lastTurn
                      })
                    )
                  }
                })
              )),
            { concurrency: "unbounded" }
          ).pipe(
            Effect.tap((results) =>
              Effect.sync(() =>
                emit({
                  event: "round",
                  id: command.id,
                  ok: results.filter(Either.isRight).length,
                  failed: results.filter(Either.isLeft).length,
                  errors: [...new Set(results.filter(Either.isLeft).map((r) => r.left.message))],
                  tokens: [...new Set(results.filter(Either.isRight).map((r) => hash(Redacted.value(r.right.value))))],
                  ms: Date.now() - started,
                  // The least lifetime left on a token served in this round, when it was served.
                  minRemainingMs: leastLeft
                })
              )
            )
          )
        )
      }
    })
    lines.on("close", () => resume(Effect.void))
  })
})

const RedisLive = RedisIoredis.layerConfig()
const StoreLive = RedisTokenStore.layerConfig().pipe(Layer.provideMerge(RedisLive))

program.pipe(
  Effect.scoped,
  Effect.provide(Layer.mergeAll(StoreLive, NodeHttpClient.layerUndici)),
  Effect.provide(Logger.replace(Logger.defaultLogger, reportingLogger)),
  Effect.tapErrorCause((cause) => Effect.sync(() => emit({ event: "crash", cause: String(cause) }))),
  Effect.runPromise
).then(
  () => process.exit(0),
  () => process.exit(1)
)
