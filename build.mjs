// The Explorer's front end build: a pinned esbuild (package.json) bundles the ES modules of
// sd_widgets/widget/static into the two files the widget ships and the offline report inlines:
//   static/bundle/explorer.js   static/explorer.js and every module it imports, one ES module
//   static/bundle/explorer.css  static/explorer.css and the stylesheets it @imports, in order
// Not minified (the shipped file stays readable), no timestamps or absolute paths: the same
// sources give the same bytes on any machine.
//   node build.mjs           write the bundle (`npm run build`)
//   node build.mjs --check   exit 1 if the committed bundle differs from a fresh build
import { build } from "esbuild";
import { readFileSync, writeFileSync, mkdirSync, existsSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = dirname(fileURLToPath(import.meta.url));
export const STATIC = join(ROOT, "sd_widgets", "widget", "static");
export const OUT = join(STATIC, "bundle");
const ENTRIES = ["explorer.js", "explorer.css"];

/**
 * A fresh build in memory.
 * @returns {Promise<{files: Map<string, string>, inputs: string[]}>} output file (relative to
 *   the repository) -> text, and every source file that went in (relative to the repository)
 */
export async function bundle() {
  const result = await build({
    absWorkingDir: ROOT,
    entryPoints: ENTRIES.map((n) => relative(ROOT, join(STATIC, n))),
    outdir: relative(ROOT, OUT),
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    charset: "ascii",
    legalComments: "none",
    minify: false,
    sourcemap: false,
    metafile: true,
    write: false,
    logLevel: "silent",
  });
  const files = new Map(result.outputFiles.map((f) => [relative(ROOT, f.path), f.text]));
  return { files, inputs: Object.keys(result.metafile.inputs).sort() };
}

async function main() {
  const check = process.argv.includes("--check");
  const { files } = await bundle();
  const stale = [];
  for (const [name, text] of files) {
    const path = join(ROOT, name);
    if (check) {
      if (!existsSync(path) || readFileSync(path, "utf8") !== text) stale.push(name);
    } else {
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, text);
      console.log(`wrote ${name} (${text.length.toLocaleString("en-US")} bytes)`);
    }
  }
  if (stale.length) {
    console.error(`${stale.join(", ")}: not what the sources build; run 'npm run build' and commit the result`);
    process.exit(1);
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await main();
