// The `oidc-provider` harness is not re-exported here: it is `@effect-token/testing/oidc-provider`, so this entry
// point imports without the optional peer dependency `oidc-provider`.

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

/**
 * @since 0.2.0
 */
export * as DPoPResourceServer from "./DPoPResourceServer.js"
