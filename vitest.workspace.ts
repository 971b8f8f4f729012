// Every test project. vitest.config.ts passes this list to vitest as `test.projects`.
export default ["packages/*/vitest.config.ts", "examples/vitest.config.ts"]
