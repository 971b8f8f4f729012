/**
 * A protected API that accepts DPoP-bound access tokens only (RFC 9449 §7), verifying every proof the way a strict
 * resource server does: so a test proves a client's proofs, not just its headers.
 *
 * A request needs `Authorization: DPoP <token>` and one `DPoP` header. The token must verify against the
 * authorization server's JWKS (issuer and audience when given) and carry `cnf.jkt`. The proof must be a `dpop+jwt`
 * signed by its own embedded public `jwk` (no private members) with an asymmetric algorithm, whose thumbprint is the
 * token's `cnf.jkt`; its `htm` and `htu` must be this request's method and URL (without query and fragment), its
 * `ath` the token's hash, its `iat` within the window of the Effect `Clock`, and its `jti` unseen (a bounded replay
 * cache). With `requireNonce`, the proof must carry the server's current nonce, else the answer is 401
 * `WWW-Authenticate: DPoP error="use_dpop_nonce"` with a `DPoP-Nonce` header. Every answer carries the current
 * nonce when nonces are on. Failures are 401 `DPoP error="invalid_dpop_proof"` or `error="invalid_token"`, and each
 * reason is recorded for the test to read.
 *
 * @since 0.2.0
 */
import type * as HttpApp from "@effect/platform/HttpApp"
import type * as HttpClient from "@effect/platform/HttpClient"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type * as jose from "jose"
import { calculateJwkThumbprint, createLocalJWKSet, EmbeddedJWK, jwtVerify } from "jose"
import * as Serve from "./internal/serve.js"
import * as TestHttpClient from "./TestHttpClient.js"

/**
 * @since 0.2.0
 * @category models
 */
export interface Options {
  /** The authorization server's public keys: access tokens must verify against them. */
  readonly jwks: jose.JSONWebKeySet
  /** The `iss` tokens must carry. Default: not checked. */
  readonly issuer?: string | undefined
  /** The `aud` tokens must carry. Default: not checked. */
  readonly audience?: string | undefined
  /** Demand the server's nonce in every proof (RFC 9449 §9). Default false. */
  readonly requireNonce?: boolean | undefined
  /** How far a proof's `iat` may be from the server's clock, in seconds. Default 60. */
  readonly iatWindowSeconds?: number | undefined
  /** How many `jti` values are remembered for replay detection. Default 10 000. */
  readonly replayCacheSize?: number | undefined
}

/**
 * @since 0.2.0
 * @category models
 */
export interface InProcessOptions extends Options {
  /** Default `"https://dpop-api.test"`. */
  readonly origin?: string | undefined
}

/**
 * @since 0.2.0
 * @category models
 */
export interface Counts {
  readonly total: number
  readonly ok: number
  readonly unauthorized: number
  /** 401s that asked for a nonce (`use_dpop_nonce`). */
  readonly nonceChallenges: number
}

/**
 * A DPoP-verifying API.
 *
 * @example
 * ```ts
 * import { DPoPResourceServer } from "@effect-token/testing"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const api = yield* DPoPResourceServer.makeInProcess({ jwks: { keys: [] }, requireNonce: true })
 *   const { ok, nonceChallenges } = yield* api.counts
 *   const why = yield* api.rejections // e.g. ["DPoP proof jti was used before"]
 * })
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface DPoPResourceServer extends TestHttpClient.Mountable {
  readonly url: string
  readonly app: HttpApp.Default
  /** An in-process `HttpClient` reaching this API only (socket-bound servers are reached with any client). */
  readonly client: HttpClient.HttpClient
  readonly counts: Effect.Effect<Counts>
  /** Why each rejected request was rejected, in order. */
  readonly rejections: Effect.Effect<ReadonlyArray<string>>
  /** Issues a new nonce: proofs with the old one are challenged from now on (when nonces are required). */
  readonly rotateNonce: Effect.Effect<void>
}

