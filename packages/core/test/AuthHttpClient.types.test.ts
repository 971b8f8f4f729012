/*
 * Type-level checks, compiled by `pnpm check`: a layer is typed by the Tag it is built under, so a Tag the layer does
 * not provide cannot be claimed by a type argument.
 */
import { AuthHttpClient, ClientAuth } from "@effect-token/core"
import type { HttpClient } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import type { ConfigError, Layer } from "effect"
import { Context, Redacted } from "effect"

class BillingApi extends Context.Tag("BillingApi")<BillingApi, AuthHttpClient.AuthHttpClient>() {}

const clientAuth = ClientAuth.clientSecretBasic({ clientId: "c", clientSecret: Redacted.make("s") })
const oneLayer = {
  baseUrl: "https://billing.example.com",
  authorizationServer: { tokenUrl: "https://auth.example.com/token" },
  clientAuth
}

describe("AuthHttpClient layers: typed by their Tag", () => {
  it("a type argument alone cannot claim a Tag", () => {
    // @ts-expect-error -- without `tag` the layer provides AuthHttpClient, never BillingApi
    AuthHttpClient.layer<BillingApi>({ baseUrl: "https://billing.example.com" })
    // @ts-expect-error -- likewise for the one-layer set-up
    AuthHttpClient.layerClientCredentials<BillingApi>(oneLayer)
    // @ts-expect-error -- and for its configuration reader
    AuthHttpClient.layerConfig<BillingApi>()
    expect(true).toBe(true)
  })

  it("with a tag, the layer provides that Tag; without, AuthHttpClient", () => {
    const billing: Layer.Layer<BillingApi, never, unknown> = AuthHttpClient.layer({
      baseUrl: "https://billing.example.com",
      tag: BillingApi
    })
    const plain: Layer.Layer<AuthHttpClient.AuthHttpClient, never, unknown> = AuthHttpClient.layer({
      baseUrl: "https://api.example.com"
    })
    const oneBilling: Layer.Layer<BillingApi, never, HttpClient.HttpClient> = AuthHttpClient.layerClientCredentials({
      ...oneLayer,
      tag: BillingApi
    })
    const configured: Layer.Layer<BillingApi, ConfigError.ConfigError, HttpClient.HttpClient> = AuthHttpClient
      .layerConfig({ tag: BillingApi })
    const configuredPlain: Layer.Layer<AuthHttpClient.AuthHttpClient, ConfigError.ConfigError, HttpClient.HttpClient> =
      AuthHttpClient.layerConfig()
    // Code-level options over what configuration reads, without a cast.
    const withOptions: Layer.Layer<BillingApi, ConfigError.ConfigError, HttpClient.HttpClient> = AuthHttpClient
      .layerConfig({
        tag: BillingApi,
        options: { name: "billing", acquireTimeout: "5 seconds", transientRetry: false }
      })
    expect([billing, plain, oneBilling, configured, configuredPlain, withOptions]).toHaveLength(6)
  })
})
