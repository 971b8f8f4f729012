/**
 * @since 0.1.0
 */
export * as Advance from "./Advance.js"

/**
 * @since 0.1.0
 */
export * as Expiry from "./Expiry.js"

/**
 * @since 0.1.0
 */
export * as Fault from "./Fault.js"

/**
 * @since 0.1.0
 */
export * as OidcProvider from "./OidcProvider.js"

/**
 * @since 0.1.0
 */
export * as TestAuthorizationServer from "./TestAuthorizationServer.js"

/**
 * @since 0.1.0
 */
export * as TestHttpClient from "./TestHttpClient.js"

/**
 * @since 0.1.0
 */
export * as TestResourceServer from "./TestResourceServer.js"

/**
 * @since 0.1.0
 */
export * as TestTokenSource from "./TestTokenSource.js"
