/**
 * A programmable OAuth 2.0 authorization server for tests: a real token endpoint whose answers a test scripts.
 *
 * It issues RS256 JWT access tokens (RFC 9068 shape: `iss`, `aud`, `sub`, `client_id`, `scope`, `jti`, `iat`,
 * `exp`) for the `client_credentials` and `refresh_token` grants, authenticates clients with
 * `client_secret_basic` or `client_secret_post`, rotates refresh tokens, counts requests, and answers with any
 * scripted `Fault` instead when told to. Token times come from the Effect `Clock`, so under `TestClock` tokens
 * expire on test time.
 *
 * Two ways to run it, same behaviour:
 * - {@link makeInProcess}: no socket; talk to it through its `client` (an `HttpClient`). Use it under `TestClock`.
 * - {@link make}: a `NodeHttpServer` on 127.0.0.1, port chosen by the OS, closed with its scope.
 *
 * @since 0.1.0
 */
import type { AccessToken } from "@effect-token/core"
import { ClientAuth } from "@effect-token/core"
import type * as HttpApp from "@effect/platform/HttpApp"
import type * as HttpClient from "@effect/platform/HttpClient"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as DateTime from "effect/DateTime"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Ref from "effect/Ref"
import type * as Scope from "effect/Scope"
import { decodeJwt, errors as joseErrors, exportJWK, generateKeyPair, jwtVerify, SignJWT } from "jose"
import type * as jose from "jose"
import { randomBytes } from "node:crypto"
import * as Fault from "./Fault.js"
import * as FaultQueue from "./internal/faultQueue.js"
import * as Serve from "./internal/serve.js"
import * as TestHttpClient from "./TestHttpClient.js"

/**
 * A client the server knows.
 *
 * @example
 * ```ts
 * import { TestAuthorizationServer } from "@effect-token/testing"
 * import { Redacted } from "effect"
 *
 * const billing: TestAuthorizationServer.Client = {
 *   clientId: "billing",
 *   clientSecret: Redacted.make("s3cr3t"),
 *   authMethods: ["client_secret_post"],
 *   scopes: ["invoices:read"]
 * }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Client {
  readonly clientId: string
  /** The client's secret; leave it out for a public client, which sends only `client_id` (method `none`). */
  readonly clientSecret?: Redacted.Redacted<string> | undefined
  /** How the client may authenticate. Default: both `client_secret_basic` and `client_secret_post`. */
  readonly authMethods?: ReadonlyArray<"client_secret_basic" | "client_secret_post"> | undefined
  /**
   * Scopes the client may request; asking for another gives `invalid_scope`. Also the granted scope when a request
   * names none. Default: any scope.
   */
  readonly scopes?: ReadonlyArray<string> | undefined
}

/**
 * The client every server knows unless told otherwise: `test-client` / `test-secret`, any scope.
 *
 * @example
 * ```ts
 * import { TestAuthorizationServer } from "@effect-token/testing"
 *
 * const clients = [{ ...TestAuthorizationServer.defaultClient, scopes: ["orders:read"] }]
 * ```
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultClient: Client = { clientId: "test-client", clientSecret: Redacted.make("test-secret") }

/**
 * @example
 * ```ts
 * import { TestAuthorizationServer } from "@effect-token/testing"
 *
 * const options: TestAuthorizationServer.Options = { tokenLifetime: "30 seconds", includeExpiresIn: false }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Default `[defaultClient]`. */
  readonly clients?: ReadonlyArray<Client> | undefined
  /** The `aud` of every access token. Default `"urn:effect-token:test-api"`. */
  readonly audience?: string | undefined
  /**
   * Access token lifetime. Default 5 minutes. Sent as whole seconds (`expires_in` is an integer), at least 1.
   */
  readonly tokenLifetime?: Duration.DurationInput | undefined
  /** Whether responses carry `expires_in`; without it clients must read the JWT `exp`. Default `true`. */
  readonly includeExpiresIn?: boolean | undefined
  /** Whether a refresh grant returns a new refresh token and retires the old one. Default `true`. */
  readonly rotateRefreshTokens?: boolean | undefined
  /**
   * The RS256 key to sign with. Default: one generated for this server. Generating a key takes a few hundred
   * milliseconds, so a property test that builds a server per run shares one from {@link generateSigningKey}.
   */
  readonly signingKey?: SigningKey | undefined
}

