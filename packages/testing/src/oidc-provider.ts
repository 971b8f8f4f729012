/**
 * The real OpenID Connect provider harness, on its own entry point: `@effect-token/testing` itself imports
 * without the optional peer dependency `oidc-provider`; this one needs it.
 *
 * ```ts
 * import { OidcProvider } from "@effect-token/testing/oidc-provider"
 * ```
 *
 * @since 0.1.0
 */

/**
 * @since 0.1.0
 */
export * as OidcProvider from "./OidcProvider.js"
