import type { TokenSource } from "@effect-token/core"
import {
  ClientAuth,
  ClientCredentials,
  Password,
  RefreshToken,
  RefreshTokenStore,
  TokenExchange
} from "@effect-token/core"
import { HttpClient } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, FastCheck as fc, Layer, Redacted } from "effect"
import { fake, tokenResponse } from "./support/http.js"

class BillingSource extends Context.Tag("BillingSource")<BillingSource, TokenSource.TokenSource>() {}
class ReportsSource extends Context.Tag("ReportsSource")<ReportsSource, TokenSource.TokenSource>() {}

const tokenUrl = "https://as.example/oauth/token"
const clientSecret = "the-client-secret"
const clientAuth = ClientAuth.clientSecretBasic({ clientId: "app", clientSecret: Redacted.make(clientSecret) })

const withFake = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.flatMap(fake(() => tokenResponse()), ({ client, requests }) =>
    Effect.map(
      Effect.provideService(effect, HttpClient.HttpClient, client),
      (result) => ({ result, requests })
    ))

const cc = (options: Partial<ClientCredentials.Options>) => ClientCredentials.make({ tokenUrl, clientAuth, ...options })

describe("named sources", () => {
  it.effect("two tagged sources in one app: different keys, each sends its own parameters", () =>
    Effect.gen(function*() {
      const { requests, result } = yield* withFake(
        Effect.gen(function*() {
          const billing = yield* BillingSource
          const reports = yield* ReportsSource
          yield* billing.fetch
          yield* reports.fetch
          return { billing: billing.key, reports: reports.key }
        }).pipe(
          Effect.provide(Layer.mergeAll(
            Layer.effect(
              BillingSource,
              cc({ audience: "billing-api", scope: "invoices:read", extraParams: { tenant: "acme" } })
            ),
            Layer.effect(
              ReportsSource,
              cc({ audience: "reports-api", scope: "reports:read", extraParams: { tenant: "globex" } })
            )
          ))
        )
      )
      expect(result.billing).not.toBe(result.reports)
      const [billing, reports] = yield* requests
      expect(billing!.form.get("audience")).toBe("billing-api")
      expect(billing!.form.get("tenant")).toBe("acme")
      expect(reports!.form.get("audience")).toBe("reports-api")
      expect(reports!.form.get("tenant")).toBe("globex")
    }))

  it.effect("every token-shaping parameter changes the key; equal settings give equal keys", () =>
    Effect.gen(function*() {
      const { result: keys } = yield* withFake(Effect.gen(function*() {
        const store = yield* RefreshTokenStore.make(Redacted.make("rt"))
        const key = (source: Effect.Effect<TokenSource.TokenSource, never, HttpClient.HttpClient>) =>
          Effect.map(source, (s) => s.key)
        const refresh = (options: Partial<RefreshToken.Options>) =>
          key(
            RefreshToken.make({ tokenUrl, clientAuth, ...options }).pipe(
              Effect.provideService(RefreshTokenStore.RefreshTokenStore, store)
            )
          )
        const password = (username: string) =>
          key(Password.make({ tokenUrl, clientAuth, username, password: Redacted.make("pw") }))
        const exchange = (options: Partial<TokenExchange.Options>) =>
          key(
            TokenExchange.make({
              tokenUrl,
              clientAuth,
              subjectToken: Redacted.make("s"),
              subjectKey: "u1",
              ...options
            })
          )
        return {
          base: yield* key(cc({ scope: "a" })),
          same: yield* key(cc({ scope: "a" })),
          variants: [
            yield* key(cc({ scope: "b" })),
            yield* key(cc({ scope: "a", audience: "x" })),
            yield* key(cc({ scope: "a", audience: ["x", "y"] })),
            yield* key(cc({ scope: "a", resource: "https://api.example" })),
            yield* key(cc({ scope: "a", resource: ["https://api.example", "https://other.example"] })),
            yield* key(cc({ scope: "a", extraParams: { tenant: "acme" } })),
            yield* key(cc({ scope: "a", extraParams: { tenant: "globex" } })),
            yield* key(cc({ scope: "a", extraParams: { organization: "acme" } })),
            yield* key(cc({ scope: "a", tokenUrl: "https://other.example/oauth/token" })),
            yield* key(cc({ scope: "a", clientAuth: ClientAuth.none({ clientId: "other" }) })),
            yield* refresh({ scope: "a" }),
            yield* refresh({ scope: "a", subjectKey: "alice" }),
            yield* refresh({ scope: "a", subjectKey: "bob" }),
            yield* password("alice"),
            yield* password("bob"),
            yield* exchange({}),
            yield* exchange({ subjectKey: "u2" }),
            yield* exchange({ requestedTokenType: TokenExchange.TokenTypes.idToken }),
            yield* exchange({ subjectTokenType: TokenExchange.TokenTypes.jwt }),
            yield* exchange({ actorToken: Redacted.make("a"), actorKey: "svc" })
          ]
        }
      }))
      expect(keys.same).toBe(keys.base)
      const all = [keys.base, ...keys.variants]
      expect(new Set(all).size).toBe(all.length)
      for (const key of all) {
        for (const secret of [clientSecret, "rt", "pw", "\"s\""]) expect(key).not.toContain(secret)
      }
    }))

  // Small alphabets make equal and nearly equal shapes likely, where a sloppy key would collide.
  const value = fc.constantFrom("a", "b", "a b", "", "a&b=c")
  const shape = fc.record({
    scope: fc.option(value, { nil: undefined }),
    audience: fc.option(fc.oneof(value, fc.array(value, { maxLength: 2 })), { nil: undefined }),
    resource: fc.option(fc.array(value, { maxLength: 2 }), { nil: undefined }),
    extraParams: fc.option(fc.dictionary(fc.constantFrom("tenant", "org", "a"), value, { maxKeys: 2 }), {
      nil: undefined
    })
  })

  it.effect.prop(
    "keys differ whenever the requests differ",
    { a: shape, b: shape },
    ({ a, b }) =>
      Effect.gen(function*() {
        const first = yield* withFake(Effect.flatMap(cc(a), (s) => Effect.as(s.fetch, s.key)))
        const second = yield* withFake(Effect.flatMap(cc(b), (s) => Effect.as(s.fetch, s.key)))
        const [requestA] = yield* first.requests
        const [requestB] = yield* second.requests
        const formA = [...requestA!.form.entries()].map((e) => JSON.stringify(e)).sort().join("\n")
        const formB = [...requestB!.form.entries()].map((e) => JSON.stringify(e)).sort().join("\n")
        if (formA !== formB) expect(first.result).not.toBe(second.result)
      })
  )
})
