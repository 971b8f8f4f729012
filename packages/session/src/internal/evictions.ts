/**
 * Revocation of the refresh tokens of sessions a store dropped while they were live (the memory store past its
 * bounds): a dropped session can no longer be used or logged out, so its refresh token would otherwise stay valid at
 * the issuer until it expires. Best effort, in the background: a few at a time, each bounded in time, a failure only
 * logged.
 */
import type { ClientAuth, Discovery } from "@effect-token/core"
import { Revocation } from "@effect-token/core"
import type * as HttpClient from "@effect/platform/HttpClient"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import type * as UserTokenStore from "../UserTokenStore.js"

export const revokeEvicted = (
  store: UserTokenStore.UserTokenStore,
  client: HttpClient.HttpClient,
  options: {
    readonly discovery: Discovery.Discovery
    readonly clientAuth: ClientAuth.ClientAuth
    readonly timeout: Duration.Duration
  }
): Effect.Effect<void, never, Scope.Scope> => {
  const evictions = store.evictions
  if (evictions === undefined) return Effect.void
  const revocation = Revocation.makeWith(client, {
    revocationUrl: options.discovery,
    clientAuth: options.clientAuth,
    timeout: options.timeout
  })
  const revoke = (record: UserTokenStore.SessionRecord) =>
    Option.match(record.refreshToken, {
      onNone: () => Effect.void,
      onSome: (refreshToken) =>
        Effect.flatMap(Effect.option(options.discovery.metadata), (metadata) =>
          Option.isSome(metadata) && metadata.value.revocation_endpoint !== undefined
            ? revocation.revokeRefreshToken(refreshToken).pipe(
              Effect.timeout(options.timeout),
              Effect.catchAll((error) =>
                Effect.logWarning(`an evicted session's refresh token could not be revoked: ${error.message}`)
              )
            )
            : Effect.void)
    })
  return Queue.takeBetween(evictions, 1, 16).pipe(
    Effect.flatMap((records) => Effect.forEach(records, revoke, { concurrency: 4, discard: true })),
    Effect.forever,
    Effect.withSpan("effect-token/UserSession.revokeEvicted"),
    Effect.forkScoped,
    Effect.asVoid
  )
}
