import { describe, expect, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as path from "node:path"

const root = path.resolve(import.meta.dirname, "../..")
const readme = fs.readFileSync(path.join(root, "README.md"), "utf8")
const codeBlocks = [...readme.matchAll(/```(\w+)\n([\s\S]*?)```/g)].map(([, lang, code]) => ({
  lang,
  code: code ?? ""
}))

describe("README", () => {
  it.each([
    "examples/src/readme/quickstart.ts",
    "examples/src/readme/redis.ts",
    "examples/src/readme/dpop.ts",
    "examples/test/readme.property.test.ts"
  ])("shows %s exactly as it is type-checked and run", (file) => {
    const source = fs.readFileSync(path.join(root, file), "utf8")
    expect(codeBlocks.some((block) => block.lang === "ts" && block.code === source)).toBe(true)
  })

  it("each package's README gives the same install commands (the tarballs test runs the README's)", () => {
    const commands = (markdown: string) =>
      [...markdown.matchAll(/```sh\n([\s\S]*?)```/g)].map(([, code]) => (code ?? "").trim())
        .filter((command) => command.startsWith("pnpm add "))
    const ours = commands(readme)
    for (const dir of fs.readdirSync(path.join(root, "packages"))) {
      const file = path.join(root, "packages", dir, "README.md")
      expect(fs.existsSync(file), file).toBe(true)
      for (const command of commands(fs.readFileSync(file, "utf8"))) {
        if (!command.includes("oidc-provider")) expect(ours, `packages/${dir}/README.md`).toContain(command)
      }
    }
  })

  it("gives the test command that CI runs, and the demo set-up", () => {
    const ci = fs.readFileSync(path.join(root, ".ci/run"), "utf8")
    const shell = codeBlocks.filter((block) => block.lang === "sh").map((block) => block.code.trim())
    expect(shell).toContain("pnpm test")
    expect(ci).toMatch(/^pnpm test$/m)
    expect(shell.some((command) => command.includes("pnpm install") && command.endsWith("pnpm demo"))).toBe(true)
  })
})
