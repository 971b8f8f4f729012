/**
 * @since 0.1.0
 */
export * as OidcProvider from "./OidcProvider.js"
