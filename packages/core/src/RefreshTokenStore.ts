/**
 * Where the current refresh token of a `refresh_token` source lives.
 *
 * With rotation (RFC 9700 §4.14.2) every refresh answers with a new refresh token and spends the old one, so the
 * store is the single place that knows the one valid refresh token. The refresh source writes the new token here
 * before it hands out the access token: a crash between the two can never lose it, and when the write fails the
 * access token is not handed out.
 *
 * @since 0.1.0
 */
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { globalValue } from "effect/GlobalValue"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import * as Ref from "effect/Ref"
import type * as AccessToken from "./AccessToken.js"
import { TokenError, Unavailable } from "./TokenError.js"

/**
 * A store for one refresh token.
 *
 * Implementations backed by I/O (Redis, a web session) must make `set` durable before it succeeds, and fail when
 * they cannot, with a `TokenError` (see {@link unavailable}): the refresh source hands out the new access token only
 * after `set` succeeds, so a failed write fails the fetch with that error. The error is the refresh source's own
 * error type, so callers handle one error whatever the store. The old refresh token is already spent when `set`
 * fails: unless the server has a rotation grace period, the user has to log in again.
 *
 * @example
 * ```ts
 * import { RefreshTokenStore } from "@effect-token/core"
 * import { Effect, Option } from "effect"
 *
 * // A store whose backend is down.
 * const down: RefreshTokenStore.RefreshTokenStore = {
 *   get: Effect.fail(RefreshTokenStore.unavailable("redis: connection refused")),
 *   set: () => Effect.fail(RefreshTokenStore.unavailable("redis: connection refused")),
 *   clear: Effect.fail(RefreshTokenStore.unavailable("redis: connection refused"))
 * }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface RefreshTokenStore {
  /** The current refresh token, if there is one. */
  readonly get: Effect.Effect<Option.Option<Redacted.Redacted<string>>, TokenError>
  /** Replaces the current refresh token (after a login, or with a rotated one); succeeds only once it is durable. */
  readonly set: (token: Redacted.Redacted<string>) => Effect.Effect<void, TokenError>
  /** Forgets the refresh token, e.g. on logout. */
  readonly clear: Effect.Effect<void, TokenError>
  /**
   * Runs `effect` (read the refresh token, spend it, store the rotated one) while no other refresh over this store
   * runs: the single flight belongs to the store, not to a source, so two sources (or two processes) sharing it never
   * spend one refresh token twice, which a server with reuse detection answers by revoking the whole token family
   * (RFC 9700 §4.14.2). The memory store holds one semaphore per store; a durable store (Redis, a web session) must
   * hold a lease across processes for as long as `effect` runs. Without `withLock`, refresh sources in one process
   * still serialize on the store object itself, which protects nothing across processes.
   */
  readonly withLock?: (<A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>) | undefined
  /**
   * Fencing for a store shared by several processes: called under `withLock` right before the refresh source sends
   * `token`. In one atomic step the store checks that this holder may spend it (its lock is still held, `token` is
   * still the current one, no other holder's spend of it is unresolved) and records the spend (by whom, until when:
   * at least `answerTimeout` from now). No grant, no send. See {@link SpendDecision}.
   *
   * A store without `spend` gets in-process fencing from the refresh source only: enough for a store that one
   * process owns (the memory store), not for one that several processes share.
   */
  readonly spend?:
    | ((token: Redacted.Redacted<string>, options: SpendOptions) => Effect.Effect<SpendDecision, TokenError>)
    | undefined
}

/**
 * What a refresh asks of {@link RefreshTokenStore.spend}.
 *
 * @example
 * ```ts
 * import type { RefreshTokenStore } from "@effect-token/core"
 * import { Duration } from "effect"
 *
 * const options: RefreshTokenStore.SpendOptions = { answerTimeout: Duration.seconds(60) }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface SpendOptions {
  /**
   * How long the answer is read at most, from now: the recorded spend must keep every other holder from spending
   * the token at least this long, because the answer (and the rotated token in it) may still arrive until then.
   */
  readonly answerTimeout: Duration.Duration
}

