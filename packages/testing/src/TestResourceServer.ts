/**
 * A protected API for tests: it accepts the access tokens a `TestAuthorizationServer` issued and rejects the rest
 * the way real resource servers do (RFC 6750 §3).
 *
 * Every request needs `Authorization: Bearer <token>`. The token must verify against the authorization server's
 * key, issuer and audience, be unexpired on the Effect `Clock`, not be revoked there, and not be rejected here.
 * Valid tokens get 200 JSON; invalid ones 401 with `WWW-Authenticate: Bearer error="invalid_token"`; a token
 * without the required scope 403 `insufficient_scope`. Scripted `Fault`s answer before any of that, as a
 * failing gateway would.
 *
 * Like the authorization server it runs in process ({@link makeInProcess}) or on a port ({@link make}).
 *
 * @since 0.1.0
 */
import type * as HttpApp from "@effect/platform/HttpApp"
import type * as HttpClient from "@effect/platform/HttpClient"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import type * as Scope from "effect/Scope"
import * as Fault from "./Fault.js"
import * as FaultQueue from "./internal/faultQueue.js"
import * as Serve from "./internal/serve.js"
import * as TestAuthorizationServer from "./TestAuthorizationServer.js"
import * as TestHttpClient from "./TestHttpClient.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The server whose tokens are accepted. */
  readonly authorizationServer: TestAuthorizationServer.TestAuthorizationServer
  /** The `aud` tokens must carry. Default: the authorization server's audience. */
  readonly audience?: string | undefined
  /** A scope every request needs (403 `insufficient_scope` without it). Default: none. */
  readonly requiredScope?: string | undefined
  /** The `realm` in `WWW-Authenticate`. Default `"test-api"`. */
  readonly realm?: string | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface InProcessOptions extends Options {
  /** Default `"https://api.test"`. */
  readonly origin?: string | undefined
}

/**
 * What the server has answered so far.
 *
 * @since 0.1.0
 * @category models
 */
export interface Counts {
  /** Every request, faulted ones included. */
  readonly total: number
  readonly ok: number
  readonly unauthorized: number
  readonly forbidden: number
  /** Requests answered by a scripted fault (not counting `Slow`, which goes on to a normal answer). */
  readonly faulted: number
}

/**
 * The body of a 200 answer: who called, with which token.
 *
 * @since 0.1.0
 * @category models
 */
export interface OkBody {
  readonly ok: true
  readonly method: string
  readonly path: string
  readonly clientId: string
  readonly jti: string
  readonly scope: string | null
}

/**
 * @example
 * ```ts
 * import { TestAuthorizationServer, TestResourceServer } from "@effect-token/testing"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const as = yield* TestAuthorizationServer.makeInProcess()
 *   const api = yield* TestResourceServer.makeInProcess({ authorizationServer: as, requiredScope: "orders:read" })
 *   yield* api.rejectIssuedBeforeNow
 *   const { unauthorized } = yield* api.counts
 * })
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface TestResourceServer extends TestHttpClient.Mountable {
  /** `scheme://host:port` of the API. */
  readonly url: string
  readonly authorizationServer: TestAuthorizationServer.TestAuthorizationServer
  readonly app: HttpApp.Default
  /**
   * An in-process `HttpClient` that reaches both this API and its authorization server, so one client serves
   * both the token source and the API calls of the code under test.
   */
  readonly client: HttpClient.HttpClient
  readonly counts: Effect.Effect<Counts>
  /** Answers the next `times` (default 1) requests with `fault`. */
  readonly failNext: (fault: Fault.Fault, times?: number) => Effect.Effect<void>
  readonly clearFaults: Effect.Effect<void>
  /** Rejects one token from now on (given as itself or its `jti`), as if this API had revoked it locally. */
  readonly rejectToken: (tokenOrJti: TestAuthorizationServer.TokenLike) => Effect.Effect<void>
  /**
   * Rejects every token the authorization server has issued so far; later ones are accepted. What a key
   * rotation or a "log out everywhere" looks like to a client.
   */
  readonly rejectIssuedBeforeNow: Effect.Effect<void>
  /** Changes the scope every request needs (`undefined`: none). */
  readonly requireScope: (scope: string | undefined) => Effect.Effect<void>
}

/**
 * @example
 * ```ts
 * import { TestAuthorizationServer, TestResourceServer } from "@effect-token/testing"
 * import { Effect, Layer } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const api = yield* TestResourceServer.TestResourceServer
 *   return api.url
 * }).pipe(
 *   Effect.provide(TestResourceServer.layerInProcess().pipe(Layer.provide(TestAuthorizationServer.layerInProcess())))
 * )
 * ```
 *
 * @since 0.1.0
 * @category tags
 */
