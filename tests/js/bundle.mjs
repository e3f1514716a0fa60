// The Explorer's front end as the widget ships it: the files of `_JS_FILES` in
// sd_widgets/widget/_explorer.py, concatenated in that order into one ES module (so each file's
// functions are in scope in the others, as in the browser) and imported from a data: URL.
// Tests of the modules that use lib.js's helpers import their functions from here.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const STATIC = join(repo, "sd_widgets", "widget", "static");

/** A tuple of file names assigned to `name` in explorer.py. @param {string} name */
function tuple(name) {
  const src = readFileSync(join(repo, "sd_widgets", "widget", "explorer.py"), "utf8");
  const m = src.match(new RegExp(`^${name}\\s*=\\s*\\(([^)]*)\\)`, "m"));
  if (!m) throw new Error(`${name} not found in explorer.py`);
  return [...m[1].matchAll(/"([^"]+)"/g)].map((x) => x[1]);
}

export const JS_FILES = tuple("_JS_FILES");
export const CSS_FILES = tuple("_CSS_FILES");
/** The ESM source anywidget gets (explorer.py `_bundle` joins the same way). */
export const source = JS_FILES.map((n) => `/* ---- ${n} */\n` + readFileSync(join(STATIC, n), "utf8")).join("\n");
export const bundle = await import("data:text/javascript;base64," + Buffer.from(source).toString("base64"));
