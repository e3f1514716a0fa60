// Unit tests of values.js (the Explorer's value view) and of how the results table treats a
// change from zero ("inf": JSON has no infinity), loaded as the widget ships them.
import { test } from "node:test";
import assert from "node:assert/strict";

import * as values from "../../sd_widgets/widget/static/values.js";
import * as panels from "../../sd_widgets/widget/static/panels.js";

const B = { ...values, ...panels };

const legend = [
  { change: "nan_appeared", label: "NaN appeared", icon: "!", tone: "error" },
  { change: "from_zero", label: "from zero", icon: "0→", tone: "warn" },
  { change: "large", label: "changed", icon: "Δ", tone: "warn" },
  { change: "tiny", label: "tiny change", icon: "≈", tone: "info" },
  { change: "identical", label: "identical", icon: "=", tone: "ok" },
  { change: "not_compared", label: "not compared", icon: "–", tone: "none" },
];
const payload = {
  state: "ready",
  tiny: 1e-3,
  legend,
  rows: {
    key: ["a.w", "a.b", "bn.running_mean", "head.w", "gone"],
    change: [4, 3, 1, 2, 5],
    rel: [0, 2e-4, "inf", 0.5, null],
    max_abs: [0, 1e-4, 0.3, 0.2, null],
    cosine: [1, 1, null, 0.9, null],
    rank: [3, 2, 0, 1, 4],
  },
  modules: { a: [2, 1, 2e-4, "a: 1 of 2 tensors changed"], bn: [1, 1, "inf", "bn: 1 of 1 tensor changed"], z: [3, 0, null, "z: 0 of 3 tensors changed"] },
};

test("valueIndex: null before a comparison, an index after", () => {
  assert.equal(B.valueIndex(null), null);
  assert.equal(B.valueIndex({ state: "none" }), null);
  const vi = B.valueIndex(payload);
  assert.equal(vi.row.get("head.w"), 3);
  assert.equal(B.valueIndex({ ...payload, state: "stale" }).state, "stale");
});

test("changeShade: log-scaled, identical 0, from zero and >= 1 full, tiny faint", () => {
  assert.equal(B.changeShade(0, 1e-3), 0);
  assert.equal(B.changeShade(null, 1e-3), 0);
  assert.equal(B.changeShade("inf", 1e-3), 1);
  assert.equal(B.changeShade(3, 1e-3), 1);
  assert.equal(B.changeShade(1e-5, 1e-3), 0.15);
  const mid = B.changeShade(0.03, 1e-3);
  assert.ok(mid > 0.5 && mid < 0.8, String(mid));
  assert.ok(B.changeShade(0.1, 1e-3) > mid);
});

test("valueCell and moduleValueCell say what changed", () => {
  const vi = B.valueIndex(payload);
  assert.equal(B.valueCell(vi, "bn.running_mean").text, "0→ from zero");
  assert.match(B.valueCell(vi, "bn.running_mean").title, /relative L2 change ∞ \(from 0\)/);
  assert.equal(B.valueCell(vi, "a.w").text, "= identical");
  assert.equal(B.valueCell(vi, "a.b").text, "≈ 2.0e-4");
  assert.equal(B.valueCell(vi, "head.w").text, "Δ 0.50");
  assert.match(B.valueCell(vi, "head.w").title, /values: changed/);
  assert.equal(B.valueCell(vi, "head.w").tone, "warn");
  assert.equal(B.valueCell(vi, "no.such"), null);
  assert.equal(B.valueCell(null, "a.w"), null);
  // short enough for a narrow status column; the sentence is the title
  assert.equal(B.moduleValueCell(vi, "z").text, "= 0/3");
  assert.equal(B.moduleValueCell(vi, "a").text, "Δ 1/2");
  assert.match(B.moduleValueCell(vi, "a").title, /^a: 1 of 2 tensors changed; largest/);
  assert.equal(B.moduleValueCell(vi, "z").shade, 0);
  assert.equal(B.moduleValueCell(vi, "bn").shade, 1);
  assert.match(B.moduleValueCell(vi, "bn").title, /bn: 1 of 1 tensor changed; largest relative change ∞/);
});