/**
 * An RS256 key pair; the private half stays redacted.
 *
 * @since 0.1.0
 * @category models
 */
export interface SigningKey {
  readonly kid: string
  readonly privateKey: Redacted.Redacted<jose.CryptoKey>
  readonly publicKey: jose.CryptoKey
  readonly publicJwk: jose.JWK
}

/**
 * Generates a signing key, to share between servers.
 *
 * @example
 * ```ts
 * import { TestAuthorizationServer } from "@effect-token/testing"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const signingKey = yield* TestAuthorizationServer.generateSigningKey
 *   const as = yield* TestAuthorizationServer.makeInProcess({ signingKey })
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const generateSigningKey: Effect.Effect<SigningKey> = Effect.gen(function*() {
  const { privateKey, publicKey } = yield* Effect.promise(() => generateKeyPair("RS256"))
  const kid = `test-key-${randomBytes(6).toString("base64url")}`
  const publicJwk: jose.JWK = { ...(yield* Effect.promise(() => exportJWK(publicKey))), kid, alg: "RS256", use: "sig" }
  return { kid, privateKey: Redacted.make(privateKey), publicKey, publicJwk }
})

/**
 * The in-process variant also chooses its origin, since no socket gives it one.
 *
 * @since 0.1.0
 * @category models
 */
export interface InProcessOptions extends Options {
  /** Default `"https://auth.test"`. */
  readonly issuer?: string | undefined
}

/**
 * What the server knows of a token it issued.
 *
 * @since 0.1.0
 * @category models
 */
export interface IssuedToken {
  readonly jti: string
  /** 1 for the first token this server issued, then 2, 3, ... */
  readonly sequence: number
  readonly value: Redacted.Redacted<string>
  readonly clientId: string
  readonly grantType: string
  readonly scope: Option.Option<string>
  readonly issuedAt: DateTime.Utc
  /** The JWT `exp`: the first instant the token is no longer valid. */
  readonly expiresAt: DateTime.Utc
  readonly refreshToken: Option.Option<Redacted.Redacted<string>>
}

/**
 * The claims of a verified access token.
 *
 * @since 0.1.0
 * @category models
 */
export interface Claims {
  readonly iss: string
  readonly sub: string
  readonly aud: string
  readonly client_id: string
  readonly jti: string
  readonly iat: number
  readonly exp: number
  readonly scope?: string | undefined
}

/**
 * Why a token does not verify. `description` is safe to send in a `WWW-Authenticate` header.
 *
 * @example
 * ```ts
 * import { TestAuthorizationServer } from "@effect-token/testing"
 * import { Effect } from "effect"
 *
 * declare const as: TestAuthorizationServer.TestAuthorizationServer
 * const expired = as.verify("eyJ...").pipe(
 *   Effect.catchTag("InvalidToken", (e) => Effect.succeed(e.reason === "Expired"))
 * )
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidToken extends Data.TaggedError("InvalidToken")<{
  readonly reason: "Malformed" | "Signature" | "Expired" | "Issuer" | "Audience" | "Revoked" | "Unknown"
  readonly description: string
}> {
  /**
   * @since 0.1.0
   */
  override get message(): string {
    return `${this.reason}: ${this.description}`
  }
}

/**
 * A token, its raw value, or (for {@link TestAuthorizationServer.revoke}) its `jti`.
 *
 * @since 0.1.0
 * @category models
 */
export type TokenLike = string | Redacted.Redacted<string> | AccessToken.AccessToken

