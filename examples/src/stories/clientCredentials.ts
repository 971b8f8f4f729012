/**
 * Story: a service gets a token with the client credentials grant and calls a protected API with it.
 */
import { AccessToken, ClientAuth, ClientCredentials, TokenError } from "@effect-token/core"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { Duration, Effect, Option, Redacted } from "effect"
import type { DemoEnv } from "../DemoProgram.js"
import type { Invoice } from "../ProtectedApi.js"
import * as Story from "../Story.js"

const scope = "api:read"

export interface ApiAnswer {
  readonly status: number
  readonly body: unknown
  readonly wwwAuthenticate: string | undefined
}

/** One call to the API, with the token in the `Authorization` header when there is one. */
export const callApi = (
  method: "GET" | "POST",
  url: string,
  token: Option.Option<AccessToken.AccessToken>
): Effect.Effect<ApiAnswer, unknown, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    const request = HttpClientRequest.make(method)(url).pipe(
      (request) =>
        Option.match(token, {
          onNone: () => request,
          // `Bearer ...` or `DPoP ...`: revealed only into the header.
          onSome: (token) =>
            HttpClientRequest.setHeader(request, "authorization", Redacted.value(AccessToken.authorization(token)))
        })
    )
    const response = yield* client.execute(request)
    return {
      status: response.status,
      body: yield* response.json,
      wwwAuthenticate: response.headers["www-authenticate"]
    }
  })

export const authServerStarted = Story.step<DemoEnv, string>(
  "authorization server",
  ({ authServer }) =>
    Effect.succeed({
      summary:
        `Authorization server (oidc-provider) listening at ${authServer.issuer}, client "${authServer.clientId}" ` +
        `registered for ${scope}`,
      value: authServer.issuer
    })
)

export const apiStarted = Story.step<DemoEnv, string>("protected API", ({ api, authServer }) =>
  Effect.succeed({
    summary: `Invoices API listening at ${api.url}, accepting JWTs from that issuer for ${authServer.audience}`,
    value: api.url
  }))

export const getToken = Story.step<DemoEnv, AccessToken.AccessToken, HttpClient.HttpClient>(
  "client credentials token",
  ({ authServer }) =>
    Effect.gen(function*() {
      const source = yield* ClientCredentials.make({
        tokenUrl: authServer.tokenUrl,
        clientAuth: authServer.clientAuth,
        scope
      })
      const token = yield* source.fetch
      const lifetime = Option.match(AccessToken.lifetime(token), {
        onNone: () => "unknown lifetime",
        onSome: (d) => `expires in ${Duration.toSeconds(d)} s`
      })
      return {
        // String(token.value) is "<redacted>": a Redacted never prints its content.
        summary: `Got a ${token.type} token for scope ${Option.getOrElse(token.scope, () => "(none)")}, ${lifetime} ` +
          `(value redacted: ${String(token.value)})`,
        value: token
      }
    })
)

export const listInvoices = Story.step<DemoEnv, ApiAnswer, HttpClient.HttpClient>(
  "GET /invoices with the token",
  ({ api }, results) =>
    Effect.gen(function*() {
      const answer = yield* callApi("GET", `${api.url}/invoices`, Option.some(results.get(getToken)))
      yield* Story.expect(answer.status === 200, `expected 200, got ${answer.status}`)
      const invoices = answer.body as ReadonlyArray<Invoice>
      const list = invoices.map((i) => `${i.id} ${i.customer} ${i.amount} ${i.currency}`).join("; ")
      return { summary: `GET /invoices with the token -> ${answer.status} [${list}]`, value: answer }
    })
)

export const noToken = Story.step<DemoEnv, ApiAnswer, HttpClient.HttpClient>(
  "GET /invoices without a token",
  ({ api }) =>
    Effect.gen(function*() {
      const answer = yield* callApi("GET", `${api.url}/invoices`, Option.none())
      yield* Story.expect(answer.status === 401, `expected 401, got ${answer.status}`)
      return {
        summary: `GET /invoices without a token -> ${answer.status}, WWW-Authenticate: ${answer.wwwAuthenticate}`,
        value: answer
      }
    })
)

export const missingScope = Story.step<DemoEnv, ApiAnswer, HttpClient.HttpClient>(
  "POST /invoices with a read-only token",
  ({ api }, results) =>
    Effect.gen(function*() {
      const answer = yield* callApi("POST", `${api.url}/invoices`, Option.some(results.get(getToken)))
      yield* Story.expect(answer.status === 403, `expected 403, got ${answer.status}`)
      return {
        summary: `POST /invoices with the ${scope} token -> ${answer.status} insufficient_scope (needs api:write)`,
        value: answer
      }
    })
)

export const wrongSecret = Story.step<DemoEnv, TokenError.TokenError, HttpClient.HttpClient>(
  "wrong client secret",
  ({ authServer }) =>
    Effect.gen(function*() {
      const source = yield* ClientCredentials.make({
        tokenUrl: authServer.tokenUrl,
        clientAuth: ClientAuth.clientSecretBasic({
          clientId: authServer.clientId,
          clientSecret: Redacted.make("not-the-secret")
        }),
        scope
      })
      const error = yield* Effect.flip(source.fetch).pipe(
        Effect.catchAll(() => new Story.StoryFailure({ message: "a wrong secret got a token" }))
      )
      yield* Story.expect(
        TokenError.oauthCode(error) === "invalid_client",
        `expected invalid_client, got ${error.message}`
      )
      return {
        summary: `A wrong client secret -> TokenError ${error.reason._tag}: ${error.reason.message}`,
        value: error
      }
    })
)

export const clientCredentials: Story.Story<DemoEnv, HttpClient.HttpClient> = {
  title: "Client credentials: a service calls an API with its own token",
  steps: [authServerStarted, apiStarted, getToken, listInvoices, noToken, missingScope, wrongSecret]
}
