/**
 * @since 0.1.0
 */
export * as RedisClient from "./RedisClient.js"
