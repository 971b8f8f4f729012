/**
 * The ioredis adapter, on its own entry point: `@effect-token/redis` itself imports (and type-checks) without the
 * optional peer dependency `ioredis`; this one needs it.
 *
 * ```ts
 * import { RedisIoredis } from "@effect-token/redis/ioredis"
 * ```
 *
 * @since 0.1.0
 */

/**
 * @since 0.1.0
 */
export * as RedisIoredis from "./RedisIoredis.js"