export const TestResourceServer: Context.Tag<TestResourceServer, TestResourceServer> = Context.GenericTag<
  TestResourceServer
>("@effect-token/testing/TestResourceServer")

/**
 * Starts the API on 127.0.0.1, on a port chosen by the OS; it stops when the scope closes.
 *
 * @example
 * ```ts
 * import { TestAuthorizationServer, TestResourceServer } from "@effect-token/testing"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const as = yield* TestAuthorizationServer.make()
 *   const api = yield* TestResourceServer.make({ authorizationServer: as })
 *   return api.url
 * }).pipe(Effect.scoped)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<TestResourceServer, never, Scope.Scope> =>
  Serve.onLoopback((origin) => build(options, origin))

/**
 * The same API without a socket; reach it through its `client`.
 *
 * @example
 * ```ts
 * import { HttpClient } from "@effect/platform"
 * import { TestAuthorizationServer, TestResourceServer } from "@effect-token/testing"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const as = yield* TestAuthorizationServer.makeInProcess()
 *   const api = yield* TestResourceServer.makeInProcess({ authorizationServer: as })
 *   const response = yield* api.client.get(`${api.url}/orders`) // 401: no token
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeInProcess = (options: InProcessOptions): Effect.Effect<TestResourceServer> =>
  build(options, new URL(options.origin ?? "https://api.test").origin)

/**
 * Provides a socket-bound API for the `TestAuthorizationServer` in context.
 *
 * @example
 * ```ts
 * import { TestAuthorizationServer, TestResourceServer } from "@effect-token/testing"
 * import { Layer } from "effect"
 *
 * const Servers = TestResourceServer.layer().pipe(Layer.provideMerge(TestAuthorizationServer.layer()))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Omit<Options, "authorizationServer"> = {}
): Layer.Layer<TestResourceServer, never, TestAuthorizationServer.TestAuthorizationServer> =>
  Layer.scoped(
    TestResourceServer,
    Effect.flatMap(
      TestAuthorizationServer.TestAuthorizationServer,
      (authorizationServer) => make({ ...options, authorizationServer })
    )
  )

/**
 * Provides an in-process API for the `TestAuthorizationServer` in context.
 *
 * @example
 * ```ts
 * import { TestAuthorizationServer, TestResourceServer } from "@effect-token/testing"
 * import { Layer } from "effect"
 *
 * const Servers = TestResourceServer.layerInProcess().pipe(
 *   Layer.provideMerge(TestAuthorizationServer.layerInProcess())
 * )
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerInProcess = (
  options: Omit<InProcessOptions, "authorizationServer"> = {}
): Layer.Layer<TestResourceServer, never, TestAuthorizationServer.TestAuthorizationServer> =>
  Layer.effect(
    TestResourceServer,
    Effect.flatMap(
      TestAuthorizationServer.TestAuthorizationServer,
      (authorizationServer) => makeInProcess({ ...options, authorizationServer })
    )
  )

/**
 * Provides the API's in-process `HttpClient` (which also reaches its authorization server).
 *
 * @example
 * ```ts
 * import { TestAuthorizationServer, TestResourceServer } from "@effect-token/testing"
 * import { Layer } from "effect"
 *
 * const TestLive = TestResourceServer.layerClient.pipe(
 *   Layer.provideMerge(TestResourceServer.layerInProcess()),
 *   Layer.provideMerge(TestAuthorizationServer.layerInProcess())
 * )
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerClient: Layer.Layer<HttpClient.HttpClient, never, TestResourceServer> = Layer.unwrapEffect(
  Effect.map(TestResourceServer, (self) => TestHttpClient.layer(self, self.authorizationServer))
)

// ---------------------------------------------------------------------------------------------------------------

interface State {
  readonly counts: Counts
  readonly rejected: ReadonlySet<string>
  /** Tokens with a sequence number at or below this are rejected. */
  readonly rejectedUpTo: number
  readonly requiredScope: Option.Option<string>
}

type Outcome = keyof Omit<Counts, "total">

