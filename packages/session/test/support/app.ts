import { ClientAuth } from "@effect-token/core"
import { OidcLogin, UserSession, UserTokenStore } from "@effect-token/session"
import { DPoPResourceServer } from "@effect-token/testing"
import { OidcProvider } from "@effect-token/testing/oidc-provider"
import { NodeHttpClient, NodeHttpServer } from "@effect/platform-node"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpRouter from "@effect/platform/HttpRouter"
import type * as HttpServer from "@effect/platform/HttpServer"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import type { Duration } from "effect"
import { Effect, Layer, Queue, Redacted } from "effect"
import { createLocalJWKSet, jwtVerify } from "jose"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"

export const clientSecret = "web-s3cr3t: +/%&="
/** The app's `secret` (the login cookie's key is derived from it), known to tests that forge a login cookie. */
export const loginSecret = "login-cookie-secret-of-the-test-app-0123456789"

/**
 * A resource server for the calls made on the user's behalf: verifies the bearer JWT against the provider's keys,
 * answers its `sub`, and refuses any token listed in `rejected` with 401 (as an API that revoked it would).
 */
const startApi = (as: OidcProvider.OidcProvider) =>
  Effect.gen(function*() {
    const keys = createLocalJWKSet(as.jwks)
    const rejected = new Set<string>()
    const seen: Array<string> = []
    const server = Http.createServer((req, res) => {
      const token = (req.headers.authorization ?? "").replace(/^Bearer /, "")
      seen.push(token)
      if (rejected.has(token)) {
        res.writeHead(401, { "www-authenticate": "Bearer error=\"invalid_token\"" }).end()
        return
      }
      jwtVerify(token, keys, { issuer: as.issuer, audience: as.audience }).then(
        ({ payload }) =>
          res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ sub: payload.sub })),
        () => res.writeHead(401, { "www-authenticate": "Bearer error=\"invalid_token\"" }).end()
      )
    })
    yield* Effect.acquireRelease(
      Effect.async<void>((resume) => void server.listen(0, "127.0.0.1", () => resume(Effect.void))),
      () =>
        Effect.async<void>((resume) => {
          server.close(() => resume(Effect.void))
          server.closeAllConnections()
        })
    )
    return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, rejected, seen }
  })

/** A site of another origin on loopback that answers every request with `page`, and counts them. */
export const otherSiteWith = (page: string) =>
  Effect.gen(function*() {
    let requests = 0
    const server = Http.createServer((_req, res) => {
      requests++
      res.writeHead(200, { "content-type": "text/html" }).end(page)
    })
    yield* Effect.acquireRelease(
      Effect.async<void>((resume) => void server.listen(0, "127.0.0.1", () => resume(Effect.void))),
      () =>
        Effect.async<void>((resume) => {
          server.close(() => resume(Effect.void))
          server.closeAllConnections()
        })
    )
    return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests: () => requests }
  })
export const otherSite = otherSiteWith("<p>another site</p>")

/**
 * The provider, the API and a web application on real sockets: the app serves `/me`, `/orders` (the API on the
 * user's behalf) and `/page`, behind the session middleware, with the login routes.
 */
export type App = Effect.Effect.Success<ReturnType<typeof start>>

