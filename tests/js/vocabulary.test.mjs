// One vocabulary (issue 11 §2): the front end never restates a status string. Statuses, their
// labels, colours and what the view decides by (problem, loadable, cast, differs, tone) come
// from the payload's legend (sd_widgets/statuses.py legend()); CSS colours by tone variables
// and generated .sdw-status-<status> classes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { basename, dirname, join } from "node:path";

import { STATIC, bundle } from "../../build.mjs";
import { stripComments } from "./strip.mjs";
import { TreeData, detailLines, columnWidths, initialExpansion, computeVisible } from "../../sd_widgets/widget/static/lib.js";

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, "..", "..");
const fixture = (name) => JSON.parse(readFileSync(join(here, "fixtures", `${name}.json`), "utf8"));

/** The six status strings, as Python ships them (statuses.py via a real payload). */
// a status that is also the name of a payload column (`tied`: the keys sharing a row's storage)
// is that column's name in the code; the column is not a decision by status
const STATUSES = fixture("new_head").statuses.filter((s) => !(s in fixture("new_head").columns));

/** Every place a status string appears as a whole word (CSS: a `-` also separates). */
function statusHits(code) {
  const hits = [];
  for (const s of STATUSES) {
    const re = new RegExp(`(?<![A-Za-z0-9_])${s}(?![A-Za-z0-9_])`, "g");
    for (const m of code.matchAll(re)) hits.push(`${s} at ${m.index}: …${code.slice(Math.max(0, m.index - 30), m.index + s.length + 10).replace(/\n/g, " ")}…`);
  }
  return hits;
}

test("the comment stripper keeps code and strings, drops comments", () => {
  const js = 'const a = "x // y"; // gone\nconst r = /[/]x/g; /* gone */ const t = `${a} // kept`;';
  const out = stripComments(js, "js");
  assert.ok(out.includes('"x // y"') && out.includes("/[/]x/g") && out.includes("`${a} // kept`"), out);
  assert.ok(!out.includes("gone"), out);
  assert.equal(stripComments(".a { color: red; } /* match */ .b {}", "css").includes("match"), false);
  // the check finds what it should: a status in code, in a string, in a CSS variable name
  assert.equal(statusHits(stripComments('if (s === "match") x(); // match', "js")).length, 1);
  assert.equal(statusHits(stripComments(".x { color: var(--sdw-c-shape_mismatch); }", "css")).length, 1);
  assert.deepEqual(statusHits("computeMatches(query); const matches = 1; mismatches"), []);
});

test("no status string in the code of static/*.js and *.css (comments and docs aside)", async () => {
  const files = readdirSync(STATIC).filter((f) => f.endsWith(".js") || f.endsWith(".css"));
  // every shipped file is checked, and every checked file is shipped (goes into the bundle)
  const { inputs } = await bundle();
  assert.deepEqual(new Set(files), new Set(inputs.map((f) => basename(f))));
  assert.ok(inputs.every((f) => join(repo, f) === join(STATIC, basename(f))), inputs.join(", "));
  const found = {};
  for (const f of files) {
    const hits = statusHits(stripComments(readFileSync(join(STATIC, f), "utf8"), f.endsWith(".js") ? "js" : "css"));
    if (hits.length) found[f] = hits;
  }
  assert.deepEqual(found, {});
});

test("no shipped file inserts HTML: text goes in through textContent / title / value only", () => {
  for (const f of readdirSync(STATIC).filter((name) => name.endsWith(".js"))) {
    const code = stripComments(readFileSync(join(STATIC, f), "utf8"), "js");
    for (const sink of ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "createContextualFragment"]) {
      assert.ok(!code.includes(sink), `${f} uses ${sink}`);
    }
  }
});

test("the legend ships what the front end decides by, one entry per status", () => {
  const p = fixture("new_head");
  assert.deepEqual(p.legend.map((i) => i.status), p.statuses);
  for (const item of p.legend) {
    for (const k of ["tone", "tone_colour", "problem", "loadable", "cast", "differs", "colour", "icon", "label", "plural"]) assert.ok(k in item, `${item.status}: ${k}`);
    assert.match(item.tone, /^(ok|warn|error|info)$/);
    assert.match(item.tone_colour, /^#[0-9A-Fa-f]{6}$/);
  }
  // one colour per tone
  const byTone = new Map();
  for (const item of p.legend) {
    if (byTone.has(item.tone)) assert.equal(byTone.get(item.tone), item.tone_colour, item.tone);
    byTone.set(item.tone, item.tone_colour);
  }
  const by = Object.fromEntries(p.legend.map((i) => [i.status, i]));
  assert.equal(by.match.problem, false);
  assert.equal(by.tied.problem, false); // a tied key is complete after the load
  assert.ok(p.statuses.filter((s) => s !== "match" && s !== "tied").every((s) => by[s].problem));
  assert.equal(by.dtype_mismatch.cast, true);
  assert.equal(by.shape_mismatch.differs, "shape");
  assert.equal(by.dtype_mismatch.differs, "dtype");
});

/** The fixture with the legend changed by `edit(item)` (a vocabulary the view must follow). */
function withLegend(name, edit) {
  const p = fixture(name);
  p.legend = p.legend.map((item) => ({ ...item, ...edit(item) }));
  return p;
}

test("problems, casts and count chips follow the legend's flags, not the status names", () => {
  const key = "backbone.stem.conv.weight"; // a match in new_head
  const plain = new TreeData(fixture("new_head"));
  plain.setSelection([], {});
  const i = plain.keyIndex.get(key);
  assert.equal(plain.isProblem(i), false);
  const nProblems = plain.problemEntries().length;
  assert.equal(nProblems, 2);
  assert.ok(!detailLines(plain, i).some(([label]) => label === "Cast"));

  // the same payload, with a legend that calls a match a problem that loads with a cast
  const flipped = new TreeData(withLegend("new_head", (item) => (item.status === "match" ? { problem: true, cast: true } : {})));
  flipped.setSelection([], {});
  assert.equal(flipped.isProblem(i), true);
  assert.equal(flipped.problemEntries().length, flipped.p.n_keys);
  assert.deepEqual(detailLines(flipped, i).find(([label]) => label === "Cast"), ["Cast", "loads, cast from float32 to float32"]);
  // a big tree opens to show its first problems: with every row a problem, the first screen shows one
  const exp = initialExpansion(flipped, { smallTree: 0, maxRows: 1 });
  assert.ok([...computeVisible(flipped, exp, null)].some((j) => flipped.isProblem(j)));

  // the status column is sized for the "not loaded" note only where the legend says loadable
  const measure = (text) => text.length * 7;
  const w0 = columnWidths(plain, measure).status;
  const none = new TreeData(withLegend("new_head", () => ({ loadable: false })));
  assert.ok(columnWidths(none, measure).status <= w0);
});
