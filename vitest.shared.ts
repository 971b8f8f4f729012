import * as path from "node:path"
import { fileURLToPath } from "node:url"
import type { ViteUserConfig } from "vitest/config"

const root = path.dirname(fileURLToPath(import.meta.url))

/** Resolves workspace packages to their sources so tests never need a build first. */
export const shared: ViteUserConfig = {
  resolve: {
    alias: {
      "@effect-token/core": path.join(root, "packages/core/src/index.ts"),
      "@effect-token/redis": path.join(root, "packages/redis/src/index.ts"),
      "@effect-token/testing": path.join(root, "packages/testing/src/index.ts")
    }
  },
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000
  }
}
