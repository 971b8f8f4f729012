/**
 * Test doubles for `@effect-token/redis`, on their own entry point: an in-memory `RedisClient` whose TTLs follow
 * Effect's `Clock` (so `TestClock` drives leases, polling and health), with this package's scripts.
 *
 * It lives here rather than in `@effect-token/testing` because dependencies point one way: `@effect-token/redis`
 * already uses `@effect-token/testing` in its own tests, and the kit must stay usable without Redis.
 *
 * ```ts
 * import { MemoryRedisClient } from "@effect-token/redis/testing"
 * ```
 *
 * @since 0.1.0
 */

/**
 * @since 0.1.0
 */
export * as MemoryRedisClient from "./MemoryRedisClient.js"
