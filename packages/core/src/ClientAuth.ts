/**
 * How a client proves its identity to the token endpoint (RFC 6749 §2.3, RFC 7523, OIDC Core §9).
 *
 * @since 0.1.0
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type * as jose from "jose"
import { importPKCS8, SignJWT } from "jose"
import { Misconfigured, TokenError } from "./TokenError.js"

/**
 * A private key for `private_key_jwt`: a PKCS#8 PEM string, a JWK, or a key object `jose` accepts.
 *
 * @since 0.1.0
 * @category models
 */
export type PrivateKey = string | jose.JWK | jose.CryptoKey | jose.KeyObject

/**
 * @since 0.1.0
 * @category models
 */
export type ClientAuth = ClientSecretBasic | ClientSecretPost | PrivateKeyJwt | ClientAssertion | None

/**
 * The client id and secret in the `Authorization: Basic` header, each form-urlencoded first (RFC 6749 §2.3.1).
 *
 * @since 0.1.0
 * @category models
 */
export interface ClientSecretBasic {
  readonly _tag: "ClientSecretBasic"
  readonly clientId: string
  readonly clientSecret: Redacted.Redacted<string>
}

/**
 * The client id and secret as `client_id` and `client_secret` form parameters.
 *
 * @since 0.1.0
 * @category models
 */
export interface ClientSecretPost {
  readonly _tag: "ClientSecretPost"
  readonly clientId: string
  readonly clientSecret: Redacted.Redacted<string>
}

/**
 * A short-lived JWT signed with the client's private key (RFC 7523 §2.2), sent as `client_assertion`.
 *
 * @since 0.1.0
 * @category models
 */
export interface PrivateKeyJwt {
  readonly _tag: "PrivateKeyJwt"
  readonly clientId: string
  readonly privateKey: Redacted.Redacted<PrivateKey>
  /** JWS algorithm, e.g. `RS256`, `ES256`, `EdDSA`. */
  readonly algorithm: string
  readonly keyId: string | undefined
  /** The assertion's `aud`; the token endpoint URL unless the server wants its issuer. */
  readonly audience: string | undefined
  /** Lifetime of each assertion, in seconds. */
  readonly lifetimeSeconds: number
}

/**
 * An assertion that comes from elsewhere (RFC 7523 §2.2 `client_assertion`): a workload identity or federated token
 * (a Kubernetes projected service-account token, a cloud's identity token, a CI job's OIDC token), read anew for
 * every token request because such tokens are short-lived and rotated by their issuer.
 *
 * @since 0.1.0
 * @category models
 */
export interface ClientAssertion {
  readonly _tag: "ClientAssertion"
  readonly clientId: string
  /** Produces the assertion for one token request. */
  readonly assertion: Effect.Effect<Redacted.Redacted<string>, TokenError>
  /** The `client_assertion_type`; RFC 7523's `urn:ietf:params:oauth:client-assertion-type:jwt-bearer` by default. */
  readonly assertionType: string
}

/**
 * A public client: only `client_id` is sent.
 *
 * @since 0.1.0
 * @category models
 */
export interface None {
  readonly _tag: "None"
  readonly clientId: string
}

/**
 * What authentication adds to a token request.
 *
 * @since 0.1.0
 * @category models
 */
export interface Credentials {
  readonly headers: Readonly<Record<string, Redacted.Redacted<string>>>
  readonly params: Readonly<Record<string, string | Redacted.Redacted<string>>>
}

/**
 * The RFC 8414 name of each method.
 *
 * @since 0.1.0
 * @category models
 */
export type Method = "client_secret_basic" | "client_secret_post" | "private_key_jwt" | "none"