/**
 * @example
 * ```ts
 * import { TestAuthorizationServer } from "@effect-token/testing"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const as = yield* TestAuthorizationServer.makeInProcess()
 *   yield* as.setTokenLifetime("10 seconds")
 *   const requests = yield* as.requests // { client_credentials: 0 }
 * })
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface TestAuthorizationServer extends TestHttpClient.Mountable {
  /** `scheme://host:port`, the `iss` of every token. */
  readonly issuer: string
  readonly tokenUrl: string
  readonly jwksUrl: string
  readonly discoveryUrl: string
  readonly audience: string
  /** The public signing key, as served at `jwksUrl`. */
  readonly jwks: jose.JSONWebKeySet
  readonly clients: ReadonlyArray<Client>
  /** The request handler; mount it anywhere (see `TestHttpClient`). */
  readonly app: HttpApp.Default
  /** An in-process `HttpClient` that answers requests to `issuer` from `app`, without a socket. */
  readonly client: HttpClient.HttpClient
  /**
   * `ClientAuth` for a configured client: the first one, with `client_secret_basic`, unless told otherwise. A
   * public client gets `none`. Throws for a client id the server was not given: that is a bug in the test.
   */
  readonly clientAuth: (options?: {
    readonly clientId?: string | undefined
    readonly method?: "client_secret_basic" | "client_secret_post" | "none" | undefined
  }) => ClientAuth.ClientAuth
  /** Answers the next `times` (default 1) token requests with `fault`, after any faults already queued. */
  readonly failNext: (fault: Fault.Fault, times?: number) => Effect.Effect<void>
  /** Drops faults not yet served. */
  readonly clearFaults: Effect.Effect<void>
  /** Sets the lifetime of tokens issued from now on. */
  readonly setTokenLifetime: (lifetime: Duration.DurationInput) => Effect.Effect<void>
  /** Issues the next `times` (default 1) tokens with `lifetime`, then goes back to the server's lifetime. */
  readonly nextTokenLifetime: (lifetime: Duration.DurationInput, times?: number) => Effect.Effect<void>
  /** Token endpoint requests received, by `grant_type` (`"unknown"` when absent), faulted ones included. */
  readonly requests: Effect.Effect<Readonly<Record<string, number>>>
  /** Every access token issued, oldest first. */
  readonly issuedTokens: Effect.Effect<ReadonlyArray<IssuedToken>>
  readonly lookup: (jti: string) => Effect.Effect<Option.Option<IssuedToken>>
  /**
   * A refresh token for a client, as if its user had just signed in (the authorization code flow is out of
   * scope here). Default: the first client, the client's scopes.
   */
  readonly issueRefreshToken: (options?: {
    readonly clientId?: string | undefined
    readonly scope?: string | undefined
  }) => Effect.Effect<Redacted.Redacted<string>>
  /** Makes a refresh token unusable: the next refresh with it gives `invalid_grant`. */
  readonly revokeRefreshToken: (refreshToken: string | Redacted.Redacted<string>) => Effect.Effect<void>
  /** Revokes an access token, given as itself or as its `jti`. */
  readonly revoke: (tokenOrJti: TokenLike) => Effect.Effect<void>
  readonly isRevoked: (tokenOrJti: TokenLike) => Effect.Effect<boolean>
  /**
   * Verifies an access token as a resource server would: signature, issuer, `exp` against the Effect `Clock`,
   * audience (the server's unless given), revocation.
   */
  readonly verify: (
    token: string | Redacted.Redacted<string> | AccessToken.AccessToken,
    options?: { readonly audience?: string | undefined }
  ) => Effect.Effect<Claims, InvalidToken>
}

/**
 * @example
 * ```ts
 * import { TestAuthorizationServer } from "@effect-token/testing"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const as = yield* TestAuthorizationServer.TestAuthorizationServer
 *   return as.tokenUrl
 * }).pipe(Effect.provide(TestAuthorizationServer.layerInProcess()))
 * ```
 *
 * @since 0.1.0
 * @category tags
 */
export const TestAuthorizationServer: Context.Tag<TestAuthorizationServer, TestAuthorizationServer> = Context
  .GenericTag<TestAuthorizationServer>("@effect-token/testing/TestAuthorizationServer")

