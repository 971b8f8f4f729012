/**
 * Type-checks every JSDoc `@example` in `packages/*\/src`: each ```ts block that follows an `@example` tag is
 * written, without the comment's leading ` * `, to its own module `packages/<package>/.examples/<Module>.<n>.ts`
 * (gitignored), and all of them are checked together with `tsconfig.examples.json` (tsconfig.base.json's
 * strictness, unused locals allowed). Errors name the source file and line of the example.
 *
 * Run by `pnpm check`; alone: `pnpm tsx scripts/check-examples.ts`.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import ts from "typescript"

const root = path.resolve(import.meta.dirname, "..")
const outDirName = ".examples"

interface Example {
  /** Relative to the repository root, e.g. `packages/core/src/TokenCache.ts`. */
  readonly source: string
  /** 1-based line of the example's first line of code in `source`. */
  readonly line: number
  /** 1-based index among the examples of `source`. */
  readonly index: number
  readonly code: string
  /** Absolute path of the module it is written to. */
  readonly file: string
}

const sourceFiles = (dir: string): Array<string> =>
  fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name)
    if (entry.isDirectory()) return sourceFiles(full)
    return entry.isFile() && entry.name.endsWith(".ts") && !entry.name.endsWith(".d.ts") ? [full] : []
  })

/** The ```ts blocks after an `@example` tag in the JSDoc comments of one file, with their first code line. */
const extract = (text: string): Array<{ readonly line: number; readonly code: string }> => {
  const found: Array<{ line: number; code: string }> = []
  const lines = text.split("\n")
  let inComment = false
  let inExample = false
  let block: { line: number; code: Array<string> } | undefined
  lines.forEach((raw, i) => {
    if (!inComment) {
      if (/^\s*\/\*\*/.test(raw) && !/\*\/\s*$/.test(raw)) inComment = true
      return
    }
    if (/^\s*\*\/\s*$/.test(raw)) {
      if (block !== undefined) throw new Error(`unclosed code block in an @example at line ${block.line}`)
      inComment = false
      inExample = false
      return
    }
    // ` * text` -> `text`; ` *` -> ``
    const content = raw.replace(/^\s*\* ?/, "")
    if (block !== undefined) {
      if (/^```\s*$/.test(content)) {
        found.push({ line: block.line, code: block.code.join("\n") + "\n" })
        block = undefined
      } else {
        block.code.push(content)
      }
      return
    }
    if (/^@example\b/.test(content)) inExample = true
    else if (/^@\w+/.test(content)) inExample = false
    else if (inExample && /^```(ts|typescript)\s*$/.test(content)) block = { line: i + 2, code: [] }
  })
  return found
}

const collect = (): Array<Example> =>
  fs.readdirSync(path.join(root, "packages"), { withFileTypes: true })
    .filter((entry) => entry.isDirectory() && fs.existsSync(path.join(root, "packages", entry.name, "src")))
    .flatMap((pkg) => {
      const pkgDir = path.join(root, "packages", pkg.name)
      const outDir = path.join(pkgDir, outDirName)
      fs.rmSync(outDir, { recursive: true, force: true })
      return sourceFiles(path.join(pkgDir, "src")).sort().flatMap((file) => {
        const source = path.relative(root, file)
        const module = path.relative(path.join(pkgDir, "src"), file).replace(/\.ts$/, "").replaceAll(path.sep, "_")
        return extract(fs.readFileSync(file, "utf8")).map(({ code, line }, i): Example => ({
          source,
          line,
          index: i + 1,
          code,
          file: path.join(outDir, `${module}.${i + 1}.ts`)
        }))
      })
    })

const examples = collect()
for (const example of examples) {
  fs.mkdirSync(path.dirname(example.file), { recursive: true })
  fs.writeFileSync(example.file, example.code)
}

const configPath = path.join(root, "tsconfig.examples.json")
const config = ts.getParsedCommandLineOfConfigFile(configPath, undefined, {
  ...ts.sys,
  onUnRecoverableConfigFileDiagnostic: (diagnostic) => {
    throw new Error(ts.flattenDiagnosticMessageText(diagnostic.messageText, "\n"))
  }
})
if (config === undefined) throw new Error(`cannot read ${configPath}`)
const program = ts.createProgram({ rootNames: examples.map((e) => e.file), options: config.options })
const diagnostics = ts.getPreEmitDiagnostics(program)

const byFile = new Map(examples.map((example) => [path.resolve(example.file), example]))
const failed = new Set<Example>()
const out: Array<string> = []
for (const diagnostic of diagnostics) {
  const message = ts.flattenDiagnosticMessageText(diagnostic.messageText, "\n  ")
  const code = `error TS${diagnostic.code}`
  if (diagnostic.file === undefined || diagnostic.start === undefined) {
    out.push(`${code}: ${message}`)
    continue
  }
  const { character, line } = diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start)
  const example = byFile.get(path.resolve(diagnostic.file.fileName))
  if (example === undefined) {
    out.push(`${path.relative(root, diagnostic.file.fileName)}:${line + 1}:${character + 1} - ${code}: ${message}`)
    continue
  }
  failed.add(example)
  const text = example.code.split("\n")[line] ?? ""
  out.push(
    `${example.source}:${example.line + line}:${character + 1} - ${code} in @example ${example.index} ` +
      `(${path.relative(root, example.file)}:${line + 1}):\n  ${message}\n  > ${text.trim()}`
  )
}

if (out.length > 0) {
  process.stderr.write(`${out.join("\n\n")}\n\n`)
  const where = [...failed].map((example) => `${example.source}:${example.line}`)
  process.stderr.write(
    `JSDoc examples: ${failed.size} of ${examples.length} failed to type-check${
      where.length > 0 ? ` (${where.join(", ")})` : ""
    }\n`
  )
  process.exit(1)
}
process.stdout.write(`JSDoc examples: all ${examples.length} type-check\n`)
