/**
 * Server text (`error_description`, `error_uri`, content types, issuers) reaches messages cleaned: our own secrets
 * redacted, control characters gone, length capped; what only a token exchange may say is refused elsewhere; and a
 * private_key_jwt assertion cannot be made long-lived.
 */
import { ClientAuth, Discovery, TokenEndpoint } from "@effect-token/core"
import * as HttpClient from "@effect/platform/HttpClient"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { exportJWK, generateKeyPair } from "jose"
import { maxServerTextLength } from "../src/internal/serverText.js"
import { fake, json } from "./support/http.js"

const clientSecret = "cs_Zk3+/q=Ux9 secret&more"
const refreshToken = "rt_9d8f7g6h5j4k3l2"
const password = "p@ss w0rd+1"
const subjectToken = "st_eyJhbGciOiJub25lIn0.e30."
// eslint-disable-next-line no-control-regex -- looking for control characters is the point
const controls = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/

/** A server that puts the whole request, body and headers, into its error_description, with ANSI and newlines. */
const echoing = fake((request) =>
  json({
    error: "invalid_request",
    error_description: `\u001b[31mbad request\u001b[0m\nbody=${request.body}\r\nauth=${
      request.headers["authorization"] ?? ""
    } decoded=${decodeURIComponent(request.body)} \u202eevil ${"x".repeat(5000)}`,
    error_uri: "https://user:pw@auth.example.com/errors?key=api-key-123#frag"
  }, 400)
)

const messageOf = (auth: ClientAuth.ClientAuth, params: TokenEndpoint.Params) =>
  Effect.gen(function*() {
    const { client } = yield* echoing
    const endpoint = TokenEndpoint.makeWith(client, { tokenUrl: "https://auth.example.com/token", clientAuth: auth })
    const error = yield* Effect.flip(endpoint.request(params))
    expect(error.reason._tag).toBe("OAuthError")
    return { error, printed: `${error.message} ${JSON.stringify(error)} ${String(error)}` }
  })

describe("server text in messages", () => {
  for (
    const [name, auth] of [
      [
        "client_secret_post",
        ClientAuth.clientSecretPost({ clientId: "app", clientSecret: Redacted.make(clientSecret) })
      ],
      [
        "client_secret_basic",
        ClientAuth.clientSecretBasic({ clientId: "app", clientSecret: Redacted.make(clientSecret) })
      ]
    ] as const
  ) {
    it.effect(`an echoing server puts none of this request's secrets into the message (${name})`, () =>
      Effect.gen(function*() {
        const { error, printed } = yield* messageOf(auth, {
          grant_type: "urn:ietf:params:oauth:grant-type:token-exchange",
          refresh_token: Redacted.make(refreshToken),
          password: Redacted.make(password),
          subject_token: Redacted.make(subjectToken),
          actor_token: Redacted.make(`${subjectToken}actor`)
        })
        for (const secret of [clientSecret, refreshToken, password, subjectToken, encodeURIComponent(clientSecret)]) {
          expect(printed).not.toContain(secret)
        }
        expect(printed).not.toContain(new URLSearchParams({ s: clientSecret }).toString().slice(2))
        expect(printed).toContain("<redacted>")
        const description = (error.reason as { description?: string }).description ?? ""
        expect(description).not.toMatch(controls)
        expect(description.length).toBeLessThanOrEqual(maxServerTextLength + 1)
        expect(description.startsWith("[31mbad request[0mbody=")).toBe(true)
      }))
  }

  it.effect("a private_key_jwt assertion echoed back is redacted", () =>
    Effect.gen(function*() {
      const { privateKey } = yield* Effect.promise(() => generateKeyPair("ES256", { extractable: true }))
      const jwk = yield* Effect.promise(() => exportJWK(privateKey))
      const auth = ClientAuth.privateKeyJwt({ clientId: "app", privateKey: Redacted.make({ ...jwk, alg: "ES256" }) })
      const { printed } = yield* messageOf(auth, { grant_type: "client_credentials" })
      expect(printed).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}/)
    }))

  it.effect("an error_uri loses its userinfo, query and fragment", () =>
    Effect.gen(function*() {
      const { error } = yield* messageOf(
        ClientAuth.clientSecretPost({ clientId: "app", clientSecret: Redacted.make(clientSecret) }),
        { grant_type: "client_credentials" }
      )
      expect((error.reason as { uri?: string }).uri).toBe("https://auth.example.com/errors")
    }))

  it.effect("an issuer mismatch quotes the server's issuer cleaned and capped", () =>
    Effect.gen(function*() {
      const { client } = yield* fake(() =>
        json({ issuer: `https://u:p@evil.example.com/?q=1\n${"y".repeat(2000)}`, token_endpoint: "https://a/t" })
      )
      const error = yield* Effect.flip(
        Discovery.fetch({ issuer: "https://auth.example.com" }).pipe(
          Effect.provideService(HttpClient.HttpClient, client)
        )
      )
      expect(error.message).not.toMatch(controls)
      expect(error.message).not.toContain("u:p@")
      expect(error.message.length).toBeLessThan(600)
    }))
})

describe("token_type N_A", () => {
  const answer = {
    access_token: "eyJhbGciOiJub25lIn0.e30.",
    token_type: "N_A",
    expires_in: 60,
    issued_token_type: "urn:ietf:params:oauth:token-type:id_token"
  }
  const request = (grantType: string) =>
    Effect.gen(function*() {
      const { client } = yield* fake(() => json(answer))
      const endpoint = TokenEndpoint.makeWith(client, {
        tokenUrl: "https://auth.example.com/token",
        clientAuth: ClientAuth.none({ clientId: "app" })
      })
      return yield* Effect.either(endpoint.request({ grant_type: grantType }))
    })

  it.effect("is MalformedResponse from any grant but token exchange", () =>
    Effect.gen(function*() {
      for (const grant of ["client_credentials", "refresh_token", "password", "authorization_code"]) {
        const result = yield* request(grant)
        expect(result._tag, grant).toBe("Left")
        if (result._tag === "Left") {
          expect(result.left.reason).toMatchObject({ _tag: "MalformedResponse", fields: ["token_type"] })
        }
      }
      const exchanged = yield* request("urn:ietf:params:oauth:grant-type:token-exchange")
      expect(exchanged._tag).toBe("Right")
    }))
})

describe("private_key_jwt assertion lifetime", () => {
  it.effect("outside 1 s to 10 minutes is Misconfigured, inside signs", () =>
    Effect.gen(function*() {
      const { privateKey } = yield* Effect.promise(() => generateKeyPair("ES256", { extractable: true }))
      const jwk = yield* Effect.promise(() => exportJWK(privateKey))
      const auth = (lifetimeSeconds: number) =>
        ClientAuth.privateKeyJwt({
          clientId: "app",
          privateKey: Redacted.make({ ...jwk, alg: "ES256" }),
          lifetimeSeconds
        })
      for (const lifetime of [0, 0.5, -60, 601, 3600, 86_400 * 365, Number.NaN, Infinity]) {
        const error = yield* Effect.flip(ClientAuth.credentials(auth(lifetime), "https://auth.example.com/token"))
        expect(error.reason._tag, String(lifetime)).toBe("Misconfigured")
        expect(error.message).toContain("lifetimeSeconds")
      }
      for (const lifetime of [1, 60, 600]) {
        const credentials = yield* ClientAuth.credentials(auth(lifetime), "https://auth.example.com/token")
        expect(credentials.params.client_assertion).toBeDefined()
      }
    }))
})
