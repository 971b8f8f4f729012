/**
 * Authorization server metadata: OpenID Connect Discovery 1.0, falling back to RFC 8414.
 *
 * The document is fetched on first use and kept for the life of the `Discovery` (its scope); a failed fetch is not
 * kept, so the next use tries again. Sources and revocation take a `Discovery` wherever they take an endpoint URL.
 *
 * @since 0.1.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as internal from "./internal/endpoint.js"
import * as singleFlight from "./internal/singleFlight.js"
import { invalidFields } from "./internal/tokenResponse.js"
import { MalformedResponse, Misconfigured, TokenError } from "./TokenError.js"

const operation = "discovery"

const Url = Schema.String.pipe(
  Schema.filter((s) => URL.canParse(s), { message: () => "an absolute URL" })
)
const Strings = Schema.optional(Schema.Array(Schema.String))

/**
 * The metadata fields effect-token reads, with their wire names (RFC 8414 §2, OpenID Connect Discovery §3). Other
 * fields of the document are ignored.
 *
 * @since 0.1.0
 * @category models
 */
export const Metadata = Schema.Struct({
  issuer: Schema.String,
  authorization_endpoint: Schema.optional(Url),
  token_endpoint: Schema.optional(Url),
  jwks_uri: Schema.optional(Url),
  userinfo_endpoint: Schema.optional(Url),
  registration_endpoint: Schema.optional(Url),
  revocation_endpoint: Schema.optional(Url),
  introspection_endpoint: Schema.optional(Url),
  end_session_endpoint: Schema.optional(Url),
  pushed_authorization_request_endpoint: Schema.optional(Url),
  device_authorization_endpoint: Schema.optional(Url),
  scopes_supported: Strings,
  response_types_supported: Strings,
  grant_types_supported: Strings,
  token_endpoint_auth_methods_supported: Strings,
  token_endpoint_auth_signing_alg_values_supported: Strings,
  revocation_endpoint_auth_methods_supported: Strings,
  code_challenge_methods_supported: Strings,
  dpop_signing_alg_values_supported: Strings,
  /** RFC 9207: the authorization response names its issuer (`iss`); a client must then refuse one that does not. */
  authorization_response_iss_parameter_supported: Schema.optional(Schema.Boolean)
})

/**
 * @since 0.1.0
 * @category models
 */
export type Metadata = typeof Metadata.Type

/**
 * @since 0.1.0
 * @category type ids
 */
export const TypeId: unique symbol = Symbol.for("@effect-token/core/Discovery")

/**
 * @since 0.1.0
 * @category type ids
 */
export type TypeId = typeof TypeId

/**
 * An authorization server known by its issuer identifier.
 *
 * @since 0.1.0
 * @category models
 */
export interface Discovery {
  readonly [TypeId]: TypeId
  /** The configured issuer identifier; the document must carry exactly this `issuer`. */
  readonly issuer: string
  /** The metadata, fetched on first use and kept; a failure is not kept. */
  readonly metadata: Effect.Effect<Metadata, TokenError>
  /** `token_endpoint`, or a `Misconfigured` error when the server publishes none. */
  readonly tokenEndpoint: Effect.Effect<string, TokenError>
  /** `revocation_endpoint`, or a `Misconfigured` error when the server publishes none. */
  readonly revocationEndpoint: Effect.Effect<string, TokenError>
}

/**
 * The application's authorization server.
 *
 * @example
 * ```ts
 * import { Discovery } from "@effect-token/core"
 * import { Effect } from "effect"
 *
 * const tokenUrl = Effect.flatMap(Discovery.Discovery, (discovery) => discovery.tokenEndpoint)
 * ```
 *
 * @since 0.1.0
 * @category tags
 */
export const Discovery: Context.Tag<Discovery, Discovery> = Context.GenericTag<Discovery>(
  "@effect-token/core/Discovery"
)

/**
 * @example
 * ```ts
 * import { Discovery } from "@effect-token/core"
 *
 * declare const tokenUrl: string | URL | Discovery.Discovery
 * const url = Discovery.isDiscovery(tokenUrl) ? tokenUrl.issuer : tokenUrl.toString()
 * ```
 *
 * @since 0.1.0
 * @category refinements
 */
export const isDiscovery = (u: unknown): u is Discovery => Predicate.hasProperty(u, TypeId)

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /**
   * The issuer identifier, exactly as the server spells it (`https://auth.example.com` and
   * `https://auth.example.com/` are different issuers to RFC 8414 §3.3).
   */
  readonly issuer: string
  /** Time allowed for each document request. Default 10 seconds. */
  readonly timeout?: Duration.DurationInput | undefined
  /**
   * The largest answer read, in bytes, counted after decompression (default 1 MiB). A larger answer is a
   * `MalformedResponse` naming the cap, and is not retried.
   */
  readonly maxResponseBytes?: number | undefined
}