/**
 * @example
 * ```ts
 * import { ClientAuth } from "@effect-token/core"
 * import { Redacted } from "effect"
 *
 * const auth = ClientAuth.clientSecretBasic({ clientId: "billing", clientSecret: Redacted.make("s3cr3t") })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const clientSecretBasic = (options: {
  readonly clientId: string
  readonly clientSecret: Redacted.Redacted<string>
}): ClientAuth => ({ _tag: "ClientSecretBasic", clientId: options.clientId, clientSecret: options.clientSecret })

/**
 * @example
 * ```ts
 * import { ClientAuth } from "@effect-token/core"
 * import { Redacted } from "effect"
 *
 * const auth = ClientAuth.clientSecretPost({ clientId: "billing", clientSecret: Redacted.make("s3cr3t") })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const clientSecretPost = (options: {
  readonly clientId: string
  readonly clientSecret: Redacted.Redacted<string>
}): ClientAuth => ({ _tag: "ClientSecretPost", clientId: options.clientId, clientSecret: options.clientSecret })

/**
 * @example
 * ```ts
 * import { ClientAuth } from "@effect-token/core"
 * import { Redacted } from "effect"
 *
 * declare const pem: string // -----BEGIN PRIVATE KEY----- ...
 * const auth = ClientAuth.privateKeyJwt({ clientId: "billing", privateKey: Redacted.make(pem), algorithm: "ES256" })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const privateKeyJwt = (options: {
  readonly clientId: string
  readonly privateKey: Redacted.Redacted<PrivateKey>
  /** Default: the JWK's `alg`, else `RS256`. */
  readonly algorithm?: string | undefined
  /** Default: the JWK's `kid`. Servers that hold several keys for a client pick the key by it. */
  readonly keyId?: string | undefined
  readonly audience?: string | undefined
  /**
   * Lifetime of each assertion, 1 to 600 seconds (default 60). Outside that range every request fails as
   * `Misconfigured`: a longer-lived assertion is a replayable credential (RFC 7523 §3 wants a short one; RFC 9700
   * §2.4), and one under a second expires before a server with any clock skew reads it.
   */
  readonly lifetimeSeconds?: number | undefined
}): ClientAuth => {
  const jwk = jwkOf(Redacted.value(options.privateKey))
  return {
    _tag: "PrivateKeyJwt",
    clientId: options.clientId,
    privateKey: options.privateKey,
    algorithm: options.algorithm ?? jwk?.alg ?? "RS256",
    keyId: options.keyId ?? jwk?.kid,
    audience: options.audience,
    lifetimeSeconds: options.lifetimeSeconds ?? 60
  }
}

/** A plain JWK object (not a PEM string, `CryptoKey` or `KeyObject`); only its public header fields are read. */
const jwkOf = (key: PrivateKey): jose.JWK | undefined =>
  typeof key === "object" && key !== null && "kty" in key && typeof key.kty === "string" ? key as jose.JWK : undefined

/**
 * @example
 * ```ts
 * import { ClientAuth } from "@effect-token/core"
 *
 * const auth = ClientAuth.none({ clientId: "spa" })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const none = (options: { readonly clientId: string }): ClientAuth => ({
  _tag: "None",
  clientId: options.clientId
})

/**
 * Client authentication with an assertion read at each token request (see {@link ClientAssertion}).
 *
 * @example
 * ```ts
 * import { ClientAuth, TokenError } from "@effect-token/core"
 * import { Effect, Redacted } from "effect"
 *
 * declare const readWorkloadToken: Effect.Effect<string, TokenError.TokenError>
 *
 * const auth = ClientAuth.clientAssertion({
 *   clientId: "billing",
 *   assertion: Effect.map(readWorkloadToken, Redacted.make)
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const clientAssertion = (options: {
  readonly clientId: string
  readonly assertion: Effect.Effect<Redacted.Redacted<string>, TokenError>
  readonly assertionType?: string | undefined
}): ClientAuth => ({
  _tag: "ClientAssertion",
  clientId: options.clientId,
  assertion: options.assertion,
  assertionType: options.assertionType ?? jwtBearerAssertionType
})

/**
 * An assertion read from a file at each token request, e.g. the projected service-account token Kubernetes keeps
 * fresh at `/var/run/secrets/tokens/...` (Azure's `AZURE_FEDERATED_TOKEN_FILE`, AWS's `AWS_WEB_IDENTITY_TOKEN_FILE`).
 * A missing, unreadable or empty file is `Misconfigured`; the error names the path, never the content.
 *
 * @example
 * ```ts
 * import { ClientAuth } from "@effect-token/core"
 * import { NodeFileSystem } from "@effect/platform-node"
 * import { Effect } from "effect"
 *
 * const auth = Effect.map(
 *   ClientAuth.assertionFile("/var/run/secrets/tokens/workload"),
 *   (assertion) => ClientAuth.clientAssertion({ clientId: "billing", assertion })
 * ).pipe(Effect.provide(NodeFileSystem.layer))
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const assertionFile = (
  path: string
): Effect.Effect<Effect.Effect<Redacted.Redacted<string>, TokenError>, never, FileSystem.FileSystem> =>
  Effect.map(FileSystem.FileSystem, (fs) =>
    fs.readFileString(path).pipe(
      Effect.map((content) => content.trim()),
      Effect.filterOrFail(
        (content) => content.length > 0,
        () => new Misconfigured({ description: `the client assertion file ${path} is empty` })
      ),
      Effect.mapError((error) =>
        new TokenError({
          operation: "client assertion",
          reason: error._tag === "Misconfigured"
            ? error
            : new Misconfigured({ description: `cannot read the client assertion file ${path} (${error._tag})` })
        })
      ),
      Effect.map(Redacted.make)
    ))

const jwtBearerAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

/**
 * The RFC 8414 `token_endpoint_auth_method` name of a client authentication.
 *
 * @since 0.1.0
 * @category accessors
 */
