import { DPoP } from "@effect-token/core"
import { DPoPResourceServer } from "@effect-token/testing"
import { HttpClientRequest } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Effect, TestClock } from "effect"
import { exportJWK, generateKeyPair, SignJWT } from "jose"

/** An authorization server's key, and tokens bound to `jkt`. */
const issuer = Effect.promise(async () => {
  const { privateKey, publicKey } = await generateKeyPair("RS256")
  const jwks = { keys: [{ ...(await exportJWK(publicKey)), kid: "as", alg: "RS256" }] }
  const token = (jkt: string | undefined, nowSeconds: number) =>
    new SignJWT(jkt === undefined ? { sub: "alice" } : { sub: "alice", cnf: { jkt } })
      .setProtectedHeader({ alg: "RS256", kid: "as" })
      .setIssuer("https://as.test")
      .setAudience("api")
      .setIssuedAt(nowSeconds)
      .setExpirationTime(nowSeconds + 300)
      .sign(privateKey)
  return { jwks, token }
})

const setup = (requireNonce = false) =>
  Effect.gen(function*() {
    yield* TestClock.setTime(1_700_000_000_000)
    const as = yield* issuer
    const api = yield* DPoPResourceServer.makeInProcess({
      jwks: as.jwks,
      issuer: "https://as.test",
      audience: "api",
      requireNonce
    })
    const key = yield* DPoP.generate()
    const token = yield* Effect.promise(() => as.token(key.thumbprint, 1_700_000_000))
    const call = (headers: Record<string, string>, path = "/orders") =>
      Effect.map(
        api.client.execute(HttpClientRequest.get(`${api.url}${path}`).pipe(HttpClientRequest.setHeaders(headers))),
        (response) => ({ status: response.status, headers: response.headers })
      )
    const proof = (input: Partial<DPoP.ProofInput> = {}) =>
      DPoP.proof(key, { method: "GET", url: `${api.url}/orders`, accessToken: token, ...input })
    return { api, as, key, token, call, proof }
  })

describe("DPoPResourceServer", () => {
  it.effect("accepts a good proof; rejects no proof, a wrong ath, an old iat, a replay and a wrong method", () =>
    Effect.gen(function*() {
      const { api, call, proof, token } = yield* setup()
      const auth = { authorization: `DPoP ${token}` }
      expect((yield* call({ ...auth, dpop: yield* proof() })).status).toBe(200)
      expect((yield* call(auth)).status).toBe(401)
      expect((yield* call({ ...auth, dpop: yield* proof({ accessToken: "other" }) })).status).toBe(401)
      const old = yield* proof()
      yield* TestClock.adjust("2 minutes")
      expect((yield* call({ ...auth, dpop: old })).status).toBe(401)
      const fresh = yield* proof()
      expect((yield* call({ ...auth, dpop: fresh })).status).toBe(200)
      expect((yield* call({ ...auth, dpop: fresh })).status).toBe(401)
      expect((yield* call({ ...auth, dpop: yield* proof({ method: "POST" }) })).status).toBe(401)
      expect(yield* api.rejections).toEqual([
        "exactly one DPoP proof is required",
        "DPoP proof ath mismatch",
        "DPoP proof iat is outside the window",
        "DPoP proof jti was used before",
        "DPoP proof htm mismatch"
      ])
    }))

  it.effect("a Bearer token, a token without cnf.jkt and a proof by another key are rejected", () =>
    Effect.gen(function*() {
      const { api, as, call, proof, token } = yield* setup()
      expect((yield* call({ authorization: `Bearer ${token}`, dpop: yield* proof() })).status).toBe(401)
      const unbound = yield* Effect.promise(() => as.token(undefined, 1_700_000_000))
      const unboundProof = yield* proof({ accessToken: unbound })
      expect((yield* call({ authorization: `DPoP ${unbound}`, dpop: unboundProof })).status).toBe(401)
      const other = yield* DPoP.generate()
      const otherProof = yield* DPoP.proof(other, { method: "GET", url: `${api.url}/orders`, accessToken: token })
      expect((yield* call({ authorization: `DPoP ${token}`, dpop: otherProof })).status).toBe(401)
      expect(yield* api.rejections).toEqual([
        "no DPoP access token",
        "the access token is not DPoP-bound (no cnf.jkt)",
        "the DPoP proof key is not the key the token is bound to (cnf.jkt)"
      ])
    }))

  it.effect("requireNonce: a proof without the nonce gets use_dpop_nonce and DPoP-Nonce; with it, 200", () =>
    Effect.gen(function*() {
      const { api, call, proof, token } = yield* setup(true)
      const auth = { authorization: `DPoP ${token}` }
      const challenged = yield* call({ ...auth, dpop: yield* proof() })
      expect(challenged.status).toBe(401)
      expect(challenged.headers["www-authenticate"]).toContain(`error="use_dpop_nonce"`)
      const nonce = challenged.headers["dpop-nonce"]!
      expect((yield* call({ ...auth, dpop: yield* proof({ nonce }) })).status).toBe(200)
      yield* api.rotateNonce
      expect((yield* call({ ...auth, dpop: yield* proof({ nonce }) })).status).toBe(401)
      expect(yield* api.counts).toEqual({ total: 3, ok: 1, unauthorized: 2, nonceChallenges: 2 })
    }))
})
