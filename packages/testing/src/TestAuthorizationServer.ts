/**
 * A programmable OAuth 2.0 authorization server for tests: a real token endpoint whose answers a test scripts.
 *
 * It issues RS256 JWT access tokens (RFC 9068 shape: `iss`, `aud`, `sub`, `client_id`, `scope`, `jti`, `iat`,
 * `exp`) for the `client_credentials`, `authorization_code` (PKCE S256 checked; an OpenID Connect ID token when
 * `openid` is asked) and `refresh_token` grants, authenticates clients with `client_secret_basic` or
 * `client_secret_post`, rotates refresh tokens, counts requests, answers with any scripted `Fault` instead when
 * told to, and holds a request mid-flight until the test lets it go. Token times come from the Effect `Clock`, so
 * under `TestClock` tokens expire on test time.
 *
 * Two ways to run it, same behaviour:
 * - {@link makeInProcess}: no socket; talk to it through its `client` (an `HttpClient`). Use it under `TestClock`.
 * - {@link make}: a `NodeHttpServer` on 127.0.0.1, port chosen by the OS, closed with its scope.
 *
 * @since 0.1.0
 */
import type { AccessToken, ClientAuth } from "@effect-token/core"
import type * as HttpApp from "@effect/platform/HttpApp"
import type * as HttpClient from "@effect/platform/HttpClient"
import * as Context from "effect/Context"
import type * as DateTime from "effect/DateTime"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Ref from "effect/Ref"
import type * as Scope from "effect/Scope"
import type * as jose from "jose"
import type * as Fault from "./Fault.js"
import * as App from "./internal/authorizationServer/app.js"
import * as Authorize from "./internal/authorizationServer/authorize.js"
import * as ClientAuthentication from "./internal/authorizationServer/clientAuthentication.js"
import * as Grants from "./internal/authorizationServer/grants.js"
import * as ServerState from "./internal/authorizationServer/state.js"
import * as TokenEndpoint from "./internal/authorizationServer/tokenEndpoint.js"
import * as Tokens from "./internal/authorizationServer/tokens.js"
import * as Verification from "./internal/authorizationServer/verification.js"
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
export const generateSigningKey: Effect.Effect<SigningKey> = Tokens.generateSigningKey

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
export const InvalidToken: typeof Verification.InvalidToken = Verification.InvalidToken

/**
 * @example
 * ```ts
 * import { TestAuthorizationServer } from "@effect-token/testing"
 *
 * const revoked: TestAuthorizationServer.InvalidToken = new TestAuthorizationServer.InvalidToken({
 *   reason: "Revoked",
 *   description: "the access token was revoked"
 * })
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export type InvalidToken = Verification.InvalidToken

/**
 * A token request held mid-flight (see {@link TestAuthorizationServer.holdNext}): it has been counted and waits,
 * unanswered, until released. Meanwhile a test can move the `TestClock`, interrupt the caller, or stop a process.
 *
 * @example
 * ```ts
 * import { TestAuthorizationServer } from "@effect-token/testing"
 * import { Effect } from "effect"
 *
 * declare const as: TestAuthorizationServer.TestAuthorizationServer
 * declare const fetchToken: Effect.Effect<unknown>
 * const program = Effect.gen(function*() {
 *   const hold = yield* as.holdNext
 *   const fiber = yield* Effect.fork(fetchToken)
 *   yield* hold.reached // the request is at the server, unanswered
 *   yield* hold.release
 *   return yield* fiber.await
 * })
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Hold {
  /** Completes once a token request has reached the hold. */
  readonly reached: Effect.Effect<void>
  /** Lets the held request go on to its answer (or lets the next one through, if none came yet). */
  readonly release: Effect.Effect<void>
}

/**
 * Options of {@link TestAuthorizationServer.authorize}.
 *
 * @example
 * ```ts
 * import type { TestAuthorizationServer } from "@effect-token/testing"
 *
 * const as: TestAuthorizationServer.AuthorizeOptions = { subject: "alice" }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export type AuthorizeOptions = Authorize.AuthorizeOptions

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
  /** The authorization endpoint: `GET` signs the `login_hint` (or `test-user`) in at once and redirects back. */
  readonly authorizationUrl: string
  /**
   * The authorization endpoint's answer to an authorization request URL, as its login and consent pages would end:
   * the callback URL with a single-use `code`, the `state` and `iss`. It requires PKCE S256 (`code_challenge`) and
   * keeps the `nonce` for the ID token, issued when the scope has `openid`; the code grant checks the verifier,
   * the client and the `redirect_uri`. An unknown client or a missing `redirect_uri` is a defect.
   */
  readonly authorize: (url: string, options?: AuthorizeOptions) => Effect.Effect<string>
  /**
   * Holds the next token request that arrives (after those already held), counted but unanswered, until
   * `release`. Requests after it are not held.
   */
  readonly holdNext: Effect.Effect<Hold>
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
   * A refresh token for a client, as if its user had just signed in (without going through `authorize`). Default:
   * the first client, the client's scopes.
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
export const jtiOf = (token: TokenLike): string => Tokens.jtiOf(token)

