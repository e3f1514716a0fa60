// One owner per trait in the front end: every trait the modules of static/ read (model.get),
// write (model.set) or observe (on("change:...")) is touched by exactly one module, the one
// docs/widget-protocol.md names in "One owner per trait in the front end".
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

import { stripComments } from "./strip.mjs";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const STATIC = join(repo, "sd_widgets", "widget", "static");

/** trait -> modules that touch it, from the code (comments aside). */
function touched() {
  /** @type {Map<string, Set<string>>} */
  const out = new Map();
  for (const f of readdirSync(STATIC).filter((name) => name.endsWith(".js"))) {
    const code = stripComments(readFileSync(join(STATIC, f), "utf8"), "js");
    // a trait named by a computed string would escape the check: there is none
    assert.doesNotMatch(code, /model\.(get|set)\((?!")|\bon\(`change:/, `${f}: a trait named by an expression`);
    for (const m of code.matchAll(/model\.(?:get|set)\("([a-z_]+)"|\bon\("change:([a-z_]+)"/g)) {
      const trait = m[1] || m[2];
      if (!out.has(trait)) out.set(trait, new Set());
      out.get(trait).add(f);
    }
  }
  return out;
}

/** trait -> owner module, from the table in docs/widget-protocol.md. */
function documented() {
  const doc = readFileSync(join(repo, "docs", "widget-protocol.md"), "utf8");
  const at = doc.indexOf("## One owner per trait in the front end");
  assert.ok(at >= 0, "docs/widget-protocol.md: the section is missing");
  const section = doc.slice(at, doc.indexOf("\n## ", at + 1));
  /** @type {Map<string, string>} */
  const out = new Map();
  for (const m of section.matchAll(/^\| `([a-z]+\.js)` \| (.*) \|$/gm)) {
    for (const t of m[2].matchAll(/`([a-z_]+)`/g)) {
      assert.ok(!out.has(t[1]), `${t[1]} listed twice`);
      out.set(t[1], m[1]);
    }
  }
  return out;
}

test("every trait is touched by one module of static/, the owner docs/widget-protocol.md names", () => {
  const code = touched();
  const doc = documented();
  assert.ok(code.size >= 30, `only ${code.size} traits found`);
  const shared = [...code].filter(([, files]) => files.size > 1).map(([t, files]) => `${t}: ${[...files].join(", ")}`);
  assert.deepEqual(shared, []);
  const owners = Object.fromEntries([...code].map(([t, files]) => [t, [...files][0]]));
  assert.deepEqual(owners, Object.fromEntries([...code.keys()].map((t) => [t, doc.get(t)])));
  assert.deepEqual([...doc.keys()].filter((t) => !code.has(t)), [], "documented traits no module touches");
});

test("the check finds a trait touched from a second module", () => {
  const code = stripComments('model.get("busy"); on("change:busy", f); // model.get("tab")', "js");
  const found = [...code.matchAll(/model\.(?:get|set)\("([a-z_]+)"|\bon\("change:([a-z_]+)"/g)].map((m) => m[1] || m[2]);
  assert.deepEqual(found, ["busy", "busy"]);
});
