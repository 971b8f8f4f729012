import { describe, expect, it } from "@effect/vitest"
import { execFile } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { promisify } from "node:util"

// `@effect-token/redis` for an application with a Redis client of its own: the packed packages, installed in a fresh
// project without ioredis, type-check strictly (skipLibCheck off) and import; the ioredis adapter is on its own entry
// point, `@effect-token/redis/ioredis`. The root entries also type-check under `moduleResolution: node10`.
const root = path.resolve(import.meta.dirname, "../..")
const cleanEnv = Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^(npm|pnpm)_/i.test(key)))
// Asynchronous: a synchronous child process would block the test worker for minutes.
const run = async (command: string, args: ReadonlyArray<string>, cwd: string): Promise<string> =>
  (await promisify(execFile)(command, args, { cwd, env: cleanEnv, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 }))
    .stdout
const versionOf = (name: string): string => {
  const manifest = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8")) as {
    readonly devDependencies: Record<string, string>
  }
  return manifest.devDependencies[name] ?? "missing"
}

const consumer = `import { KeyRing, RedisClient, RedisTokenStore } from "@effect-token/redis"
import { Effect, Layer, Redacted, Stream } from "effect"

// A client of the application's own, behind the small interface.
const driver: RedisClient.Driver = {
  send: (command) => Effect.fail(new RedisClient.RedisError({ command, reason: new RedisClient.Unavailable({ description: "down" }) })),
  subscribe: () => Stream.never
}
const RedisLive = Layer.succeed(RedisClient.RedisClient, RedisClient.make(driver))

export const StoreLive = Layer.unwrapEffect(
  Effect.map(
    KeyRing.make([{ kid: "k1", key: Redacted.make(globalThis.crypto.getRandomValues(new Uint8Array(32))) }]),
    (keyRing) => RedisTokenStore.layer({ keyRing })
  )
).pipe(Layer.provide(RedisLive))
`

describe("@effect-token/redis without ioredis", () => {
  it("packed, installed without ioredis: type-checks strictly (NodeNext and node10) and imports", async () => {
    for (const dir of ["core", "redis"]) {
      expect(fs.existsSync(path.join(root, "packages", dir, "dist/index.d.ts")), `${dir} is built (pnpm build)`)
        .toBe(true)
    }
    const project = fs.mkdtempSync(path.join(os.tmpdir(), "effect-token-no-ioredis-"))
    try {
      const tarball = async (dir: string) =>
        (JSON.parse(
          await run("pnpm", ["pack", "--json", "--pack-destination", project], path.join(root, "packages", dir))
        ) as { readonly filename: string }).filename
      const core = await tarball("core")
      const redis = await tarball("redis")
      fs.writeFileSync(
        path.join(project, "package.json"),
        JSON.stringify({
          name: "redis-without-ioredis",
          private: true,
          type: "module",
          pnpm: { overrides: { "@effect-token/core": `file:${core}` } }
        })
      )
      await run("pnpm", [
        "add",
        core,
        redis,
        "effect@3.22.4",
        "@effect/platform@0.97.2",
        `typescript@${versionOf("typescript")}`,
        `@types/node@${versionOf("@types/node")}`,
        "--prefer-offline"
      ], project)
      expect(fs.existsSync(path.join(project, "node_modules/ioredis"))).toBe(false)
      // The declarations the main entry reaches name no ioredis type.
      const dist = path.join(project, "node_modules/@effect-token/redis/dist")
      const reached = ["index.d.ts", "RedisClient.d.ts", "RedisTokenStore.d.ts", "RedisRefreshTokenStore.d.ts"]
      for (const file of reached) {
        expect(fs.readFileSync(path.join(dist, file), "utf8")).not.toMatch(/from "ioredis"|import\("ioredis"\)/)
      }

      fs.writeFileSync(path.join(project, "consumer.ts"), consumer)
      const compilerOptions = {
        target: "ES2022",
        lib: ["ES2022", "DOM"],
        types: ["node"],
        strict: true,
        exactOptionalPropertyTypes: true,
        skipLibCheck: false,
        skipDefaultLibCheck: true,
        noEmit: true
      }
      const tsc = path.join(project, "node_modules/typescript/bin/tsc")
      for (
        const [name, resolution] of [["nodenext", { module: "NodeNext", moduleResolution: "NodeNext" }], [
          "node10",
          { module: "ES2022", moduleResolution: "node10", skipLibCheck: true }
        ]] as const
      ) {
        fs.writeFileSync(
          path.join(project, `tsconfig.${name}.json`),
          JSON.stringify({ compilerOptions: { ...compilerOptions, ...resolution }, files: ["consumer.ts"] })
        )
        await run(process.execPath, [tsc, "-p", `tsconfig.${name}.json`], project)
      }
      const imported = await run(process.execPath, [
        "--input-type=module",
        "-e",
        `const redis = await import("@effect-token/redis")
         const adapter = await import("@effect-token/redis/ioredis").then(() => "loaded", (e) => e.code)
         console.log(JSON.stringify({ redis: Object.keys(redis).sort(), adapter }))`
      ], project)
      expect(JSON.parse(imported)).toEqual({
        redis: ["KeyRing", "RedisClient", "RedisRefreshTokenStore", "RedisTokenStore"],
        // It loads; ioredis itself is imported only when a client is made.
        adapter: "loaded"
      })
    } finally {
      fs.rmSync(project, { recursive: true, force: true })
    }
  }, 600_000)
})
