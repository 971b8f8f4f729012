import * as Context from "effect/Context"
import type * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as AccessToken from "../AccessToken.js"
import type * as TokenCache from "../TokenCache.js"
import * as TokenError from "../TokenError.js"
import type { Options, TokenManager, TypeId as TypeIdType } from "../TokenManager.js"
import type * as TokenSource from "../TokenSource.js"
import * as singleFlight from "./singleFlight.js"
import * as tokenCache from "./tokenCache.js"

export const TypeId: TypeIdType = Symbol.for("@effect-token/core/TokenManager") as TypeIdType

/**
 * One key's cell. Kept small on purpose: an idle key costs its token, its key string, its parameters and these few
 * numbers, nothing else (no closure, no Ref, no fiber), so that 100,000 tenants fit in ~100 MB less than caches would.
 */
class KeyedCell<P> implements singleFlight.Cell<AccessToken.AccessToken, TokenError.TokenError> {
  // A class rather than an object literal: every cell then shares one hidden class with all its fields in the
  // object itself, which is most of what an idle key costs beyond its token.
  state: singleFlight.StateCode = singleFlight.EMPTY
  value: AccessToken.AccessToken | undefined = undefined
  validUntil = 0
  refreshAt = 0
  pending: Deferred.Deferred<AccessToken.AccessToken, TokenError.TokenError> | undefined = undefined
  notBefore = 0
  failure: TokenError.TokenError | undefined = undefined
  constructor(
    readonly key: string,
    readonly params: P,
    /** The clock reading of the last time the key moved to the young end of the LRU order. */
    public touched: number
  ) {}
}

/** An entry is moved to the young end of the LRU order at most this often: a Map re-insert on every hit would cost. */
const touchEveryMillis = 1_000

export const defaultCapacity = 10_000

export const defaultMaxInFlight = 100

export const defaultMaxKeyLength = 4_096

export const make = <P, R>(
  options: Options & {
    readonly key: (params: P) => string
    readonly source: (params: P) => Effect.Effect<TokenSource.TokenSource, never, R>
  }
): Effect.Effect<TokenManager<P>, never, Scope.Scope | R> =>
  Effect.gen(function*() {
    const name = options.name ?? "default"
    const capacity = Math.max(1, options.capacity ?? defaultCapacity)
    // Never more keys fetching than the map may hold: eviction then always finds an idle key to drop.
    const maxInFlight = Math.max(1, Math.min(capacity, options.maxInFlight ?? defaultMaxInFlight))
    const maxKeyLength = Math.max(1, options.maxKeyLength ?? defaultMaxKeyLength)
    const busy = tokenCache.busy(name, maxInFlight)
    const engine = yield* tokenCache.makeEngine(options, name, { maxInFlight, busy })
    const context = yield* Effect.context<R>()
    const clock = yield* Effect.clock
    const cells = new Map<string, KeyedCell<P>>()
    const keyOf = options.key
    const tooLong = (key: string) =>
      new TokenError.TokenError({
        operation: "token manager",
        reason: new TokenError.Misconfigured({
          description: `the token parameters' key is ${key.length} characters, over maxKeyLength (${maxKeyLength})`
        })
      })

    const sourceOf = (params: P) => Effect.provide(options.source(params), context)

    // One fetch function for every key: the cell carries the parameters.
    const fetch: singleFlight.Fetch<AccessToken.AccessToken, TokenError.TokenError, KeyedCell<P>> = (trigger, cell) =>
      Effect.flatMap(sourceOf(cell.params), (source) => tokenCache.fetcher(source, options, name)(trigger, cell))

    /**
     * Drops least recently used idle keys until one more fits. A key with a fetch in flight has waiters (dropping it
     * would start a second fetch for the same key) and is skipped; there are fewer of those than `capacity`, so an
     * idle key is always found, after at most `maxInFlight` skips.
     */
    const makeRoom = () => {
      for (const [key, cell] of cells) {
        if (cells.size < capacity) return
        if (engine.isIdle(cell)) cells.delete(key)
      }
    }

    /**
     * The key's cell, made if need be, or the failure that keeps it out: a key over `maxKeyLength`, or a new key
     * while `maxInFlight` keys are fetching (its first call would start one more).
     */
    const cellFor = (params: P, key: string, now: number): KeyedCell<P> | TokenError.TokenError => {
      let cell = cells.get(key)
      if (cell === undefined) {
        if (key.length > maxKeyLength) return tooLong(key)
        if (engine.isBusy()) return busy()
        if (cells.size >= capacity) makeRoom()
        cell = new KeyedCell(key, params, now)
        cells.set(key, cell)
      } else if (now - cell.touched >= touchEveryMillis) {
        cells.delete(key)
        cells.set(key, cell)
        cell.touched = now
      }
      return cell
    }

    const getAt = (params: P, key: string, now: number) => {
      const cell = cellFor(params, key, now)
      return cell instanceof KeyedCell ? engine.getAt(cell, fetch, now) : Effect.fail(cell)
    }

    const get = (params: P) =>
      Effect.suspend(() => {
        const now = clock.unsafeCurrentTimeMillis()
        return getAt(params, keyOf(params), now)
      })

    const invalidate = (params: P, token: AccessToken.AccessToken) =>
      Effect.suspend(() => {
        const cell = cells.get(keyOf(params))
        if (cell === undefined) return Effect.succeed(false)
        if (!engine.invalidate(cell, (cached) => AccessToken.sameValue(cached, token))) return Effect.succeed(false)
        tokenCache.countInvalidation(name)
        // A source with a shared copy of its own (a cluster store) forgets it too; building one is cheap next to the
        // 401 that got us here.
        return Effect.flatMap(
          sourceOf(params),
          (source) => source.invalidate === undefined ? Effect.succeed(true) : Effect.as(source.invalidate(token), true)
        )
      })

    const refreshAt = (params: P, key: string) =>
      Effect.suspend(() => {
        const cell = cellFor(params, key, clock.unsafeCurrentTimeMillis())
        return cell instanceof KeyedCell ? engine.refresh(cell, fetch) : Effect.fail(cell)
      })

    const refresh = (params: P) => Effect.suspend(() => refreshAt(params, keyOf(params)))

    const at = (params: P): TokenCache.TokenCache => {
      const key = keyOf(params)
      return {
        key,
        get: Effect.suspend(() => getAt(params, key, clock.unsafeCurrentTimeMillis())),
        invalidate: (token) => invalidate(params, token),
        refresh: refreshAt(params, key),
        state: Effect.sync(() => {
          const cell = cells.get(key)
          return cell === undefined ? { _tag: "Empty" } : tokenCache.stateOf(cell)
        })
      }
    }

    return {
      [TypeId]: TypeId,
      get,
      invalidate,
      refresh,
      at,
      size: Effect.sync(() => cells.size)
    } satisfies TokenManager<P>
  })

export const isTokenManager = (u: unknown): u is TokenManager<unknown> =>
  typeof u === "object" && u !== null && TypeId in u

export const ManagerTag = Context.GenericTag<TokenManager<TokenSource.TokenShape>>("@effect-token/core/TokenManager")
