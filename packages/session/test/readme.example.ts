// The README's example, type-checked with the tests (scripts compile it; it is not run).
import { ClientAuth } from "@effect-token/core"
import { OidcLogin, UserSession, UserTokenStore } from "@effect-token/session"
import { HttpRouter, HttpServer, HttpServerResponse } from "@effect/platform"
import { NodeHttpClient, NodeHttpServer } from "@effect/platform-node"
import { Effect, Layer, Redacted } from "effect"
import { createServer } from "node:http"

const AuthLive = OidcLogin.layerAll({
  issuer: "https://auth.example.com",
  clientAuth: ClientAuth.clientSecretBasic({ clientId: "web", clientSecret: Redacted.make("s3cr3t") }),
  redirectUri: "https://app.example.com/callback",
  postLogoutRedirectUri: "https://app.example.com/"
}).pipe(Layer.provide(UserTokenStore.layerMemory()), Layer.provide(NodeHttpClient.layerUndici))

const ServerLive = Layer.unwrapEffect(Effect.map(OidcLogin.OidcLogin, (login) =>
  HttpRouter.empty.pipe(
    HttpRouter.get(
      "/me",
      Effect.map(UserSession.current, (user) => HttpServerResponse.unsafeJson({ sub: user.subject }))
    ),
    // On the user's behalf: the user's token, to this API only; a 401 refreshes the session once and retries.
    HttpRouter.get(
      "/orders",
      Effect.gen(function*() {
        const api = yield* UserSession.client({ baseUrl: "https://api.example.com" })
        return yield* HttpServerResponse.json(yield* (yield* api.get("/orders")).json)
      }).pipe(Effect.scoped)
    ),
    HttpRouter.concat(login.router), // GET /login?returnTo=/me, GET /callback, POST /logout
    UserSession.middleware,
    HttpServer.serve()
  )))

export const main = Layer.launch(ServerLive.pipe(
  Layer.provide(AuthLive),
  Layer.provide(NodeHttpClient.layerUndici),
  Layer.provide(NodeHttpServer.layer(createServer, { port: 3000 }))
))