/**
 * Starts the server on 127.0.0.1, on a port chosen by the OS; it stops when the scope closes. Requests are served
 * on fibers of that scope, so tokens follow the clock the scope was opened with.
 *
 * @example
 * ```ts
 * import { ClientCredentials } from "@effect-token/core"
 * import { TestAuthorizationServer } from "@effect-token/testing"
 * import { NodeHttpClient } from "@effect/platform-node"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const as = yield* TestAuthorizationServer.make()
 *   const source = yield* ClientCredentials.make({ tokenUrl: as.tokenUrl, clientAuth: as.clientAuth() })
 *   return yield* source.fetch
 * }).pipe(Effect.scoped, Effect.provide(NodeHttpClient.layerUndici))
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options = {}): Effect.Effect<TestAuthorizationServer, never, Scope.Scope> =>
  Serve.onLoopback((origin) => build(options, origin))

/**
 * The same server without a socket: reach it through its `client`, or mount its `app` with `TestHttpClient`.
 * Everything, token times and `Slow` faults included, runs on the caller's fibers and clock.
 *
 * @example
 * ```ts
 * import { TokenEndpoint } from "@effect-token/core"
 * import { TestAuthorizationServer } from "@effect-token/testing"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const as = yield* TestAuthorizationServer.makeInProcess({ tokenLifetime: "1 minute" })
 *   const endpoint = TokenEndpoint.makeWith(as.client, { tokenUrl: as.tokenUrl, clientAuth: as.clientAuth() })
 *   return yield* endpoint.request({ grant_type: "client_credentials" })
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeInProcess = (options: InProcessOptions = {}): Effect.Effect<TestAuthorizationServer> =>
  build(options, new URL(options.issuer ?? "https://auth.test").origin)

/**
 * Provides a socket-bound server ({@link make}).
 *
 * @example
 * ```ts
 * import { TestAuthorizationServer } from "@effect-token/testing"
 *
 * const AuthServerTest = TestAuthorizationServer.layer({ tokenLifetime: "30 seconds" })
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<TestAuthorizationServer> =>
  Layer.scoped(TestAuthorizationServer, make(options))

/**
 * Provides an in-process server ({@link makeInProcess}).
 *
 * @example
 * ```ts
 * import { TestAuthorizationServer } from "@effect-token/testing"
 *
 * const AuthServerTest = TestAuthorizationServer.layerInProcess()
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerInProcess = (options: InProcessOptions = {}): Layer.Layer<TestAuthorizationServer> =>
  Layer.effect(TestAuthorizationServer, makeInProcess(options))

/**
 * Provides the in-process `HttpClient` of the server in context, so code under test that reads `HttpClient`
 * talks to it.
 *
 * @example
 * ```ts
 * import { TestAuthorizationServer } from "@effect-token/testing"
 * import { Layer } from "effect"
 *
 * const TestLive = TestAuthorizationServer.layerClient.pipe(
 *   Layer.provideMerge(TestAuthorizationServer.layerInProcess())
 * )
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerClient: Layer.Layer<HttpClient.HttpClient, never, TestAuthorizationServer> = Layer.unwrapEffect(
  Effect.map(TestAuthorizationServer, (self) => TestHttpClient.layer(self))
)

/**
 * The `jti` of a JWT, or the string itself when it is not a JWT (then it is taken to be a `jti`).
 *
 * @example
 * ```ts
 * import { TestAuthorizationServer } from "@effect-token/testing"
 *
 * TestAuthorizationServer.jtiOf("at-7") // "at-7"
 * ```
 *
 * @since 0.1.0
 * @category accessors
 */
export const jtiOf = (token: TokenLike): string => {
  const raw = rawValue(token)
  try {
    const jti = decodeJwt(raw).jti
    return typeof jti === "string" ? jti : raw
  } catch {
    return raw
  }
}

const rawValue = (token: TokenLike): string =>
  typeof token === "string" ? token : Redacted.isRedacted(token) ? Redacted.value(token) : Redacted.value(token.value)

// ---------------------------------------------------------------------------------------------------------------

interface RefreshGrant {
  readonly clientId: string
  readonly scope: Option.Option<string>
  readonly state: "active" | "rotated" | "revoked"
}

interface State {
  readonly requests: Readonly<Record<string, number>>
  readonly issued: ReadonlyArray<IssuedToken>
  readonly lifetime: Duration.Duration
  readonly nextLifetimes: ReadonlyArray<Duration.Duration>
  readonly revoked: ReadonlySet<string>
  readonly refreshTokens: ReadonlyMap<string, RefreshGrant>
}

type OAuthFailure = { readonly error: string; readonly description: string; readonly status: number }

const oauthFailure = (error: string, description: string, status = 400): OAuthFailure => ({
  error,
  description,
  status
})

