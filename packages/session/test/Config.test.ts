import { ClientAuth } from "@effect-token/core"
import { OidcLogin } from "@effect-token/session"
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Either, Redacted } from "effect"

const read = (values: Record<string, string>) =>
  Effect.either(Effect.withConfigProvider(OidcLogin.config, ConfigProvider.fromMap(new Map(Object.entries(values)))))

const base = {
  ISSUER: "https://auth.example.com",
  CLIENT_ID: "web",
  CLIENT_SECRET: "s3cr3t",
  REDIRECT_URI: "https://app.example.com/callback"
}

describe("OidcLogin.config", () => {
  it.effect("reads the settings, the secret as Redacted, Secure cookies by default", () =>
    Effect.gen(function*() {
      const options = Either.getOrThrow(yield* read({ ...base, SCOPE: "openid offline_access orders:read" }))
      expect(options.issuer).toBe("https://auth.example.com")
      expect(options.redirectUri).toBe("https://app.example.com/callback")
      expect(options.scope).toBe("openid offline_access orders:read")
      expect(options.cookie).toEqual({ secure: true })
      expect(ClientAuth.method(options.clientAuth)).toBe("client_secret_basic")
      expect(options.clientAuth._tag === "ClientSecretBasic" && Redacted.value(options.clientAuth.clientSecret))
        .toBe("s3cr3t")
      expect(JSON.stringify(options)).not.toContain("s3cr3t")
    }))

  it.effect("COOKIE_SECURE=false only with an http loopback redirect URI", () =>
    Effect.gen(function*() {
      expect(Either.isLeft(yield* read({ ...base, COOKIE_SECURE: "false" }))).toBe(true)
      const local = yield* read({ ...base, COOKIE_SECURE: "false", REDIRECT_URI: "http://127.0.0.1:3000/callback" })
      expect(Either.getOrThrow(local).cookie).toEqual({ secure: false })
    }))

  it.effect("SESSION_SECRET: redacted, at least 32 characters, optional", () =>
    Effect.gen(function*() {
      expect(Either.getOrThrow(yield* read(base)).secret).toBeUndefined()
      const secret = "s".repeat(32)
      const options = Either.getOrThrow(yield* read({ ...base, SESSION_SECRET: secret }))
      expect(Redacted.value(options.secret!)).toBe(secret)
      expect(JSON.stringify(options)).not.toContain(secret)
      expect(Either.isLeft(yield* read({ ...base, SESSION_SECRET: "short" }))).toBe(true)
    }))

  it.effect("DPOP turns on DPoP logins (default off)", () =>
    Effect.gen(function*() {
      expect(Either.getOrThrow(yield* read(base)).dpop).toBe(false)
      expect(Either.getOrThrow(yield* read({ ...base, DPOP: "true" })).dpop).toBe(true)
    }))

  it.effect("a missing client secret is a configuration error", () =>
    Effect.gen(function*() {
      const { CLIENT_SECRET: _secret, ...rest } = base
      expect(Either.isLeft(yield* read(rest))).toBe(true)
    }))
})
