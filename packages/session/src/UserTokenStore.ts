/**
 * Where each signed-in user's tokens live: on the server, keyed by an opaque session id. The access and refresh
 * tokens never reach the browser (the ID token does once, as logout's `id_token_hint`).
 *
 * The interface is shaped for a store shared by many processes (Redis): reads carry a version, writes are
 * compare-and-set on it, and `withLock` holds a per-session lock (a lease, across processes) while a refresh spends
 * the session's refresh token. Records are `Schema` classes whose secrets are `Redacted`: encoding a record with
 * its Schema (for a shared store) reveals them, on purpose; the memory store keeps the objects as they are.
 *
 * @since 0.1.0
 */
import { AccessToken, KeyedLock } from "@effect-token/core"
import * as Context from "effect/Context"
import * as DateTime from "effect/DateTime"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type * as SessionError from "./SessionError.js"

/**
 * One user's session: who, the tokens, and the times that bound its life.
 *
 * `accessToken` carries no refresh token: the one refresh token of the session is `refreshToken`, shared by the
 * default access token and every per-resource token in `resourceTokens` (RFC 8707 lets one refresh token mint
 * tokens for several resources).
 *
 * @example
 * ```ts
 * import { AccessToken, KeyedLock } from "@effect-token/core"
 * import { UserTokenStore } from "@effect-token/session"
 * import { DateTime, Option, Redacted } from "effect"
 *
 * const now = DateTime.unsafeMake(0)
 * const record = UserTokenStore.SessionRecord.make({
 *   subject: "alice",
 *   accessToken: AccessToken.make({ value: Redacted.make("at"), issuedAt: now }),
 *   refreshToken: Option.some(Redacted.make("rt")),
 *   idToken: Option.none(),
 *   resourceTokens: {},
 *   createdAt: now,
 *   lastSeenAt: now
 * })
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export class SessionRecord extends Schema.Class<SessionRecord>("@effect-token/session/SessionRecord")({
  /** The ID token's `sub`. */
  subject: Schema.String,
  accessToken: AccessToken.AccessToken,
  refreshToken: Schema.OptionFromNullOr(Schema.Redacted(Schema.String)),
  /** Kept for RP-initiated logout (`id_token_hint`). */
  idToken: Schema.OptionFromNullOr(Schema.Redacted(Schema.String)),
  /** Access tokens for other resources (RFC 8707), by resource; they share `refreshToken`. */
  resourceTokens: Schema.Record({ key: Schema.String, value: AccessToken.AccessToken }),
  /** The login: the start of the absolute expiry. */
  createdAt: Schema.DateTimeUtc,
  /** The last request seen (updated at most once a minute): the start of the idle expiry. */
  lastSeenAt: Schema.DateTimeUtc,
  /**
   * The session's DPoP private key (a JWK as JSON) when its tokens are DPoP-bound: they are usable only with it, so
   * it lives and dies with the session. `Redacted`: only the store's own encoding (encrypted at rest) reveals it.
   * Optional in the constructor and in records that predate it.
   */
  dpopKey: Schema.optionalWith(Schema.OptionFromNullOr(Schema.Redacted(Schema.String)), {
    default: () => Option.none()
  }),
  /**
   * A refresh whose request is (or is about to be) out: holder `id` sent the session's refresh token, and its
   * answer, with the rotated token, may arrive until `until`. Meanwhile no other refresh, in any instance, spends
   * the token again (it would be reuse, which revokes the grant). Optional in the constructor and in older records.
   */
  spend: Schema.optionalWith(
    Schema.OptionFromNullOr(Schema.Struct({ id: Schema.String, until: Schema.DateTimeUtc })),
    { default: () => Option.none() }
  )
}) {}

