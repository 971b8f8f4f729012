import { ClientAuth, Discovery } from "@effect-token/core"
import { OidcLogin, UserSession, UserTokenStore } from "@effect-token/session"
import type { TestAuthorizationServer } from "@effect-token/testing"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { Effect, Redacted } from "effect"
import * as FakeIssuer from "./fakeIssuer.js"

export const appUrl = "https://app.test"

/**
 * The login routes, the session middleware and a `/me` page over the in-process issuer, all in the test's fiber
 * (so `TestClock` governs everything), and browsers made of a cookie jar that send requests to it. With `server`,
 * the testing kit's in-process `TestAuthorizationServer` is the issuer instead of the fake.
 */
export const make = (
  options: {
    readonly fake?: FakeIssuer.FakeIssuer
    readonly server?: TestAuthorizationServer.TestAuthorizationServer
    readonly store?: UserTokenStore.UserTokenStore
    readonly login?: Partial<OidcLogin.Options>
    readonly sessions?: Partial<UserSession.Options>
  } = {}
) =>
  Effect.gen(function*() {
    const fake = options.fake ?? (yield* FakeIssuer.make)
    const store = options.store ?? (yield* UserTokenStore.makeMemory())
    const server = options.server
    const clientAuth = server !== undefined ? server.clientAuth() : ClientAuth.clientSecretBasic({
      clientId: FakeIssuer.clientId,
      clientSecret: Redacted.make("s3cr3t")
    })
    const issuerClient = server?.client ?? fake.client
    const discovery = yield* Discovery.makeWith(issuerClient, { issuer: server?.issuer ?? FakeIssuer.issuer })
    const provide = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
      effect.pipe(
        Effect.provideService(UserTokenStore.UserTokenStore, store),
        Effect.provideService(HttpClient.HttpClient, issuerClient),
        Effect.provideService(Discovery.Discovery, discovery)
      )
    const sessions = yield* provide(UserSession.make({ discovery, clientAuth, ...options.sessions }))
    const login = yield* provide(
      OidcLogin.make({
        clientAuth,
        redirectUri: `${appUrl}/callback`,
        postLogoutRedirectUri: `${appUrl}/`,
        ...options.login
      }).pipe(Effect.provideService(UserSession.UserSessions, sessions))
    )
    const app = UserSession.middleware(
      HttpRouter.empty.pipe(
        HttpRouter.get(
          "/me",
          Effect.map(UserSession.current, (user) => HttpServerResponse.unsafeJson({ sub: user.subject }))
        ),
        HttpRouter.get("/token", Effect.as(UserSession.accessToken(), HttpServerResponse.text("a token"))),
        HttpRouter.concat(login.router)
      )
    ).pipe(
      Effect.catchTag("RouteNotFound", () => Effect.succeed(HttpServerResponse.empty({ status: 404 }))),
      Effect.provideService(UserSession.UserSessions, sessions)
    )

    /** One request to the app, as a `Response` with every `Set-Cookie` (header and `Cookies` alike). */
    const send = (url: string, init: RequestInit = {}) =>
      Effect.map(
        provide(app.pipe(
          Effect.provideService(HttpServerRequest.HttpServerRequest, HttpServerRequest.fromWeb(new Request(url, init)))
        )),
        (response) => HttpServerResponse.toWeb(response)
      )

    /** A browser: one cookie jar for the app, which every answer updates as a browser would. */
    const browser = () => {
      const jar = new Map<string, string>()
      const fetch = (pathOrUrl: string, init: RequestInit = {}) =>
        Effect.gen(function*() {
          const headers = new Headers(init.headers)
          if (jar.size > 0) headers.set("cookie", [...jar].map(([k, v]) => `${k}=${v}`).join("; "))
          const response = yield* send(new URL(pathOrUrl, appUrl).toString(), { ...init, headers })
          for (const line of response.headers.getSetCookie()) {
            const [pair, ...attributes] = line.split(";")
            const eq = pair!.indexOf("=")
            const name = pair!.slice(0, eq).trim()
            const value = pair!.slice(eq + 1).trim()
            if (attributes.some((a) => /^\s*max-age=0\s*$/i.test(a)) || value === "") jar.delete(name)
            else jar.set(name, value)
          }
          return response
        })
      /** `/login`, then the provider's part: the callback URL it sends the browser to (not visited yet). */
      const startLogin = (returnTo = "/me", as: Parameters<FakeIssuer.FakeIssuer["authorize"]>[1] = {}) =>
        Effect.flatMap(
          fetch(`/login?returnTo=${encodeURIComponent(returnTo)}`, { headers: { "sec-fetch-mode": "navigate" } }),
          (response) => {
            const location = response.headers.get("location")!
            return server !== undefined
              ? server.authorize(location, { subject: as.subject })
              : Effect.succeed(fake.authorize(location, as))
          }
        )
      const navigate = (url: string) => fetch(url, { headers: { "sec-fetch-mode": "navigate", accept: "text/html" } })
      return { jar, fetch, startLogin, navigate }
    }

    return { fake, store, sessions, login, send, browser }
  })
