/**
 * The demo's authorization server: a real `oidc-provider`, embedded in this process on 127.0.0.1.
 *
 * It knows one confidential client, `invoice-reader`, allowed the client credentials grant for `api:read`. Its
 * secret is random for each run and only ever held as a `Redacted`, as an application would hold one read from
 * `Config.redacted`.
 */
import { ClientAuth } from "@effect-token/core"
import { OidcProvider } from "@effect-token/testing/oidc-provider"
import { Effect, Redacted } from "effect"
import type { Scope } from "effect"
import { randomBytes } from "node:crypto"

/** The API's audience (RFC 8707 resource indicator): the API accepts only tokens minted for it. */
export const audience = "urn:example:invoices-api"

export interface AuthServer {
  readonly issuer: string
  readonly tokenUrl: string
  readonly jwksUrl: string
  readonly audience: string
  /** The registered client's credentials, as the client application would be configured. */
  readonly clientId: string
  readonly clientAuth: ClientAuth.ClientAuth
  /** Token requests answered so far, by grant type (`client_credentials`, `client_credentials:error`). */
  readonly tokenRequests: () => Readonly<Record<string, number>>
}

/**
 * Starts the authorization server; it stops when the scope closes.
 *
 * @param options.accessTokenTtl lifetime of issued access tokens in seconds (default 300).
 */
export const make = (
  options: { readonly accessTokenTtl?: number } = {}
): Effect.Effect<AuthServer, never, Scope.Scope> =>
  Effect.gen(function*() {
    const clientId = "invoice-reader"
    const clientSecret = Redacted.make(randomBytes(24).toString("base64url"))
    const provider = yield* OidcProvider.make({
      audience,
      apiScopes: ["api:read", "api:write"],
      accessTokenTtl: options.accessTokenTtl ?? 300,
      clients: [{
        client_id: clientId,
        client_secret: Redacted.value(clientSecret),
        grant_types: ["client_credentials"],
        response_types: [],
        redirect_uris: [],
        scope: "api:read",
        token_endpoint_auth_method: "client_secret_basic"
      }]
    })
    return {
      issuer: provider.issuer,
      tokenUrl: provider.tokenUrl,
      jwksUrl: provider.jwksUrl,
      audience: provider.audience,
      clientId,
      clientAuth: ClientAuth.clientSecretBasic({ clientId, clientSecret }),
      tokenRequests: provider.tokenRequests
    }
  })
