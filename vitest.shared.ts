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
    // Hang guards, not performance bounds: a test's own assertions say what time it may take. The suite must pass
    // on a starved CPU (8 busy processes on 2 cores run a deterministic TestClock test 5-10x slower than idle),
    // so a guard is about 10x the test's idle time; a test slower than 12 s idle sets its own.
    testTimeout: 120_000,
    hookTimeout: 120_000
  }
}