const build = (options: Options, origin: string): Effect.Effect<TestResourceServer> =>
  Effect.gen(function*() {
    const as = options.authorizationServer
    const audience = options.audience ?? as.audience
    const realm = options.realm ?? "test-api"
    const faults = yield* FaultQueue.make
    const state = yield* Ref.make<State>({
      counts: { total: 0, ok: 0, unauthorized: 0, forbidden: 0, faulted: 0 },
      rejected: new Set(),
      rejectedUpTo: 0,
      requiredScope: Option.fromNullable(options.requiredScope)
    })

    const count = (outcome: Outcome | "total") =>
      Ref.update(state, (s) => ({ ...s, counts: { ...s.counts, [outcome]: s.counts[outcome] + 1 } }))

    // RFC 6750 §3: quoted-string values; descriptions here are fixed phrases without quotes or backslashes.
    const challenge = (params: ReadonlyArray<readonly [string, string]>) =>
      `Bearer ${[["realm", realm] as const, ...params].map(([k, v]) => `${k}="${v}"`).join(", ")}`

    const unauthorized = (description: Option.Option<string>) =>
      Effect.as(
        count("unauthorized"),
        HttpServerResponse.unsafeJson(
          Option.match(description, {
            onNone: () => ({ error: "unauthorized" }),
            onSome: (d) => ({ error: "invalid_token", error_description: d })
          }),
          {
            status: 401,
            headers: {
              // RFC 6750 §3.1: a request without credentials gets a bare challenge, no error code.
              "www-authenticate": Option.match(description, {
                onNone: () => challenge([]),
                onSome: (d) => challenge([["error", "invalid_token"], ["error_description", d]])
              })
            }
          }
        )
      )

    const handle = Effect.gen(function*() {
      const request = yield* HttpServerRequest.HttpServerRequest
      yield* count("total")
      const fault = yield* faults.take
      if (Option.isSome(fault)) {
        const answer = yield* Fault.toResponse(fault.value)
        if (Option.isSome(answer)) return yield* Effect.as(count("faulted"), answer.value)
      }
      const header = request.headers["authorization"]
      const match = header === undefined ? null : /^bearer\s+(\S+)\s*$/i.exec(header)
      if (match === null) return yield* unauthorized(Option.none())
      const token = match[1]!
      const verified = yield* Effect.either(as.verify(token, { audience }))
      if (verified._tag === "Left") return yield* unauthorized(Option.some(verified.left.description))
      const claims = verified.right
      const s = yield* Ref.get(state)
      const issued = yield* as.lookup(claims.jti)
      const rejectedHere = s.rejected.has(claims.jti) ||
        Option.match(issued, { onNone: () => false, onSome: (t) => t.sequence <= s.rejectedUpTo })
      if (rejectedHere) return yield* unauthorized(Option.some("the access token was rejected by the resource server"))
      if (Option.isSome(s.requiredScope)) {
        const granted = new Set((claims.scope ?? "").split(" "))
        const needed = s.requiredScope.value.split(" ")
        if (!needed.every((scope) => granted.has(scope))) {
          return yield* Effect.as(
            count("forbidden"),
            HttpServerResponse.unsafeJson({ error: "insufficient_scope" }, {
              status: 403,
              headers: {
                "www-authenticate": challenge([
                  ["error", "insufficient_scope"],
                  ["error_description", "the access token lacks a required scope"],
                  ["scope", s.requiredScope.value]
                ])
              }
            })
          )
        }
      }
      const body: OkBody = {
        ok: true,
        method: request.method,
        path: request.url.split("?")[0] ?? "/",
        clientId: claims.client_id,
        jti: claims.jti,
        scope: claims.scope ?? null
      }
      return yield* Effect.as(count("ok"), HttpServerResponse.unsafeJson(body))
    })

    const app: HttpApp.Default = handle

    return {
      url: origin,
      origin,
      authorizationServer: as,
      app,
      client: TestHttpClient.make({ origin, app }, as),
      counts: Effect.map(Ref.get(state), (s) => s.counts),
      failNext: (fault, times) => faults.push(fault, times),
      clearFaults: faults.clear,
      rejectToken: (tokenOrJti) =>
        Ref.update(state, (s) => ({
          ...s,
          rejected: new Set([...s.rejected, TestAuthorizationServer.jtiOf(tokenOrJti)])
        })),
      rejectIssuedBeforeNow: Effect.flatMap(
        as.issuedTokens,
        (issued) => Ref.update(state, (s) => ({ ...s, rejectedUpTo: issued.length }))
      ),
      requireScope: (scope) => Ref.update(state, (s) => ({ ...s, requiredScope: Option.fromNullable(scope) }))
    } satisfies TestResourceServer
  })
