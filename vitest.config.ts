import { defineConfig } from "vitest/config"
import projects from "./vitest.workspace.js"

// The project list lives in vitest.workspace.ts; passing it as `test.projects` keeps that file the one source of
// the list without vitest 3.2's deprecation notice for workspace files (which it prints when it loads one itself).
export default defineConfig({ test: { projects } })
