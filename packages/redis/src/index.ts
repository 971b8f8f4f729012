/**
 * @since 0.1.0
 */
export * as KeyRing from "./KeyRing.js"

/**
 * @since 0.1.0
 */
export * as RedisClient from "./RedisClient.js"

/**
 * @since 0.1.0
 */
export * as RedisRefreshTokenStore from "./RedisRefreshTokenStore.js"

/**
 * @since 0.1.0
 */
export * as RedisTokenStore from "./RedisTokenStore.js"
