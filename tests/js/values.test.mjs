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
  assert.equal(B.moduleValueCell(vi, "z").text, "0 of 3 changed");
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
