/**
 * A small web application with sign-in: OpenID Connect login against a real `oidc-provider` (its development login
 * page accepts any name and password), each user's tokens in a server-side session, and a page that calls the
 * invoices API on the signed-in user's behalf.
 */
import { ClientAuth } from "@effect-token/core"
import { OidcLogin, UserSession, UserTokenStore } from "@effect-token/session"
import { OidcProvider } from "@effect-token/testing/oidc-provider"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as HttpRouter from "@effect/platform/HttpRouter"
import type * as HttpServer from "@effect/platform/HttpServer"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { Effect, Layer, Redacted } from "effect"
import * as Http from "node:http"
import * as ProtectedApi from "../src/ProtectedApi.js"

const home = (signedIn: string | undefined) =>
  HttpServerResponse.html(
    signedIn === undefined
      ? `<p>Not signed in. <a href="/login?returnTo=/invoices">Sign in</a> to see your invoices.</p>`
      : `<p>Signed in as ${signedIn.replace(/[^\w.@-]/g, "")}. <a href="/invoices">Invoices</a></p>
         <form method="post" action="/logout"><button>Sign out</button></form>`
  )

/** Starts the provider, the API and the app on 127.0.0.1 (`port` 0: any free one); all stop with the scope. */
export const start = (options: { readonly port?: number | undefined } = {}) =>
  Effect.gen(function*() {
    const server = yield* NodeHttpServer.make(() => Http.createServer(), { port: options.port ?? 0, host: "127.0.0.1" })
    const appUrl = `http://127.0.0.1:${(server.address as HttpServer.TcpAddress).port}`
    const secret = "web-session-example-secret"
    const as = yield* OidcProvider.make({
      clients: [{
        client_id: "web",
        client_secret: secret,
        grant_types: ["authorization_code", "refresh_token"],
        response_types: ["code"],
        redirect_uris: [`${appUrl}/callback`],
        post_logout_redirect_uris: [`${appUrl}/`],
        scope: "openid offline_access api:read"
      }],
      accessTokenTtl: 60,
      devInteractions: true,
      configuration: { rotateRefreshToken: true }
    })
    const api = yield* ProtectedApi.make({ issuer: as.issuer, jwksUrl: as.jwksUrl, audience: as.audience })

    const auth = OidcLogin.layerAll({
      issuer: as.issuer,
      clientAuth: ClientAuth.clientSecretBasic({ clientId: "web", clientSecret: Redacted.make(secret) }),
      redirectUri: `${appUrl}/callback`,
      postLogoutRedirectUri: `${appUrl}/`,
      scope: "openid offline_access api:read",
      authorizationParams: { prompt: "consent" },
      // http on 127.0.0.1, for this example only: anywhere else the session cookie is Secure.
      cookie: { secure: false }
    }).pipe(Layer.provide(UserTokenStore.layerMemory()))
    const context = yield* Layer.build(Layer.provideMerge(auth, NodeHttpClient.layerUndici))
    const login = yield* Effect.provide(OidcLogin.OidcLogin, context)

    const routes = HttpRouter.empty.pipe(
      HttpRouter.get(
        "/",
        Effect.map(Effect.option(UserSession.current), (user) =>
          home(user._tag === "Some" ? user.value.subject : undefined))
      ),
      HttpRouter.get(
        "/invoices",
        Effect.gen(function*() {
          const client = yield* UserSession.client({ baseUrl: api.url })
          const response = yield* client.get("/invoices")
          return yield* HttpServerResponse.json({ status: response.status, invoices: yield* response.json })
        }).pipe(Effect.scoped)
      ),
      HttpRouter.concat(login.router)
    )
    yield* server.serve(UserSession.middleware(routes).pipe(Effect.provide(context)))
    return { appUrl, issuer: as.issuer }
  })