/**
 * The store's answer to a spend request.
 *
 * - `Granted`: send the token now; resolve the spend with what happens (see {@link Spend}).
 * - `Pending`: another holder's spend of this token is unresolved (its answer may still arrive). Do not send; ask
 *   again after `retryAfter`. A store grants a takeover once the other spend's deadline has passed.
 * - `Stale`: the store holds another token than the one read (a sibling rotated it): read again.
 * - `Answered`: another holder's refresh was answered since the token was read, and the store keeps access tokens
 *   too (a web session): `token` is that answer's, so this refresh need not spend anything.
 *
 * @example
 * ```ts
 * import { RefreshTokenStore } from "@effect-token/core"
 *
 * const busy = RefreshTokenStore.pending("250 millis")
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export type SpendDecision =
  | { readonly _tag: "Granted"; readonly spend: Spend }
  | { readonly _tag: "Pending"; readonly retryAfter: Duration.DurationInput }
  | { readonly _tag: "Stale" }
  | { readonly _tag: "Answered"; readonly token: AccessToken.AccessToken }

/**
 * One recorded spend of a refresh token, resolved by the refresh source with what happened to its request. Each
 * resolution is compare-and-set on the spend: a spend taken over by another holder resolves nothing any more.
 *
 * @example
 * ```ts
 * import { RefreshTokenStore } from "@effect-token/core"
 * import { Effect, Option } from "effect"
 *
 * declare const store: RefreshTokenStore.RefreshTokenStore
 * const spend: RefreshTokenStore.Spend = {
 *   takeover: false,
 *   provenance: "the refresh token rotated by this process",
 *   complete: (answer) => Option.match(answer.refreshToken, { onNone: () => Effect.void, onSome: store.set }),
 *   withdraw: Effect.void,
 *   reject: Effect.void
 * }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Spend {
  /**
   * Whether this spend takes over another holder's spend of the same token that stayed unresolved past its
   * deadline: the token goes to the server a second time (see docs/ARCHITECTURE.md on what closes that window).
   */
  readonly takeover: boolean
  /**
   * Where the token came from and how to replace it, for the message of a rejection (`RefreshTokenRejected`): an
   * operator reads it to know what to do. Never the token.
   */
  readonly provenance?: string | undefined
  /**
   * The server answered: store the answer's rotated refresh token (or keep the spent one current when the answer
   * has none: no rotation). Durable before it succeeds.
   */
  readonly complete: (answer: AccessToken.AccessToken) => Effect.Effect<void, TokenError>
  /** The request surely never reached the grant (no connection, or an answer saying it failed): others may spend it. */
  readonly withdraw: Effect.Effect<void, TokenError>
  /** The server refused the token (`invalid_grant`): nothing was rotated, and the spend is over. */
  readonly reject: Effect.Effect<void, TokenError>
}

/**
 * A {@link SpendDecision} that grants `spend`.
 *
 * @example
 * ```ts
 * import { RefreshTokenStore } from "@effect-token/core"
 * import { Effect } from "effect"
 *
 * const decision = RefreshTokenStore.granted({
 *   takeover: false,
 *   complete: () => Effect.void,
 *   withdraw: Effect.void,
 *   reject: Effect.void
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const granted = (spend: Spend): SpendDecision => ({ _tag: "Granted", spend })

/**
 * A {@link SpendDecision}: another holder's spend is unresolved; ask again after `retryAfter`.
 *
 * @example
 * ```ts
 * import { RefreshTokenStore } from "@effect-token/core"
 *
 * const decision = RefreshTokenStore.pending("100 millis")
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const pending = (retryAfter: Duration.DurationInput): SpendDecision => ({ _tag: "Pending", retryAfter })

/**
 * A {@link SpendDecision}: another holder's refresh was just answered, with `token`.
 *
 * @example
 * ```ts
 * import { AccessToken, RefreshTokenStore } from "@effect-token/core"
 * import { DateTime, Redacted } from "effect"
 *
 * const decision = RefreshTokenStore.answered(
 *   AccessToken.make({ value: Redacted.make("at"), issuedAt: DateTime.unsafeMake(0) })
 * )
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const answered = (token: AccessToken.AccessToken): SpendDecision => ({ _tag: "Answered", token })

/**
 * A {@link SpendDecision}: the store holds another token now.
 *
 * @example
 * ```ts
 * import { RefreshTokenStore } from "@effect-token/core"
 *
 * const decision = RefreshTokenStore.stale
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const stale: SpendDecision = { _tag: "Stale" }

/**
 * The `operation` of a store's errors.
 *
 * @since 0.1.0
 * @category constants
 */
export const operation = "refresh token store"

