/*
 * One rotating refresh token shared by every instance: spent at most once, its successor never lost.
 *
 * - Fencing: core's refresh source asks `spend` right before it sends; one script checks this instance still holds
 *   the lock, the token is still the stored one, no other spend of it is unresolved, and records the spend until
 *   its deadline. The answer resolves it (`complete`, compare-and-set on the spend), whenever it arrives.
 * - Durability: after a write, `WAIT` for replicas (where the node has any). Every instance remembers the newest
 *   token it has seen (its own rotations, what it reads, what the watch learns) and repairs a store that lost it (a
 *   failover to a replica that missed the write, an empty restart that brought back the configured first token)
 *   instead of sending what it finds. A freshly seeded token settles before anyone spends it, so that instances
 *   knowing a newer one get the time to repair.
 * - An unreadable record (a key this ring lacks) is reported once per stretch of unreadability and never
 *   overwritten by this instance.
 */
import type { AccessToken } from "@effect-token/core"
import { RefreshTokenStore, TokenError } from "@effect-token/core"
import * as DateTime from "effect/DateTime"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Encoding from "effect/Encoding"
import * as FiberRef from "effect/FiberRef"
import * as HashSet from "effect/HashSet"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Redacted from "effect/Redacted"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as RedisClient from "../RedisClient.js"
import type { Options, StorageKeys } from "../RedisRefreshTokenStore.js"
import { inBackground, makeHealth, mayHaveLanded, untilAnswered } from "./health.js"
import { makeLease } from "./lease.js"
import { defaultPrefix, validPrefix } from "./prefix.js"
import { unexpectedReply } from "./redisError.js"
import * as Scripts from "./scripts.js"

export const defaults = {
  lockTtl: Duration.seconds(15),
  pollInterval: Duration.millis(100),
  retryRedisAfter: Duration.seconds(2),
  watchInterval: Duration.seconds(1),
  seedSettle: Duration.seconds(5),
  replicas: 1,
  replicationTimeout: Duration.seconds(1)
} as const

const utf8 = new TextEncoder()

export const storageKeys = (prefix: string, subject: string): Effect.Effect<StorageKeys> =>
  Effect.map(
    Effect.promise(() => globalThis.crypto.subtle.digest("SHA-256", utf8.encode(subject))),
    (digest) => {
      const id = Encoding.encodeBase64Url(new Uint8Array(digest))
      return { id, refreshToken: `{${prefix}:rt:${id}}:refresh`, lock: `{${prefix}:rt:${id}}:lock` }
    }
  )

const randomId = (): string => Encoding.encodeBase64Url(globalThis.crypto.getRandomValues(new Uint8Array(16)))

const outageMessages = {
  down: "effect-token/redis: Redis is unavailable; refresh tokens cannot be read, spent or stored until it answers " +
    "again (access tokens already fetched are still served; a rotation Redis did not take is kept here meanwhile)",
  up: "effect-token/redis: Redis answers again; refresh tokens are stored and fenced there again"
}

/** What this instance knows of the newest token: its own rotations, what it read, what the watch learnt. */
interface Known {
  readonly version: number
  readonly token: Redacted.Redacted<string>
  readonly lineage: string
  /** The fingerprint of the configured first token this lineage began with, if it did. */
  readonly seedfp: string | undefined
}

type Origin = "seed" | "set" | "rotation" | "repair"

/** What the record holds: nothing (never written, or lost), a tombstone (cleared on purpose), or a token. */
type Record =
  | { readonly _tag: "Missing" }
  | { readonly _tag: "Cleared" }
  | ({ readonly _tag: "Stored" } & Stored)

/** A stored record as read: `data` still encrypted. */
interface Stored {
  readonly version: number
  readonly data: string
  readonly fp: string
  readonly lineage: string
  readonly seedfp: string | undefined
  readonly origin: Origin
  readonly at: number
}

const fields = ["v", "data", "fp", "lineage", "seedfp", "origin", "at"] as const

const isReply = (reply: unknown): reply is Array<string | null> =>
  Array.isArray(reply) && reply.length === fields.length &&
  reply.every((field) => field === null || typeof field === "string")

const isOrigin = (value: string | null): value is Origin =>
  value === "seed" || value === "set" || value === "rotation" || value === "repair"

const missing: Record = { _tag: "Missing" }
const cleared: Record = { _tag: "Cleared" }

