import {
  ClientAuth,
  ClientCredentials,
  Discovery,
  Password,
  RefreshToken,
  RefreshTokenStore,
  Revocation,
  TokenExchange,
  TokenSource
} from "@effect-token/core"
import { HttpClient } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Duration, Effect, Layer, Option, Redacted } from "effect"
import { fake, tokenResponse } from "./support/http.js"

const withEnv = (env: Record<string, string>) =>
  Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))

describe("ClientAuth.config", () => {
  it.effect("reads each method; secrets stay redacted", () =>
    Effect.gen(function*() {
      const basic = yield* ClientAuth.config.pipe(withEnv({ CLIENT_ID: "a", CLIENT_SECRET: "s" }))
      expect(basic._tag).toBe("ClientSecretBasic")
      expect(String(basic)).not.toContain("\"s\"")
      const post = yield* ClientAuth.config.pipe(
        withEnv({ CLIENT_ID: "a", CLIENT_SECRET: "s", CLIENT_AUTH_METHOD: "client_secret_post" })
      )
      expect(post._tag).toBe("ClientSecretPost")
      const none = yield* ClientAuth.config.pipe(withEnv({ CLIENT_ID: "cli", CLIENT_AUTH_METHOD: "none" }))
      expect(none).toEqual({ _tag: "None", clientId: "cli" })
      const jwt = yield* ClientAuth.config.pipe(withEnv({
        CLIENT_ID: "a",
        CLIENT_AUTH_METHOD: "private_key_jwt",
        CLIENT_PRIVATE_KEY: "-----BEGIN PRIVATE KEY-----\\nMIIB\\n-----END PRIVATE KEY-----",
        CLIENT_KEY_ALGORITHM: "ES256",
        CLIENT_KEY_ID: "k1"
      }))
      if (jwt._tag !== "PrivateKeyJwt") throw new Error("expected private_key_jwt")
      expect(jwt.algorithm).toBe("ES256")
      expect(jwt.keyId).toBe("k1")
      // One-line PEMs from the environment get their newlines back.
      expect(Redacted.value(jwt.privateKey)).toBe("-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----")
    }))

  it.effect("a setting the method needs is a ConfigError", () =>
    Effect.gen(function*() {
      const noSecret = yield* Effect.flip(ClientAuth.config.pipe(withEnv({ CLIENT_ID: "a" })))
      expect(String(noSecret)).toContain("CLIENT_SECRET")
      const noKey = yield* Effect.flip(
        ClientAuth.config.pipe(withEnv({ CLIENT_ID: "a", CLIENT_AUTH_METHOD: "private_key_jwt" }))
      )
      expect(String(noKey)).toContain("CLIENT_PRIVATE_KEY")
      const unknown = yield* Effect.flip(
        ClientAuth.config.pipe(withEnv({ CLIENT_ID: "a", CLIENT_AUTH_METHOD: "mtls" }))
      )
      expect(String(unknown)).toContain("CLIENT_AUTH_METHOD")
    }))
})

