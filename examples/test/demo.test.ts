import type { ClientAuth } from "@effect-token/core"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { main, stories } from "../src/DemoProgram.js"
import { getToken, listInvoices, missingScope, noToken, wrongSecret } from "../src/stories/clientCredentials.js"
import { recoverOne, recoverStorm, sharedToken } from "../src/stories/recovery.js"

describe("the demo", () => {
  it.live("tells every story to the end, against a real authorization server and API", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      const base = yield* Effect.console
      const capture = (...args: ReadonlyArray<unknown>) =>
        Effect.sync(() => void lines.push(args.map(String).join(" ")))
      const { apiStats, authServer, results, tokenRequests } = yield* main.pipe(
        Effect.withConsole({ ...base, log: capture, error: capture })
      )

      // Each step ran and saw what the story says.
      const token = results.get(getToken)
      expect(token.type).toBe("Bearer")
      expect(results.get(listInvoices).status).toBe(200)
      expect(results.get(listInvoices).body).toHaveLength(2)
      expect(results.get(noToken).status).toBe(401)
      expect(results.get(noToken).wwwAuthenticate).toMatch(/^Bearer /)
      expect(results.get(missingScope).status).toBe(403)
      expect(results.get(wrongSecret).reason).toMatchObject({ _tag: "OAuthError", code: "invalid_client", status: 401 })

      // Through TokenCache + AuthHttpClient: 50 cold calls share one token; a revoked token costs one 401 and one
      // new token for a single call, and one new token (and one 401 per call in flight) for 200 concurrent calls.
      expect(results.get(sharedToken)).toEqual(Array(50).fill(200))
      expect(results.get(recoverOne)).toEqual({ unauthorized: 1, issued: 1 })
      expect(results.get(recoverStorm).issued).toBe(1)
      expect(results.get(recoverStorm).unauthorized).toBeGreaterThanOrEqual(1)
      expect(results.get(recoverStorm).unauthorized).toBeLessThanOrEqual(200)

      // The servers saw it too: one token for the first story, three for the second (cold start, two revocations).
      expect(tokenRequests["client_credentials"]).toBe(4)
      expect(apiStats.byStatus[403]).toBe(1)
      expect(apiStats.byStatus[200]).toBe(1 + 50 + 1 + 200)

      // Every step printed one numbered line, and nothing printed a token or a secret.
      const stepCount = stories.reduce((n, story) => n + story.steps.length, 0)
      expect(lines.filter((line) => /^\d+\. /.test(line))).toHaveLength(stepCount)
      const output = lines.join("\n")
      expect(output).toContain("GET /invoices with the token -> 200")
      expect(output).toContain("(value redacted: <redacted>)")
      expect(output).toContain("TokenError OAuthError: invalid_client (HTTP 401)")
      expect(output).not.toContain(Redacted.value(token.value))
      expect(output).not.toMatch(/eyJ[\w-]+\.[\w-]+\./) // no JWT at all
      const secret = Redacted.value((authServer.clientAuth as ClientAuth.ClientSecretBasic).clientSecret)
      expect(output).not.toContain(secret)
    }))
})