/**
 * Where the metadata may be: OpenID Connect Discovery appends its well-known path to the issuer; RFC 8414 §3.1
 * inserts its own between the host and the issuer's path.
 *
 * @example
 * ```ts
 * import { Discovery } from "@effect-token/core"
 *
 * Discovery.documentUrls("https://auth.example.com/tenant1")
 * // Option.some([
 * //   "https://auth.example.com/tenant1/.well-known/openid-configuration",
 * //   "https://auth.example.com/.well-known/oauth-authorization-server/tenant1"
 * // ])
 * ```
 *
 * @since 0.1.0
 * @category urls
 */
export const documentUrls = (issuer: string): Option.Option<readonly [openid: string, oauth: string]> => {
  if (!URL.canParse(issuer)) return Option.none()
  const url = new URL(issuer)
  // An issuer has no query or fragment (RFC 8414 §2): one that does would build nonsense URLs.
  if (url.search !== "" || url.hash !== "") return Option.none()
  const path = url.pathname.replace(/\/$/, "")
  return Option.some([
    `${url.origin}${path}/.well-known/openid-configuration`,
    `${url.origin}/.well-known/oauth-authorization-server${path}`
  ])
}

const decodeMetadata = Schema.decodeUnknownEither(Metadata, { errors: "all" })

/** 127.0.0.0/8, ::1 and `localhost`: the only hosts plain `http` may reach, for development. */
const isLoopback = (hostname: string): boolean =>
  hostname === "localhost" || hostname === "[::1]" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname)

/**
 * Whether `url` may carry the client's credentials: `https`, or `http` to a loopback host (a development server on
 * this machine, where nothing travels over a network).
 *
 * @example
 * ```ts
 * import { Discovery } from "@effect-token/core"
 *
 * Discovery.isSecureUrl("https://auth.example.com") // true
 * Discovery.isSecureUrl("http://127.0.0.1:8080") // true
 * Discovery.isSecureUrl("http://auth.example.com") // false
 * ```
 *
 * @since 0.1.0
 * @category urls
 */
export const isSecureUrl = (url: string): boolean => {
  if (!URL.canParse(url)) return false
  const parsed = new URL(url)
  return parsed.protocol === "https:" || (parsed.protocol === "http:" && isLoopback(parsed.hostname))
}

const endpointFields = [
  "authorization_endpoint",
  "token_endpoint",
  "jwks_uri",
  "userinfo_endpoint",
  "registration_endpoint",
  "revocation_endpoint",
  "introspection_endpoint",
  "end_session_endpoint",
  "pushed_authorization_request_endpoint",
  "device_authorization_endpoint"
] as const

/**
 * The endpoint fields of `metadata` the client must not use: a scheme other than the issuer's (`file:`, `data:`,
 * `ws:`, `http:` under an `https` issuer), or `http` to a host that is not a loopback one. The metadata comes from
 * the server, so such a field is a `MalformedResponse` of the server's, not a setting of ours to fix.
 */
export const insecureEndpoints = (issuer: string, metadata: Metadata): Array<string> => {
  const scheme = URL.canParse(issuer) ? new URL(issuer).protocol : "https:"
  return endpointFields.filter((field) => {
    const value = metadata[field]
    return value !== undefined && !(isSecureUrl(value) && new URL(value).protocol === scheme)
  })
}

/**
 * Fetches the metadata once, without caching: tries OpenID Connect Discovery first and RFC 8414 when that answers
 * 404, and checks that the document's `issuer` is exactly the configured one.
 *
 * @example
 * ```ts
 * import { Discovery } from "@effect-token/core"
 * import { NodeHttpClient } from "@effect/platform-node"
 * import { Effect } from "effect"
 *
 * const metadata = Discovery.fetch({ issuer: "https://auth.example.com" }).pipe(
 *   Effect.provide(NodeHttpClient.layerUndici)
 * )
 * ```
 *
 * @since 0.1.0
 * @category fetching
 */
export const fetch = (options: Options): Effect.Effect<Metadata, TokenError, HttpClient.HttpClient> =>
  Effect.flatMap(HttpClient.HttpClient, (client) => fetchWith(client, options))