const build = (options: Options, issuer: string): Effect.Effect<TestAuthorizationServer> =>
  Effect.gen(function*() {
    const audience = options.audience ?? "urn:effect-token:test-api"
    const clients = options.clients ?? [defaultClient]
    if (clients.length === 0) return yield* Effect.dieMessage("TestAuthorizationServer needs at least one client")
    const includeExpiresIn = options.includeExpiresIn ?? true
    const rotate = options.rotateRefreshTokens ?? true
    const signingKey = options.signingKey ?? (yield* generateSigningKey)
    const jwks: jose.JSONWebKeySet = { keys: [signingKey.publicJwk] }
    const faults = yield* FaultQueue.make
    const state = yield* Ref.make<State>({
      requests: {},
      issued: [],
      lifetime: Duration.decode(options.tokenLifetime ?? Duration.minutes(5)),
      nextLifetimes: [],
      revoked: new Set(),
      refreshTokens: new Map()
    })
    const tokenUrl = `${issuer}/token`
    const jwksUrl = `${issuer}/jwks`
    const discoveryUrl = `${issuer}/.well-known/openid-configuration`

    const findClient = (clientId: string) => clients.find((client) => client.clientId === clientId)

    const newRefreshToken = (clientId: string, scope: Option.Option<string>) =>
      Ref.modify(state, (s): [string, State] => {
        // Unguessable like a real one, so a test that scans logs for secrets has something to find.
        const value = `rt-${randomBytes(16).toString("base64url")}`
        const refreshTokens = new Map(s.refreshTokens)
        refreshTokens.set(value, { clientId, scope, state: "active" })
        return [value, { ...s, refreshTokens }]
      })

    const issue = (client: Client, grantType: string, scope: Option.Option<string>, withRefresh: boolean) =>
      Effect.gen(function*() {
        const nowMillis = yield* Clock.currentTimeMillis
        const { lifetime, sequence } = yield* Ref.modify(state, (s) => {
          const [next, ...rest] = s.nextLifetimes
          return [
            { lifetime: next ?? s.lifetime, sequence: s.issued.length + 1 },
            { ...s, nextLifetimes: next === undefined ? s.nextLifetimes : rest }
          ]
        })
        const lifetimeSeconds = Math.max(1, Math.round(Duration.toSeconds(lifetime)))
        const iat = Math.floor(nowMillis / 1000)
        // `exp` is whole seconds; rounding it up keeps it at or after `now + expires_in`, the expiry a client
        // computes, so a client that refreshes on its own schedule is never rejected for a sub-second reason.
        const exp = Math.ceil((nowMillis + lifetimeSeconds * 1000) / 1000)
        const jti = `at-${sequence}`
        const payload: Record<string, string> = { client_id: client.clientId }
        if (Option.isSome(scope)) payload.scope = scope.value
        const value = yield* Effect.promise(() =>
          new SignJWT(payload)
            .setProtectedHeader({ alg: "RS256", kid: signingKey.kid, typ: "at+jwt" })
            .setIssuer(issuer)
            .setSubject(client.clientId)
            .setAudience(audience)
            .setJti(jti)
            .setIssuedAt(iat)
            .setExpirationTime(exp)
            .sign(Redacted.value(signingKey.privateKey))
        )
        const refreshToken = withRefresh ? Option.some(yield* newRefreshToken(client.clientId, scope)) : Option.none()
        const record: IssuedToken = {
          jti,
          sequence,
          value: Redacted.make(value),
          clientId: client.clientId,
          grantType,
          scope,
          issuedAt: DateTime.unsafeMake(nowMillis),
          expiresAt: DateTime.unsafeMake(exp * 1000),
          refreshToken: Option.map(refreshToken, Redacted.make)
        }
        yield* Ref.update(state, (s) => ({ ...s, issued: [...s.issued, record] }))
        const body: Record<string, string | number> = { access_token: value, token_type: "Bearer" }
        if (includeExpiresIn) body.expires_in = lifetimeSeconds
        if (Option.isSome(scope)) body.scope = scope.value
        if (Option.isSome(refreshToken)) body.refresh_token = refreshToken.value
        return HttpServerResponse.unsafeJson(body, { headers: noStore })
      })

    const authenticate = (
      request: HttpServerRequest.HttpServerRequest,
      form: URLSearchParams
    ): Effect.Effect<Client, OAuthFailure> => {
      const header = request.headers["authorization"]
      const basic = header !== undefined && /^basic /i.test(header) ? parseBasic(header.slice(6).trim()) : undefined
      if (header !== undefined && /^basic /i.test(header) && basic === undefined) {
        return Effect.fail(oauthFailure("invalid_client", "malformed Basic credentials", 401))
      }
      const postId = form.get("client_id")
      const postSecret = form.get("client_secret")
      if (basic !== undefined && postSecret !== null) {
        // RFC 6749 §2.3: a client must not use more than one authentication method per request.
        return Effect.fail(oauthFailure("invalid_request", "more than one client authentication method"))
      }
      const attempt = basic !== undefined
        ? { method: "client_secret_basic" as const, clientId: basic.clientId, secret: basic.secret }
        : postSecret !== null && postId !== null
        ? { method: "client_secret_post" as const, clientId: postId, secret: postSecret }
        : postId !== null
        ? { method: "none" as const, clientId: postId, secret: undefined }
        : undefined
      if (attempt === undefined) return Effect.fail(oauthFailure("invalid_client", "no client authentication", 401))
      if (basic !== undefined && postId !== null && postId !== basic.clientId) {
        return Effect.fail(oauthFailure("invalid_request", "client_id does not match the Basic credentials"))
      }
      const client = findClient(attempt.clientId)
      const failed = oauthFailure("invalid_client", "client authentication failed", 401)
      if (client === undefined) return Effect.fail(failed)
      if (client.clientSecret === undefined) {
        return attempt.method === "none" ? Effect.succeed(client) : Effect.fail(failed)
      }
      const allowed = client.authMethods ?? ["client_secret_basic", "client_secret_post"]
      if (attempt.method === "none" || !allowed.includes(attempt.method)) return Effect.fail(failed)
      return attempt.secret === Redacted.value(client.clientSecret) ? Effect.succeed(client) : Effect.fail(failed)
    }

    const grantScope = (
      client: Client,
      requested: string | null
    ): Effect.Effect<Option.Option<string>, OAuthFailure> => {
      if (requested === null || requested.trim() === "") {
        return Effect.succeed(
          client.scopes === undefined || client.scopes.length === 0
            ? Option.none()
            : Option.some(client.scopes.join(" "))
        )
      }
      const scopes = requested.trim().split(/\s+/)
      const allowed = client.scopes
      if (allowed !== undefined && !scopes.every((scope) => allowed.includes(scope))) {
        return Effect.fail(oauthFailure("invalid_scope", "the requested scope is not allowed for this client"))
      }
      return Effect.succeed(Option.some(scopes.join(" ")))
    }

    const clientCredentials = (client: Client, form: URLSearchParams) =>
      Effect.gen(function*() {
        if (client.clientSecret === undefined) {
          return yield* Effect.fail(oauthFailure("unauthorized_client", "public clients cannot use this grant"))
        }
        const scope = yield* grantScope(client, form.get("scope"))
        return yield* issue(client, "client_credentials", scope, false)
      })

    const refresh = (client: Client, form: URLSearchParams) =>
      Effect.gen(function*() {
        const presented = form.get("refresh_token")
        if (presented === null) return yield* Effect.fail(oauthFailure("invalid_request", "missing refresh_token"))
        const s = yield* Ref.get(state)
        const grant = s.refreshTokens.get(presented)
        if (grant === undefined || grant.clientId !== client.clientId || grant.state !== "active") {
          return yield* Effect.fail(
            oauthFailure("invalid_grant", "the refresh token is invalid, revoked, or was already used")
          )
        }
        const requested = form.get("scope")
        let scope = grant.scope
        if (requested !== null && requested.trim() !== "") {
          const original = new Set(Option.getOrElse(grant.scope, () => "").split(" "))
          const scopes = requested.trim().split(/\s+/)
          // RFC 6749 §6: a refresh may narrow the scope, never widen it.
          if (!scopes.every((scopeItem) => original.has(scopeItem))) {
            return yield* Effect.fail(oauthFailure("invalid_scope", "the scope exceeds the original grant"))
          }
          scope = Option.some(scopes.join(" "))
        }
        if (rotate) {
          yield* Ref.update(state, (s) => {
            const refreshTokens = new Map(s.refreshTokens)
            refreshTokens.set(presented, { ...grant, state: "rotated" })
            return { ...s, refreshTokens }
          })
        }
        return yield* issue(client, "refresh_token", scope, rotate)
      })

    const tokenEndpoint = (request: HttpServerRequest.HttpServerRequest) =>
      Effect.gen(function*() {
        const text = yield* Effect.orElseSucceed(request.text, () => "")
        const form = new URLSearchParams(text)
        const grantType = form.get("grant_type") ?? "unknown"
        yield* Ref.update(state, (s) => ({
          ...s,
          requests: { ...s.requests, [grantType]: (s.requests[grantType] ?? 0) + 1 }
        }))
        const fault = yield* faults.take
        if (Option.isSome(fault)) {
          const answer = yield* Fault.toResponse(fault.value)
          if (Option.isSome(answer)) return answer.value
        }
        const contentType = request.headers["content-type"] ?? ""
        const handled = Effect.gen(function*() {
          if (!contentType.toLowerCase().startsWith("application/x-www-form-urlencoded")) {
            return yield* Effect.fail(oauthFailure("invalid_request", "expected a form-encoded body"))
          }
          const client = yield* authenticate(request, form)
          switch (grantType) {
            case "client_credentials":
              return yield* clientCredentials(client, form)
            case "refresh_token":
              return yield* refresh(client, form)
            case "unknown":
              return yield* Effect.fail(oauthFailure("invalid_request", "missing grant_type"))
            default:
              return yield* Effect.fail(oauthFailure("unsupported_grant_type", "this server does not support it"))
          }
        })
        return yield* Effect.catchAll(handled, (failure) => {
          const headers: Record<string, string> = { ...noStore }
          // RFC 6749 §5.2: a 401 for a client that tried Basic must say which scheme to use.
          if (failure.status === 401 && request.headers["authorization"] !== undefined) {
            headers["www-authenticate"] = `Basic realm="${issuer}"`
          }
          return Effect.succeed(
            HttpServerResponse.unsafeJson({ error: failure.error, error_description: failure.description }, {
              status: failure.status,
              headers
            })
          )
        })
      })

    const metadata = {
      issuer,
      token_endpoint: tokenUrl,
      jwks_uri: jwksUrl,
      grant_types_supported: ["client_credentials", "refresh_token"],
      token_endpoint_auth_methods_supported: ["client_secret_basic", "client_secret_post", "none"],
      response_types_supported: [],
      scopes_supported: [...new Set(clients.flatMap((client) => client.scopes ?? []))]
    }

    const app: HttpApp.Default = Effect.gen(function*() {
      const request = yield* HttpServerRequest.HttpServerRequest
      const path = request.url.split("?")[0]
      switch (path) {
        case "/token":
          return request.method === "POST"
            ? yield* tokenEndpoint(request)
            : methodNotAllowed("POST")
        case "/jwks":
          return HttpServerResponse.unsafeJson(jwks)
        case "/.well-known/openid-configuration":
        case "/.well-known/oauth-authorization-server":
          return HttpServerResponse.unsafeJson(metadata)
        default:
          return HttpServerResponse.unsafeJson({ error: "not_found" }, { status: 404 })
      }
    })

    const verify = (
      token: string | Redacted.Redacted<string> | AccessToken.AccessToken,
      verifyOptions?: { readonly audience?: string | undefined }
    ): Effect.Effect<Claims, InvalidToken> =>
      Effect.gen(function*() {
        const nowMillis = yield* Clock.currentTimeMillis
        const result = yield* Effect.tryPromise({
          try: () =>
            jwtVerify(rawValue(token), signingKey.publicKey, {
              issuer,
              audience: verifyOptions?.audience ?? audience,
              algorithms: ["RS256"],
              requiredClaims: ["jti", "exp", "iat", "client_id"],
              // jose reads the wall clock unless told the time: the Effect Clock decides here.
              currentDate: new Date(nowMillis)
            }),
          catch: toInvalidToken
        })
        const claims = result.payload as unknown as Claims
        const revoked = yield* Effect.map(Ref.get(state), (s) => s.revoked.has(claims.jti))
        if (revoked) return yield* new InvalidToken({ reason: "Revoked", description: "the access token was revoked" })
        return claims
      })

    const self: TestAuthorizationServer = {
      issuer,
      origin: issuer,
      tokenUrl,
      jwksUrl,
      discoveryUrl,
      audience,
      jwks,
      clients,
      app,
      client: TestHttpClient.make({ origin: issuer, app }),
      clientAuth: (authOptions) => {
        const client = authOptions?.clientId === undefined ? clients[0]! : findClient(authOptions.clientId)
        if (client === undefined) throw new Error(`no client ${authOptions?.clientId} on this server`)
        if (client.clientSecret === undefined || authOptions?.method === "none") {
          return ClientAuth.none({ clientId: client.clientId })
        }
        const credentials = { clientId: client.clientId, clientSecret: client.clientSecret }
        return authOptions?.method === "client_secret_post"
          ? ClientAuth.clientSecretPost(credentials)
          : ClientAuth.clientSecretBasic(credentials)
      },
      failNext: (fault, times) => faults.push(fault, times),
      clearFaults: faults.clear,
      setTokenLifetime: (lifetime) => Ref.update(state, (s) => ({ ...s, lifetime: Duration.decode(lifetime) })),
      nextTokenLifetime: (lifetime, times = 1) =>
        Ref.update(state, (s) => ({
          ...s,
          nextLifetimes: [...s.nextLifetimes, ...Array.from({ length: times }, () => Duration.decode(lifetime))]
        })),
      requests: Effect.map(Ref.get(state), (s) => s.requests),
      issuedTokens: Effect.map(Ref.get(state), (s) => s.issued),
      lookup: (jti) => Effect.map(Ref.get(state), (s) => Option.fromNullable(s.issued.find((t) => t.jti === jti))),
      issueRefreshToken: (refreshOptions) => {
        const client = refreshOptions?.clientId === undefined ? clients[0]! : findClient(refreshOptions.clientId)
        if (client === undefined) return Effect.dieMessage(`no client ${refreshOptions?.clientId} on this server`)
        const scope = refreshOptions?.scope !== undefined
          ? Option.some(refreshOptions.scope)
          : client.scopes === undefined || client.scopes.length === 0
          ? Option.none()
          : Option.some(client.scopes.join(" "))
        return Effect.map(newRefreshToken(client.clientId, scope), Redacted.make)
      },
      revokeRefreshToken: (refreshToken) =>
        Ref.update(state, (s) => {
          const value = Redacted.isRedacted(refreshToken) ? Redacted.value(refreshToken) : refreshToken
          const grant = s.refreshTokens.get(value)
          if (grant === undefined) return s
          const refreshTokens = new Map(s.refreshTokens)
          refreshTokens.set(value, { ...grant, state: "revoked" })
          return { ...s, refreshTokens }
        }),
      revoke: (tokenOrJti) => Ref.update(state, (s) => ({ ...s, revoked: new Set([...s.revoked, jtiOf(tokenOrJti)]) })),
      isRevoked: (tokenOrJti) => Effect.map(Ref.get(state), (s) => s.revoked.has(jtiOf(tokenOrJti))),
      verify
    }
    return self
  })

