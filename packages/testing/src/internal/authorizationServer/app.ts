/*
 * The server's routes: the authorization endpoint (signs in at once), the token endpoint, the JWKS, and the discovery document under both well-known paths
 * (OpenID Connect Discovery and RFC 8414), so either kind of client finds it.
 */
import type * as HttpApp from "@effect/platform/HttpApp"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Effect from "effect/Effect"
import type * as jose from "jose"
import type { Client } from "../../TestAuthorizationServer.js"

export const make = (options: {
  readonly issuer: string
  readonly tokenUrl: string
  readonly jwksUrl: string
  readonly jwks: jose.JSONWebKeySet
  readonly clients: ReadonlyArray<Client>
  readonly grantTypes: ReadonlyArray<string>
  readonly tokenEndpoint: (
    request: HttpServerRequest.HttpServerRequest
  ) => Effect.Effect<HttpServerResponse.HttpServerResponse>
  /** The callback URL for an authorization request (the user signs in at once, as `login_hint` or the default). */
  readonly authorize: (url: string, subject: string | undefined) => Effect.Effect<string, string>
}): HttpApp.Default => {
  const metadata = {
    issuer: options.issuer,
    authorization_endpoint: `${options.issuer}/authorize`,
    token_endpoint: options.tokenUrl,
    jwks_uri: options.jwksUrl,
    grant_types_supported: options.grantTypes,
    token_endpoint_auth_methods_supported: ["client_secret_basic", "client_secret_post", "none"],
    response_types_supported: ["code"],
    code_challenge_methods_supported: ["S256"],
    id_token_signing_alg_values_supported: ["RS256"],
    subject_types_supported: ["public"],
    authorization_response_iss_parameter_supported: true,
    scopes_supported: [...new Set(options.clients.flatMap((client) => client.scopes ?? []))]
  }
  return Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const path = request.url.split("?")[0]
    switch (path) {
      case "/token":
        return request.method === "POST"
          ? yield* options.tokenEndpoint(request)
          : methodNotAllowed("POST")
      case "/authorize": {
        const url = new URL(request.url, options.issuer)
        // A request that cannot be answered by a redirect (no known client, no redirect_uri) gets a 400 page.
        return yield* options.authorize(url.toString(), url.searchParams.get("login_hint") ?? undefined).pipe(
          Effect.match({
            onFailure: (description) =>
              HttpServerResponse.unsafeJson({ error: "invalid_request", error_description: description }, {
                status: 400
              }),
            onSuccess: (location) => HttpServerResponse.empty({ status: 302, headers: { location } })
          })
        )
      }
      case "/jwks":
        return HttpServerResponse.unsafeJson(options.jwks)
      case "/.well-known/openid-configuration":
      case "/.well-known/oauth-authorization-server":
        return HttpServerResponse.unsafeJson(metadata)
      default:
        return HttpServerResponse.unsafeJson({ error: "not_found" }, { status: 404 })
    }
  })
}

const methodNotAllowed = (allow: string) =>
  HttpServerResponse.unsafeJson({ error: "method_not_allowed" }, { status: 405, headers: { allow } })