test("valueOrder filters by change and search, most changed first", () => {
  const vi = B.valueIndex(payload);
  const keys = (order) => order.map((i) => vi.rows.key[i]);
  assert.deepEqual(keys(B.valueOrder(vi, new Set(), "")), ["bn.running_mean", "head.w", "a.b", "a.w", "gone"]);
  assert.deepEqual(keys(B.valueOrder(vi, new Set(["from_zero", "large", "tiny", "nan_appeared"]), "")), ["bn.running_mean", "head.w", "a.b"]);
  assert.deepEqual(keys(B.valueOrder(vi, new Set(["identical"]), "")), ["a.w"]);
  assert.deepEqual(keys(B.valueOrder(vi, new Set(), "A.")), ["a.b", "a.w"]);
});

test("results table: a change from zero sorts as the largest and reads as such", () => {
  const table = { state: "ready", columns: [], n: 3, data: { key: ["x", "y", "z"], rel_change: [0.5, "inf", null] } };
  assert.deepEqual(B.resultsOrder(table, "", "rel_change", -1), [1, 0, 2]);
  assert.deepEqual(B.resultsOrder(table, "", "rel_change", 1), [0, 1, 2]);
  assert.equal(B.fmtCell("inf", "num"), "∞ (from 0)");
  assert.equal(B.fmtCell(0.5, "num"), "0.500");
});

// ------------------------------------------------------------ the tree filtered and sorted by change

import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import * as lib from "../../sd_widgets/widget/static/lib.js";

const fixtureTree = () => {
  const here = dirname(fileURLToPath(import.meta.url));
  return new lib.TreeData(JSON.parse(readFileSync(join(here, "fixtures", "new_head.json"), "utf8")));
};
const legendFlags = legend.map((item) => ({ ...item, changed: !["identical", "not_compared"].includes(item.change), compared: item.change !== "not_compared" }));

/** A value payload over every key of `data`: the head changed (weight most), one BN buffer from zero, the rest identical. */
function treeValues(data) {
  const keys = [...data.keyIndex.keys()];
  const change = keys.map((k) => (k === "classifier.weight" ? 2 : k === "classifier.bias" ? 3 : k === "backbone.stem.bn.running_mean" ? 1 : 4));
  const rel = keys.map((k, i) => [null, "inf", 0.5, 2e-4, 0][change[i]]);
  const order = keys.map((_, i) => i).sort((p, q) => change[p] - change[q] || p - q);
  const rank = new Array(keys.length);
  order.forEach((i, r) => (rank[i] = r));
  return B.valueIndex({ state: "ready", tiny: 1e-3, legend: legendFlags, rows: { key: keys, change, rel, max_abs: rel.map(() => 0), cosine: rel.map(() => 1), rank }, modules: {} });
}

test("valueMatches: the change filter narrows the search/status filter, modules follow their rows", () => {
  const data = fixtureTree();
  const vi = treeValues(data);
  assert.equal(B.valueMatches(data, vi, new Set(), null), null); // no change chosen: unfiltered
  assert.equal(B.valueMatches(data, null, new Set(["large"]), null), null); // no comparison yet
  const m = B.valueMatches(data, vi, new Set(["large", "tiny"]), null);
  const shown = [...data.keyIndex].filter(([, i]) => m[i]).map(([k]) => k);
  assert.deepEqual(shown, ["classifier.weight", "classifier.bias"]);
  assert.equal(m[data.moduleIndex.get("classifier")], 1);
  assert.equal(m[data.moduleIndex.get("backbone")], 0);
  // on top of a search: only rows both keep
  const search = data.computeMatches("bias", new Set(data.statuses.map((_, s) => s)));
  const both = B.valueMatches(data, vi, new Set(["large", "tiny"]), search);
  assert.deepEqual([...data.keyIndex].filter(([, i]) => both[i]).map(([k]) => k), ["classifier.bias"]);
  const zero = B.valueMatches(data, vi, new Set(["from_zero"]), null);
  assert.equal(zero[data.moduleIndex.get("backbone.stem")], 1);
  assert.equal(zero[data.moduleIndex.get("backbone.layer1")] ?? 0, 0);
});