export const method = (auth: ClientAuth): Method => {
  switch (auth._tag) {
    case "ClientSecretBasic":
      return "client_secret_basic"
    case "ClientSecretPost":
      return "client_secret_post"
    case "PrivateKeyJwt":
    case "ClientAssertion":
      return "private_key_jwt"
    case "None":
      return "none"
  }
}

/** application/x-www-form-urlencoded, as RFC 6749 §2.3.1 requires before Base64 (platform's `basicAuth` skips it). */
const formEncode = (value: string): string => new URLSearchParams([["", value]]).toString().slice(1)

/**
 * `btoa` rather than Node's `Buffer`, so core runs on every runtime `@effect/platform` supports (browsers, Deno, Bun,
 * workers). `btoa` only takes Latin-1, which is safe here: form encoding leaves nothing but ASCII.
 */
const basicCredentials = (clientId: string, clientSecret: string): string =>
  btoa(`${formEncode(clientId)}:${formEncode(clientSecret)}`)

/**
 * The headers and form parameters that authenticate `auth` at `tokenEndpoint`.
 *
 * @since 0.1.0
 * @category authentication
 */
export const credentials = (
  auth: ClientAuth,
  tokenEndpoint: string
): Effect.Effect<Credentials, TokenError> => {
  switch (auth._tag) {
    case "ClientSecretBasic": {
      const basic = basicCredentials(auth.clientId, Redacted.value(auth.clientSecret))
      return Effect.succeed({ headers: { authorization: Redacted.make(`Basic ${basic}`) }, params: {} })
    }
    case "ClientSecretPost":
      return Effect.succeed({ headers: {}, params: { client_id: auth.clientId, client_secret: auth.clientSecret } })
    case "None":
      return Effect.succeed({ headers: {}, params: { client_id: auth.clientId } })
    case "PrivateKeyJwt":
      return Effect.map(signAssertion(auth, tokenEndpoint), (assertion) => ({
        headers: {},
        params: {
          client_id: auth.clientId,
          client_assertion_type: jwtBearerAssertionType,
          client_assertion: assertion
        }
      }))
    case "ClientAssertion":
      return Effect.map(auth.assertion, (assertion) => ({
        headers: {},
        params: {
          client_id: auth.clientId,
          client_assertion_type: auth.assertionType,
          client_assertion: assertion
        }
      }))
  }
}

class KeyImportFailed extends Data.TaggedError("KeyImportFailed")<{ readonly detail: string }> {}

/**
 * Parsing a PEM on every token request costs more than signing; the imported key is kept for as long as the
 * configured `Redacted` lives. A failed import is not kept, so the error shows on every attempt.
 */
const importedKeys = new WeakMap<Redacted.Redacted<PrivateKey>, Map<string, Promise<jose.CryptoKey>>>()

const signingKey = (auth: PrivateKeyJwt): Promise<jose.CryptoKey | jose.KeyObject | jose.JWK> => {
  const raw = Redacted.value(auth.privateKey)
  if (typeof raw !== "string") return Promise.resolve(raw)
  // A WebCrypto key is bound to one algorithm: the same PEM may serve RS256 and PS256.
  let byAlgorithm = importedKeys.get(auth.privateKey)
  if (byAlgorithm === undefined) {
    byAlgorithm = new Map()
    importedKeys.set(auth.privateKey, byAlgorithm)
  }
  const cached = byAlgorithm.get(auth.algorithm)
  if (cached !== undefined) return cached
  const imported = importPKCS8(raw, auth.algorithm)
  byAlgorithm.set(auth.algorithm, imported)
  const cache = byAlgorithm
  imported.catch(() => cache.delete(auth.algorithm))
  return imported
}

/** The range of `lifetimeSeconds` a `private_key_jwt` assertion may have. */
const assertionLifetime = { min: 1, max: 600 } as const

