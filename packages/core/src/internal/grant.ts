/*
 * What every grant against a token endpoint shares: how it reaches the endpoint, how its form is built, how its key
 * is made, and how its configuration is read. Each grant module (`ClientCredentials`, `RefreshToken`, `Password`,
 * `TokenExchange`) adds only its own parameters.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import type * as AccessToken from "../AccessToken.js"
import * as ClientAuth from "../ClientAuth.js"
import * as Discovery from "../Discovery.js"
import * as TokenEndpoint from "../TokenEndpoint.js"
import type { TokenError } from "../TokenError.js"
import type { EndpointOptions, TokenShape } from "../TokenSource.js"

/** One value or several, as a list. */
export const values = (value: string | ReadonlyArray<string> | undefined): ReadonlyArray<string> =>
  value === undefined ? [] : typeof value === "string" ? [value] : value

/** The form parameters of a token shape, in a fixed order (the key depends on it). */
export const shapeParams = (shape: TokenShape): Array<[string, string]> => {
  const params: Array<[string, string]> = []
  if (shape.scope !== undefined) params.push(["scope", shape.scope])
  for (const resource of values(shape.resource)) params.push(["resource", resource])
  for (const audience of values(shape.audience)) params.push(["audience", audience])
  for (const key of Object.keys(shape.extraParams ?? {}).sort()) params.push([key, shape.extraParams![key]!])
  return params
}

/** A cache key from non-secret parts. JSON keeps parts with separators in them from colliding. */
export const keyOf = (grant: string, endpoint: EndpointOptions, shape: TokenShape, ...more: Array<string>): string =>
  JSON.stringify([
    grant,
    endpointKey(endpoint.tokenUrl),
    endpoint.clientAuth.clientId,
    shapeParams(shape),
    ...more,
    // A DPoP token is bound to one key: a new key means new tokens. A pair, so no `more` part can spell it; absent
    // without DPoP, so the keys of bearer sources (and their shared records) are unchanged.
    ...(endpoint.dpop === undefined ? [] : [["dpop", endpoint.dpop.thumbprint]])
  ])

/**
 * A discovered endpoint is known by its issuer: the URL is not known before the first fetch. A pair, not a prefixed
 * string, so that no token URL (`discovery:` is a valid scheme) can spell the same key.
 */
const endpointKey = (tokenUrl: EndpointOptions["tokenUrl"]): string | readonly [string, string] =>
  Discovery.isDiscovery(tokenUrl) ? ["discovery", tokenUrl.issuer] : tokenUrl.toString()

/** Sends one grant to the configured endpoint, looking it up through discovery first when it is one. */
export const requester = (
  options: EndpointOptions
): Effect.Effect<
  (
    params: TokenEndpoint.Params,
    requestOptions?: TokenEndpoint.RequestOptions
  ) => Effect.Effect<AccessToken.AccessToken, TokenError>,
  never,
  HttpClient.HttpClient
> =>
  Effect.map(HttpClient.HttpClient, (client) => {
    const { tokenUrl } = options
    const endpointOptions = {
      clientAuth: options.clientAuth,
      attemptTimeout: options.attemptTimeout,
      defaultLifetime: options.defaultLifetime,
      maxResponseBytes: options.maxResponseBytes,
      dpop: options.dpop
    }
    if (!Discovery.isDiscovery(tokenUrl)) {
      return TokenEndpoint.makeWith(client, { ...endpointOptions, tokenUrl }).request
    }
    return (params, requestOptions) =>
      Effect.flatMap(
        tokenUrl.tokenEndpoint,
        (url) => TokenEndpoint.makeWith(client, { ...endpointOptions, tokenUrl: url }).request(params, requestOptions)
      )
  })

/** Parameters RFC 8707 and RFC 8693 allow more than once; any other name is sent once, first value wins. */
const multiValued = new Set(["resource", "audience"])

/**
 * A grant's form: its own parameters, then the shape's. The grant's own always win: an `extraParams` entry can
 * never turn a `refresh_token` grant into another grant or replace the refresh token.
 */
export const grantForm = (
  grant: Readonly<Record<string, string | Redacted.Redacted<string> | undefined>>,
  shape: TokenShape
): TokenEndpoint.Params => {
  // No prototype: an extra parameter named `constructor` or `__proto__` is a parameter like any other.
  const form: Record<string, string | Redacted.Redacted<string> | Array<string>> = Object.create(null)
  for (const [name, value] of Object.entries(grant)) if (value !== undefined) form[name] = value
  for (const [name, value] of shapeParams(shape)) {
    const current = form[name]
    if (current === undefined) form[name] = multiValued.has(name) ? [value] : value
    else if (Array.isArray(current) && multiValued.has(name)) current.push(value)
  }
  return form
}

/** Endpoint, client and token shape, as every grant's configuration reads them. */
export const grantConfig: Config.Config<EndpointOptions & TokenShape> = Config.all({
  tokenUrl: Config.url("TOKEN_URL"),
  clientAuth: ClientAuth.config,
  scope: Config.option(Config.string("SCOPE")),
  audience: Config.option(Config.string("AUDIENCE")),
  resource: Config.option(Config.string("RESOURCE")),
  attemptTimeout: Config.option(Config.duration("ATTEMPT_TIMEOUT"))
}).pipe(Config.map((c) => ({
  tokenUrl: c.tokenUrl,
  clientAuth: c.clientAuth,
  scope: Option.getOrUndefined(c.scope),
  audience: Option.getOrUndefined(c.audience),
  resource: Option.getOrUndefined(c.resource),
  attemptTimeout: Option.getOrUndefined(c.attemptTimeout)
})))
