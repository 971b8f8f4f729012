/**
 * One service instance, as its own OS process: a client-credentials source shared through Redis, a TokenCache in
 * front, everything configured from the environment as an application would be. Started by `instances.ts` (bundled
 * with esbuild); it reads commands (JSON lines) on stdin and answers on stdout.
 *
 * - `{ "cmd": "round", "id": n, "callers": c }`: c concurrent `cache.get`, answered with
 *   `{ "event": "round", "id": n, "ok", "failed", "tokens": [token hashes], "ms", "minRemainingMs" }`.
 * - Events: `ready`, `fetch-start` (this instance asks the token server), `log` (warnings and above).
 */
import { ClientCredentials, TokenCache, TokenSource } from "@effect-token/core"
import { RedisClient, RedisTokenStore } from "@effect-token/redis"
import { NodeHttpClient } from "@effect/platform-node"
import { Config, DateTime, Effect, Either, Layer, Logger, LogLevel, Option, Redacted, Runtime } from "effect"
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
  const settings = yield* ClientCredentials.config
  const skew = yield* Config.duration("CACHE_SKEW").pipe(Config.withDefault("100 millis"))
  const inner = yield* ClientCredentials.make(settings)
  // What the token server sees: only fetches that reach the inner source are token requests.
  const observed = TokenSource.make({
    key: inner.key,
    fetch: Effect.zipRight(Effect.sync(() => emit({ event: "fetch-start" })), inner.fetch)
  })
  const shared = yield* RedisTokenStore.shared(observed, { skew })
  const cache = yield* TokenCache.make(shared, { name: "instance", skew })
  emit({ event: "ready", pid: process.pid })

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
        runFork(
          Effect.forEach(
            Array.from({ length: command.callers }),
            () => Effect.either(cache.get),
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
                  // The least lifetime left on a token served in this round, at the moment the round ended.
                  minRemainingMs: Math.min(
                    ...results.filter(Either.isRight).map((r) =>
                      Option.match(r.right.expiresAt, {
                        onNone: () => Number.POSITIVE_INFINITY,
                        onSome: (at) => DateTime.toEpochMillis(at) - Date.now()
                      })
                    )
                  )
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

const RedisLive = RedisClient.layerIoredisConfig()
const StoreLive = RedisTokenStore.layerConfig().pipe(Layer.provide(RedisLive))

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
