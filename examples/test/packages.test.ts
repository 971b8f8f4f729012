import { describe, expect, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"

// `pnpm test` builds before testing: this checks what a user installs, not the sources the other tests alias.
const root = path.resolve(import.meta.dirname, "../..")

const importBuilt = (specifier: string) =>
  JSON.parse(
    execFileSync(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        `const m = await import(${JSON.stringify(specifier)}); console.log(JSON.stringify(Object.keys(m).sort()))`
      ],
      { cwd: path.join(root, "examples"), encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }
    )
  ) as Array<string>

describe("the built packages", () => {
  it(
    "@effect-token/core and @effect-token/testing import from dist through their exports (run `pnpm build` first)",
    () => {
      expect(importBuilt("@effect-token/core")).toEqual([
        "AccessToken",
        "AuthHttpClient",
        "Backoff",
        "ClientAuth",
        "ClientCredentials",
        "DPoP",
        "Discovery",
        "KeyedLock",
        "Password",
        "RefreshToken",
        "RefreshTokenStore",
        "Revocation",
        "ServerRequest",
        "SingleFlight",
        "TokenCache",
        "TokenEndpoint",
        "TokenError",
        "TokenExchange",
        "TokenManager",
        "TokenSource",
        "TokenTiming",
        "WwwAuthenticate"
      ])
      expect(importBuilt("@effect-token/testing")).toContain("TestAuthorizationServer")
      expect(importBuilt("@effect-token/testing")).not.toContain("OidcProvider") // needs the optional peer
      expect(importBuilt("@effect-token/testing/oidc-provider")).toEqual(["OidcProvider"])
      expect(fs.existsSync(path.join(root, "packages/core/dist/index.d.ts"))).toBe(true)
      expect(importBuilt("@effect-token/session")).toEqual([
        "OidcLogin",
        "SessionError",
        "UserSession",
        "UserTokenStore"
      ])
    },
    300_000
  )
})
