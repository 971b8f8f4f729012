/**
 * core must run on every runtime `@effect/platform` supports (browsers, Deno, Bun, workers), not only Node.
 */
import { ClientAuth } from "@effect-token/core"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterEach, vi } from "vitest"

const src = fileURLToPath(new URL("../src", import.meta.url))
const sources = (readdirSync(src, { recursive: true }) as Array<string>)
  .filter((file) => file.endsWith(".ts"))
  .map((file) => ({ file, text: readFileSync(join(src, file), "utf8") }))

describe("core uses no Node-only API", () => {
  afterEach(() => {
    vi.unstubAllGlobals()
  })

  it("no source imports a node: module or uses Buffer", () => {
    expect(sources.length).toBeGreaterThan(0)
    const offenders = sources
      .filter(({ text }) => /from\s+["']node:|require\(["']node:|\bBuffer\./.test(text))
      .map(({ file }) => file)
    expect(offenders).toEqual([])
  })

  it.effect("client_secret_basic works without Buffer (Base64 through btoa)", () =>
    Effect.gen(function*() {
      vi.stubGlobal("Buffer", undefined)
      const credentials = yield* ClientAuth.credentials(
        ClientAuth.clientSecretBasic({ clientId: "billing client/é", clientSecret: Redacted.make("s3cr3t: +/%&=") }),
        "https://as.example/token"
      )
      const header = Redacted.value(credentials.headers.authorization!)
      // What a server does: Base64-decode, split at the first colon, form-decode each half.
      const decoded = atob(header.slice("Basic ".length))
      expect(decoded).toBe("billing+client%2F%C3%A9:s3cr3t%3A+%2B%2F%25%26%3D")
    }))
})