/**
 * The API on 127.0.0.1, on a port the OS picks, until the scope closes.
 *
 * @example
 * ```ts
 * import { DPoPResourceServer } from "@effect-token/testing"
 * import { Effect } from "effect"
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const api = yield* DPoPResourceServer.make({ jwks: { keys: [] } })
 *   return api.url
 * }))
 * ```
 *
 * @since 0.2.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<DPoPResourceServer, never, Scope.Scope> =>
  Serve.onLoopback((origin) => Effect.sync(() => build(options, origin)))

/**
 * The same API without a socket; reach it through its `client` (or mount it in a `TestHttpClient`).
 *
 * @example
 * ```ts
 * import { DPoPResourceServer } from "@effect-token/testing"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const api = yield* DPoPResourceServer.makeInProcess({ jwks: { keys: [] } })
 *   return yield* api.client.get(`${api.url}/orders`) // 401: no token
 * })
 * ```
 *
 * @since 0.2.0
 * @category constructors
 */
export const makeInProcess = (options: InProcessOptions): Effect.Effect<DPoPResourceServer> =>
  Effect.sync(() => build(options, new URL(options.origin ?? "https://dpop-api.test").origin))

// ---------------------------------------------------------------------------------------------------------------

const asymmetric = ["ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512", "EdDSA", "Ed25519"]
const privateMembers = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"]

const base64url = (bytes: Uint8Array): string => {
  let binary = ""
  for (let i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]!)
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "")
}

const sha256 = async (text: string): Promise<string> =>
  base64url(new Uint8Array(await globalThis.crypto.subtle.digest("SHA-256", new TextEncoder().encode(text))))

class Rejection {
  constructor(readonly error: "invalid_token" | "invalid_dpop_proof" | "use_dpop_nonce", readonly reason: string) {}
}

