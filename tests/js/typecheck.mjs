// Type-check the Explorer's front end: every static/*.js is an ES module with `// @ts-check` and
// JSDoc types (a type from another module comes in through `/** @import { T } from "./x.js" */`),
// so tsc checks the modules themselves, following their imports, and reports each error at its
// own file and line; an import (or local) nothing uses is an error too. Run by `make lint`;
// needs `npm ci` (the checker is pinned in package.json / package-lock.json).
import { readdirSync, existsSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const tsc = join(repo, "node_modules", ".bin", "tsc");
if (!existsSync(tsc)) {
  console.error(`typecheck: ${tsc} is missing; run 'npm ci' (or 'make lint', which does)`);
  process.exit(2);
}
const STATIC = join(repo, "sd_widgets", "widget", "static");
// every module, also one nothing imports yet (tests/js/build.test.mjs fails on such a file)
const files = readdirSync(STATIC).filter((f) => f.endsWith(".js")).sort().map((f) => relative(repo, join(STATIC, f)));

const args = ["--noEmit", "--pretty", "false", "--allowJs", "--checkJs", "--noUnusedLocals", "--target", "es2022",
  "--module", "es2022", "--moduleResolution", "bundler", "--lib", "es2022,dom,dom.iterable", ...files];
const run = spawnSync(tsc, args, { encoding: "utf8", cwd: repo });
const out = ((run.stdout || "") + (run.stderr || "")).trim();
if (run.status !== 0) {
  console.error(out || `tsc exited with ${run.status}`);
  process.exit(1);
}
const version = spawnSync(tsc, ["--version"], { encoding: "utf8" }).stdout.trim();
console.log(`typecheck: ${files.length} modules, no errors (tsc ${version})`);
