import { AccessToken, ClientAuth, Discovery } from "@effect-token/core"
import { UserSession, UserTokenStore } from "@effect-token/session"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { DateTime, Deferred, Duration, Effect, Option, Redacted } from "effect"
import * as jose from "jose"

/** How the fake token endpoint answers the next refresh. */
export type Answer =
  | {
    readonly _tag: "Rotate"
    readonly expiresIn?: number | undefined
    /** An `id_token` in the answer, with these claims over the login's (`sub`, `iss`, `aud`, ...). */
    readonly idToken?: Record<string, unknown> | undefined
    /** Sign that `id_token` with a key the issuer does not publish (under the published key's `kid`). */
    readonly idTokenForged?: boolean | undefined
  }
  | { readonly _tag: "NoRefreshToken"; readonly expiresIn?: number | undefined }
  | { readonly _tag: "InvalidGrant" }
  | { readonly _tag: "Unavailable"; readonly retryAfter?: Duration.Duration | undefined }

export const issuer = "https://issuer.test"
export const clientId = "web"
const decoder = new TextDecoder()

export interface Options {
  /** Discovery advertises `authorization_response_iss_parameter_supported` (RFC 9207). Default true. */
  readonly issParameterSupported?: boolean | undefined
}

/**
 * An in-process issuer for unit tests: discovery, an authorization step (`authorize`, as the provider's pages would
 * end), a token endpoint for codes (an ID token signed with the issuer's key, the login's nonce) and refresh tokens
 * with rotation (a spent refresh token is refused with `invalid_grant`, as a real server with reuse detection does),
 * scripted answers, its JWKS, a revocation endpoint, and a record of every request. `hold` holds each token answer
 * until opened; `holdRevocations` holds revocations the same way.
 */
export const makeWith = (options: Options = {}) =>
  Effect.gen(function*() {
    const refreshRequests: Array<{ readonly refreshToken: string; readonly resource: string | null }> = []
    const codeRequests: Array<string> = []
    const revoked: Array<string> = []
    const spent = new Set<string>()
    const script: Array<Answer> = []
    const codes = new Map<string, { readonly nonce: string; readonly subject: string }>()
    /** The subject each refresh token was issued for (login's `alice` for those made by `loginToken`). */
    const subjects = new Map<string, string>()
    let gate: Deferred.Deferred<void> | undefined
    let started: Deferred.Deferred<void> | undefined
    let revocationGate: Deferred.Deferred<void> | undefined
    let revocationStarted: Deferred.Deferred<void> | undefined
    let counter = 0
    let jwksFetches = 0
    const keys = yield* Effect.promise(() => jose.generateKeyPair("ES256", { extractable: true }))
    const publicJwk = { ...(yield* Effect.promise(() => jose.exportJWK(keys.publicKey))), kid: "k1", alg: "ES256" }

    const json = (body: unknown, status = 200) =>
      new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } })

    const otherKeys = yield* Effect.promise(() => jose.generateKeyPair("ES256"))

    const signIdToken = (claims: Record<string, unknown>, forged = false) =>
      Effect.flatMap(DateTime.now, (now) => {
        const at = Math.floor(DateTime.toEpochMillis(now) / 1000)
        return Effect.promise(() =>
          new jose.SignJWT({ iss: issuer, aud: clientId, iat: at, exp: at + 300, ...claims })
            .setProtectedHeader({ alg: "ES256", kid: "k1" })
            .sign(forged ? otherKeys.privateKey : keys.privateKey)
        )
      })

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
              revocation_endpoint: `${issuer}/revoke`,
              end_session_endpoint: `${issuer}/logout`,
              authorization_response_iss_parameter_supported: options.issParameterSupported ?? true
            })
          )
        }
        if (request.url === `${issuer}/jwks`) {
          jwksFetches++
          return HttpClientResponse.fromWeb(request, json({ keys: [publicJwk] }))
        }
        const form = new URLSearchParams(request.body._tag === "Uint8Array" ? decoder.decode(request.body.body) : "")
        if (request.url === `${issuer}/revoke`) {
          if (revocationStarted !== undefined) yield* Deferred.succeed(revocationStarted, undefined)
          if (revocationGate !== undefined) yield* Deferred.await(revocationGate)
          revoked.push(form.get("token") ?? "")
          return HttpClientResponse.fromWeb(request, new Response(null, { status: 200 }))
        }
        if (form.get("grant_type") === "authorization_code") {
          const code = form.get("code") ?? ""
          codeRequests.push(code)
          const login = codes.get(code)
          codes.delete(code)
          if (login === undefined) return HttpClientResponse.fromWeb(request, json({ error: "invalid_grant" }, 400))
          counter++
          subjects.set(`rt-${counter}`, login.subject)
          return HttpClientResponse.fromWeb(
            request,
            json({
              access_token: `at-${counter}`,
              token_type: "Bearer",
              expires_in: 300,
              refresh_token: `rt-${counter}`,
              id_token: yield* signIdToken({ sub: login.subject, nonce: login.nonce })
            })
          )
        }
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
          subjects.set(`rt-${counter}`, subjects.get(refreshToken) ?? "alice")
          if (answer.idToken !== undefined) {
            body.id_token = yield* signIdToken(
              { sub: subjects.get(refreshToken) ?? "alice", ...answer.idToken },
              answer.idTokenForged === true
            )
          }
        }
        return HttpClientResponse.fromWeb(request, json(body))
      })
    )

    return {
      client,
      refreshRequests,
      codeRequests,
      revoked,
      jwksFetches: () => jwksFetches,
      signIdToken,
      /**
       * The provider's part of a login: reads the authorization request `url` (as the provider would), and returns
       * the URL of the callback it would send the browser to, with a fresh code for `subject` (default `alice`).
       */
      authorize: (url: string, as: { readonly subject?: string; readonly iss?: string | null } = {}) => {
        const authorize = new URL(url)
        const code = `code-${codes.size}-${Math.random().toString(36).slice(2)}`
        codes.set(code, { nonce: authorize.searchParams.get("nonce") ?? "", subject: as.subject ?? "alice" })
        const callback = new URL(authorize.searchParams.get("redirect_uri")!)
        callback.searchParams.set("code", code)
        callback.searchParams.set("state", authorize.searchParams.get("state") ?? "")
        if (as.iss !== null) callback.searchParams.set("iss", as.iss ?? issuer)
        return callback.toString()
      },
      /** Answers for the next refreshes, in order; then `Rotate`. */
      answer: (...answers: ReadonlyArray<Answer>) => void script.push(...answers),
      hold: Effect.gen(function*() {
        gate = yield* Deferred.make<void>()
        started = yield* Deferred.make<void>()
        return { started: started as Deferred.Deferred<void>, open: Deferred.succeed(gate, undefined) }
      }),
      holdRevocations: Effect.gen(function*() {
        revocationGate = yield* Deferred.make<void>()
        revocationStarted = yield* Deferred.make<void>()
        return {
          started: revocationStarted as Deferred.Deferred<void>,
          open: Deferred.succeed(revocationGate, undefined)
        }
      })
    }
  })

export const make = makeWith()

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
      clientAuth: ClientAuth.clientSecretBasic({ clientId, clientSecret: Redacted.make("s3cr3t") }),
      ...options
    }).pipe(
      Effect.provideService(UserTokenStore.UserTokenStore, store),
      Effect.provideService(HttpClient.HttpClient, fake.client)
    )
    return { sessions: made, store }
  })
