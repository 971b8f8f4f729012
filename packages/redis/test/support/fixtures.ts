import { AccessToken } from "@effect-token/core"
import { KeyRing, RedisClient, RedisTokenStore } from "@effect-token/redis"
import { RedisIoredis } from "@effect-token/redis/ioredis"
import { DateTime, Duration, Effect, Option, Redacted } from "effect"

export const randomKey = (): Redacted.Redacted<Uint8Array> =>
  Redacted.make(globalThis.crypto.getRandomValues(new Uint8Array(32)))

export const ring = (...kids: ReadonlyArray<string>) => KeyRing.make(kids.map((kid) => ({ kid, key: randomKey() })))

let counter = 0

/** A token that expires `lifetime` from now (real time), with a recognizable value. */
export const token = (lifetime: Duration.DurationInput = "1 minute", value?: string) =>
  Effect.map(DateTime.now, (now) =>
    AccessToken.make({
      value: Redacted.make(value ?? `plain-token-value-${++counter}-${Math.random().toString(36).slice(2)}`),
      issuedAt: now,
      expiresAt: Option.some(DateTime.addDuration(now, Duration.decode(lifetime))),
      scope: Option.some("orders:read")
    }))

/** A store on its own ioredis connection, as another instance would have. */
export const storeAt = (url: string | { readonly nodes: ReadonlyArray<string> }, options: RedisTokenStore.Options) =>
  Effect.gen(function*() {
    const client = yield* RedisIoredis.make(typeof url === "string" ? { url } : { nodes: url.nodes })
    const store = yield* RedisTokenStore.make(options).pipe(Effect.provideService(RedisClient.RedisClient, client))
    return { client, store }
  })