const build = (options: Options, origin: string): DPoPResourceServer => {
  const keys = createLocalJWKSet(options.jwks)
  const window = options.iatWindowSeconds ?? 60
  const replayCap = options.replayCacheSize ?? 10_000
  const seen = new Set<string>()
  const rejections: Array<string> = []
  let counts: Counts = { total: 0, ok: 0, unauthorized: 0, nonceChallenges: 0 }
  let nonce = globalThis.crypto.randomUUID()
  const nonces = options.requireNonce === true

  const remember = (jti: string): boolean => {
    if (seen.has(jti)) return false
    seen.add(jti)
    // A `Set` keeps insertion order: the oldest `jti` goes first. Proofs that old fail the `iat` window anyway.
    if (seen.size > replayCap) seen.delete(seen.values().next().value!)
    return true
  }

  const verify = async (
    method: string,
    url: string,
    authorization: string | undefined,
    proofs: ReadonlyArray<string>,
    nowMillis: number
  ): Promise<jose.JWTPayload | Rejection> => {
    const match = authorization === undefined ? null : /^DPoP\s+(\S+)\s*$/i.exec(authorization)
    if (match === null) return new Rejection("invalid_token", "no DPoP access token")
    const token = match[1]!
    if (proofs.length !== 1) return new Rejection("invalid_dpop_proof", "exactly one DPoP proof is required")
    const proofJwt = proofs[0]!
    const currentDate = new Date(nowMillis)
    let proof: jose.JWTVerifyResult & { readonly protectedHeader: jose.JWTHeaderParameters }
    try {
      proof = await jwtVerify(proofJwt, EmbeddedJWK, { typ: "dpop+jwt", algorithms: asymmetric, currentDate })
    } catch (cause) {
      return new Rejection("invalid_dpop_proof", `DPoP proof does not verify: ${(cause as Error).message}`)
    }
    const jwk = proof.protectedHeader.jwk ?? {}
    if (privateMembers.some((member) => member in jwk)) {
      return new Rejection("invalid_dpop_proof", "DPoP proof jwk has private key members")
    }
    const claims = proof.payload
    if (claims.htm !== method) return new Rejection("invalid_dpop_proof", "DPoP proof htm mismatch")
    const expected = new URL(url)
    expected.search = ""
    expected.hash = ""
    const actual = typeof claims.htu === "string" && URL.canParse(claims.htu) ? new URL(claims.htu) : undefined
    if (actual === undefined || actual.search !== "" || actual.hash !== "" || actual.href !== expected.href) {
      return new Rejection("invalid_dpop_proof", "DPoP proof htu mismatch")
    }
    if (typeof claims.iat !== "number" || Math.abs(claims.iat - nowMillis / 1000) > window) {
      return new Rejection("invalid_dpop_proof", "DPoP proof iat is outside the window")
    }
    if (claims.ath !== await sha256(token)) return new Rejection("invalid_dpop_proof", "DPoP proof ath mismatch")
    if (nonces && claims.nonce !== nonce) {
      return new Rejection("use_dpop_nonce", "DPoP proof has no current nonce")
    }
    if (typeof claims.jti !== "string" || claims.jti === "") {
      return new Rejection("invalid_dpop_proof", "DPoP proof has no jti")
    }
    if (!remember(claims.jti)) return new Rejection("invalid_dpop_proof", "DPoP proof jti was used before")
    let access: jose.JWTPayload
    try {
      access = (await jwtVerify(token, keys, {
        currentDate,
        ...(options.issuer !== undefined ? { issuer: options.issuer } : {}),
        ...(options.audience !== undefined ? { audience: options.audience } : {})
      })).payload
    } catch (cause) {
      return new Rejection("invalid_token", `the access token does not verify: ${(cause as Error).message}`)
    }
    const jkt = (access.cnf as { jkt?: unknown } | undefined)?.jkt
    if (typeof jkt !== "string") {
      return new Rejection("invalid_token", "the access token is not DPoP-bound (no cnf.jkt)")
    }
    if (jkt !== await calculateJwkThumbprint(jwk, "sha256")) {
      return new Rejection("invalid_token", "the DPoP proof key is not the key the token is bound to (cnf.jkt)")
    }
    return access
  }

  const app: HttpApp.Default = Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    counts = { ...counts, total: counts.total + 1 }
    const now = yield* Clock.currentTimeMillis
    const path = request.url.startsWith("/") ? request.url : new URL(request.url).pathname
    const url = origin + path
    const dpopHeader = request.headers["dpop"]
    // Node joins repeated headers with ", ": a proof never contains a comma, so a comma means several proofs.
    const proofs = dpopHeader === undefined ? [] : dpopHeader.split(",").map((p) => p.trim())
    const result = yield* Effect.promise(() =>
      verify(request.method, url, request.headers["authorization"], proofs, now)
    )
    const nonceHeader: Record<string, string> = nonces ? { "dpop-nonce": nonce } : {}
    if (result instanceof Rejection) {
      rejections.push(result.reason)
      counts = {
        ...counts,
        unauthorized: counts.unauthorized + 1,
        nonceChallenges: counts.nonceChallenges + (result.error === "use_dpop_nonce" ? 1 : 0)
      }
      return HttpServerResponse.unsafeJson({ error: result.error, error_description: result.reason }, {
        status: 401,
        headers: {
          ...nonceHeader,
          "www-authenticate": `DPoP algs="ES256 EdDSA PS256 RS256", error="${result.error}", error_description="${
            result.reason.replace(/["\\]/g, "")
          }"`
        }
      })
    }
    counts = { ...counts, ok: counts.ok + 1 }
    return HttpServerResponse.unsafeJson({
      ok: true,
      method: request.method,
      path: path.split("?")[0] ?? "/",
      sub: result.sub ?? null,
      clientId: (result.client_id as string | undefined) ?? null
    }, { headers: nonceHeader })
  })

  return {
    url: origin,
    origin,
    app,
    client: TestHttpClient.make({ origin, app }),
    counts: Effect.sync(() => counts),
    rejections: Effect.sync(() => [...rejections]),
    rotateNonce: Effect.sync(() => {
      nonce = globalThis.crypto.randomUUID()
    })
  }
}
