/**
 * @since 0.1.0
 */
export * as SessionError from "./SessionError.js"

/**
 * @since 0.1.0
 */
export * as UserTokenStore from "./UserTokenStore.js"

/**
 * @since 0.1.0
 */
export * as UserSession from "./UserSession.js"

/**
 * @since 0.1.0
 */
export * as OidcLogin from "./OidcLogin.js"
