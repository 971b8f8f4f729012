import { defineProject, mergeConfig } from "vitest/config"
import { shared } from "../../vitest.shared.js"

export default mergeConfig(
  shared,
  defineProject({
    test: {
      name: "redis",
      // The integration tests start redis-server and node processes and wait on real time: one file at a time, so
      // that they do not compete with each other for two cores.
      pool: "forks",
      poolOptions: { forks: { singleFork: true } },
      // Real processes and sockets: starved, a 20 s test can take minutes (see vitest.shared.ts).
      testTimeout: 300_000,
      hookTimeout: 300_000
    }
  })
)
