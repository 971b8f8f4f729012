import { AccessToken, TokenTiming } from "@effect-token/core"
import type { TokenError, TokenSource } from "@effect-token/core"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Encoding from "effect/Encoding"
import * as Fiber from "effect/Fiber"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Queue from "effect/Queue"
import * as Redacted from "effect/Redacted"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as RedisClient from "../RedisClient.js"
import type {
  Entry,
  Lease,
  Options,
  RedisTokenStore,
  SharedOptions,
  SharedTokenSource,
  StorageKeys,
  Update,
  WriteResult
} from "../RedisTokenStore.js"
import type { Health } from "./health.js"
import { inBackground, makeHealth, mayHaveLanded, untilAnswered } from "./health.js"
import { defaultPrefix, validPrefix } from "./prefix.js"
import { unexpectedReply } from "./redisError.js"
import * as Scripts from "./scripts.js"

export { defaultPrefix, prefixConfig, validPrefix } from "./prefix.js"

/** The Tag of `RedisTokenStore` (defined here, so that this module needs the public one for types only). */
export const tag = Context.GenericTag<RedisTokenStore>("@effect-token/redis/RedisTokenStore")
const StoreTag = tag

export const defaults = {
  leaseTtl: Duration.seconds(10),
  waitTimeout: Duration.seconds(20),
  pollInterval: Duration.millis(500),
  skew: TokenTiming.defaults.skew,
  refreshAhead: TokenTiming.defaults.refreshAhead,
  defaultLifetime: TokenTiming.defaults.defaultLifetime,
  retryRedisAfter: Duration.seconds(2)
} as const

const utf8 = new TextEncoder()

const sha256 = (text: string): Effect.Effect<string> =>
  Effect.promise(async () =>
    Encoding.encodeBase64Url(new Uint8Array(await globalThis.crypto.subtle.digest("SHA-256", utf8.encode(text))))
  )

const randomOwner = (): string => Encoding.encodeBase64Url(globalThis.crypto.getRandomValues(new Uint8Array(16)))

const encodeToken = Schema.encode(Schema.parseJson(AccessToken.AccessToken))
const decodeToken = Schema.decodeUnknown(Schema.parseJson(AccessToken.AccessToken))

const expiryOf = (token: AccessToken.AccessToken, defaultLifetimeMillis: number): number =>
  Option.match(token.expiresAt, {
    onNone: () => token.issuedAt.epochMillis + defaultLifetimeMillis,
    onSome: (expiresAt) => expiresAt.epochMillis
  })

const HealthTypeId: unique symbol = Symbol.for("@effect-token/redis/RedisTokenStore/Health")

interface Internal extends RedisTokenStore {
  readonly [HealthTypeId]: Health
  readonly readability: Readability
  readonly sharedDefaults: SharedOptions
}

/** Whether this instance's key ring reads the records: said once when it cannot, once when it can again. */
interface Readability {
  readonly unreadable: Effect.Effect<void>
  readonly readable: Effect.Effect<void>
}

const makeReadability: Effect.Effect<Readability> = Effect.map(Ref.make(false), (state) => ({
  unreadable: Effect.flatMap(Ref.getAndSet(state, true), (already) =>
    already ? Effect.void : Effect.logWarning(
      "effect-token/redis: a shared token record cannot be read with this instance's key ring (is the key that " +
        "wrote it missing?); this instance fetches its own tokens and leaves the record alone until it can"
    )),
  readable: Effect.flatMap(
    Ref.getAndSet(state, false),
    (was) => was ? Effect.logInfo("effect-token/redis: shared token records are readable again") : Effect.void
  )
}))

const outageMessages = {
  down:
    "effect-token/redis: Redis is unavailable; tokens are fetched from their sources directly until it answers again",
  up: "effect-token/redis: Redis answers again; tokens are shared again"
}

const isHmgetReply = (reply: unknown): reply is [string | null, string | null, string | null] =>
  Array.isArray(reply) && reply.length === 3 && reply.every((field) => field === null || typeof field === "string")

