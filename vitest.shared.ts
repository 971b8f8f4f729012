import * as path from "node:path"
import { fileURLToPath } from "node:url"
import type { ViteUserConfig } from "vitest/config"

const root = path.dirname(fileURLToPath(import.meta.url))

/** Resolves workspace packages to their sources so tests never need a build first. */
export const shared: ViteUserConfig = {
  resolve: {
    // As tsconfig.base.json's `paths`: the root entry, and subpaths such as `@effect-token/testing/oidc-provider`
    // (a plain string key would rewrite those to `.../index.ts/oidc-provider`).
    alias: ["core", "redis", "session", "testing"].flatMap((name) => [
      { find: new RegExp(`^@effect-token/${name}$`), replacement: path.join(root, `packages/${name}/src/index.ts`) },
      { find: new RegExp(`^@effect-token/${name}/(.+)$`), replacement: path.join(root, `packages/${name}/src/$1.ts`) }
    ])
  },
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000
  }
}