/**
 * The error of a store that cannot read or write: reason `Unavailable` (transient: trying again later may work),
 * operation `refresh token store`. `detail` must be safe to log: never the token.
 *
 * @example
 * ```ts
 * import { RefreshTokenStore } from "@effect-token/core"
 *
 * const error = RefreshTokenStore.unavailable("redis: connection refused")
 * error.reason._tag // "Unavailable"
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export const unavailable = (detail: string): TokenError =>
  new TokenError({ operation, reason: new Unavailable({ description: detail }) })

/**
 * @example
 * ```ts
 * import { RefreshTokenStore } from "@effect-token/core"
 * import { Effect, Redacted } from "effect"
 *
 * const afterLogin = (refreshToken: string) =>
 *   Effect.flatMap(RefreshTokenStore.RefreshTokenStore, (store) => store.set(Redacted.make(refreshToken)))
 * ```
 *
 * @since 0.1.0
 * @category tags
 */
export const RefreshTokenStore: Context.Tag<RefreshTokenStore, RefreshTokenStore> = Context.GenericTag<
  RefreshTokenStore
>("@effect-token/core/RefreshTokenStore")

/**
 * An in-memory store, optionally holding a first refresh token. Good for a process that obtains its refresh token
 * at start-up (a CLI login, a secret from configuration) and keeps it while it runs. It never fails.
 *
 * @example
 * ```ts
 * import { RefreshTokenStore } from "@effect-token/core"
 * import { Effect, Redacted } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const store = yield* RefreshTokenStore.makeMemory(Redacted.make("first-refresh-token"))
 *   return yield* store.get // Option.some(<redacted>)
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeMemory = (initial?: Redacted.Redacted<string> | undefined): Effect.Effect<RefreshTokenStore> =>
  Effect.map(
    Effect.zip(Ref.make(Option.fromNullable(initial)), Effect.makeSemaphore(1)),
    ([ref, semaphore]) => ({
      get: Ref.get(ref),
      set: (token) => Ref.set(ref, Option.some(token)),
      clear: Ref.set(ref, Option.none()),
      withLock: semaphore.withPermits(1)
    })
  )

// Stores without a lock of their own: one semaphore per store object, so sources sharing it still take turns.
const fallbackLocks = globalValue(
  "@effect-token/core/RefreshTokenStore/fallbackLocks",
  () => new WeakMap<RefreshTokenStore, Effect.Semaphore>()
)

/**
 * The old name of {@link makeMemory}.
 *
 * @deprecated Use {@link makeMemory} (in-memory stores are `makeMemory`/`layerMemory` in every package).
 * @since 0.1.0
 * @category constructors
 */
export const make: (initial?: Redacted.Redacted<string> | undefined) => Effect.Effect<RefreshTokenStore> = (
  initial
) => makeMemory(initial)

/**
 * Runs `effect` under the store's lock ({@link RefreshTokenStore.withLock}), or, for a store without one, under a
 * lock held per store object in this process.
 *
 * @example
 * ```ts
 * import { RefreshTokenStore } from "@effect-token/core"
 * import { Effect } from "effect"
 *
 * const rotate = (store: RefreshTokenStore.RefreshTokenStore) =>
 *   RefreshTokenStore.withLock(store, Effect.flatMap(store.get, () => Effect.void))
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const withLock = <A, E, R>(store: RefreshTokenStore, effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> => {
  if (store.withLock !== undefined) return store.withLock(effect)
  let semaphore = fallbackLocks.get(store)
  if (semaphore === undefined) {
    semaphore = Effect.unsafeMakeSemaphore(1)
    fallbackLocks.set(store, semaphore)
  }
  return semaphore.withPermits(1)(effect)
}

/**
 * Provides an in-memory {@link RefreshTokenStore}.
 *
 * @example
 * ```ts
 * import { RefreshTokenStore } from "@effect-token/core"
 * import { Redacted } from "effect"
 *
 * const StoreLive = RefreshTokenStore.layerMemory(Redacted.make("first-refresh-token"))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerMemory = (initial?: Redacted.Redacted<string> | undefined): Layer.Layer<RefreshTokenStore> =>
  Layer.effect(RefreshTokenStore, makeMemory(initial))

/**
 * Provides an in-memory store seeded from configuration: `REFRESH_TOKEN` (read as a `Redacted` value) by default.
 *
 * @example
 * ```ts
 * import { RefreshTokenStore } from "@effect-token/core"
 * import { Config } from "effect"
 *
 * // reads GITHUB_REFRESH_TOKEN
 * const StoreLive = RefreshTokenStore.layerMemoryConfig(Config.nested(Config.redacted("REFRESH_TOKEN"), "GITHUB"))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerMemoryConfig = (
  config: Config.Config<Redacted.Redacted<string>> = Config.redacted("REFRESH_TOKEN")
): Layer.Layer<RefreshTokenStore, ConfigError.ConfigError> =>
  Layer.effect(RefreshTokenStore, Effect.flatMap(config, make))