const fetchWith = (client: HttpClient.HttpClient, options: Options): Effect.Effect<Metadata, TokenError> =>
  Effect.gen(function*() {
    const timeout = Duration.decode(options.timeout ?? Duration.seconds(10))
    const urls = documentUrls(options.issuer)
    if (Option.isNone(urls)) {
      return yield* new TokenError({
        operation,
        reason: new Misconfigured({
          description: `the issuer ${JSON.stringify(options.issuer)} is not an absolute URL without query or fragment`
        })
      })
    }
    if (!isSecureUrl(options.issuer)) {
      // RFC 8414 §2 and RFC 9700 §2.6: credentials and tokens travel only over TLS. Plain http is left for a
      // development server on this machine; anything else is a setting to fix, so nothing is sent.
      return yield* new TokenError({
        operation,
        reason: new Misconfigured({
          description: `the issuer ${
            JSON.stringify(internal.serverUrl(options.issuer))
          } is neither https nor http on a loopback address`
        })
      })
    }
    const get = (url: string) =>
      internal.execute(client, HttpClientRequest.get(url, { acceptJson: true }), {
        operation,
        timeout,
        endpoint: "metadata endpoint",
        maxResponseBytes: options.maxResponseBytes ?? internal.defaultMaxResponseBytes
      })
    let exchange = yield* get(urls.value[0])
    if (exchange.response.status === 404) exchange = yield* get(urls.value[1])
    const status = exchange.response.status
    if (status === 404) {
      return yield* new TokenError({
        operation,
        reason: new Misconfigured({
          description: `no metadata at ${urls.value[0]} nor at ${urls.value[1]} (HTTP 404); is the issuer right?`
        })
      })
    }
    if (status < 200 || status >= 300) return yield* internal.failure(exchange, operation)
    const json = internal.parseJson(exchange.text)
    if (Option.isNone(json) || !Predicate.isRecord(json.value)) {
      return yield* new TokenError({
        operation,
        reason: new MalformedResponse({
          status,
          description: `expected a JSON object, got ${internal.contentType(exchange.response)}`
        })
      })
    }
    const metadata = decodeMetadata(json.value)
    if (metadata._tag === "Left") {
      const fields = invalidFields(metadata.left)
      return yield* new TokenError({
        operation,
        reason: new MalformedResponse({
          status,
          fields,
          description: `invalid metadata field(s): ${fields.join(", ")}`
        })
      })
    }
    if (metadata.right.issuer !== options.issuer) {
      // RFC 8414 §3.3: a different issuer may be a mix-up attack, or a configuration typo (a trailing slash). Either
      // way the configured value is what has to change, and it is not a server fault a retry could fix: this is
      // `Misconfigured` rather than a new reason every caller would have to handle. Issuers are public; the detail
      // may name both.
      return yield* new TokenError({
        operation,
        reason: new Misconfigured({
          description: `issuer mismatch: configured ${
            JSON.stringify(internal.spanUrl(options.issuer))
          }, the metadata says ${JSON.stringify(internal.serverUrl(metadata.right.issuer))}`
        })
      })
    }
    const insecure = insecureEndpoints(options.issuer, metadata.right)
    if (insecure.length > 0) {
      return yield* new TokenError({
        operation,
        reason: new MalformedResponse({
          status,
          fields: insecure,
          description: `metadata endpoint(s) not on the issuer's scheme over https (or loopback http): ${
            insecure.join(", ")
          }`
        })
      })
    }
    return metadata.right
  }).pipe(
    Effect.withSpan("effect-token/Discovery.fetch", {
      kind: "client",
      attributes: { "oauth.issuer": internal.spanUrl(options.issuer) }
    })
  )

const missingEndpoint = (name: string) =>
  new TokenError({
    operation,
    reason: new Misconfigured({ description: `the authorization server publishes no ${name}` })
  })

/**
 * A `Discovery` that fetches on first use and keeps the metadata, using the `HttpClient` in context. It lives as
 * long as the scope: a fetch still in flight when the scope closes is interrupted.
 *
 * Concurrent callers share one fetch. A failure is not kept (`Effect.cached` would keep it): every caller that
 * shared the failed attempt sees that failure, and the next call tries again. An interrupted caller is not a
 * failure: the shared fetch goes on for the others, and its document is kept when it succeeds.
 *
 * @example
 * ```ts
 * import { ClientAuth, ClientCredentials, Discovery } from "@effect-token/core"
 * import { NodeHttpClient } from "@effect/platform-node"
 * import { Effect, Redacted } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const discovery = yield* Discovery.make({ issuer: "https://auth.example.com" })
 *   const source = yield* ClientCredentials.make({
 *     tokenUrl: discovery,
 *     clientAuth: ClientAuth.clientSecretBasic({ clientId: "billing", clientSecret: Redacted.make("s3cr3t") })
 *   })
 *   return yield* source.fetch
 * }).pipe(Effect.scoped, Effect.provide(NodeHttpClient.layerUndici))
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<Discovery, never, HttpClient.HttpClient | Scope.Scope> =>
  Effect.flatMap(HttpClient.HttpClient, (client) => makeWith(client, options))

/** The document is kept for the life of the `Discovery`: it is valid, and never due for a refresh, until +∞. */
const forever: Either.Either<singleFlight.Validity> = Either.right({ validUntil: Infinity, refreshAt: Infinity })

