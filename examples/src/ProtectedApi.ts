/**
 * The demo's resource server: a small invoices API on `@effect/platform`'s HttpServer that accepts only JWT access
 * tokens from the authorization server, for its audience, with the scope each route needs (RFC 6750, RFC 9068).
 *
 * It has hooks to make it misbehave the way real APIs do (a token revoked before it expires), for stories that
 * show how a client recovers.
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as HttpRouter from "@effect/platform/HttpRouter"
import type * as HttpServerError from "@effect/platform/HttpServerError"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { Data, Effect, HashSet, Ref } from "effect"
import type { Scope } from "effect"
import { createRemoteJWKSet, jwtVerify } from "jose"
import type { JWTPayload } from "jose"
import * as Http from "node:http"

export interface Options {
  /** The authorization server's issuer; tokens from anyone else are rejected. */
  readonly issuer: string
  /** Where the authorization server publishes its signing keys. */
  readonly jwksUrl: string
  /** The audience the API accepts (`aud` claim). */
  readonly audience: string
}

export interface Stats {
  readonly requests: number
  /** Answers by status code, e.g. `{ 200: 3, 401: 1 }`. */
  readonly byStatus: Readonly<Record<number, number>>
  /** The `jti` of every token the API accepted, in order. */
  readonly acceptedTokens: ReadonlyArray<string>
}

export interface ProtectedApi {
  /** Base URL, e.g. `http://127.0.0.1:51234`. */
  readonly url: string
  /** From now on, answer `401 invalid_token` to the token with this `jti`, as if it had been revoked. */
  readonly rejectToken: (jti: string) => Effect.Effect<void>
  /** Rejects every token the API has accepted so far (the next call with any of them gets a 401). Returns how many. */
  readonly rejectAcceptedTokens: Effect.Effect<number>
  readonly stats: Effect.Effect<Stats>
}

export interface Invoice {
  readonly id: string
  readonly customer: string
  readonly amount: number
  readonly currency: string
}

const invoices: ReadonlyArray<Invoice> = [
  { id: "INV-1001", customer: "Acme Corp", amount: 1250, currency: "EUR" },
  { id: "INV-1002", customer: "Globex", amount: 980.5, currency: "EUR" }
]

const realm = "invoices"

/** A request without a usable token (RFC 6750 §3.1). `error` is left out when no token was sent at all. */
class Unauthorized extends Data.TaggedError("Unauthorized")<{
  readonly error: "invalid_token" | "invalid_request" | undefined
  readonly description: string
}> {}

/** A valid token without the scope the route needs (RFC 6750 §3.1 `insufficient_scope`). */
class Forbidden extends Data.TaggedError("Forbidden")<{ readonly scope: string }> {}

const challenge = (params: Record<string, string | undefined>) =>
  "Bearer " + Object.entries({ realm, ...params })
    .filter(([, value]) => value !== undefined)
    .map(([key, value]) => `${key}="${value}"`)
    .join(", ")

const bearerToken = /^Bearer +([A-Za-z0-9\-._~+/]+=*)$/i

/**
 * Starts the API on 127.0.0.1 with a port chosen by the OS; it stops when the scope closes.
 *
 * Routes: `GET /invoices` needs `api:read`, `POST /invoices` needs `api:write`.
 */
export const make = (options: Options): Effect.Effect<ProtectedApi, HttpServerError.ServeError, Scope.Scope> =>
  Effect.gen(function*() {
    // Fetched on first use and cached by jose; refetched when a token names an unknown key.
    const jwks = createRemoteJWKSet(new URL(options.jwksUrl))
    const rejected = yield* Ref.make(HashSet.empty<string>())
    const stats = yield* Ref.make<Stats>({ requests: 0, byStatus: {}, acceptedTokens: [] })

    const authorize = (
      scope: string
    ): Effect.Effect<JWTPayload, Unauthorized | Forbidden, HttpServerRequest.HttpServerRequest> =>
      Effect.gen(function*() {
        const request = yield* HttpServerRequest.HttpServerRequest
        const authorization = request.headers["authorization"]
        if (authorization === undefined) {
          return yield* new Unauthorized({ error: undefined, description: "a bearer token is required" })
        }
        const token = bearerToken.exec(authorization)?.[1]
        if (token === undefined) {
          return yield* new Unauthorized({ error: "invalid_request", description: "malformed Authorization header" })
        }
        const { payload } = yield* Effect.tryPromise({
          try: () =>
            jwtVerify(token, jwks, {
              issuer: options.issuer,
              audience: options.audience,
              typ: "at+jwt",
              algorithms: ["RS256"]
            }),
          // jose's error codes (ERR_JWT_EXPIRED, ERR_JWS_SIGNATURE_VERIFICATION_FAILED, ...) never quote the token.
          catch: (error) =>
            new Unauthorized({
              error: "invalid_token",
              description: (error as { code?: string }).code ?? "the token could not be verified"
            })
        })
        if (payload.jti !== undefined && HashSet.has(yield* Ref.get(rejected), payload.jti)) {
          return yield* new Unauthorized({ error: "invalid_token", description: "the token was revoked" })
        }
        const granted = typeof payload.scope === "string" ? payload.scope.split(" ") : []
        if (!granted.includes(scope)) return yield* new Forbidden({ scope })
        if (payload.jti !== undefined) {
          const jti = payload.jti
          yield* Ref.update(stats, (s) => ({ ...s, acceptedTokens: [...s.acceptedTokens, jti] }))
        }
        return payload
      })

    const router = HttpRouter.empty.pipe(
      HttpRouter.get(
        "/invoices",
        Effect.zipRight(authorize("api:read"), HttpServerResponse.json(invoices))
      ),
      HttpRouter.post(
        "/invoices",
        Effect.zipRight(authorize("api:write"), HttpServerResponse.json({ created: true }, { status: 201 }))
      ),
      HttpRouter.catchTags({
        Unauthorized: (e) =>
          HttpServerResponse.json({ error: e.error ?? "unauthorized", error_description: e.description }, {
            status: 401,
            headers: {
              "www-authenticate": challenge(
                e.error === undefined ? {} : { error: e.error, error_description: e.description }
              )
            }
          }),
        Forbidden: (e) =>
          HttpServerResponse.json({ error: "insufficient_scope", scope: e.scope }, {
            status: 403,
            headers: { "www-authenticate": challenge({ error: "insufficient_scope", scope: e.scope }) }
          })
      })
    )
    const app = Effect.tap(router, (response) =>
      Ref.update(stats, (s) => ({
        ...s,
        requests: s.requests + 1,
        byStatus: { ...s.byStatus, [response.status]: (s.byStatus[response.status] ?? 0) + 1 }
      })))

    const nodeServer = Http.createServer()
    const server = yield* NodeHttpServer.make(() => nodeServer, { port: 0, host: "127.0.0.1" })
    // Runs before the server's own close: drop keep-alive connections so closing never waits on a client.
    yield* Effect.addFinalizer(() => Effect.sync(() => nodeServer.closeAllConnections()))
    yield* server.serve(app)
    const port = server.address._tag === "TcpAddress" ? server.address.port : 0

    return {
      url: `http://127.0.0.1:${port}`,
      rejectToken: (jti) => Ref.update(rejected, HashSet.add(jti)),
      rejectAcceptedTokens: Effect.gen(function*() {
        const { acceptedTokens } = yield* Ref.get(stats)
        yield* Ref.update(rejected, HashSet.union(HashSet.fromIterable(acceptedTokens)))
        return HashSet.size(HashSet.fromIterable(acceptedTokens))
      }),
      stats: Ref.get(stats)
    }
  })