export const start = (
  options: {
    readonly accessTokenTtl?: number
    readonly codeTtl?: number
    /** DPoP logins (`OidcLogin`'s `dpop`), `/orders` served by the testing kit's DPoP-verifying resource server. */
    readonly dpop?: boolean
    /** The sessions' idle timeout (default 2 hours). */
    readonly idleTimeout?: Duration.DurationInput
  } = {}
) =>
  Effect.gen(function*() {
    const server = yield* NodeHttpServer.make(() => Http.createServer(), { port: 0, host: "127.0.0.1" })
    const address = server.address as HttpServer.TcpAddress
    const appUrl = `http://127.0.0.1:${address.port}`
    const as = yield* OidcProvider.make({
      clients: [{
        client_id: "web",
        client_secret: clientSecret,
        grant_types: ["authorization_code", "refresh_token"],
        response_types: ["code"],
        redirect_uris: [`${appUrl}/callback`],
        post_logout_redirect_uris: [`${appUrl}/`],
        scope: "openid offline_access api:read",
        token_endpoint_auth_method: "client_secret_basic"
      }],
      accessTokenTtl: options.accessTokenTtl ?? 300,
      devInteractions: true,
      configuration: {
        rotateRefreshToken: true,
        // ID tokens outlive the tests' moves of the app's clock (up to 20 minutes past the provider's), since a
        // refresh answer's ID token is checked as the login's is (OpenID Connect Core §12.2), `exp` included.
        ttl: { IdToken: 3600, ...(options.codeTtl === undefined ? {} : { AuthorizationCode: options.codeTtl }) }
      },
      dpop: options.dpop === true
    })
    const api = yield* startApi(as)
    const dpopApi = options.dpop === true
      ? yield* DPoPResourceServer.make({ jwks: as.jwks, issuer: as.issuer, audience: as.audience })
      : undefined
    const store = yield* UserTokenStore.makeMemory()
    // The app's client, watched for answers to revocation requests: logout revokes in the background.
    const revocations = yield* Queue.unbounded<number>()
    const observed = Layer.effect(
      HttpClient.HttpClient,
      Effect.map(HttpClient.HttpClient, (client) =>
        HttpClient.transformResponse(client, (response) =>
          Effect.tap(response, (answer) =>
            answer.request.url.endsWith("/token/revocation") ? Queue.offer(revocations, answer.status) : Effect.void)))
    ).pipe(Layer.provide(NodeHttpClient.layerUndici))
    const clientAuth = ClientAuth.clientSecretBasic({ clientId: "web", clientSecret: Redacted.make(clientSecret) })
    const auth = OidcLogin.layerAll({
      issuer: as.issuer,
      clientAuth,
      redirectUri: `${appUrl}/callback`,
      postLogoutRedirectUri: `${appUrl}/`,
      scope: "openid offline_access api:read",
      // oidc-provider grants offline_access only with an explicit consent prompt.
      authorizationParams: { prompt: "consent" },
      cookie: { secure: false },
      secret: Redacted.make(loginSecret),
      dpop: options.dpop === true,
      idleTimeout: options.idleTimeout
    }).pipe(
      Layer.provide(Layer.succeed(UserTokenStore.UserTokenStore, store)),
      Layer.provide(observed)
    )
    const context = yield* Layer.build(Layer.merge(auth, NodeHttpClient.layerUndici))
    const login = yield* Effect.provide(OidcLogin.OidcLogin, context)

    const routes = HttpRouter.empty.pipe(
      HttpRouter.get("/", HttpServerResponse.text("home")),
      HttpRouter.get(
        "/me",
        Effect.map(UserSession.current, (user) =>
          HttpServerResponse.unsafeJson({ sub: user.subject }))
      ),
      HttpRouter.get("/page", Effect.as(UserSession.current, HttpServerResponse.html("<p>hello</p>"))),
      HttpRouter.get(
        "/orders",
        Effect.gen(function*() {
          const client = yield* UserSession.client({ baseUrl: dpopApi?.url ?? api.url })
          const response = yield* client.get("/orders")
          return HttpServerResponse.unsafeJson({ status: response.status, body: yield* response.json })
        }).pipe(Effect.scoped)
      ),
      HttpRouter.concat(login.router)
    )
    yield* server.serve(UserSession.middleware(routes).pipe(Effect.provide(context)))
    /** Waits for the next answer to a revocation the app sent (its status). */
    const revocationAnswered = Queue.take(revocations)
    return { appUrl, as, api, dpopApi, store, login, revocationAnswered }
  })