/** The grants this server serves, by `grant_type`; the discovery document lists the same. */
const grantsOf = (issuing: Tokens.Issuer, state: ServerState.ServerState, rotate: boolean) => ({
  client_credentials: Grants.clientCredentials(issuing),
  authorization_code: Grants.authorizationCode({ issuing, state }),
  refresh_token: Grants.refreshToken({ issuing, state, rotate })
})

const build = (options: Options, issuer: string): Effect.Effect<TestAuthorizationServer> =>
  Effect.gen(function*() {
    const audience = options.audience ?? "urn:effect-token:test-api"
    const clients = options.clients ?? [defaultClient]
    if (clients.length === 0) return yield* Effect.dieMessage("TestAuthorizationServer needs at least one client")
    const signingKey = options.signingKey ?? (yield* generateSigningKey)
    const jwks: jose.JSONWebKeySet = { keys: [signingKey.publicJwk] }
    const faults = yield* FaultQueue.make
    const state = yield* ServerState.make(options.tokenLifetime ?? Duration.minutes(5))
    const tokenUrl = `${issuer}/token`
    const jwksUrl = `${issuer}/jwks`
    const discoveryUrl = `${issuer}/.well-known/openid-configuration`

    const issuing = Tokens.makeIssuer({
      issuer,
      audience,
      signingKey,
      includeExpiresIn: options.includeExpiresIn ?? true,
      state
    })
    const grants = grantsOf(issuing, state, options.rotateRefreshTokens ?? true)
    const authorize = Authorize.authorize({ issuer, clients, state })
    // Holds waiting for a request, oldest first; each is taken by one request.
    const holds = yield* Ref.make<ReadonlyArray<{ reached: Deferred.Deferred<void>; gate: Deferred.Deferred<void> }>>(
      []
    )
    const hold = Effect.flatMap(
      Ref.modify(holds, (queue) => [queue[0], queue.slice(1)] as const),
      (held) =>
        held === undefined
          ? Effect.void
          : Effect.zipRight(Deferred.succeed(held.reached, undefined), Deferred.await(held.gate))
    )
    const app = App.make({
      issuer,
      tokenUrl,
      jwksUrl,
      jwks,
      clients,
      grantTypes: Object.keys(grants),
      tokenEndpoint: TokenEndpoint.make({ issuer, clients, state, faults, grants, hold }),
      authorize: (url, subject) => authorize(url, { subject })
    })

    return {
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
      clientAuth: (authOptions) => ClientAuthentication.clientAuthFor(clients, authOptions),
      authorizationUrl: `${issuer}/authorize`,
      authorize: (url, authorizeOptions) =>
        Effect.orDieWith(authorize(url, authorizeOptions), (reason) => new Error(`authorize: ${reason}`)),
      holdNext: Effect.gen(function*() {
        const reached = yield* Deferred.make<void>()
        const gate = yield* Deferred.make<void>()
        yield* Ref.update(holds, (queue) => [...queue, { reached, gate }])
        return { reached: Deferred.await(reached), release: Deferred.succeed(gate, undefined).pipe(Effect.asVoid) }
      }),
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
        const client = refreshOptions?.clientId === undefined
          ? clients[0]!
          : ClientAuthentication.findClient(clients, refreshOptions.clientId)
        if (client === undefined) return Effect.dieMessage(`no client ${refreshOptions?.clientId} on this server`)
        const scope = refreshOptions?.scope !== undefined
          ? Option.some(refreshOptions.scope)
          : client.scopes === undefined || client.scopes.length === 0
          ? Option.none()
          : Option.some(client.scopes.join(" "))
        return Effect.map(issuing.newRefreshToken(client.clientId, scope), Redacted.make)
      },
      revokeRefreshToken: (refreshToken) => Verification.revokeRefreshToken(state, refreshToken),
      revoke: (tokenOrJti) => Verification.revoke(state, tokenOrJti),
      isRevoked: (tokenOrJti) => Verification.isRevoked(state, tokenOrJti),
      verify: Verification.makeVerifier({ issuer, audience, signingKey, state })
    } satisfies TestAuthorizationServer
  })