export const make = (options: Options): Effect.Effect<RedisTokenStore, never, RedisClient.RedisClient | Scope.Scope> =>
  Effect.gen(function*() {
    const client = yield* RedisClient.RedisClient
    const prefix = options.prefix ?? defaultPrefix
    if (!validPrefix(prefix)) {
      return yield* Effect.dieMessage("RedisTokenStore: the prefix must be non-empty, without { or }")
    }
    const keyRing = options.keyRing
    const channel = `${prefix}:token-updates`
    const defaultLifetimeMillis = Duration.toMillis(options.defaultLifetime ?? defaults.defaultLifetime)

    const keysFor = (sourceKey: string): Effect.Effect<StorageKeys> =>
      Effect.map(sha256(sourceKey), (id) => ({
        id,
        token: `{${prefix}:${id}}:token`,
        lease: `{${prefix}:${id}}:lease`
      }))

    const read = (keys: StorageKeys): Effect.Effect<Entry, RedisClient.RedisError> =>
      Effect.flatMap(
        client.send<unknown>("HMGET", keys.token, "v", "exp", "data").pipe(
          // Whatever a client or proxy answers, a bad reply is a Redis failure (and a fallback), never a defect.
          Effect.filterOrFail(isHmgetReply, () => unexpectedReply("HMGET"))
        ),
        ([v, exp, data]) => {
          const version = v === null ? 0 : Number(v)
          if (!Number.isSafeInteger(version)) {
            return Effect.fail(
              unexpectedReply("HMGET", "a version that is not a number")
            )
          }
          const expiresAt = exp === null ? Option.none() : Option.some(Number(exp))
          if (data === null) {
            return Effect.succeed({ version, token: Option.none(), expiresAt, readable: true })
          }
          return keyRing.decrypt(data, keys.token).pipe(
            Effect.flatMap(decodeToken),
            Effect.map((token): Entry => ({ version, token: Option.some(token), expiresAt, readable: true })),
            // A record this instance cannot read (a key it lacks, a format it does not know) is one it replaces.
            Effect.orElseSucceed((): Entry => ({ version, token: Option.none(), expiresAt, readable: false }))
          )
        }
      )

    const pollMillis = Duration.toMillis(options.pollInterval ?? defaults.pollInterval)

    const acquireLease = (keys: StorageKeys, ttl: Duration.DurationInput) => {
      const owner = randomOwner()
      return Effect.map(
        client.set(keys.lease, owner, { nx: true, px: ttl }),
        (taken): Option.Option<Lease> => taken ? Option.some({ keys, owner }) : Option.none()
      ).pipe(
        Effect.tapError((error) =>
          mayHaveLanded(error) ? releaseOrphan({ keys, owner }, Duration.toMillis(Duration.decode(ttl))) : Effect.void
        )
      )
    }

    const releaseLease = (lease: Lease) =>
      Effect.map(client.eval(Scripts.release, [lease.keys.lease], [lease.owner]), (released) => released === 1)

    /**
     * A `SET NX` that failed on this side (its timeout: Redis stalled, it did not go away) may still be applied when
     * Redis answers, leaving a lease that nobody holds: every instance whose token ran out would wait out its TTL.
     * It is released (compare-and-delete: nothing happens if it never landed) as soon as Redis answers, in the
     * background, for as long as it could exist.
     */
    const releaseOrphan = (lease: Lease, ttlMillis: number) =>
      inBackground(untilAnswered(releaseLease(lease), { pollMillis, forMillis: ttlMillis }))

    const renewLease = (lease: Lease, ttl: Duration.DurationInput) =>
      Effect.map(
        client.eval(Scripts.renew, [lease.keys.lease], [
          lease.owner,
          Math.max(1, Math.ceil(Duration.toMillis(Duration.decode(ttl))))
        ]),
        (renewed) => renewed === 1
      )

    const fingerprints = (keys: StorageKeys, token: AccessToken.AccessToken) =>
      keyRing.fingerprints(Redacted.value(token.value), keys.token)

    const write = (
      lease: Lease,
      token: AccessToken.AccessToken,
      expectedVersion: number
    ): Effect.Effect<WriteResult, RedisClient.RedisError> =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const expiresAt = expiryOf(token, defaultLifetimeMillis)
        const ttl = expiresAt - now
        if (ttl <= 0) return { _tag: "Skipped", reason: "the token is already expired" } as const
        const plaintext = yield* Effect.option(encodeToken(token))
        if (Option.isNone(plaintext)) return { _tag: "Skipped", reason: "the token does not encode" } as const
        const data = yield* keyRing.encrypt(plaintext.value, lease.keys.token)
        const [fingerprint] = yield* fingerprints(lease.keys, token)
        const reply = yield* client.eval(Scripts.write, [lease.keys.token, lease.keys.lease], [
          lease.owner,
          expectedVersion,
          fingerprint!,
          expiresAt,
          data,
          Math.ceil(ttl),
          channel,
          lease.keys.id
        ])
        if (typeof reply !== "number" || !Number.isSafeInteger(reply)) {
          return yield* Effect.fail(
            unexpectedReply("EVALSHA")
          )
        }
        return reply === -1
          ? { _tag: "LeaseLost" } as const
          : reply === -2
          ? { _tag: "VersionConflict" } as const
          : { _tag: "Written", version: reply } as const
      })

    const clear = (keys: StorageKeys, token: AccessToken.AccessToken) =>
      Effect.flatMap(
        fingerprints(keys, token),
        (candidates) => Effect.map(client.eval(Scripts.clear, [keys.token], candidates), (cleared) => cleared === 1)
      )

    // One subscription per store; waiters read from an in-process hub. Pub/sub only hints: waiters also poll.
    const updates = yield* PubSub.unbounded<Update>()
    yield* client.subscribe(channel).pipe(
      Stream.runForEach((message) => {
        const space = message.lastIndexOf(" ")
        const version = Number(message.slice(space + 1))
        return space > 0 && Number.isFinite(version)
          ? PubSub.publish(updates, { id: message.slice(0, space), version })
          : Effect.void
      }),
      // Redis may be down at start or go away: subscribe again, forever, quietly (the command path reports outages).
      Effect.catchAll((error) => Effect.logDebug("effect-token/redis: update subscription failed", error.message)),
      Effect.repeat(Schedule.spaced(Duration.seconds(1))),
      Effect.interruptible,
      Effect.forkScoped
    )

    const health = yield* makeHealth(
      Duration.decode(options.retryRedisAfter ?? defaults.retryRedisAfter),
      outageMessages
    )

    const store: Internal = {
      prefix,
      channel,
      keysFor,
      read,
      acquireLease,
      releaseLease,
      renewLease,
      write,
      clear,
      subscribeUpdates: PubSub.subscribe(updates),
      [HealthTypeId]: health,
      readability: yield* makeReadability,
      sharedDefaults: {
        leaseTtl: options.leaseTtl,
        waitTimeout: options.waitTimeout,
        pollInterval: options.pollInterval,
        skew: options.skew,
        refreshAhead: options.refreshAhead,
        defaultLifetime: options.defaultLifetime
      }
    }
    return store
  })