describe("source configuration", () => {
  const base = { TOKEN_URL: "https://as.example/token", CLIENT_ID: "app", CLIENT_AUTH_METHOD: "none" }

  it.effect("RefreshToken.config + RefreshTokenStore.layerMemoryConfig: a working source from the environment", () =>
    Effect.gen(function*() {
      const { client, requests } = yield* fake(() => tokenResponse({ refresh_token: "rotated" }))
      const env = {
        TOKEN_URL: "https://as.example/token",
        CLIENT_ID: "cli",
        CLIENT_AUTH_METHOD: "none",
        SCOPE: "repo",
        SUBJECT_KEY: "alice",
        REFRESH_TOKEN: "first"
      }
      const program = Effect.gen(function*() {
        const source = yield* TokenSource.TokenSource
        yield* source.fetch
        const store = yield* RefreshTokenStore.RefreshTokenStore
        expect(Option.map(yield* store.get, Redacted.value)).toEqual(Option.some("rotated"))
        expect(source.key).toContain("alice")
      })
      const storeLayer = RefreshTokenStore.layerMemoryConfig()
      yield* program.pipe(
        Effect.provide(Layer.provideMerge(RefreshToken.layerConfig(), storeLayer)),
        Effect.provideService(HttpClient.HttpClient, client),
        withEnv(env)
      )
      const [request] = yield* requests
      expect(request!.form.get("refresh_token")).toBe("first")
      expect(request!.form.get("scope")).toBe("repo")
    }))

  it.effect("RefreshToken.config reads ATTEMPT_TIMEOUT and ANSWER_TIMEOUT (how long a late answer is still read)", () =>
    Effect.gen(function*() {
      const options = yield* RefreshToken.config.pipe(
        withEnv({ ...base, ATTEMPT_TIMEOUT: "5 seconds", ANSWER_TIMEOUT: "2 minutes" })
      )
      expect(Duration.toSeconds(Duration.decode(options.attemptTimeout!))).toBe(5)
      expect(Duration.toSeconds(Duration.decode(options.answerTimeout!))).toBe(120)
      const unset = yield* RefreshToken.config.pipe(withEnv(base))
      expect(unset.answerTimeout).toBeUndefined()
    }))

  it.effect("ClientCredentials.config reads every ClientAuth method, as the other grants do", () =>
    Effect.gen(function*() {
      const basic = yield* ClientCredentials.config.pipe(
        withEnv({ TOKEN_URL: "https://as.example/token", CLIENT_ID: "svc", CLIENT_SECRET: "s", SCOPE: "api:read" })
      )
      expect(basic.clientAuth._tag).toBe("ClientSecretBasic")
      expect(basic.scope).toBe("api:read")
      const none = yield* ClientCredentials.config.pipe(withEnv(base))
      expect(none.clientAuth).toEqual({ _tag: "None", clientId: "app" })
      const jwt = yield* ClientCredentials.config.pipe(withEnv({
        TOKEN_URL: "https://as.example/token",
        CLIENT_ID: "svc",
        CLIENT_AUTH_METHOD: "private_key_jwt",
        CLIENT_PRIVATE_KEY: "-----BEGIN PRIVATE KEY-----\\nMIIB\\n-----END PRIVATE KEY-----",
        CLIENT_KEY_ALGORITHM: "ES256"
      }))
      expect(jwt.clientAuth._tag).toBe("PrivateKeyJwt")
      expect(ClientAuth.method(jwt.clientAuth)).toBe("private_key_jwt")
      // A source from configuration with a public client sends its client_id and no secret.
      const { client, requests } = yield* fake(() => tokenResponse())
      yield* Effect.flatMap(TokenSource.TokenSource, (source) => source.fetch).pipe(
        Effect.provide(ClientCredentials.layerConfig()),
        Effect.provideService(HttpClient.HttpClient, client),
        withEnv(base)
      )
      const [request] = yield* requests
      expect(request!.form.get("grant_type")).toBe("client_credentials")
      expect(request!.form.get("client_id")).toBe("app")
      expect(request!.headers["authorization"]).toBeUndefined()
    }))

  it.effect("Password.config reads the password as Redacted", () =>
    Effect.gen(function*() {
      const options = yield* Password.config.pipe(withEnv({ ...base, USERNAME: "u", PASSWORD: "p@ss" }))
      expect(options.username).toBe("u")
      expect(Redacted.isRedacted(options.password)).toBe(true)
      expect(Redacted.value(options.password)).toBe("p@ss")
      const missing = yield* Effect.flip(Password.config.pipe(withEnv({ ...base, USERNAME: "u" })))
      expect(String(missing)).toContain("PASSWORD")
    }))

  it.effect("TokenExchange.layerConfig: settings from configuration, subject from code", () =>
    Effect.gen(function*() {
      const { client, requests } = yield* fake(() =>
        tokenResponse({ issued_token_type: TokenExchange.TokenTypes.accessToken })
      )
      yield* Effect.flatMap(TokenSource.TokenSource, (source) => source.fetch).pipe(
        Effect.provide(
          TokenExchange.layerConfig({ subjectToken: Redacted.make("user-token"), subjectKey: "u" })
        ),
        Effect.provideService(HttpClient.HttpClient, client),
        withEnv({ ...base, AUDIENCE: "orders", REQUESTED_TOKEN_TYPE: TokenExchange.TokenTypes.jwt })
      )
      const [request] = yield* requests
      expect(request!.form.get("subject_token")).toBe("user-token")
      expect(request!.form.get("audience")).toBe("orders")
      expect(request!.form.get("requested_token_type")).toBe(TokenExchange.TokenTypes.jwt)
    }))

  it.effect("Discovery.config and Revocation.config", () =>
    Effect.gen(function*() {
      const discovery = yield* Discovery.config.pipe(
        withEnv({ ISSUER: "https://as.example", DISCOVERY_TIMEOUT: "2 seconds" })
      )
      expect(discovery.issuer).toBe("https://as.example")
      expect(discovery.timeout).toBeDefined()
      const revocation = yield* Revocation.config.pipe(
        withEnv({ REVOCATION_URL: "https://as.example/revoke", CLIENT_ID: "web", CLIENT_SECRET: "s" })
      )
      expect(revocation.revocationUrl.toString()).toBe("https://as.example/revoke")
      expect(revocation.clientAuth._tag).toBe("ClientSecretBasic")
    }))
})
