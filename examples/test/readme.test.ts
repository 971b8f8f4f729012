import { describe, expect, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as path from "node:path"

const root = path.resolve(import.meta.dirname, "../..")
const readme = fs.readFileSync(path.join(root, "README.md"), "utf8")
const guide = fs.readFileSync(path.join(root, "docs/GUIDE.md"), "utf8")
const blocksOf = (markdown: string) =>
  [...markdown.matchAll(/```(\w+)\n([\s\S]*?)```/g)].map(([, lang, code]) => ({ lang, code: code ?? "" }))
const codeBlocks = blocksOf(readme)
const repository = "https://github.com/effect-token/effect-token"

describe("README", () => {
  it.each([
    ["README.md", "examples/src/readme/quickstart.ts"],
    ["docs/GUIDE.md", "examples/src/readme/redis.ts"],
    ["docs/GUIDE.md", "examples/src/readme/dpop.ts"],
    ["docs/GUIDE.md", "examples/test/readme.property.test.ts"]
  ])("%s shows %s exactly as it is type-checked and run", (page, file) => {
    const source = fs.readFileSync(path.join(root, file), "utf8")
    const blocks = page === "README.md" ? codeBlocks : blocksOf(guide)
    expect(blocks.some((block) => block.lang === "ts" && block.code === source)).toBe(true)
  })

  it("reads in five minutes: the code first, then install, then the repository's two commands", () => {
    expect(readme.split("\n").length).toBeLessThan(150)
    const at = (text: string) => readme.indexOf(text)
    expect(at("```ts")).toBeGreaterThan(0)
    expect(at("```ts")).toBeLessThan(at("## Install"))
    expect(at("## Install")).toBeLessThan(at("pnpm demo"))
    expect(at("pnpm demo")).toBeLessThan(at("```sh\npnpm test"))
    expect(readme).toContain("`SessionError`")
  })

  it("each package is published with its metadata, and a README whose links work on the registry's page", () => {
    for (const dir of fs.readdirSync(path.join(root, "packages"))) {
      const manifest = JSON.parse(fs.readFileSync(path.join(root, "packages", dir, "package.json"), "utf8")) as {
        readonly engines?: { readonly node?: string }
        readonly repository?: { readonly url?: string; readonly directory?: string }
        readonly homepage?: string
        readonly keywords?: ReadonlyArray<string>
        readonly license?: string
      }
      expect(manifest.engines?.node, dir).toBe(">=20.19")
      expect(manifest.repository, dir).toEqual({
        type: "git",
        url: `git+${repository}.git`,
        directory: `packages/${dir}`
      })
      expect(manifest.homepage, dir).toBe(`${repository}/tree/main/packages/${dir}#readme`)
      expect(manifest.keywords?.length, dir).toBeGreaterThan(3)
      expect(manifest.license, dir).toBe("MIT")
      const packageReadme = fs.readFileSync(path.join(root, "packages", dir, "README.md"), "utf8")
      for (const [, target] of packageReadme.matchAll(/\]\(([^)]+)\)/g)) {
        expect(target, `packages/${dir}/README.md`).toMatch(/^(https:\/\/|#)/)
      }
    }
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