const fetches = Metric.counter("effect_token_redis_fetches", {
  description: "Fetches of shared token sources, by how they got their token",
  incremental: true
})

/**
 * - `shared`: a valid token was in the store.
 * - `leader`: this instance held the lease and asked the source.
 * - `current`: another instance is refreshing; the current token was handed out meanwhile.
 * - `fallback`: Redis failed; the source was asked directly.
 * - `deadline`: waited `waitTimeout` for another instance in vain; the source was asked directly.
 * - `unreadable`: the record cannot be read with this key ring; the source was asked directly, nothing written.
 */
type Outcome = "shared" | "leader" | "current" | "fallback" | "deadline" | "unreadable"

const outcomeCounters = {
  shared: Metric.tagged(fetches, "outcome", "shared"),
  leader: Metric.tagged(fetches, "outcome", "leader"),
  current: Metric.tagged(fetches, "outcome", "current"),
  fallback: Metric.tagged(fetches, "outcome", "fallback"),
  deadline: Metric.tagged(fetches, "outcome", "deadline"),
  unreadable: Metric.tagged(fetches, "outcome", "unreadable")
} satisfies Record<Outcome, Metric.Metric.Counter<number>>

const counted = (outcome: Outcome) => <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.tap(effect, () => Metric.increment(outcomeCounters[outcome]))

/** What a fetch makes of the stored record. Times in epoch milliseconds. */
type Assessment =
  /** Valid and outside its refresh window, and not the token this instance already handed out: take it. */
  | { readonly _tag: "Fresh"; readonly token: AccessToken.AccessToken }
  /** Valid, but due for a refresh (its window, or this instance's cache wants a newer one). */
  | {
    readonly _tag: "Due"
    readonly token: AccessToken.AccessToken
    readonly validUntil: number
    /** Whether this instance handed it out already (so its cache is the one asking for a newer one). */
    readonly handedOut: boolean
  }
  /** No usable token. */
  | { readonly _tag: "Missing" }

