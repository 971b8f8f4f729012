import { defineProject, mergeConfig } from "vitest/config"
import { shared } from "../../vitest.shared.js"

export default mergeConfig(
  shared,
  defineProject({
    test: {
      name: "session",
      // The integration tests start an oidc-provider, an HTTP server and (for one) Chromium: one file at a time, so
      // that they do not compete with each other for two cores.
      pool: "forks",
      poolOptions: { forks: { singleFork: true } },
      testTimeout: 60_000,
      hookTimeout: 60_000
    }
  })
)