/**
 * Like {@link make}, with an explicit `HttpClient`.
 *
 * @example
 * ```ts
 * import { Discovery } from "@effect-token/core"
 * import { HttpClient } from "@effect/platform"
 * import { Effect } from "effect"
 *
 * declare const client: HttpClient.HttpClient
 * const tokenUrl = Effect.flatMap(
 *   Discovery.makeWith(client, { issuer: "https://auth.example.com" }),
 *   (discovery) => discovery.tokenEndpoint
 * ).pipe(Effect.scoped)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeWith = (
  client: HttpClient.HttpClient,
  options: Options
): Effect.Effect<Discovery, never, Scope.Scope> =>
  Effect.gen(function*() {
    const fetchOnce = fetchWith(client, options)
    // The single-flight engine of the token caches, with one cell that never expires: callers share the fetch in
    // flight, a failure leaves the cell empty (so each caller that shared it gets that failure and the next call
    // starts afresh), and the fetch runs in its own fiber, so an interrupted caller (a cancelled request) neither
    // cancels the fetch the others wait for nor leaves a half-done attempt behind. That fiber is forked in the
    // scope this `Discovery` is made in, as a `TokenCache`'s fetch is in the cache's: a daemon fiber would outlive
    // the application, whereas closing the scope interrupts it. The document timeout bounds it meanwhile.
    const engine = singleFlight.makeEngine<Metadata, TokenError>({
      clock: yield* Effect.clock,
      random: yield* Effect.random,
      scope: yield* Effect.scope,
      validity: () => forever
    })
    const cell = singleFlight.makeCell<Metadata, TokenError>()
    const metadata = Effect.suspend(() => engine.get(cell, () => fetchOnce))
    return {
      [TypeId]: TypeId,
      issuer: options.issuer,
      metadata,
      tokenEndpoint: Effect.flatMap(
        metadata,
        (m) =>
          m.token_endpoint === undefined
            ? Effect.fail(missingEndpoint("token_endpoint"))
            : Effect.succeed(m.token_endpoint)
      ),
      revocationEndpoint: Effect.flatMap(metadata, (m) =>
        m.revocation_endpoint === undefined
          ? Effect.fail(missingEndpoint("revocation_endpoint"))
          : Effect.succeed(m.revocation_endpoint))
    } satisfies Discovery
  })

/**
 * Provides a {@link Discovery} for `issuer`.
 *
 * @example
 * ```ts
 * import { Discovery } from "@effect-token/core"
 * import { NodeHttpClient } from "@effect/platform-node"
 * import { Layer } from "effect"
 *
 * const DiscoveryLive = Discovery.layer({ issuer: "https://auth.example.com" }).pipe(
 *   Layer.provide(NodeHttpClient.layerUndici)
 * )
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<Discovery, never, HttpClient.HttpClient> =>
  Layer.scoped(Discovery, make(options))

/**
 * Discovery settings read from configuration: `ISSUER` and optional `DISCOVERY_TIMEOUT` (e.g. `5 seconds`).
 *
 * @example
 * ```ts
 * import { Discovery } from "@effect-token/core"
 * import { Config } from "effect"
 *
 * // reads AUTH_ISSUER, AUTH_DISCOVERY_TIMEOUT
 * const settings = Config.nested(Discovery.config, "AUTH")
 * ```
 *
 * @since 0.1.0
 * @category config
 */
export const config: Config.Config<Options> = Config.all({
  issuer: Config.nonEmptyString("ISSUER"),
  timeout: Config.option(Config.duration("DISCOVERY_TIMEOUT"))
}).pipe(Config.map((c): Options => ({ issuer: c.issuer, timeout: Option.getOrUndefined(c.timeout) })))

/**
 * Provides a {@link Discovery} from configuration (see {@link config}).
 *
 * @example
 * ```ts
 * import { Discovery } from "@effect-token/core"
 * import { NodeHttpClient } from "@effect/platform-node"
 * import { Layer } from "effect"
 *
 * const DiscoveryLive = Discovery.layerConfig().pipe(Layer.provide(NodeHttpClient.layerUndici))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  settings: Config.Config<Options> = config
): Layer.Layer<Discovery, ConfigError.ConfigError, HttpClient.HttpClient> =>
  Layer.scoped(Discovery, Effect.flatMap(settings, make))
