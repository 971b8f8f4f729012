import { ClientAuth, ClientCredentials } from "@effect-token/core"
import { OidcProvider } from "@effect-token/testing/oidc-provider"
import { HttpClient } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import type * as jose from "jose"
import { decodeJwt, decodeProtectedHeader, exportJWK, exportPKCS8, generateKeyPair } from "jose"
import { recording } from "./support/http.js"

const keyPair = (alg: string) =>
  Effect.promise(async () => {
    const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true })
    return { privateKey, publicJwk: { ...await exportJWK(publicKey), alg, kid: `${alg}-key`, use: "sig" } }
  })

const client = (clientId: string, publicJwk: jose.JWK) => ({
  client_id: clientId,
  grant_types: ["client_credentials"],
  response_types: [],
  redirect_uris: [],
  scope: "api:read",
  token_endpoint_auth_method: "private_key_jwt" as const,
  jwks: { keys: [publicJwk] }
})

/** Fetches twice with `auth` through a recording real client; returns the two assertions the server accepted. */
const fetchTwice = (tokenUrl: string, auth: ClientAuth.ClientAuth) =>
  Effect.gen(function*() {
    const { client, requests } = yield* recording(yield* HttpClient.HttpClient)
    const source = yield* ClientCredentials.make({ tokenUrl, clientAuth: auth, scope: "api:read" }).pipe(
      Effect.provideService(HttpClient.HttpClient, client)
    )
    yield* source.fetch
    yield* source.fetch
    return (yield* requests).map((request) => {
      expect(request.form.get("client_id")).toBe(auth.clientId)
      expect(request.form.get("client_assertion_type")).toBe("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
      expect(request.form.has("client_secret")).toBe(false)
      expect(request.headers["authorization"]).toBeUndefined()
      const assertion = request.form.get("client_assertion")!
      return { header: decodeProtectedHeader(assertion), payload: decodeJwt(assertion) }
    })
  })

const live = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.provide(effect, NodeHttpClient.layerUndici)

describe("private_key_jwt (RFC 7523) against a real oidc-provider", () => {
  it.scopedLive("RS256 (PEM), ES256 (JWK) and EdDSA (CryptoKey) keys authenticate; each assertion is fresh", () =>
    live(Effect.gen(function*() {
      const rs = yield* keyPair("RS256")
      const es = yield* keyPair("ES256")
      const ed = yield* keyPair("EdDSA")
      const as = yield* OidcProvider.make({
        clients: [client("rs", rs.publicJwk), client("es", es.publicJwk), client("ed", ed.publicJwk)]
      })
      const pem = yield* Effect.promise(() => exportPKCS8(rs.privateKey))
      const esJwk = { ...(yield* Effect.promise(() => exportJWK(es.privateKey))), alg: "ES256", kid: "ES256-key" }
      const cases = [
        {
          auth: ClientAuth.privateKeyJwt({ clientId: "rs", privateKey: Redacted.make(pem), keyId: "RS256-key" }),
          alg: "RS256"
        },
        // Algorithm and key id come from the JWK.
        { auth: ClientAuth.privateKeyJwt({ clientId: "es", privateKey: Redacted.make(esJwk) }), alg: "ES256" },
        {
          auth: ClientAuth.privateKeyJwt({
            clientId: "ed",
            privateKey: Redacted.make(ed.privateKey),
            algorithm: "EdDSA",
            keyId: "EdDSA-key"
          }),
          alg: "EdDSA"
        }
      ]
      for (const { alg, auth } of cases) {
        const assertions = yield* fetchTwice(as.tokenUrl, auth)
        expect(assertions).toHaveLength(2)
        for (const { header, payload } of assertions) {
          expect(header.alg).toBe(alg)
          expect(header.kid).toBe(`${alg}-key`)
          expect(payload.iss).toBe(auth.clientId)
          expect(payload.sub).toBe(auth.clientId)
          expect(payload.aud).toBe(as.tokenUrl)
          expect(payload.exp! - payload.iat!).toBe(60)
          expect(payload.jti).toMatch(/^[0-9a-f-]{36}$/)
        }
        // oidc-provider rejects a replayed jti, so both requests succeeding also proves they differ.
        expect(assertions[0]!.payload.jti).not.toBe(assertions[1]!.payload.jti)
      }
      expect(as.tokenRequests()["client_credentials"]).toBe(6)
    })))

  it.scopedLive("audience and lifetime options: the issuer as audience, a 10 second assertion", () =>
    live(Effect.gen(function*() {
      const es = yield* keyPair("ES256")
      const as = yield* OidcProvider.make({ clients: [client("es", es.publicJwk)] })
      const auth = ClientAuth.privateKeyJwt({
        clientId: "es",
        privateKey: Redacted.make(es.privateKey),
        algorithm: "ES256",
        audience: as.issuer,
        lifetimeSeconds: 10
      })
      const [first] = yield* fetchTwice(as.tokenUrl, auth)
      expect(first!.payload.aud).toBe(as.issuer)
      expect(first!.payload.exp! - first!.payload.iat!).toBe(10)
    })))

  it.scopedLive("a key the client did not register is OAuthError invalid_client", () =>
    live(Effect.gen(function*() {
      const registered = yield* keyPair("RS256")
      const other = yield* keyPair("RS256")
      const as = yield* OidcProvider.make({ clients: [client("rs", registered.publicJwk)] })
      const pem = yield* Effect.promise(() => exportPKCS8(other.privateKey))
      const source = yield* ClientCredentials.make({
        tokenUrl: as.tokenUrl,
        clientAuth: ClientAuth.privateKeyJwt({ clientId: "rs", privateKey: Redacted.make(pem), keyId: "RS256-key" })
      })
      const error = yield* Effect.flip(source.fetch)
      expect(error.reason._tag).toBe("OAuthError")
      expect((error.reason as any).code).toBe("invalid_client")
      expect((error.reason as any).status).toBe(401)
      const printed = `${error.message} ${String(error)} ${JSON.stringify(error)}`
      expect(printed).not.toContain(pem.split("\n")[1]!)
    })))

  it.scopedLive("an unusable key is Misconfigured before any request, without key material in the error", () =>
    live(Effect.gen(function*() {
      const as = yield* OidcProvider.make({ clients: [] })
      const garbage = "-----BEGIN PRIVATE KEY-----\nbm90LWEta2V5LXNlY3JldC1tYXRlcmlhbA==\n-----END PRIVATE KEY-----"
      const source = yield* ClientCredentials.make({
        tokenUrl: as.tokenUrl,
        clientAuth: ClientAuth.privateKeyJwt({ clientId: "rs", privateKey: Redacted.make(garbage) })
      })
      const error = yield* Effect.flip(source.fetch)
      expect(error.reason._tag).toBe("Misconfigured")
      expect(error.operation).toBe("private_key_jwt client assertion")
      expect(`${error.message} ${JSON.stringify(error)}`).not.toContain("bm90LWEta2V5")
      // A failed import is not kept: the next attempt reports the same error rather than a stale success.
      expect((yield* Effect.flip(source.fetch)).reason._tag).toBe("Misconfigured")
      expect(as.tokenRequests()).toEqual({})
    })))
})

describe("ClientAuth.credentials", () => {
  it.effect("none sends only the client_id", () =>
    Effect.gen(function*() {
      const credentials = yield* ClientAuth.credentials(ClientAuth.none({ clientId: "spa" }), "https://as/token")
      expect(credentials).toEqual({ headers: {}, params: { client_id: "spa" } })
    }))
})