/** RFC 6749 §5.1: token responses must not be cached by intermediaries. */
const noStore = { "cache-control": "no-store", pragma: "no-cache" }

const methodNotAllowed = (allow: string) =>
  HttpServerResponse.unsafeJson({ error: "method_not_allowed" }, { status: 405, headers: { allow } })

/** RFC 6749 §2.3.1: id and secret are form-encoded before Base64, so they are decoded after it. */
const parseBasic = (encoded: string): { readonly clientId: string; readonly secret: string } | undefined => {
  const decoded = Buffer.from(encoded, "base64").toString("utf8")
  const colon = decoded.indexOf(":")
  if (colon < 0) return undefined
  try {
    const formDecode = (s: string) => decodeURIComponent(s.replace(/\+/g, " "))
    return { clientId: formDecode(decoded.slice(0, colon)), secret: formDecode(decoded.slice(colon + 1)) }
  } catch {
    return undefined
  }
}

const toInvalidToken = (cause: unknown): InvalidToken => {
  if (cause instanceof joseErrors.JWTExpired) {
    return new InvalidToken({ reason: "Expired", description: "the access token expired" })
  }
  if (cause instanceof joseErrors.JWTClaimValidationFailed) {
    switch (cause.claim) {
      case "iss":
        return new InvalidToken({ reason: "Issuer", description: "the access token has another issuer" })
      case "aud":
        return new InvalidToken({ reason: "Audience", description: "the access token is for another audience" })
      default:
        return new InvalidToken({ reason: "Malformed", description: `invalid claim ${cause.claim}` })
    }
  }
  if (cause instanceof joseErrors.JWSSignatureVerificationFailed) {
    return new InvalidToken({ reason: "Signature", description: "the signature does not verify" })
  }
  if (cause instanceof joseErrors.JOSEError) {
    return new InvalidToken({ reason: "Malformed", description: "the access token is not a valid JWT" })
  }
  return new InvalidToken({ reason: "Unknown", description: "the access token cannot be verified" })
}
