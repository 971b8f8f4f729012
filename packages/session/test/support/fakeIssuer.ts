import { AccessToken, ClientAuth, Discovery } from "@effect-token/core"
import { UserSession, UserTokenStore } from "@effect-token/session"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { DateTime, Deferred, Duration, Effect, Option, Redacted } from "effect"

/** How the fake token endpoint answers the next refresh. */
export type Answer =
  | { readonly _tag: "Rotate"; readonly expiresIn?: number | undefined }
  | { readonly _tag: "NoRefreshToken"; readonly expiresIn?: number | undefined }
  | { readonly _tag: "InvalidGrant" }
  | { readonly _tag: "Unavailable"; readonly retryAfter?: Duration.Duration | undefined }

export const issuer = "https://issuer.test"
const decoder = new TextDecoder()

/**
 * An in-process issuer for unit tests: discovery and a refresh-token endpoint with rotation (a spent refresh token
 * is refused with `invalid_grant`, as a real server with reuse detection does), scripted answers, and a record of
 * every refresh request. `gate`, when set, holds each answer until it is opened.
 */
export const make = Effect.suspend(() => {
  const refreshRequests: Array<{ readonly refreshToken: string; readonly resource: string | null }> = []
  const spent = new Set<string>()
  const script: Array<Answer> = []
  let gate: Deferred.Deferred<void> | undefined
  let started: Deferred.Deferred<void> | undefined
  let counter = 0

  const json = (body: unknown, status = 200) =>
    new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } })

  const client = HttpClient.make((request) =>
    Effect.gen(function*() {
      if (request.url === `${issuer}/.well-known/openid-configuration`) {
        return HttpClientResponse.fromWeb(
          request,
          json({
            issuer,
            authorization_endpoint: `${issuer}/authorize`,
            token_endpoint: `${issuer}/token`,
            jwks_uri: `${issuer}/jwks`,
            revocation_endpoint: `${issuer}/revoke`
          })
        )
      }
      const form = new URLSearchParams(request.body._tag === "Uint8Array" ? decoder.decode(request.body.body) : "")
      const refreshToken = form.get("refresh_token") ?? ""
      refreshRequests.push({ refreshToken, resource: form.get("resource") })
      if (started !== undefined) yield* Deferred.succeed(started, undefined)
      if (gate !== undefined) yield* Deferred.await(gate)
      const answer = script.shift() ?? { _tag: "Rotate" }
      if (answer._tag === "Unavailable") {
        const headers: Record<string, string> = answer.retryAfter === undefined
          ? {}
          : { "retry-after": String(Duration.toSeconds(answer.retryAfter)) }
        return HttpClientResponse.fromWeb(request, new Response("down", { status: 503, headers }))
      }
      if (answer._tag === "InvalidGrant" || spent.has(refreshToken)) {
        return HttpClientResponse.fromWeb(request, json({ error: "invalid_grant" }, 400))
      }
      counter++
      const body: Record<string, unknown> = {
        access_token: `at-${counter}`,
        token_type: "Bearer",
        expires_in: answer.expiresIn ?? 300
      }
      if (answer._tag === "Rotate") {
        spent.add(refreshToken)
        body.refresh_token = `rt-${counter}`
      }
      return HttpClientResponse.fromWeb(request, json(body))
    })
  )

  return Effect.succeed({
    client,
    refreshRequests,
    /** Answers for the next refreshes, in order; then `Rotate`. */
    answer: (...answers: ReadonlyArray<Answer>) => void script.push(...answers),
    hold: Effect.gen(function*() {
      gate = yield* Deferred.make<void>()
      started = yield* Deferred.make<void>()
      return { started: started as Deferred.Deferred<void>, open: Deferred.succeed(gate, undefined) }
    })
  })
})

export type FakeIssuer = Effect.Effect.Success<typeof make>

/** A login's token: `at-0`, issued now, `lifetime` long (none: unknown), with refresh token `rt-0` unless told not. */
export const loginToken = (
  options: {
    readonly lifetime?: Duration.Duration | undefined
    readonly refreshToken?: boolean | undefined
    readonly refreshTokenValue?: string | undefined
  }
) =>
  Effect.map(DateTime.now, (now) =>
    AccessToken.make({
      value: Redacted.make("at-0"),
      issuedAt: now,
      expiresAt: options.lifetime === undefined
        ? Option.none()
        : Option.some(DateTime.addDuration(now, options.lifetime)),
      refreshToken: options.refreshToken === false
        ? Option.none()
        : Option.some(Redacted.make(options.refreshTokenValue ?? "rt-0"))
    }))

/** Sessions over a memory store (or `store`) and the fake issuer. */
export const sessions = (
  fake: FakeIssuer,
  options: Partial<UserSession.Options> & { readonly store?: UserTokenStore.UserTokenStore } = {}
) =>
  Effect.gen(function*() {
    const store = options.store ?? (yield* UserTokenStore.makeMemory())
    const discovery = yield* Discovery.makeWith(fake.client, { issuer })
    const made = yield* UserSession.make({
      discovery,
      clientAuth: ClientAuth.clientSecretBasic({ clientId: "web", clientSecret: Redacted.make("s3cr3t") }),
      ...options
    }).pipe(
      Effect.provideService(UserTokenStore.UserTokenStore, store),
      Effect.provideService(HttpClient.HttpClient, fake.client)
    )
    return { sessions: made, store }
  })
