// Type-check the Explorer's front end as it ships: every file of `_JS_FILES` starts with
// `// @ts-check` and its JSDoc typedefs; the files share one scope only once concatenated, so the
// checker runs over that concatenation (bundle.mjs builds it exactly as explorer.py does) and
// every error is reported at its own file and line. Run by `make lint`; needs `npm ci` (the
// checker is pinned in package.json / package-lock.json).
import { mkdirSync, writeFileSync, existsSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { JS_FILES, source } from "./bundle.mjs";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const tsc = join(repo, "node_modules", ".bin", "tsc");
if (!existsSync(tsc)) {
  console.error(`typecheck: ${tsc} is missing; run 'npm ci' (or 'make lint', which does)`);
  process.exit(2);
}
const dir = join(repo, "build", "js-typecheck");
mkdirSync(dir, { recursive: true });
const file = join(dir, "explorer.js");
writeFileSync(file, source);

// where each file starts in the concatenation (1-based line of its first own line)
const starts = [];
source.split("\n").forEach((line, i) => {
  const m = line.match(/^\/\* ---- (\S+) \*\/$/);
  if (m && JS_FILES.includes(m[1])) starts.push({ name: m[1], line: i + 2 });
});
const missing = JS_FILES.filter((n) => !starts.some((s) => s.name === n));
if (missing.length) throw new Error(`separators not found for ${missing}`);

const args = ["--noEmit", "--pretty", "false", "--allowJs", "--checkJs", "--target", "es2022",
  "--module", "es2022", "--lib", "es2022,dom,dom.iterable", file];
const run = spawnSync(tsc, args, { encoding: "utf8" });
const out = (run.stdout || "") + (run.stderr || "");
const mapped = out.replace(/^.*explorer\.js\((\d+),(\d+)\)/gm, (_, l, c) => {
  const at = Number(l);
  const s = starts.filter((x) => x.line <= at).pop();
  return s ? `sd_widgets/widget/static/${s.name}(${at - s.line + 1},${c})` : `bundle(${l},${c})`;
});
if (run.status !== 0) {
  console.error(mapped.trim() || `tsc exited with ${run.status}`);
  process.exit(1);
}
console.log(`typecheck: ${JS_FILES.length} files, no errors (tsc ${spawnSync(tsc, ["--version"], { encoding: "utf8" }).stdout.trim()})`);