/**
 * A record and the version a compare-and-set write must name.
 *
 * @example
 * ```ts
 * import { UserTokenStore } from "@effect-token/session"
 * import { Effect, Option, Redacted } from "effect"
 *
 * const version = (id: Redacted.Redacted<string>) =>
 *   Effect.flatMap(UserTokenStore.UserTokenStore, (store) =>
 *     Effect.map(store.get(id), Option.map((found: UserTokenStore.Versioned) => found.version)))
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Versioned {
  readonly record: SessionRecord
  readonly version: number
}

/**
 * @example
 * ```ts
 * import type { UserTokenStore } from "@effect-token/session"
 * import { Duration } from "effect"
 *
 * // A login's first write: the id must not exist yet.
 * const first: UserTokenStore.SetOptions = { expectedVersion: undefined, timeToLive: Duration.hours(2) }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface SetOptions {
  /** The version read; `undefined`: the id must be new (a login). The write is refused on any other version. */
  readonly expectedVersion: number | undefined
  /** How long the store may keep the record (its idle or absolute expiry, whichever comes first). */
  readonly timeToLive: Duration.Duration
}

/**
 * The session store. Every operation may fail with a `SessionError` of reason `Unavailable` (a store backed by
 * I/O that is down); the session treats that as transient and never logs anyone out for it.
 *
 * @example
 * ```ts
 * import { UserTokenStore } from "@effect-token/session"
 * import { Duration, Effect, Option, Redacted } from "effect"
 *
 * // Read, change, write back only if nobody else wrote in between.
 * const touch = (id: Redacted.Redacted<string>, record: (r: UserTokenStore.SessionRecord) => UserTokenStore.SessionRecord) =>
 *   Effect.gen(function*() {
 *     const store = yield* UserTokenStore.UserTokenStore
 *     const found = yield* store.get(id)
 *     if (Option.isNone(found)) return false
 *     const written = yield* store.set(id, record(found.value.record), {
 *       expectedVersion: found.value.version,
 *       timeToLive: Duration.hours(1)
 *     })
 *     return Option.isSome(written)
 *   })
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface UserTokenStore {
  /** The record and its version, if the id is known and not expired. */
  readonly get: (id: Redacted.Redacted<string>) => Effect.Effect<Option.Option<Versioned>, SessionError.SessionError>
  /**
   * Writes `record` if the stored version is `options.expectedVersion` (compare-and-set). Returns the new version,
   * or `None` when another writer got there first (the caller re-reads).
   */
  readonly set: (
    id: Redacted.Redacted<string>,
    record: SessionRecord,
    options: SetOptions
  ) => Effect.Effect<Option.Option<number>, SessionError.SessionError>
  /** Forgets the session (logout, rejection). Deleting an unknown id is not an error. */
  readonly delete: (id: Redacted.Redacted<string>) => Effect.Effect<void, SessionError.SessionError>
  /**
   * Runs `effect` while no other holder of this session's lock runs: the refresh of one session happens once, in
   * this process and (for a shared store, with a lease) across processes. The caller re-reads after acquiring it.
   */
  readonly withLock: <A, E, R>(
    id: Redacted.Redacted<string>,
    effect: Effect.Effect<A, E, R>
  ) => Effect.Effect<A, E | SessionError.SessionError, R>
  /**
   * Sessions the store dropped while they were still live (to stay within its bounds), for their refresh tokens to
   * be revoked: `UserSessions` takes them and does so, best effort. A store whose sessions only end by expiry or
   * deletion (Redis) leaves it out.
   */
  readonly evictions?: Queue.Dequeue<SessionRecord> | undefined
}

/**
 * @example
 * ```ts
 * import { UserTokenStore } from "@effect-token/session"
 * import { Effect, Redacted } from "effect"
 *
 * const forget = (id: Redacted.Redacted<string>) =>
 *   Effect.flatMap(UserTokenStore.UserTokenStore, (store) => store.delete(id))
 * ```
 *
 * @since 0.1.0
 * @category tags
 */
export const UserTokenStore: Context.Tag<UserTokenStore, UserTokenStore> = Context.GenericTag<UserTokenStore>(
  "@effect-token/session/UserTokenStore"
)