const parseRecord = (reply: Array<string | null>): Record => {
  const [v, data, fp, lineage, seedfp, origin, at] = reply
  if (origin === "cleared") return cleared
  const version = Number(v)
  if (
    typeof data !== "string" || typeof fp !== "string" || typeof lineage !== "string" ||
    !Number.isSafeInteger(version)
  ) {
    return missing
  }
  return {
    _tag: "Stored",
    version,
    data,
    fp,
    lineage,
    seedfp: seedfp ?? undefined,
    origin: isOrigin(origin ?? null) ? origin as Origin : "rotation",
    at: Number(at ?? 0)
  }
}

/** Redis failures reach the refresh source as the store's own typed, transient error; never with the token. */
const unavailable = (error: RedisClient.RedisError): TokenError.TokenError =>
  RefreshTokenStore.unavailable(`Redis: ${error.message}`)

export const make = (
  options: Options
): Effect.Effect<RefreshTokenStore.RefreshTokenStore, never, RedisClient.RedisClient | Scope.Scope> =>
  Effect.gen(function*() {
    const client = yield* RedisClient.RedisClient
    const prefix = options.prefix ?? defaultPrefix
    if (!validPrefix(prefix)) {
      return yield* Effect.dieMessage("RedisRefreshTokenStore: the prefix must be non-empty, without { or }")
    }
    const keys = yield* storageKeys(prefix, options.subject)
    const recordKey = keys.refreshToken
    const channel = `${prefix}:refresh-updates`
    const keyRing = options.keyRing
    const lockTtl = Duration.decode(options.lockTtl ?? defaults.lockTtl)
    const pollMillis = Duration.toMillis(options.pollInterval ?? defaults.pollInterval)
    const watchInterval = Duration.decode(options.watchInterval ?? defaults.watchInterval)
    const settleMillis = Duration.toMillis(options.seedSettle ?? defaults.seedSettle)
    const wantedReplicas = options.replicas ?? defaults.replicas
    const replicationTimeout = Duration.decode(options.replicationTimeout ?? defaults.replicationTimeout)
    const health = yield* makeHealth(
      Duration.decode(options.retryRedisAfter ?? defaults.retryRedisAfter),
      outageMessages
    )
    const guard = health.guard
    const newest = yield* Ref.make(Option.none<Known>())
    // This instance's rotations between being learnt and being stored (by `complete`): in that gap the store is
    // behind what is known, and is not to be taken for one that lost them (a repair would end the spend under way).
    const storing = yield* Ref.make(HashSet.empty<string>())
    const storingKey = (known: Known) => `${known.lineage} ${known.version}`
    // The lease owner while this fiber holds the lock (set by `withLock`, read by `spend`'s script).
    const lockOwner = yield* FiberRef.make(Option.none<string>())
    // Refreshes in this process take turns here first, so only one of them polls Redis for the lock.
    const local = yield* Effect.makeSemaphore(1)
    const lease = makeLease(client, health, { ttl: lockTtl, pollInterval: Duration.millis(pollMillis) })
    // The configured first token's fingerprints, one per ring key: how a stale re-seed of it is recognized.
    const ownSeedFps = options.initial === undefined
      ? []
      : yield* keyRing.fingerprints(Redacted.value(options.initial), recordKey)

    const fingerprint = (token: Redacted.Redacted<string>) =>
      Effect.map(keyRing.fingerprints(Redacted.value(token), recordKey), (all) => all[0]!)

    // Said once per stretch of unreadability, and once when it ends: a wrong key ring is loud, never silent.
    const unreadableSince = yield* Ref.make(false)
    const reportUnreadable = Effect.flatMap(
      Ref.getAndSet(unreadableSince, true),
      (already) =>
        already ? Effect.void : Effect.logWarning(
          "effect-token/redis: the stored refresh token cannot be decrypted with this instance's key ring (is the key " +
            "that wrote it missing?); it is left as it is, and this instance cannot refresh until its ring can read it"
        )
    )
    const reportReadable = Effect.flatMap(
      Ref.getAndSet(unreadableSince, false),
      (was) => was ? Effect.logInfo("effect-token/redis: the stored refresh token is readable again") : Effect.void
    )

    const readWith = (gate: typeof guard): Effect.Effect<Record, RedisClient.RedisError> =>
      gate(
        client.send<unknown>("HMGET", recordKey, ...fields).pipe(
          Effect.filterOrFail(isReply, () => unexpectedReply("HMGET"))
        )
      ).pipe(Effect.map(parseRecord))
    const readRecord = readWith(guard)

    const decrypt = (stored: Stored): Effect.Effect<Redacted.Redacted<string>, TokenError.TokenError> =>
      keyRing.decrypt(stored.data, recordKey).pipe(
        Effect.tap(() => reportReadable),
        Effect.map(Redacted.make),
        Effect.tapError(() => reportUnreadable),
        Effect.mapError(() =>
          new TokenError.TokenError({
            operation: RefreshTokenStore.operation,
            reason: new TokenError.Misconfigured({
              description: "the stored refresh token cannot be decrypted with this key ring: is the key that wrote " +
                "it missing? It is left in place for the instances that can read it"
            })
          })
        )
      )

    /** Keeps the newer of what is known and `next`: by version within a lineage; another lineage replaces it. */
    const learn = (next: Known) =>
      Ref.update(
        newest,
        (current) =>
          Option.isSome(current) && current.value.lineage === next.lineage && current.value.version >= next.version
            ? current
            : Option.some(next)
      )

    /** `WAIT` for the replicas the node has (up to the wanted count); a shortfall is said, not failed. */
    const replicate = (replicas: number, what: string) => {
      const wanted = Math.min(wantedReplicas, replicas)
      if (wanted <= 0) return Effect.void
      return guard(client.waitForReplicas(recordKey, wanted, replicationTimeout)).pipe(
        Effect.flatMap((acknowledged) =>
          acknowledged >= wanted ? Effect.void : Effect.logWarning(
            `effect-token/redis: ${what} was acknowledged by ${acknowledged} of ${wanted} replicas within ` +
              `${Duration.format(replicationTimeout)}; a failover now could lose it (this instance keeps it and ` +
              "repairs the store if so)"
          )
        ),
        Effect.catchAll((error) =>
          Effect.logWarning(`effect-token/redis: could not wait for replicas after ${what}: ${error.message}`)
        )
      )
    }

    /**
     * Whether the store lost what `known` says: gone (a tombstone is not: it was cleared on purpose), an older version
     * of its lineage, or a stale re-seed of the token the lineage began with.
     */
    const isBehind = (record: Record, known: Known): boolean => {
      switch (record._tag) {
        case "Missing":
          return true
        case "Cleared":
          return false
        case "Stored":
          if (record.lineage === known.lineage) return record.version < known.version
          return record.origin === "seed" && fromOwnSeed(known) && ownSeedFps.includes(record.fp)
      }
    }

    /** `isBehind`, unless the newer token is this instance's rotation that `complete` is storing right now. */
    const hasLost = (record: Record, known: Known) =>
      Effect.map(Ref.get(storing), (rotations) => isBehind(record, known) && !HashSet.has(rotations, storingKey(known)))

    const fromOwnSeed = (known: Known) => known.seedfp !== undefined && ownSeedFps.includes(known.seedfp)

    const repair = (known: Known, gate: typeof guard = guard) =>
      Effect.gen(function*() {
        const data = yield* keyRing.encrypt(Redacted.value(known.token), recordKey)
        const fp = yield* fingerprint(known.token)
        const [repaired, replicas] = yield* gate(
          client.eval(Scripts.repairRefreshToken, [recordKey], [
            known.version,
            data,
            fp,
            known.lineage,
            known.seedfp ?? "",
            channel,
            keys.id,
            ...(fromOwnSeed(known) ? ownSeedFps : [])
          ])
        )
        if (repaired === 1) {
          yield* Effect.logWarning(
            `effect-token/redis: the store had lost refresh token version ${known.version} (a failover, an empty ` +
              "restart); this instance put it back rather than spend an older one"
          )
          yield* replicate(replicas, `the repair of refresh token version ${known.version}`)
        }
        return repaired === 1
      })

    const seed = (initial: Redacted.Redacted<string>) =>
      Effect.gen(function*() {
        const data = yield* keyRing.encrypt(Redacted.value(initial), recordKey)
        const fp = ownSeedFps[0]!
        const lineage = randomId()
        const [seeded, replicas] = yield* guard(
          client.eval(Scripts.seedRefreshToken, [recordKey], [data, fp, lineage, channel, keys.id])
        )
        if (seeded === 1) {
          yield* learn({ version: 1, token: initial, lineage, seedfp: fp })
          yield* replicate(replicas, "the seeded refresh token")
        }
        return seeded === 1
      })

    const get: Effect.Effect<Option.Option<Redacted.Redacted<string>>, TokenError.TokenError> = Effect.gen(
      function*() {
        yield* flushUnwritten
        for (let round = 0; round < 3; round++) {
          const record = yield* readRecord
          const known = yield* Ref.get(newest)
          if (Option.isSome(known) && (yield* hasLost(record, known.value))) {
            yield* repair(known.value)
            return Option.some(known.value.token)
          }
          if (record._tag === "Cleared") {
            yield* Ref.set(newest, Option.none())
            return Option.none()
          }
          if (record._tag === "Missing") {
            if (options.initial === undefined) return Option.none()
            // Another instance seeding first is fine: read again and use what it wrote.
            if (yield* seed(options.initial)) return Option.some(options.initial)
            continue
          }
          const token = yield* decrypt(record)
          yield* learn({ version: record.version, token, lineage: record.lineage, seedfp: record.seedfp })
          return Option.some(token)
        }
        return yield* Effect.fail(
          unexpectedReply("HMGET", "the record keeps changing")
        )
      }
    ).pipe(Effect.catchTag("RedisError", (error) => Effect.fail(unavailable(error))))

    // A token from `set` that Redis did not take: the only copy of a new login's token, written when Redis answers.
    const unwritten = yield* Ref.make(
      Option.none<{ readonly token: Redacted.Redacted<string>; readonly lineage: string }>()
    )

    const write = (token: Redacted.Redacted<string>, lineage: string) =>
      Effect.gen(function*() {
        const data = yield* keyRing.encrypt(Redacted.value(token), recordKey)
        const fp = yield* fingerprint(token)
        const [version, replicas] = yield* guard(
          client.eval(Scripts.setRefreshToken, [recordKey], [data, fp, lineage, channel, keys.id])
        )
        // Cleared only if it is still this one: a newer `set` may have failed meanwhile.
        yield* Ref.update(unwritten, (current) =>
          Option.isSome(current) && current.value.token === token ? Option.none() : current)
        yield* learn({ version, token, lineage, seedfp: undefined })
        yield* replicate(replicas, "the new refresh token")
      })

    const flushUnwritten = Effect.flatMap(
      Ref.get(unwritten),
      (pending) => Option.isNone(pending) ? Effect.void : write(pending.value.token, pending.value.lineage)
    )

    const set = (token: Redacted.Redacted<string>) => {
      const lineage = randomId()
      return write(token, lineage).pipe(
        Effect.tapError(() =>
          Effect.zipRight(
            Ref.set(unwritten, Option.some({ token, lineage })),
            // The new login is what this instance knows now: never repair the store with the token it replaces.
            Ref.set(newest, Option.some({ version: 1, token, lineage, seedfp: undefined }))
          )
        ),
        Effect.mapError(unavailable)
      )
    }

    const clear = Effect.gen(function*() {
      yield* Ref.set(unwritten, Option.none())
      yield* Ref.set(newest, Option.none())
      yield* guard(client.eval(Scripts.clearRefreshToken, [recordKey], [channel, keys.id]))
    }).pipe(Effect.asVoid, Effect.mapError(unavailable))

    const provenanceOf = (record: Stored): string => {
      const at = DateTime.formatIso(DateTime.unsafeMake(record.at))
      const recovery = "sign in again and store the new refresh token with RedisRefreshTokenStore's `set` (or " +
        "delete the store's record and restart with the new REFRESH_TOKEN)"
      switch (record.origin) {
        case "seed":
          return `the configured first refresh token (REFRESH_TOKEN), seeded into an empty store at ${at}: if an ` +
            `earlier run already spent it, ${recovery}`
        case "set":
          return `the refresh token stored with \`set\` at ${at}; if it is revoked or expired, ${recovery}`
        case "rotation":
        case "repair":
          return `version ${record.version} of its rotation chain, stored at ${at}; the grant may have been revoked ` +
            `or its refresh tokens expired: ${recovery}`
      }
    }

    const endSpendNow = (spendId: string, gate: typeof guard) =>
      Effect.asVoid(gate(client.eval(Scripts.endRefreshSpend, [recordKey], [spendId])))

    /**
     * Ends `spendId` as soon as Redis answers, in the background, for as long as the record could hold it: a spend
     * recorded by a script whose timeout fired while Redis stalled (Redis applies it when it resumes, but nothing
     * was sent), or one whose end the outage gate skipped, would otherwise leave every instance `Pending` until its
     * deadline (`answerTimeout`, a minute by default), then warn of a takeover. It ends only this spend (compare by
     * id), and nothing was sent under it, or its answer was already handled.
     */
    const endSpendLater = (spendId: string, spendMillis: number) =>
      inBackground(untilAnswered(endSpendNow(spendId, health.probe), { pollMillis, forMillis: spendMillis }))

    /** How long ago spends began is not known here: the longest a spend record lives by default. */
    const spendRecordMillis = 5 * 60_000

    const endSpend = (spendId: string) =>
      endSpendNow(spendId, guard).pipe(
        Effect.tapError(() => endSpendLater(spendId, spendRecordMillis)),
        Effect.mapError(unavailable)
      )

    const complete = (spendId: string, spent: Stored) => (answer: AccessToken.AccessToken) =>
      Effect.gen(function*() {
        const rotated = answer.refreshToken
        const known = yield* Ref.get(newest)
        const next = Option.map(rotated, (token): Known => ({
          version: spent.version + 1,
          token,
          lineage: spent.lineage,
          seedfp: spent.seedfp
        }))
        const store = Effect.gen(function*() {
          // Known before it is written: if Redis cannot take it now, the watch writes it when Redis answers.
          if (Option.isSome(next)) yield* learn(next.value)
          const rotation = Option.isNone(rotated) ? [] : [
            yield* keyRing.encrypt(Redacted.value(rotated.value), recordKey),
            yield* fingerprint(rotated.value)
          ]
          return yield* guard(
            client.eval(Scripts.completeRefreshSpend, [recordKey], [spendId, channel, keys.id, ...rotation])
          ).pipe(Effect.mapError(unavailable))
        })
        const [version, replicas] = yield* Option.match(next, {
          onNone: () => store,
          onSome: (rotation) =>
            Effect.acquireUseRelease(
              Ref.update(storing, HashSet.add(storingKey(rotation))),
              () => store,
              () => Ref.update(storing, HashSet.remove(storingKey(rotation)))
            )
        })
        if (version < 0 && Option.isSome(next)) {
          // The spend is gone. Either the store lost it (a failover to a replica that never got the spend record, an
          // empty restart, perhaps re-seeded since with the long-spent first token): what is stored is behind, and the
          // rotated token is the only valid one, known here alone; forgetting it would make the fleet send a spent
          // token and get the grant revoked. Or another instance took the spend over after its deadline: the store
          // moved on, or that instance's spend is in progress, and its result wins (below).
          const rotation = next.value
          const seen = yield* Effect.either(
            Effect.zip(readRecord, guard(client.send<string | null>("HGET", recordKey, "sid")))
          )
          if (seen._tag === "Left") {
            // Cannot tell now: the rotation stays known here, and the watch puts it back if the store lost it.
            yield* Effect.logWarning(
              `effect-token/redis: the spend of refresh token version ${spent.version} is no longer in the store, ` +
                `and Redis could not be read to tell why (${seen.left.message}); the rotated token is kept here`
            )
            return
          }
          const [record, spender] = seen.right
          if (spender === null && isBehind(record, rotation)) {
            yield* Effect.logWarning(
              `effect-token/redis: the store lost this instance's spend of refresh token version ${spent.version} ` +
                `(a failover, an empty restart) before its answer was stored; the rotated token (version ` +
                `${rotation.version}) is put back rather than forgotten`
            )
            const newestKnown = yield* Ref.get(newest)
            if (Option.isSome(newestKnown)) {
              // A failure leaves it known here: the watch repairs the store when Redis answers.
              yield* repair(newestKnown.value).pipe(
                Effect.catchAll((error) =>
                  Effect.logWarning(`effect-token/redis: the repair failed (${error.message}); the watch retries it`)
                )
              )
            }
            return
          }
        }
        if (version < 0) {
          // Another instance took the spend over after its deadline: what the store holds is its result, not ours.
          yield* Effect.logWarning(
            "effect-token/redis: a refresh answer arrived after its spend was taken over by another instance; the " +
              "store keeps the other instance's result"
          )
          if (Option.isSome(rotated)) yield* Ref.set(newest, known)
          return
        }
        if (Option.isSome(rotated)) yield* replicate(replicas, `the rotation to refresh token version ${version}`)
      })

    const spend = (
      token: Redacted.Redacted<string>,
      spendOptions: RefreshTokenStore.SpendOptions
    ): Effect.Effect<RefreshTokenStore.SpendDecision, TokenError.TokenError> =>
      Effect.gen(function*() {
        const owner = yield* FiberRef.get(lockOwner)
        if (Option.isNone(owner)) {
          return yield* Effect.fail(RefreshTokenStore.unavailable("Redis: the refresh lock could not be taken"))
        }
        const answerMillis = Duration.toMillis(spendOptions.answerTimeout)
        // The record outlives the answer's bound by a margin: this side's clock and Redis' may drift a little.
        const spendMillis = Math.ceil(answerMillis + Math.max(1_000, answerMillis * 0.1))
        const spendId = randomId()
        const candidates = yield* keyRing.fingerprints(Redacted.value(token), recordKey)
        const reply = yield* guard(
          client.eval(Scripts.spendRefreshToken, [recordKey, keys.lock], [
            owner.value,
            spendId,
            spendMillis,
            Math.ceil(Duration.toMillis(lockTtl)),
            settleMillis,
            ...candidates
          ])
        ).pipe(
          Effect.tapError((error) => mayHaveLanded(error) ? endSpendLater(spendId, spendMillis) : Effect.void),
          Effect.mapError(unavailable)
        )
        switch (reply[0]) {
          case 1: {
            const [, version, takeover, lineage, seedfp, origin, at] = reply
            const record: Stored = {
              version: version!,
              data: "",
              fp: candidates[0]!,
              lineage: lineage!,
              seedfp: seedfp === "" || seedfp === undefined ? undefined : seedfp,
              origin: isOrigin(origin ?? null) ? origin as Origin : "rotation",
              at: at!
            }
            return RefreshTokenStore.granted({
              takeover: takeover === 1,
              provenance: provenanceOf(record),
              complete: complete(spendId, record),
              withdraw: endSpend(spendId),
              reject: endSpend(spendId)
            })
          }
          case -2:
            // Poll at least every poll interval, at most once a second: the other spend may end early.
            return RefreshTokenStore.pending(
              Duration.millis(Math.max(pollMillis, Math.min(reply[1] ?? pollMillis, 1_000)))
            )
          case -3:
            return RefreshTokenStore.stale
          default:
            return yield* Effect.fail(
              RefreshTokenStore.unavailable("Redis: this instance's refresh lock lapsed (a pause?); not sent")
            )
        }
      })

    // The watch: learns rotations of other instances (so this one can repair a store that loses them), and puts
    // back what a failover or an empty restart lost. Pub/sub only hints; the interval is the floor.
    const pokes = yield* Queue.sliding<void>(1)
    yield* client.subscribe(channel).pipe(
      Stream.runForEach((message) => message.startsWith(`${keys.id} `) ? Queue.offer(pokes, undefined) : Effect.void),
      Effect.catchAll(() => Effect.void),
      Effect.repeat(Schedule.spaced(Duration.seconds(1))),
      Effect.interruptible,
      Effect.forkScoped
    )
    // The watch is not held back by the outage gate: it asks once per interval anyway, and a store that came back
    // empty must be repaired before a seeded token settles.
    const watchOnce = Effect.gen(function*() {
      yield* flushUnwritten
      const record = yield* readWith(health.probe)
      const known = yield* Ref.get(newest)
      if (Option.isSome(known) && (yield* hasLost(record, known.value))) {
        yield* repair(known.value, health.probe)
        return
      }
      if (record._tag === "Cleared") {
        yield* Ref.set(newest, Option.none())
        return
      }
      if (record._tag === "Missing") return
      const isNewer = Option.isNone(known) || known.value.lineage !== record.lineage ||
        known.value.version < record.version
      if (!isNewer) return
      const token = yield* Effect.option(decrypt(record))
      if (Option.isSome(token)) {
        yield* learn({ version: record.version, token: token.value, lineage: record.lineage, seedfp: record.seedfp })
      }
    })
    yield* watchOnce.pipe(
      Effect.catchAllCause(() => Effect.void),
      Effect.zipRight(Effect.raceFirst(Effect.sleep(watchInterval), Queue.take(pokes))),
      Effect.forever,
      Effect.interruptible,
      Effect.forkScoped
    )

    // Redis failing while the lock is taken: the work runs without an owner, and `spend` refuses to send.
    const withLock = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
      local.withPermits(1)(
        lease.withLease(keys.lock, (owner) => Effect.locally(effect, lockOwner, Option.some(owner)), () => effect)
      )

    return { get, set, clear, withLock, spend } satisfies RefreshTokenStore.RefreshTokenStore
  })