export const shared = (
  source: TokenSource.TokenSource,
  options: SharedOptions = {}
): Effect.Effect<SharedTokenSource, never, RedisTokenStore> =>
  Effect.gen(function*() {
    const store = yield* StoreTag
    const internalStore = HealthTypeId in store ? store as Internal : undefined
    // A store implemented elsewhere gets its own outage tracking.
    const health = internalStore?.[HealthTypeId] ?? (yield* makeHealth(defaults.retryRedisAfter, outageMessages))
    const readability = internalStore?.readability ?? (yield* makeReadability)
    const settings = { ...internalStore?.sharedDefaults, ...definedOnly(options) }
    const leaseTtl = Duration.decode(settings.leaseTtl ?? defaults.leaseTtl)
    const waitMillis = Duration.toMillis(settings.waitTimeout ?? defaults.waitTimeout)
    const pollMillis = Duration.toMillis(settings.pollInterval ?? defaults.pollInterval)
    // The cache's rule without its jitter (a draw of 0 is the earliest window): the shared window opens no later
    // than any cache's.
    const timing = TokenTiming.resolve({
      skew: settings.skew,
      refreshAhead: settings.refreshAhead,
      defaultLifetime: settings.defaultLifetime
    })
    const keys = yield* store.keysFor(source.key)
    const guard = health.guard
    // The last token this source handed to its cache: the cache asks again only when it wants a newer one.
    const handedOut = yield* Ref.make(Option.none<AccessToken.AccessToken>())

    const assess = (entry: Entry, now: number, last: Option.Option<AccessToken.AccessToken>): Assessment => {
      if (Option.isNone(entry.token)) return { _tag: "Missing" }
      const token = entry.token.value
      const { _tag, validUntil } = TokenTiming.validity(token, timing, now)
      if (_tag === "Expired") return { _tag: "Missing" }
      const isHandedOut = Option.isSome(last) && AccessToken.sameValue(last.value, token)
      return _tag === "RefreshDue" || isHandedOut
        ? { _tag: "Due", token, validUntil, handedOut: isHandedOut }
        : { _tag: "Fresh", token }
    }

    const assessNow = (entry: Entry) =>
      Effect.zipWith(
        Clock.currentTimeMillis,
        Ref.get(handedOut),
        (now, last) => [assess(entry, now, last), now] as const
      )

    const leaseMillis = Duration.toMillis(leaseTtl)

    /** The lease, kept alive every third of its TTL while its holder works. */
    const renewing = (lease: Lease) =>
      Effect.ignore(guard(store.renewLease(lease, leaseTtl))).pipe(
        Effect.delay(Duration.millis(Math.max(1, Math.floor(leaseMillis / 3)))),
        Effect.forever,
        Effect.interruptible
      )

    /**
     * After a write that failed because Redis stumbled: write and release again as soon as Redis answers, for as
     * long as the lease could still be ours, so that the waiting instances get this token rather than wait for the
     * lease to lapse. A token that ran out of usable life meanwhile is not written, but the lease is still released:
     * left to lapse, it would keep every instance whose token ran out waiting for its whole TTL. Not held back by the
     * outage gate: it is one bounded loop.
     */
    const settleLater = (lease: Lease, token: AccessToken.AccessToken, expectedVersion: number) => {
      const validUntil = TokenTiming.validUntil(token, timing)
      // Written while still usable; once it is not, there is nothing to write, only the lease to release.
      const write = Effect.flatMap(Clock.currentTimeMillis, (now) =>
        now >= validUntil ? Effect.void : health.probe(Effect.asVoid(store.write(lease, token, expectedVersion))))
      return untilAnswered(write, { pollMillis, forMillis: leaseMillis }).pipe(
        Effect.zipRight(release(lease)),
        inBackground
      )
    }

    /**
     * Holding the lease: read again, then fetch and write unless another instance just did. However it ends (a token
     * written, found fresh on the second read, not written, a failure, an interruption), the lease is released at
     * once: the others wait for it, and a lease left to lapse blocks every instance whose token ran out meanwhile
     * for up to its whole TTL. Only a write that failed on Redis hands it to `settleLater`, which releases it.
     */
    const lead = (
      lease: Lease
    ): Effect.Effect<AccessToken.AccessToken, TokenError.TokenError | RedisClient.RedisError> =>
      Effect.suspend(() => {
        // Whether this fiber still has to release the lease when it is done.
        let owned = true
        return Effect.gen(function*() {
          const entry = yield* guard(store.read(keys))
          if (!entry.readable) {
            // Nothing will be written: the others need not wait for this instance's own fetch.
            owned = false
            return yield* Effect.zipRight(release(lease), unreadable)
          }
          const [assessment] = yield* assessNow(entry)
          // Written by another instance between this one's first read and its taking the lease.
          if (assessment._tag === "Fresh") {
            return yield* counted("shared")(Effect.succeed(assessment.token))
          }
          const renewal = yield* Effect.fork(renewing(lease))
          const token = yield* counted("leader")(source.fetch).pipe(Effect.ensuring(Fiber.interruptFork(renewal)))
          // Counted from when its request was sent: a token whose usable lifetime ran out on its way (a slow server,
          // a paused process) would be handed to every instance already expired.
          if ((yield* Clock.currentTimeMillis) >= TokenTiming.validUntil(token, timing)) {
            yield* Effect.logDebug("effect-token/redis: shared token not written (already past its usable lifetime)")
            return token
          }
          // The token is good whatever happens to the write: a failed write only means the next instance fetches too.
          const written = yield* Effect.either(guard(store.write(lease, token, entry.version)))
          if (written._tag === "Left") {
            owned = false
            yield* settleLater(lease, token, entry.version)
            return token
          }
          if (written.right._tag !== "Written") {
            yield* Effect.logDebug(`effect-token/redis: shared token not written (${written.right._tag})`)
          }
          return token
        }).pipe(Effect.ensuring(Effect.suspend(() =>
          owned ? release(lease) : Effect.void
        )))
      })

    /**
     * Releases at once, or, when Redis is failing (a failover, a blip: the gate skips it), as soon as Redis answers,
     * in the background: a lease left to lapse would keep every instance whose token ran out waiting for its TTL.
     */
    const release = (lease: Lease) =>
      guard(store.releaseLease(lease)).pipe(
        Effect.catchAll(() =>
          inBackground(untilAnswered(health.probe(store.releaseLease(lease)), { pollMillis, forMillis: leaseMillis }))
        ),
        Effect.asVoid
      )

    /** A record this ring cannot read: another instance's key. Fetch for this instance only, and say so once. */
    const unreadable = Effect.zipRight(readability.unreadable, counted("unreadable")(source.fetch))

    const waitForUpdate = (updates: Queue.Dequeue<Update>, millis: number) =>
      Effect.raceFirst(
        Queue.take(updates).pipe(Effect.repeat({ until: (update) => update.id === keys.id }), Effect.asVoid),
        Effect.sleep(Duration.millis(Math.max(1, millis)))
      )

    const viaRedis = Effect.gen(function*() {
      const updates = yield* store.subscribeUpdates
      let deadline: number | undefined
      while (true) {
        const entry = yield* guard(store.read(keys))
        if (!entry.readable) return yield* unreadable
        yield* readability.readable
        const [assessment, now] = yield* assessNow(entry)
        if (assessment._tag === "Fresh") return yield* counted("shared")(Effect.succeed(assessment.token))
        const lease = yield* guard(store.acquireLease(keys, leaseTtl))
        if (Option.isSome(lease)) return yield* lead(lease.value)
        // Another instance is refreshing a token that is still valid. A cache with no token yet takes it now; one
        // that handed it out already keeps serving it while this fetch waits for the new one.
        if (assessment._tag === "Due" && !assessment.handedOut) {
          return yield* counted("current")(Effect.succeed(assessment.token))
        }
        // A token that expires while this fetch waits makes the next round `Missing`: the wait goes on until then.
        deadline ??= now + waitMillis
        const until = assessment._tag === "Due" ? Math.min(deadline, assessment.validUntil) : deadline
        // Whoever holds the lease is taking too long: ask the source without the lease, and so without writing.
        if (now >= until) return yield* counted("deadline")(source.fetch)
        yield* waitForUpdate(updates, Math.min(pollMillis, until - now))
      }
    }).pipe(Effect.scoped)

    const fetch: Effect.Effect<AccessToken.AccessToken, TokenError.TokenError> = viaRedis.pipe(
      Effect.catchTag("RedisError", () => counted("fallback")(source.fetch)),
      Effect.tap((token) => Ref.set(handedOut, Option.some(token))),
      Effect.withSpan("effect-token/redis.shared.fetch", { attributes: { "effect_token.redis.prefix": store.prefix } })
    )

    // A wrapped source with an `invalidate` of its own (another wrapper) hears of the rejection too.
    const inner = source.invalidate
    const invalidate = (token: AccessToken.AccessToken): Effect.Effect<void> =>
      Effect.zipRight(
        Effect.ignore(guard(store.clear(keys, token))),
        inner === undefined ? Effect.void : inner(token)
      )

    return {
      key: source.key,
      fetch,
      invalidate,
      ...(source.dpop === undefined ? {} : { dpop: source.dpop })
    } satisfies SharedTokenSource
  })

const definedOnly = <A extends object>(options: A): Partial<A> =>
  Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined)) as Partial<A>
