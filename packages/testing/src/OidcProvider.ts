/**
 * A real OpenID Connect authorization server (`oidc-provider`) on 127.0.0.1, for integration tests and demos.
 *
 * It listens on a port the OS picks, issues JWT access tokens signed with a key generated per run, and closes
 * with the scope that started it. Requires the optional peer dependency `oidc-provider`. Some of its console notices
 * are dropped, and only those: "Unsupported runtime" (on Node.js 20), the in-memory adapter notice, and (with
 * `devInteractions`, which a test asks for) the development pages' notice.
 *
 * @since 0.1.0
 */
// First: the filter for two of oidc-provider's notices must be in place before its module is evaluated.
import "./internal/oidcProviderNotices.js"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { exportJWK, generateKeyPair } from "jose"
import type * as jose from "jose"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import type { ClientMetadata, Configuration, KoaContextWithOIDC } from "oidc-provider"
import Provider, { errors } from "oidc-provider"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Registered clients (`client_id`, `client_secret`, `grant_types`, `token_endpoint_auth_method`, ...). */
  readonly clients: ReadonlyArray<ClientMetadata>
  /** Scopes the API accepts. Default `["api:read", "api:write"]`. */
  readonly apiScopes?: ReadonlyArray<string> | undefined
  /** The API's audience (resource indicator). Default `"urn:effect-token:api"`. */
  readonly audience?: string | undefined
  /** Access token lifetime in seconds. Default 300. */
  readonly accessTokenTtl?: number | undefined
  /**
   * Serve oidc-provider's development login and consent pages (any login and password are accepted), for tests
   * that drive the authorization code flow through HTTP or a browser. Default false.
   */
  readonly devInteractions?: boolean | undefined
  /**
   * DPoP (RFC 9449, `features.dPoP`): `true` accepts proofs and issues DPoP-bound tokens (`cnf.jkt`); with
   * `requireNonce` every proof must carry the server's nonce (a nonce secret is generated per run). Default off.
   */
  readonly dpop?: boolean | { readonly requireNonce?: boolean | undefined } | undefined
  /** Merged over the harness's configuration, for grants and features a test needs. */
  readonly configuration?: Partial<Configuration> | undefined
  /** Called with the provider before it starts serving, e.g. to register a custom grant type. */
  readonly setup?: ((provider: Provider) => void) | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface OidcProvider {
  readonly issuer: string
  readonly tokenUrl: string
  readonly jwksUrl: string
  readonly audience: string
  readonly provider: Provider
  /** Public keys, as served at `jwksUrl`. */
  readonly jwks: jose.JSONWebKeySet
  /** Token requests answered so far, by grant type. */
  readonly tokenRequests: () => Readonly<Record<string, number>>
  /** Stops serving now (connections are refused afterwards); the scope would do it anyway. */
  readonly stop: Effect.Effect<void>
  /**
   * Mints a refresh token as if the account had logged in and consented to `scope` (default
   * `openid offline_access` plus the API scopes) with the authorization code flow, without a browser. The client
   * needs the `refresh_token` grant; its access tokens are JWTs for the API audience.
   */
  readonly issueRefreshToken: (options: IssueRefreshTokenOptions) => Effect.Effect<string>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface IssueRefreshTokenOptions {
  readonly clientId: string
  /** Default `"alice"`. */
  readonly accountId?: string | undefined
  readonly scope?: string | undefined
}

/**
 * Starts a provider on 127.0.0.1 with a port chosen by the OS.
 *
 * @example
 * ```ts
 * import { OidcProvider } from "@effect-token/testing/oidc-provider"
 * import { Effect } from "effect"
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const as = yield* OidcProvider.make({
 *     clients: [{ client_id: "svc", client_secret: "secret", grant_types: ["client_credentials"], redirect_uris: [], response_types: [] }]
 *   })
 *   return as.tokenUrl
 * }))
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<OidcProvider, never, Scope.Scope> =>
  Effect.gen(function*() {
    const audience = options.audience ?? "urn:effect-token:api"
    const apiScopes = options.apiScopes ?? ["api:read", "api:write"]
    const accessTokenTtl = options.accessTokenTtl ?? 300
    const { privateKey, publicKey } = yield* Effect.promise(() => generateKeyPair("RS256", { extractable: true }))
    const privateJwk = { ...(yield* Effect.promise(() => exportJWK(privateKey))), kid: "k1", alg: "RS256", use: "sig" }
    const publicJwk = { ...(yield* Effect.promise(() => exportJWK(publicKey))), kid: "k1", alg: "RS256", use: "sig" }

    const server = Http.createServer()
    yield* Effect.acquireRelease(
      Effect.async<void>((resume) => {
        server.listen(0, "127.0.0.1", () => resume(Effect.void))
      }),
      () => closeServer(server)
    )
    const port = (server.address() as AddressInfo).port
    const issuer = `http://127.0.0.1:${port}`

    const resourceServer = {
      scope: apiScopes.join(" "),
      audience,
      accessTokenTTL: accessTokenTtl,
      accessTokenFormat: "jwt" as const,
      jwt: { sign: { alg: "RS256" as const } }
    }
    const base: Configuration = {
      clients: [...options.clients],
      jwks: { keys: [privateJwk] },
      cookies: { keys: ["effect-token-test-cookie-key"] },
      scopes: ["openid", "offline_access", ...apiScopes],
      // oidc-provider's defaults for findAccount and the two allowedPolicy helpers, spelled out: its own print a
      // notice ("you SHOULD/MUST change it") the first time they run.
      findAccount: (_ctx, sub) => ({ accountId: sub, claims: () => ({ sub }) }),
      features: {
        devInteractions: { enabled: options.devInteractions === true },
        clientCredentials: { enabled: true },
        introspection: {
          enabled: true,
          // Confidential clients may introspect any token; a public client only its own.
          allowedPolicy: (ctx, client, token) =>
            client.clientAuthMethod !== "none" || token.clientId === ctx.oidc.client?.clientId
        },
        revocation: {
          enabled: true,
          // A client revokes its own tokens only: another's is refused (silently for a public client).
          allowedPolicy: (_ctx, client, token) => {
            if (token.clientId === client.clientId) return true
            if (client.clientAuthMethod === "none") return false
            throw new errors.InvalidRequest("client is not authorized to revoke the presented token")
          }
        },
        ...(options.dpop === undefined || options.dpop === false ? {} : {
          dPoP: {
            enabled: true,
            // oidc-provider wants a Buffer; nonces are only issued when it has a secret.
            nonceSecret: Buffer.from(globalThis.crypto.getRandomValues(new Uint8Array(32))),
            requireNonce: () => typeof options.dpop === "object" && options.dpop.requireNonce === true
          }
        }),
        resourceIndicators: {
          enabled: true,
          defaultResource: () => audience,
          useGrantedResource: () => true,
          getResourceServerInfo: () => resourceServer
        }
      },
      ttl: {
        AccessToken: accessTokenTtl,
        ClientCredentials: accessTokenTtl,
        IdToken: 300,
        Grant: 3600,
        Session: 3600,
        Interaction: 600,
        AuthorizationCode: 60,
        RefreshToken: 3600
      },
      // oidc-provider's default renderer would print pages; tests want the JSON errors only.
      renderError: (ctx, out) => {
        ctx.type = "json"
        ctx.body = out
      }
    }
    const provider = new Provider(issuer, mergeConfiguration(base, options.configuration ?? {}))
    const counts: Record<string, number> = {}
    provider.on("grant.success", (ctx: KoaContextWithOIDC) => {
      const grant = String((ctx.oidc.params as Record<string, unknown> | undefined)?.grant_type ?? "unknown")
      counts[grant] = (counts[grant] ?? 0) + 1
    })
    provider.on("grant.error", (ctx: KoaContextWithOIDC) => {
      const grant = `${String((ctx.oidc.params as Record<string, unknown> | undefined)?.grant_type ?? "unknown")}:error`
      counts[grant] = (counts[grant] ?? 0) + 1
    })
    options.setup?.(provider)
    server.on("request", provider.callback())

    const issueRefreshToken = (mint: IssueRefreshTokenOptions) =>
      Effect.promise(async () => {
        const accountId = mint.accountId ?? "alice"
        const scopes = (mint.scope ?? ["openid", "offline_access", ...apiScopes].join(" ")).split(" ")
        const grant = new provider.Grant({ accountId, clientId: mint.clientId })
        grant.addOIDCScope(scopes.filter((s) => !apiScopes.includes(s)).join(" "))
        grant.addResourceScope(audience, scopes.filter((s) => apiScopes.includes(s)).join(" "))
        const grantId = await grant.save()
        const client = await provider.Client.find(mint.clientId)
        if (client === undefined) throw new Error(`unknown client ${mint.clientId}`)
        // What the authorization code grant stores for a code exchanged with offline_access.
        const refreshToken = new provider.RefreshToken({
          accountId,
          client,
          grantId,
          gty: "authorization_code",
          scope: scopes.join(" "),
          resource: audience
        })
        return refreshToken.save()
      })

    return {
      issuer,
      tokenUrl: `${issuer}/token`,
      jwksUrl: `${issuer}/jwks`,
      audience,
      provider,
      jwks: { keys: [publicJwk as jose.JWK] },
      tokenRequests: () => ({ ...counts }),
      stop: closeServer(server),
      issueRefreshToken
    }
  })

const closeServer = (server: Http.Server): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    if (!server.listening) return resume(Effect.void)
    server.close(() => resume(Effect.void))
    server.closeAllConnections()
  })

const mergeConfiguration = (base: Configuration, extra: Partial<Configuration>): Configuration => ({
  ...base,
  ...extra,
  features: { ...base.features, ...extra.features } as Configuration["features"],
  ttl: { ...base.ttl, ...extra.ttl }
})
