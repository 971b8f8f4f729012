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
import { Misconfigured, TokenError } from "../TokenError.js"
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

/**
 * Parameters of the protocol itself, which only the grant and the client authentication set: the client's
 * authentication (RFC 6749 §2.3.1, RFC 7521 §4.2), each grant's credentials and their types (RFC 6749 §4, RFC 7636,
 * RFC 7523, RFC 8628, RFC 8693). From `extraParams` they would be a second client authentication beside the Basic
 * header, or another grant's credentials in this one. Compared without case: some servers read form names so.
 */
const protocolParams: ReadonlySet<string> = new Set([
  "grant_type",
  "client_id",
  "client_secret",
  "client_assertion",
  "client_assertion_type",
  "refresh_token",
  "code",
  "code_verifier",
  "redirect_uri",
  "username",
  "password",
  "assertion",
  "device_code",
  "subject_token",
  "subject_token_type",
  "actor_token",
  "actor_token_type",
  "requested_token_type"
])

/** The protocol parameters `extraParams` tries to set, by their protocol names (never anything else it holds). */
const protocolParamsIn = (extraParams: TokenShape["extraParams"]): ReadonlyArray<string> => {
  const found = new Set<string>()
  for (const name of Object.keys(extraParams ?? {})) {
    const lower = name.toLowerCase()
    if (protocolParams.has(lower)) found.add(lower)
  }
  return [...found]
}

/**
 * Sends one grant to the configured endpoint, looking it up through discovery first when it is one. A shape whose
 * `extraParams` names a protocol parameter sends nothing: every request fails with `Misconfigured`.
 */
export const requester = (
  options: EndpointOptions & TokenShape
): Effect.Effect<
  (
    params: TokenEndpoint.Params,
    requestOptions?: TokenEndpoint.RequestOptions
  ) => Effect.Effect<AccessToken.AccessToken, TokenError>,
  never,
  HttpClient.HttpClient
> =>
  Effect.map(HttpClient.HttpClient, (client) => {
    const refused = protocolParamsIn(options.extraParams)
    if (refused.length > 0) {
      const reason = new Misconfigured({
        description: `extraParams cannot set ${refused.join(", ")}: the grant and the client authentication set ` +
          `the protocol's parameters`
      })
      return (params) =>
        Effect.fail(
          new TokenError({
            operation: `${typeof params.grant_type === "string" ? params.grant_type : "token"} grant`,
            reason
          })
        )
    }
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
 * A grant's form: its own parameters, then the shape's. The grant's own always win, and a named shape parameter wins
 * over an `extraParams` entry of the same name (protocol parameters never get here from `extraParams`: the requester
 * refuses them).
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