/**
 * @example
 * ```ts
 * import type { UserTokenStore } from "@effect-token/session"
 *
 * const options: UserTokenStore.MemoryOptions = { capacity: 50_000, maxSessionsPerSubject: 8 }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface MemoryOptions {
  /** Most sessions kept; past it, expired ones go first, then the least recently used. Default 10 000. */
  readonly capacity?: number | undefined
  /**
   * Most sessions kept per subject (the ID token's `sub`); a new one past it drops that subject's least recently used
   * session. Default 16.
   */
  readonly maxSessionsPerSubject?: number | undefined
}

interface Entry {
  readonly record: SessionRecord
  readonly version: number
  readonly expiresAt: number
}

/**
 * The in-process store: bounded, least recently used sessions dropped first, expiry on the `Clock`. For one
 * process; several instances behind a load balancer need a shared store.
 *
 * Two bounds: `capacity` sessions in all, and `maxSessionsPerSubject` per user, so that one account signing in again
 * and again drops only its own oldest sessions, never other users'. A live session dropped for either bound is
 * offered on `evictions`, and `UserSessions` revokes its refresh token (best effort: in the background, bounded in
 * time; at most 1024 waiting, more are dropped unrevoked). Sessions that expire are not revoked.
 *
 * @example
 * ```ts
 * import { UserTokenStore } from "@effect-token/session"
 * import { Effect, Redacted } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const store = yield* UserTokenStore.makeMemory({ capacity: 1000 })
 *   return yield* store.get(Redacted.make("unknown-session-id"))
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeMemory = (options: MemoryOptions = {}): Effect.Effect<UserTokenStore> =>
  Effect.gen(function*() {
    const capacity = Math.max(1, options.capacity ?? 10_000)
    const perSubject = Math.max(1, options.maxSessionsPerSubject ?? 16)
    // Map order is insertion order: re-inserting on use makes the first key the least recently used.
    const sessions = new Map<string, Entry>()
    // Each subject's session ids, in the same order, so one account's sessions are bounded on their own.
    const bySubject = new Map<string, Set<string>>()
    const locks = KeyedLock.make()
    // Bounded: when nobody revokes them (no `UserSessions` over this store), the excess is dropped, not kept.
    const evictions = yield* Queue.dropping<SessionRecord>(1024)
    let nextVersion = 1

    const remove = (key: string, entry: Entry) => {
      sessions.delete(key)
      const keys = bySubject.get(entry.record.subject)
      keys?.delete(key)
      if (keys?.size === 0) bySubject.delete(entry.record.subject)
    }
    const insert = (key: string, entry: Entry) => {
      sessions.set(key, entry)
      let keys = bySubject.get(entry.record.subject)
      if (keys === undefined) {
        keys = new Set()
        bySubject.set(entry.record.subject, keys)
      }
      keys.delete(key)
      keys.add(key)
    }
    /** A live session dropped to stay within the bounds: handed on, so that its refresh token gets revoked. */
    const drop = (key: string, entry: Entry) => {
      remove(key, entry)
      Queue.unsafeOffer(evictions, entry.record)
    }

    const evict = (now: number) => {
      for (const [key, entry] of sessions) {
        if (entry.expiresAt <= now) remove(key, entry)
      }
      while (sessions.size >= capacity) {
        const oldest = sessions.entries().next()
        if (oldest.done === true) break
        drop(oldest.value[0], oldest.value[1])
      }
    }

    /** Makes room for one more session of `subject`: its least recently used ones past the bound go. */
    const evictSubject = (subject: string, now: number) => {
      const keys = bySubject.get(subject)
      if (keys === undefined) return
      for (const key of keys) {
        if (keys.size < perSubject) break
        const entry = sessions.get(key)!
        if (entry.expiresAt <= now) remove(key, entry)
        else drop(key, entry)
      }
    }

    const get: UserTokenStore["get"] = (id) =>
      Effect.map(Effect.clockWith((clock) => clock.currentTimeMillis), (now) => {
        const key = Redacted.value(id)
        const entry = sessions.get(key)
        if (entry === undefined) return Option.none()
        remove(key, entry)
        if (entry.expiresAt <= now) return Option.none()
        insert(key, entry)
        return Option.some({ record: entry.record, version: entry.version })
      })

    const set: UserTokenStore["set"] = (id, record, setOptions) =>
      Effect.map(Effect.clockWith((clock) => clock.currentTimeMillis), (now) => {
        const key = Redacted.value(id)
        const current = sessions.get(key)
        const live = current !== undefined && current.expiresAt > now ? current : undefined
        if (live?.version !== setOptions.expectedVersion) return Option.none()
        if (current !== undefined) remove(key, current)
        if (live === undefined) {
          evictSubject(record.subject, now)
          if (sessions.size >= capacity) evict(now)
        }
        const version = nextVersion++
        insert(key, { record, version, expiresAt: now + Duration.toMillis(setOptions.timeToLive) })
        return Option.some(version)
      })

    // One lock per session while someone holds or waits for it (core's `KeyedLock`).
    const withLock: UserTokenStore["withLock"] = (id, effect) => locks.withLock(Redacted.value(id))(effect)

    return {
      get,
      set,
      delete: (id) =>
        Effect.sync(() => {
          const key = Redacted.value(id)
          const entry = sessions.get(key)
          if (entry !== undefined) remove(key, entry)
        }),
      withLock,
      evictions
    } satisfies UserTokenStore
  })