test("sortedVisible: each module's rows most changed first, modules by their most changed row", () => {
  const data = fixtureTree();
  const vi = treeValues(data);
  const expanded = new Uint8Array(data.n).fill(1);
  const ranks = B.changeRanks(data, vi);
  const tree = lib.computeVisible(data, expanded, null);
  const sorted = B.sortedVisible(data, expanded, null, ranks);
  assert.equal(sorted.length, tree.length);
  assert.deepEqual([...sorted].sort((p, q) => p - q), [...tree]); // the same rows, reordered
  const top = [...sorted].filter((i) => data.c.parent[i] === -1).map((i) => data.c.path[i]);
  assert.deepEqual(top.slice(0, 2), ["backbone", "classifier"]); // from zero (a BN buffer) first
  const cls = [...sorted].filter((i) => data.c.parent[i] === data.moduleIndex.get("classifier")).map((i) => data.c.path[i]);
  assert.deepEqual(cls, ["classifier.weight", "classifier.bias"]);
  const stemBn = data.moduleIndex.get("backbone.stem.bn");
  const bn = [...sorted].filter((i) => data.c.parent[i] === stemBn).map((i) => data.c.path[i]);
  assert.equal(bn[0], "backbone.stem.bn.running_mean");
  // a child always follows its parent (the tree shape is kept), collapsed subtrees stay hidden
  const pos = new Map([...sorted].map((i, p) => [i, p]));
  for (const i of sorted) if (data.c.parent[i] >= 0) assert.ok(pos.get(data.c.parent[i]) < pos.get(i));
  const collapsed = new Uint8Array(data.n);
  assert.deepEqual([...B.sortedVisible(data, collapsed, null, ranks)].map((i) => data.c.path[i]), top);
  // ties keep tree order; filtered rows are left out
  const m = B.valueMatches(data, vi, new Set(["identical"]), null);
  const kept = B.sortedVisible(data, expanded, m, ranks);
  assert.deepEqual([...kept].sort((p, q) => p - q), [...lib.computeVisible(data, expanded, m)]);
  const none = new Float64Array(data.n).fill(Infinity); // every rank tied: tree order
  assert.deepEqual([...B.sortedVisible(data, expanded, m, none)], [...lib.computeVisible(data, expanded, m)]);
});

test("visibleRows: tree order unless sorting is on and values exist", () => {
  const data = fixtureTree();
  const vi = treeValues(data);
  const expanded = new Uint8Array(data.n).fill(1);
  const s = { data, matches: null, values: vi, sortByChange: false };
  assert.deepEqual([...B.visibleRows(s, expanded)], [...lib.computeVisible(data, expanded, null)]);
  s.sortByChange = true;
  assert.deepEqual([...B.visibleRows(s, expanded)], [...B.sortedVisible(data, expanded, null, B.changeRanks(data, vi))]);
  s.values = null;
  assert.deepEqual([...B.visibleRows(s, expanded)], [...lib.computeVisible(data, expanded, null)]);
});

test("changeFilterOptions and valueDetailLines read the legend's flags and the row", () => {
  const opts = B.changeFilterOptions(legendFlags);
  assert.deepEqual(opts.slice(0, 2), [{ value: "", text: "any" }, { value: "nan_appeared,from_zero,large,tiny", text: "changed (any kind)" }]);
  assert.deepEqual(opts.slice(2).map((o) => o.value), legendFlags.map((l) => l.change));
  const vi = B.valueIndex({ ...payload, legend: legendFlags, frozen_bn: { bn: "bn: all 0 parameters ..." }, a_is_model: false });
  assert.equal(vi.checkpoints, true);
  assert.equal(vi.frozenBn.bn, "bn: all 0 parameters ...");
  assert.deepEqual(B.valueDetailLines(vi, "head.w"), [["values", "Δ changed"], ["relative L2 change", "0.50"], ["max |Δ|", "0.2000"], ["cosine", "0.9000"]]);
  assert.deepEqual(B.valueDetailLines(vi, "gone")[0], ["values", "– not compared"]);
  assert.deepEqual(B.valueDetailLines(vi, "no.such"), []);
});