const signAssertion = (auth: PrivateKeyJwt, tokenEndpoint: string) =>
  Effect.gen(function*() {
    const lifetime = auth.lifetimeSeconds
    if (!(Number.isFinite(lifetime) && lifetime >= assertionLifetime.min && lifetime <= assertionLifetime.max)) {
      return yield* new TokenError({
        operation: "private_key_jwt client assertion",
        reason: new Misconfigured({
          description: `the assertion lifetime ${lifetime} s is outside ${assertionLifetime.min} s to ${
            assertionLifetime.max / 60
          } minutes (lifetimeSeconds)`
        })
      })
    }
    const nowSeconds = Math.floor((yield* Clock.currentTimeMillis) / 1000)
    const assertion = yield* Effect.tryPromise({
      try: async () => {
        const key = await signingKey(auth)
        const header: jose.JWTHeaderParameters = auth.keyId === undefined
          ? { alg: auth.algorithm }
          : { alg: auth.algorithm, kid: auth.keyId }
        return new SignJWT({})
          .setProtectedHeader(header)
          .setIssuer(auth.clientId)
          .setSubject(auth.clientId)
          .setAudience(auth.audience ?? tokenEndpoint)
          // Web Crypto, not `node:crypto`: available on every runtime core supports.
          .setJti(globalThis.crypto.randomUUID())
          .setIssuedAt(nowSeconds)
          .setExpirationTime(nowSeconds + auth.lifetimeSeconds)
          .sign(key)
      },
      // jose's messages name the algorithm or key type, never key material.
      catch: (cause) => new KeyImportFailed({ detail: cause instanceof Error ? cause.message : "unknown error" })
    })
    return Redacted.make(assertion)
  }).pipe(
    Effect.catchTag("KeyImportFailed", (e) =>
      Effect.fail(
        new TokenError({
          operation: "private_key_jwt client assertion",
          reason: new Misconfigured({ description: `cannot sign with the configured key: ${e.detail}` })
        })
      ))
  )

/**
 * Client authentication read from configuration:
 * `CLIENT_ID`; `CLIENT_AUTH_METHOD`: `client_secret_basic` (default), `client_secret_post`, `private_key_jwt` or
 * `none`; `CLIENT_SECRET` (redacted, for the two secret methods); `CLIENT_PRIVATE_KEY` (redacted PKCS#8 PEM, for
 * `private_key_jwt`), `CLIENT_KEY_ALGORITHM` (default `RS256`) and optional `CLIENT_KEY_ID`. A setting the chosen
 * method needs but that is missing is a `ConfigError`, reported at start-up rather than at the first token request.
 *
 * @example
 * ```ts
 * import { ClientAuth } from "@effect-token/core"
 * import { Config } from "effect"
 *
 * // reads BILLING_CLIENT_ID, BILLING_CLIENT_AUTH_METHOD, BILLING_CLIENT_SECRET, ...
 * const billingAuth = Config.nested(ClientAuth.config, "BILLING")
 * ```
 *
 * @since 0.1.0
 * @category config
 */
export const config: Config.Config<ClientAuth> = Config.all({
  clientId: Config.nonEmptyString("CLIENT_ID"),
  method: Config.literal("client_secret_basic", "client_secret_post", "private_key_jwt", "none")("CLIENT_AUTH_METHOD")
    .pipe(Config.withDefault("client_secret_basic" as const)),
  clientSecret: Config.option(Config.redacted("CLIENT_SECRET")),
  privateKey: Config.option(Config.redacted("CLIENT_PRIVATE_KEY")),
  algorithm: Config.option(Config.nonEmptyString("CLIENT_KEY_ALGORITHM")),
  keyId: Config.option(Config.nonEmptyString("CLIENT_KEY_ID"))
}).pipe(Config.mapOrFail((c): Either.Either<ClientAuth, ConfigError.ConfigError> => {
  const missing = (name: string) =>
    Either.left(ConfigError.MissingData([name], `${name} is required with CLIENT_AUTH_METHOD=${c.method}`))
  switch (c.method) {
    case "none":
      return Either.right(none({ clientId: c.clientId }))
    case "client_secret_basic":
    case "client_secret_post": {
      if (Option.isNone(c.clientSecret)) return missing("CLIENT_SECRET")
      const client = { clientId: c.clientId, clientSecret: c.clientSecret.value }
      return Either.right(c.method === "client_secret_post" ? clientSecretPost(client) : clientSecretBasic(client))
    }
    case "private_key_jwt": {
      if (Option.isNone(c.privateKey)) return missing("CLIENT_PRIVATE_KEY")
      // Environment variables often carry a PEM on one line with literal "\n" sequences.
      const pem = Redacted.value(c.privateKey.value).replace(/\\n/g, "\n")
      return Either.right(privateKeyJwt({
        clientId: c.clientId,
        privateKey: Redacted.make<PrivateKey>(pem),
        algorithm: Option.getOrUndefined(c.algorithm),
        keyId: Option.getOrUndefined(c.keyId)
      }))
    }
  }
}))