/**
 * Provides the in-process {@link UserTokenStore}.
 *
 * @example
 * ```ts
 * import { UserTokenStore } from "@effect-token/session"
 *
 * const StoreLive = UserTokenStore.layerMemory({ capacity: 50_000 })
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerMemory = (options?: MemoryOptions): Layer.Layer<UserTokenStore> =>
  Layer.effect(UserTokenStore, makeMemory(options))

/**
 * The record as a JSON string and back, for a shared store (encrypt the string at rest: it holds the tokens).
 *
 * @example
 * ```ts
 * import { UserTokenStore } from "@effect-token/session"
 * import { Schema } from "effect"
 *
 * declare const record: UserTokenStore.SessionRecord
 * const json = Schema.encodeSync(UserTokenStore.SessionRecordJson)(record)
 * ```
 *
 * @since 0.1.0
 * @category schemas
 */
export const SessionRecordJson: Schema.Schema<SessionRecord, string> = Schema.parseJson(SessionRecord)

/**
 * The time a record may still be kept at `now`: until its idle expiry or its absolute expiry, whichever is first.
 *
 * @example
 * ```ts
 * import { UserTokenStore } from "@effect-token/session"
 * import { DateTime, Duration } from "effect"
 *
 * declare const record: UserTokenStore.SessionRecord
 * const ttl = UserTokenStore.timeToLive(record, DateTime.unsafeMake(0), {
 *   idleTimeout: Duration.hours(1),
 *   absoluteTimeout: Duration.hours(12)
 * })
 * ```
 *
 * @since 0.1.0
 * @category accessors
 */
export const timeToLive = (
  record: SessionRecord,
  now: DateTime.Utc,
  limits: { readonly idleTimeout: Duration.Duration; readonly absoluteTimeout: Duration.Duration }
): Duration.Duration => {
  const nowMs = DateTime.toEpochMillis(now)
  const idleEnd = DateTime.toEpochMillis(record.lastSeenAt) + Duration.toMillis(limits.idleTimeout)
  const absoluteEnd = DateTime.toEpochMillis(record.createdAt) + Duration.toMillis(limits.absoluteTimeout)
  return Duration.millis(Math.max(0, Math.min(idleEnd, absoluteEnd) - nowMs))
}
