import * as path from "node:path"
import { fileURLToPath } from "node:url"
import type { ViteUserConfig } from "vitest/config"

const root = path.dirname(fileURLToPath(import.meta.url))

/** Resolves workspace packages to their sources so tests never need a build first. */
export const shared: ViteUserConfig = {
  resolve: {
    // Exact matches: a plain string key would also rewrite `@effect-token/testing/oidc-provider`.
    alias: [
      { find: /^@effect-token\/core$/, replacement: path.join(root, "packages/core/src/index.ts") },
      { find: /^@effect-token\/testing$/, replacement: path.join(root, "packages/testing/src/index.ts") },
      {
        find: /^@effect-token\/testing\/oidc-provider$/,
        replacement: path.join(root, "packages/testing/src/oidc-provider.ts")
      }
    ]
  },
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000
  }
}
