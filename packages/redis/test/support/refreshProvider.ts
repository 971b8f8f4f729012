/**
 * A real oidc-provider for the rotating refresh-token fault tests: refresh-token rotation on (it revokes the grant
 * when a spent refresh token comes back), with every refresh token presented, revoked grant and refresh error
 * recorded from the provider's own events.
 */
import { OidcProvider } from "@effect-token/testing/oidc-provider"
import { Effect } from "effect"
import type { KoaContextWithOIDC } from "oidc-provider"

/** The one client: `reporting` / `reporting-secret`, authorization code and refresh token grants. */
export const clients = [{
  client_id: "reporting",
  client_secret: "reporting-secret",
  grant_types: ["authorization_code", "refresh_token"],
  response_types: ["code" as const],
  redirect_uris: ["http://127.0.0.1/callback"],
  scope: "openid offline_access api:read",
  token_endpoint_auth_method: "client_secret_basic" as const
}]

/** The provider, with every refresh token presented, revoked grants and refresh errors recorded. */
export const make = (accessTokenTtlSeconds: number) =>
  Effect.gen(function*() {
    const presented: Array<string> = []
    const revoked: Array<string> = []
    const errors: Array<string> = []
    const arrived: Array<() => void> = []
    const answered: Array<() => void> = []
    const as = yield* OidcProvider.make({
      clients,
      accessTokenTtl: accessTokenTtlSeconds,
      configuration: { rotateRefreshToken: true },
      setup: (provider) => {
        provider.use(async (ctx, next) => {
          if (ctx.path === "/token" && arrived.length > 0) {
            for (const f of arrived.splice(0)) f()
            // Held a moment, so that its sender is stopped before the answer (and the rotation) happens.
            await new Promise((resolve) => setTimeout(resolve, 300))
          }
          await next()
        })
        const refreshTokenOf = (ctx: KoaContextWithOIDC) =>
          (ctx.oidc.params as Record<string, unknown> | undefined)?.refresh_token
        provider.on("grant.success", (ctx: KoaContextWithOIDC) => {
          const token = refreshTokenOf(ctx)
          if (typeof token === "string") presented.push(token)
          for (const f of answered.splice(0)) f()
        })
        provider.on("grant.error", (ctx: KoaContextWithOIDC, error: Error) => {
          const token = refreshTokenOf(ctx)
          if (typeof token === "string") presented.push(token)
          errors.push(error.message)
        })
        provider.on("grant.revoked", (_ctx: unknown, grantId: string) => {
          revoked.push(grantId)
        })
      }
    })
    return {
      as,
      presented,
      revoked,
      errors,
      /**
       * Resolves at the next token request's arrival; the provider handles that request 300 ms later (only a
       * request someone waits for this way is held).
       */
      nextArrival: Effect.async<void>((resume) => {
        arrived.push(() => resume(Effect.void))
      }),
      /** Resolves when the next grant has been answered (the refresh token rotated). */
      nextAnswer: Effect.async<void>((resume) => {
        answered.push(() => resume(Effect.void))
      })
    }
  })

export type Recorder = Effect.Effect.Success<ReturnType<typeof make>>
