import { describe, expect, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { execFile } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as AuthServer from "../src/AuthServer.js"
import * as ProtectedApi from "../src/ProtectedApi.js"

// What a user gets: the packed packages, installed outside the workspace with the README's own install commands,
// the TypeScript of the README and docs/GUIDE.md type-checked there against the packages' declarations (skipLibCheck off), and the
// README's quick start run there against a real authorization server and API. `pnpm test` builds first.
const root = path.resolve(import.meta.dirname, "../..")
const readme = fs.readFileSync(path.join(root, "README.md"), "utf8")
const packageJson = (dir: string) =>
  JSON.parse(fs.readFileSync(path.join(root, dir, "package.json"), "utf8")) as {
    readonly name: string
    readonly devDependencies?: Record<string, string>
  }
const packageDirs = fs.readdirSync(path.join(root, "packages")).filter((name) =>
  fs.existsSync(path.join(root, "packages", name, "package.json"))
).map((name) => path.join("packages", name))

const guide = fs.readFileSync(path.join(root, "docs/GUIDE.md"), "utf8")

// Code blocks as the README and the guide show them now: whatever they show is what gets checked.
const blocksOf = (markdown: string) =>
  [...markdown.matchAll(/```(\w+)\n([\s\S]*?)```/g)].map((match) => ({
    lang: match[1],
    code: match[2] ?? "",
    // "(This is `examples/src/readme/quickstart.ts`; ...)" right after a block names its file.
    file: /^\s*\(This is `([^`]+)`/.exec(markdown.slice(match.index + match[0].length))?.[1]
  }))
const blocks = [...blocksOf(readme), ...blocksOf(guide)]
const tsBlocks = blocks.filter((block) => block.lang === "ts").map((block, i) => ({
  code: block.code,
  file: block.file === undefined ? `readme-${i + 1}.ts` : path.basename(block.file)
}))
const installCommands = blocksOf(readme)
  .filter((block) => block.lang === "sh" && block.code.trim().startsWith("pnpm add "))
  .map((block) => block.code.trim().split(/\s+/).slice(1))

// Quick start's caller: it runs the README module's `main`, configured from the environment.
const runQuickstart = `import { Effect } from "effect"
import { main } from "./quickstart.js"

const invoices = await Effect.runPromise(main)
process.stdout.write(JSON.stringify(invoices))
`

const tsconfig = {
  compilerOptions: {
    target: "ES2022",
    module: "NodeNext",
    moduleResolution: "NodeNext",
    lib: ["ES2022", "DOM"], // @effect/platform's declarations need DOM types (the README's Install says so)
    types: ["node"],
    strict: true,
    exactOptionalPropertyTypes: true,
    noUncheckedIndexedAccess: true,
    noImplicitOverride: true,
    noFallthroughCasesInSwitch: true,
    noUnusedLocals: true,
    noUnusedParameters: true,
    isolatedModules: true,
    verbatimModuleSyntax: true,
    forceConsistentCasingInFileNames: true,
    skipLibCheck: false, // every package's declarations are checked, ours included
    skipDefaultLibCheck: true, // but not TypeScript's own lib.*.d.ts (lib.dom alone is seconds)
    noEmitOnError: true,
    rootDir: ".",
    outDir: "out"
  },
  include: ["*.ts"]
}

// The workspace's pnpm script variables (npm_*, PNPM_*) would configure the nested pnpm: leave them out.
const cleanEnv = Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^(npm|pnpm)_/i.test(key)))

const run = (command: string, args: ReadonlyArray<string>, options: {
  readonly cwd: string
  readonly env?: Record<string, string>
}) =>
  Effect.async<string, Error>((resume) => {
    execFile(
      command,
      args,
      { cwd: options.cwd, env: { ...cleanEnv, ...options.env }, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => {
        resume(
          error === null
            ? Effect.succeed(stdout)
            : Effect.fail(
              new Error(
                `${command} ${args.join(" ")} (in ${options.cwd}) failed:\n${stdout}\n${stderr}\n${error.message}`
              )
            )
        )
      }
    )
  })

const tempDir = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "effect-token-tarballs-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

describe("the packed packages, installed where users are", () => {
  it.scopedLive(
    "install with the README's commands outside the workspace, type-check the README's code strictly, run its quick start",
    () =>
      Effect.gen(function*() {
        expect(installCommands.length, "README: an Install section with `pnpm add` commands").toBeGreaterThan(0)
        expect(tsBlocks.map((block) => block.file)).toContain("quickstart.ts")
        for (const dir of packageDirs) {
          expect(fs.existsSync(path.join(root, dir, "dist/index.js")), `${dir} is built (pnpm build)`).toBe(true)
        }

        const project = yield* tempDir
        const tarballDir = path.join(project, "tarballs")

        // pnpm pack: every package, each with its LICENSE and README.
        const tarballs = new Map<string, string>()
        for (const dir of packageDirs) {
          const packed = JSON.parse(
            yield* run("pnpm", ["pack", "--json", "--pack-destination", tarballDir], { cwd: path.join(root, dir) })
          ) as { readonly name: string; readonly filename: string; readonly files: ReadonlyArray<{ path: string }> }
          expect(packed.files.map((file) => file.path), packed.name).toEqual(
            expect.arrayContaining(["LICENSE", "README.md", "package.json", "dist/index.js", "dist/index.d.ts"])
          )
          tarballs.set(packed.name, packed.filename)
        }
        expect(fs.readFileSync(path.join(root, "LICENSE"), "utf8")).toMatch(/^MIT License/)

        // A fresh project: its tools at the workspace's versions, our packages from the tarballs (an override also
        // serves @effect-token/testing's dependency on core), everything else from the README's commands.
        const tools = { ...packageJson(".").devDependencies, ...packageJson("examples").devDependencies }
        const toolVersions = Object.fromEntries(
          ["typescript", "@types/node", "@types/ws"].map((name) => [name, tools[name] ?? "missing"])
        )
        const fromTarballs = Object.fromEntries([...tarballs].map(([name, file]) => [name, `file:${file}`]))
        fs.writeFileSync(
          path.join(project, "package.json"),
          JSON.stringify({
            name: "effect-token-user",
            private: true,
            type: "module",
            devDependencies: toolVersions,
            pnpm: { overrides: fromTarballs }
          })
        )
        for (const args of installCommands) {
          const withTarballs = args.map((arg) => {
            const name = /^(@effect-token\/[^@]+)(@.*)?$/.exec(arg)?.[1]
            if (name === undefined) return arg
            const tarball = tarballs.get(name)
            if (tarball === undefined) throw new Error(`the README installs ${name}, which is not a package here`)
            return tarball
          })
          yield* run("pnpm", ["add", ...withTarballs, "--prefer-offline"], { cwd: project })
        }

        // The testing kit imports without its optional peer oidc-provider; its harness entry point needs it.
        expect(fs.existsSync(path.join(project, "node_modules/oidc-provider"))).toBe(false)
        const imported = yield* run(process.execPath, [
          "--input-type=module",
          "-e",
          `const testing = await import("@effect-token/testing")
           const harness = await import("@effect-token/testing/oidc-provider").then(() => "loaded", (e) => e.code)
           console.log(JSON.stringify({ testing: Object.keys(testing), harness }))`
        ], { cwd: project })
        expect(JSON.parse(imported)).toEqual({
          testing: expect.arrayContaining(["TestAuthorizationServer", "TestResourceServer"]),
          harness: "ERR_MODULE_NOT_FOUND"
        })

        // The README's TypeScript, strictly type-checked against the installed declarations, and compiled.
        for (const block of tsBlocks) fs.writeFileSync(path.join(project, block.file), block.code)
        fs.writeFileSync(path.join(project, "run-quickstart.ts"), runQuickstart)
        fs.writeFileSync(path.join(project, "tsconfig.json"), JSON.stringify(tsconfig, null, 2))
        yield* run(process.execPath, [path.join(project, "node_modules/typescript/bin/tsc"), "-p", "."], {
          cwd: project
        })

        // The quick start against a real authorization server and API, configured from the environment.
        const as = yield* AuthServer.make()
        const api = yield* ProtectedApi.make({ issuer: as.issuer, jwksUrl: as.jwksUrl, audience: as.audience })
        if (as.clientAuth._tag !== "ClientSecretBasic") return yield* Effect.dieMessage("expected a basic client")
        const output = yield* run(process.execPath, ["out/run-quickstart.js"], {
          cwd: project,
          env: {
            API_URL: api.url,
            TOKEN_URL: as.tokenUrl,
            CLIENT_ID: as.clientId,
            CLIENT_SECRET: Redacted.value(as.clientAuth.clientSecret),
            SCOPE: "api:read"
          }
        })
        expect(JSON.parse(output)).toHaveLength(2)
        expect(as.tokenRequests()["client_credentials"]).toBe(1)
      }),
    900_000
  )
})
