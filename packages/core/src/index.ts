/**
 * @since 0.1.0
 */
export * as AccessToken from "./AccessToken.js"

/**
 * @since 0.1.0
 */
export * as ClientAuth from "./ClientAuth.js"

/**
 * @since 0.1.0
 */
export * as TokenEndpoint from "./TokenEndpoint.js"

/**
 * @since 0.1.0
 */
export * as TokenError from "./TokenError.js"

/**
 * @since 0.1.0
 */
export * as TokenSource from "./TokenSource.js"

/**
 * @since 0.1.0
 */
export * as ClientCredentials from "./ClientCredentials.js"

/**
 * @since 0.1.0
 */
export * as RefreshToken from "./RefreshToken.js"

/**
 * @since 0.1.0
 */
export * as Password from "./Password.js"

/**
 * @since 0.1.0
 */
export * as TokenExchange from "./TokenExchange.js"

/**
 * @since 0.1.0
 */
export * as Backoff from "./Backoff.js"

/**
 * @since 0.1.0
 */
export * as TokenCache from "./TokenCache.js"

/**
 * @since 0.1.0
 */
export * as TokenManager from "./TokenManager.js"

/**
 * @since 0.2.0
 */
export * as TokenTiming from "./TokenTiming.js"

/**
 * @since 0.2.0
 */
export * as KeyedLock from "./KeyedLock.js"

/**
 * @since 0.3.0
 */
export * as SingleFlight from "./SingleFlight.js"

/**
 * @since 0.2.0
 */
export * as ServerRequest from "./ServerRequest.js"

/**
 * @since 0.1.0
 */
export * as Discovery from "./Discovery.js"

/**
 * @since 0.1.0
 */
export * as RefreshTokenStore from "./RefreshTokenStore.js"

/**
 * @since 0.1.0
 */
export * as Revocation from "./Revocation.js"

/**
 * @since 0.1.0
 */
export * as AuthHttpClient from "./AuthHttpClient.js"

/**
 * @since 0.1.0
 */
export * as WwwAuthenticate from "./WwwAuthenticate.js"

/**
 * @since 0.2.0
 */
export * as DPoP from "./DPoP.js"
