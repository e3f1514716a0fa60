// Unit tests of the Explorer's pure front-end functions (sd_widgets/widget/static/lib.js).
// Run: node --test tests/js/   (Node 20, no dependencies). The fixtures are real payloads from
// Python (tests/js/fixtures/make_fixtures.py).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

import {
  TreeData,
  decodeTree,
  ancestors,
  breadcrumb,
  columnWidths,
  computeVisible,
  detailLines,
  dtypeName,
  expandTo,
  fmtBytes,
  fmtInt,
  fmtShape,
  initialExpansion,
  navigate,
  rangeGesture,
  relativeName,
  settleFocus,
  skippedKeys,
} from "../../sd_widgets/widget/static/lib.js";

const here = dirname(fileURLToPath(import.meta.url));
const fixture = (name) => JSON.parse(readFileSync(join(here, "fixtures", `${name}.json`), "utf8"));

/** TreeData + everything expanded, as a freshly opened small tree. */
function open(name, selected = [], adapters = {}) {
  const data = new TreeData(fixture(name));
  data.setSelection(selected, adapters);
  const expanded = initialExpansion(data);
  return { data, expanded, visible: computeVisible(data, expanded, null) };
}
const idx = (data, path) => data.keyIndex.get(path) ?? data.moduleIndex.get(path);
const key = (k, extra = {}) => ({ key: k, ...extra });

// ----------------------------------------------------------------------------- formatting

test("fmtBytes writes what units.human_bytes writes (the byte format is defined in Python)", () => {
  const { bytes } = JSON.parse(readFileSync(join(here, "fixtures", "formats.json"), "utf8"));
  assert.ok(bytes.length >= 20);
  for (const [n, text] of bytes) assert.equal(fmtBytes(n), text, `fmtBytes(${n})`);
});

test("formatting matches the counts and the shapes Python prints", () => {
  assert.equal(fmtBytes(0), "0 B");
  assert.equal(fmtBytes(999), "999 B");
  assert.equal(fmtBytes(1728), "1.7 KB");
  assert.equal(fmtBytes(4_718_592), "4.7 MB");
  assert.equal(fmtBytes(3e12), "3.0 TB");
  assert.equal(fmtInt(12001), "12,001");
  assert.equal(fmtInt(null), "0");
  assert.equal(fmtShape([10, 32]), "[10, 32]");
  assert.equal(fmtShape([]), "[]");
  assert.equal(fmtShape(null), "");
  const p = fixture("new_head");
  assert.equal(dtypeName(p, 0), "float32");
  assert.equal(dtypeName(p, null), "");
});

// ----------------------------------------------------------------------------- TreeData

test("TreeData indexes the real payload and counts selectable keys per module", () => {
  const { data } = open("new_head");
  assert.equal(data.keyIndex.size, 38);
  const head = idx(data, "classifier");
  assert.equal(data.c.t[head], 0);
  // the head's shape mismatches are not selectable until an adapter is set
  const w = idx(data, "classifier.weight");
  assert.equal(data.statusName(w), "shape_mismatch");
  assert.equal(data.isProblem(w), true);
  assert.equal(data.selectable(w), false);
  assert.equal(data.actionable(w), true); // the adapter makes it selectable
  assert.equal(data.moduleState(head), "na");
  assert.equal(data.ariaChecked(head), null);
  data.setSelection([], { "classifier.weight": "overlap" });
  assert.equal(data.selectable(w), true);
  assert.equal(data.moduleState(head), "none");
  assert.deepEqual(data.problemEntries().map((i) => data.c.path[i]), ["classifier.weight", "classifier.bias"]);
});

test("aria-checked is tri-state on modules: true / mixed / false", () => {
  const { data } = open("new_head");
  const layer1 = idx(data, "backbone.layer1");
  const below = [];
  for (let j = layer1 + 1; j < data.c.end[layer1]; j++) if (data.c.t[j] === 1) below.push(data.c.path[j]);
  assert.equal(below.length, 12);
  data.setSelection(below, {});
  assert.equal(data.ariaChecked(layer1), "true");
  assert.equal(data.ariaChecked(idx(data, "backbone")), "mixed");
  assert.equal(data.ariaChecked(idx(data, "backbone.stem")), "false");
  assert.equal(data.ariaChecked(idx(data, below[0])), "true");
  assert.equal(data.ariaChecked(idx(data, "backbone.stem.conv.weight")), "false");
});

test("aria-posinset / aria-setsize number the siblings", () => {
  const { data } = open("new_head");
  const top = [];
  for (let i = 0; i < data.n; i = data.c.end[i]) top.push(i);
  assert.deepEqual(top.map((i) => [data.posInSet[i], data.setSize[i]]), [[1, 2], [2, 2]]);
  const b = idx(data, "classifier.bias");
  assert.equal(data.setSize[b], 2);
  assert.equal(data.posInSet[b], 2);
});

test("filters: search matches key or checkpoint key, a module matches when a key below does", () => {
  const { data } = open("dataparallel_stripped");
  const all = new Set(data.statuses.map((_, s) => s));
  assert.equal(data.computeMatches("", all), null);
  const m = data.computeMatches("module.backbone.stem.bn.running", all);
  const shown = [...m.keys()].filter((i) => m[i] && data.c.t[i] === 1).map((i) => data.c.path[i]);
  assert.deepEqual(shown, ["backbone.stem.bn.running_mean", "backbone.stem.bn.running_var"]);
  assert.equal(m[idx(data, "backbone.stem")], 1);
  assert.equal(m[idx(data, "classifier")], 0);
  const problems = new Set(all);
  problems.delete(data.statuses.indexOf("match"));
  const pm = data.computeMatches("", problems);
  // after the prefix rule every key pairs up: "only problems" leaves no row at all
  assert.equal([...pm.keys()].filter((i) => pm[i]).length, 0);
  const nh = new TreeData(fixture("new_head"));
  const pn = nh.computeMatches("", problems);
  const left = [...pn.keys()].filter((i) => pn[i]).map((i) => nh.c.path[i]);
  assert.deepEqual(left, ["classifier", "classifier.weight", "classifier.bias"]);
});

// ----------------------------------------------------------------------------- visible rows

test("visible rows skip collapsed subtrees; initial expansion opens small trees fully", () => {
  const { data, expanded, visible } = open("new_head");
  assert.equal(visible.length, data.n);
  const bb = idx(data, "backbone");
  const collapsed = expanded.slice();
  collapsed[bb] = 0;
  const v = computeVisible(data, collapsed, null);
  assert.deepEqual([...v].map((i) => data.c.path[i]), ["backbone", "classifier", "classifier.weight", "classifier.bias"]);
});

/** A synthetic payload shaped like payload.py's: blocks.<b>.<l>.weight/bias. */
function bigPayload(nBlocks, perBlock, problems = {}) {
  // the column names Python ships (payload.py), each column empty
  const cols = Object.fromEntries(Object.keys(fixture("new_head").columns).map((k) => [k, []]));
  const push = (row) => {
    for (const k of Object.keys(cols)) cols[k].push(row[k] ?? null);
    return cols.t.length - 1;
  };
  // the statuses and legend Python ships (statuses.py legend(): labels and flags such as problem)
  const { statuses, legend } = fixture("new_head");
  const root = push({ t: 0, depth: 0, parent: -1, name: "blocks", path: "blocks", counts: [0, 0, 0, 0, 0, 0], sides: 3 });
  for (let b = 0; b < nBlocks; b++) {
    const bi = push({ t: 0, depth: 1, parent: root, name: String(b), path: `blocks.${b}`, sides: 3 });
    for (let l = 0; l < perBlock; l++) {
      const li = push({ t: 0, depth: 2, parent: bi, name: String(l), path: `blocks.${b}.${l}`, sides: 3 });
      for (const leaf of ["weight", "bias"]) {
        const path = `blocks.${b}.${l}.${leaf}`;
        const st = statuses.indexOf(problems[path] || "match");
        const i = push({ t: 1, depth: 3, parent: li, name: leaf, path, sides: 3, status: st, loadable: st === 0 ? 1 : 0, adaptable: 0, nbytes: 8, numel: 2, ckpt_shape: [2], model_shape: [2], ckpt_dtype: 0, model_dtype: 0 });
        cols.end[i] = i + 1;
      }
      cols.end[li] = cols.t.length;
    }
    cols.end[bi] = cols.t.length;
  }
  cols.end[root] = cols.t.length;
  return { statuses, legend, dtypes: ["float32"], counts: [0, 0, 0, 0, 0, 0], n_keys: nBlocks * perBlock * 2, n_entries: cols.t.length, columns: cols };
}

test("a big tree opens level by level and reveals the first problems (problems first)", () => {
  const data = new TreeData(bigPayload(300, 5, { "blocks.123.4.bias": "missing" }));
  data.setSelection([], {});
  const exp = initialExpansion(data);
  const vis = computeVisible(data, exp, null);
  const paths = [...vis].map((i) => data.c.path[i]);
  assert.ok(paths.includes("blocks.123.4.bias"), "the problem row is visible from the start");
  assert.equal(exp[idx(data, "blocks.122")], 0, "other blocks stay collapsed");
  // without problems nothing beyond the level budget opens
  const clean = new TreeData(bigPayload(300, 5));
  const v2 = computeVisible(clean, initialExpansion(clean), null);
  assert.equal(v2.length, 1);
});

test("ancestors, breadcrumb and expandTo follow the parent column", () => {
  const { data } = open("new_head");
  const k = idx(data, "backbone.layer1.0.bn1.running_mean");
  assert.deepEqual(ancestors(data, k).map((i) => data.c.path[i]), ["backbone", "backbone.layer1", "backbone.layer1.0", "backbone.layer1.0.bn1"]);
  assert.deepEqual(breadcrumb(data, k), ["backbone", "layer1", "0", "bn1"]);
  assert.deepEqual(breadcrumb(data, idx(data, "backbone")), []);
  const closed = new Uint8Array(data.n);
  expandTo(data, closed, k);
  const v = computeVisible(data, closed, null);
  assert.ok([...v].includes(k));
});

// ----------------------------------------------------------------------------- names

test("relativeName shows tree-relative names after renames, keeping the leaf", () => {
  // DDP: the wrapper prefix becomes a note, the name is the leaf like the model column
  assert.deepEqual(relativeName("encoder.layers.0.self_attn.in_proj_weight", "module.encoder.layers.0.self_attn.in_proj_weight"),
    { text: "in_proj_weight", note: "module.", renamed: true });
  // a prefix the checkpoint lacks
  assert.deepEqual(relativeName("model.fc.weight", "fc.weight"), { text: "weight", note: "−model.", renamed: true });
  // a renamed head: the part that differs stays
  assert.deepEqual(relativeName("classifier.weight", "fc.weight"), { text: "fc.weight", note: "", renamed: true });
  assert.deepEqual(relativeName("encoder.layers.0.attn.q_proj.weight", "encoder.layers.0.attention.q.weight"),
    { text: "attention.q.weight", note: "", renamed: true });
  assert.deepEqual(relativeName("a.b.weight", null), { text: "weight", note: "", renamed: false });
});

test("every row of the stripped DDP payload shows no 'module.' in its checkpoint name", () => {
  const { data } = open("dataparallel_stripped");
  let renamed = 0;
  for (let i = 0; i < data.n; i++) {
    if (data.c.t[i] !== 1 || !data.c.ckpt_key[i]) continue;
    renamed++;
    const r = relativeName(data.c.path[i], data.c.ckpt_key[i]);
    assert.equal(r.text, data.c.name[i]);
    assert.equal(r.note, "module.");
  }
  assert.equal(renamed, 38);
});

test("detailLines give original keys, shapes, dtypes and the reason", () => {
  const { data } = open("dataparallel_stripped");
  const lines = Object.fromEntries(detailLines(data, idx(data, "backbone.stem.conv.weight")));
  assert.equal(lines["Checkpoint key"], "module.backbone.stem.conv.weight");
  assert.equal(lines["Model key"], "backbone.stem.conv.weight");
  assert.match(lines.Checkpoint, /^\[\d+, \d+, 3, 3\] float32 · /);
  const nh = open("new_head");
  const w = Object.fromEntries(detailLines(nh.data, idx(nh.data, "classifier.weight")));
  assert.match(w["Why not as is"], /checkpoint \(10, 32\) vs model \(3, 32\)/);
  assert.match(w.Adapter, /an adapter can load it/);
  assert.match(w["Why not as is"], /adapt=\{'classifier\.weight': 'overlap'\} \(copies the checkpoint's rows 0\.\.2/);
  assert.equal(w.Selected, "no");
  const skipped = new Map([["backbone.stem.bn.running_mean", "bn='keep'"]]);
  nh.data.setSelection(["backbone.stem.bn.running_mean"], {});
  const rm = Object.fromEntries(detailLines(nh.data, idx(nh.data, "backbone.stem.bn.running_mean"), { skipped }));
  assert.equal(rm.Selected, "yes, but not loaded: bn='keep'");
  const mod = Object.fromEntries(detailLines(nh.data, idx(nh.data, "classifier")));
  assert.equal(mod["Keys below"], "2 shape mismatches");
  // two checkpoints (compare_values(a, b)): the sides are b (after) and a (before), and
  // nothing is said about loading or selecting
  const two = Object.fromEntries(detailLines(data, idx(data, "backbone.stem.conv.weight"), { checkpoints: true }));
  assert.equal(two["b key"], "module.backbone.stem.conv.weight");
  assert.equal(two["a key"], "backbone.stem.conv.weight");
  assert.match(two["b (after)"], /^\[\d+, \d+, 3, 3\] float32 · /);
  assert.match(two["a (before)"], /^\[\d+, \d+, 3, 3\] float32/);
  for (const gone of ["Checkpoint key", "Model key", "Checkpoint", "Model", "Selected"]) assert.ok(!(gone in two), gone);
  assert.doesNotMatch(two.Status, /load/);
  const twoHead = Object.fromEntries(detailLines(nh.data, idx(nh.data, "classifier.weight"), { checkpoints: true }));
  assert.equal(twoHead["b (after)"], w.Checkpoint);
  for (const gone of ["Why not as is", "Adapter", "Selected"]) assert.ok(!(gone in twoHead), gone);
  const twoMod = Object.fromEntries(detailLines(nh.data, idx(nh.data, "classifier"), { checkpoints: true }));
  assert.ok(!("Selected" in twoMod));
});

test("skippedKeys reads the preview's skipped pairs and the full key list", () => {
  const m = skippedKeys({ skipped: [["a.running_mean", "bn='keep'"]], skipped_keys: ["a.running_mean", "b.running_var"] });
  assert.equal(m.get("a.running_mean"), "bn='keep'");
  assert.ok(m.has("b.running_var"));
  assert.equal(skippedKeys(null).size, 0);
});

// ----------------------------------------------------------------------------- range + keyboard

test("rangeGesture: keys between two rows; collapsed modules stand for their subtree", () => {
  const { data, expanded, visible } = open("new_head");
  const a = idx(data, "backbone.stem.conv.weight");
  const b = idx(data, "backbone.stem.bn.running_var");
  const g = rangeGesture(data, visible, expanded, null, b, a, true);
  assert.deepEqual(g.keys, ["backbone.stem.conv.weight", "backbone.stem.bn.weight", "backbone.stem.bn.bias", "backbone.stem.bn.running_mean", "backbone.stem.bn.running_var"]);
  const exp2 = expanded.slice();
  exp2[idx(data, "backbone.layer1")] = 0;
  const vis2 = computeVisible(data, exp2, null);
  const g2 = rangeGesture(data, vis2, exp2, null, idx(data, "backbone.layer1"), idx(data, "backbone.layer1"), false);
  assert.deepEqual(g2, { keys: [], modules: ["backbone.layer1"], select: false });
  assert.equal(rangeGesture(data, vis2, exp2, null, idx(data, "backbone.layer1.0"), a, true), null);
});

function ctxOf(o) {
  return { data: o.data, visible: o.visible, expanded: o.expanded, matches: null, pageRows: 5 };
}

test("keyboard: Up/Down/Home/End/PageDown move the roving focus, clamped at the ends", () => {
  const o = open("new_head");
  const ctx = ctxOf(o);
  let s = { focus: o.visible[0], anchor: -1 };
  let r = navigate(s, key("ArrowUp"), ctx);
  assert.equal(r.state.focus, o.visible[0]);
  assert.ok(r.handled);
  r = navigate(s, key("ArrowDown"), ctx);
  assert.equal(r.state.focus, o.visible[1]);
  assert.deepEqual(r.effects, []);
  r = navigate(s, key("End"), ctx);
  assert.equal(r.state.focus, o.visible[o.visible.length - 1]);
  r = navigate(r.state, key("ArrowDown"), ctx);
  assert.equal(r.state.focus, o.visible[o.visible.length - 1]);
  r = navigate(r.state, key("Home"), ctx);
  assert.equal(r.state.focus, o.visible[0]);
  r = navigate(r.state, key("PageDown"), ctx);
  assert.equal(r.state.focus, o.visible[5]);
  s = { focus: -1, anchor: -1 }; // nothing focused yet: the first row
  assert.equal(navigate(s, key("ArrowDown"), ctx).state.focus, o.visible[1]);
});

test("keyboard: Right expands or enters, Left collapses or goes to the parent", () => {
  const o = open("new_head");
  const layer1 = idx(o.data, "backbone.layer1");
  let r = navigate({ focus: layer1, anchor: -1 }, key("ArrowLeft"), ctxOf(o));
  assert.deepEqual(r.effects, [{ type: "expand", index: layer1, value: 0 }]);
  assert.equal(r.state.focus, layer1);
  o.expanded[layer1] = 0;
  o.visible = computeVisible(o.data, o.expanded, null);
  r = navigate({ focus: layer1, anchor: -1 }, key("ArrowLeft"), ctxOf(o));
  assert.equal(r.state.focus, idx(o.data, "backbone"));
  assert.deepEqual(r.effects, []);
  r = navigate({ focus: layer1, anchor: -1 }, key("ArrowRight"), ctxOf(o));
  assert.deepEqual(r.effects, [{ type: "expand", index: layer1, value: 1 }]);
  o.expanded[layer1] = 1;
  o.visible = computeVisible(o.data, o.expanded, null);
  r = navigate({ focus: layer1, anchor: -1 }, key("ArrowRight"), ctxOf(o));
  assert.equal(r.state.focus, idx(o.data, "backbone.layer1.0"));
  const leaf = idx(o.data, "backbone.layer1.0.conv1.weight");
  r = navigate({ focus: leaf, anchor: -1 }, key("ArrowRight"), ctxOf(o));
  assert.equal(r.state.focus, leaf);
  assert.ok(r.handled);
  r = navigate({ focus: leaf, anchor: -1 }, key("ArrowLeft"), ctxOf(o));
  assert.equal(r.state.focus, idx(o.data, "backbone.layer1.0.conv1"));
});

test("keyboard: Space toggles rows and subtrees, switches an adapter on, says why not", () => {
  const o = open("new_head");
  const ctx = ctxOf(o);
  const layer1 = idx(o.data, "backbone.layer1");
  let r = navigate({ focus: layer1, anchor: -1 }, key(" "), ctx);
  assert.deepEqual(r.effects, [{ type: "toggle", modules: ["backbone.layer1"] }]);
  assert.equal(r.state.anchor, layer1);
  const leaf = idx(o.data, "backbone.stem.conv.weight");
  r = navigate({ focus: leaf, anchor: -1 }, key(" "), ctx);
  assert.deepEqual(r.effects, [{ type: "toggle", keys: ["backbone.stem.conv.weight"] }]);
  const w = idx(o.data, "classifier.weight");
  r = navigate({ focus: w, anchor: -1 }, key(" "), ctx);
  assert.deepEqual(r.effects, [{ type: "adapt", key: "classifier.weight", adapter: "auto" }]);
  o.data.setSelection(["classifier.weight"], { "classifier.weight": "overlap" });
  r = navigate({ focus: w, anchor: -1 }, key(" "), ctx);
  assert.deepEqual(r.effects, [{ type: "toggle", keys: ["classifier.weight"] }]);
  // an unexpected key (renamed_layer before the rename) cannot be selected: announced
  const u = open("renamed_layer");
  const fc = idx(u.data, "fc.weight");
  r = navigate({ focus: fc, anchor: -1 }, key(" "), ctxOf(u));
  assert.equal(r.effects[0].type, "announce");
  assert.match(r.effects[0].text, /fc\.weight cannot be selected/);
  // two checkpoints (compare_values(a, b)): nothing to select, adapt or load; said so
  for (const at of [layer1, leaf, w]) {
    r = navigate({ focus: at, anchor: -1 }, key(" "), { ...ctx, checkpoints: true });
    assert.equal(r.effects.length, 1);
    assert.equal(r.effects[0].type, "announce");
    assert.match(r.effects[0].text, /nothing to select or load/);
  }
});

test("keyboard: Shift+Down/Up extend the selection from the anchor", () => {
  const o = open("new_head");
  const ctx = ctxOf(o);
  const a = idx(o.data, "backbone.stem.conv.weight");
  let r = navigate({ focus: a, anchor: a }, key("ArrowDown", { shiftKey: true }), ctx);
  // conv.weight -> the bn module row (expanded: stands for nothing itself)
  assert.equal(r.state.anchor, a);
  r = navigate(r.state, key("ArrowDown", { shiftKey: true }), ctx);
  assert.equal(r.state.focus, idx(o.data, "backbone.stem.bn.weight"));
  assert.deepEqual(r.effects, [{ type: "range", keys: ["backbone.stem.conv.weight", "backbone.stem.bn.weight"], modules: [], select: true }]);
  r = navigate(r.state, key("ArrowUp", { shiftKey: true }), ctx);
  assert.equal(r.state.anchor, a);
  // a plain move resets the anchor
  r = navigate(r.state, key("ArrowDown"), ctx);
  assert.equal(r.state.anchor, r.state.focus);
});

test("keyboard: Enter opens details, letters jump by name, JupyterLab keys are swallowed", () => {
  const o = open("new_head");
  const ctx = ctxOf(o);
  const first = o.visible[0];
  let r = navigate({ focus: first, anchor: -1 }, key("Enter"), ctx);
  assert.deepEqual(r.effects, [{ type: "details", index: first }]);
  r = navigate({ focus: first, anchor: -1 }, key("c"), ctx);
  assert.equal(o.data.c.name[r.state.focus], "conv");
  r = navigate(r.state, key("c"), ctx);
  assert.ok(o.data.c.name[r.state.focus].toLowerCase().startsWith("c"));
  assert.notEqual(r.state.focus, idx(o.data, "backbone.stem.conv"));
  // command-mode shortcuts (a, b, dd, Shift+M) must not reach JupyterLab
  for (const k of [key("a"), key("b"), key("d"), key("M", { shiftKey: true })]) assert.ok(navigate(r.state, k, ctx).handled, k.key);
  assert.deepEqual(navigate(r.state, key("/"), ctx).effects, [{ type: "search" }]);
  // Tab, Escape and modified keys pass
  for (const k of [key("Tab"), key("Escape"), key("s", { ctrlKey: true }), key("Enter", { shiftKey: true }), key("ArrowDown", { altKey: true })]) {
    assert.equal(navigate(r.state, k, ctx).handled, false, k.key);
  }
});

test("settleFocus moves a hidden focus to its nearest visible ancestor", () => {
  const o = open("new_head");
  const leaf = idx(o.data, "backbone.layer1.0.conv1.weight");
  const exp = o.expanded.slice();
  exp[idx(o.data, "backbone.layer1")] = 0;
  const vis = computeVisible(o.data, exp, null);
  assert.equal(settleFocus(o.data, vis, leaf), idx(o.data, "backbone.layer1"));
  assert.equal(settleFocus(o.data, vis, -1), vis[0]);
  assert.equal(settleFocus(o.data, new Int32Array(0), leaf), -1);
});

// ----------------------------------------------------------------------------- column widths

test("columnWidths leave room for every shape, dtype, size and status label", () => {
  const { data } = open("new_head");
  const measure = (s, kind) => s.length * (kind === "name" ? 7.3 : kind === "meta" ? 6.7 : 7);
  const w = columnWidths(data, measure);
  for (let i = 0; i < data.n; i++) {
    if (data.c.t[i] !== 1) continue;
    const pad = 6 + data.c.depth[i] * 14 + 8;
    const meta = measure(fmtShape(data.c.ckpt_shape[i]), "meta") + measure("float32", "meta") + measure(fmtBytes(data.c.nbytes[i]), "meta");
    assert.ok(w.ckpt >= pad + meta + 48, `${data.c.path[i]} fits`);
  }
  assert.ok(w.status >= measure("≠ shape mismatch", "ui") + measure("overlap ✓", "meta"));
  // deeper trees get wider columns
  const deep = new TreeData(bigPayload(2, 2));
  const wd = columnWidths(deep, measure, { minSide: 0 });
  assert.ok(wd.ckpt > 3 * 14);
});

test("columnWidths leave room for the change badge a value comparison puts in a status cell", () => {
  const { data } = open("dataparallel_stripped"); // every row a match: the narrowest statuses
  const measure = (s, kind) => s.length * (kind === "name" ? 7.3 : kind === "meta" ? 6.7 : 7);
  const plain = columnWidths(data, measure);
  const leafStatus = 6 + 11 + measure("✓ match", "ui") + 6; // the badge takes the "not loaded" tag's room
  const badge = "! NaN appeared";
  const leaf = "backbone.stem.bn.bias"; // a match
  const w = columnWidths(data, measure, { valueText: (path, isModule) => (!isModule && path === leaf ? badge : isModule ? "Δ 2/2" : "Δ 0.5") });
  assert.ok(plain.status < leafStatus + measure(badge, "ui"), "without badges the column is narrower");
  assert.ok(w.status >= leafStatus + measure(badge, "ui") + 14, `${w.status} holds the badge whole`);
  assert.ok(plain.status >= leafStatus + measure("not loaded", "meta") + 8, "and a skipped row's tag");
  assert.deepEqual({ ckpt: w.ckpt, model: w.model }, { ckpt: plain.ckpt, model: plain.model });
  assert.deepEqual(columnWidths(data, measure, { valueText: () => null }), plain); // no badges
});

test("decodeTree parses the binary tree payload once, keeps hostile text exact", () => {
  const payload = { n_keys: 2, path: ["a.\u001b[31m", "b\n<img src=x>", "\udc80"] };
  // what Python's tree_to_json sends: ASCII JSON (lone surrogates as \u escapes) in one buffer
  const text = JSON.stringify(payload).replace(/[\u007f-\uffff]/g, (ch) => "\\u" + ch.charCodeAt(0).toString(16).padStart(4, "0"));
  const bytes = new TextEncoder().encode(text);
  const view = new DataView(bytes.buffer);
  const first = decodeTree(view);
  assert.deepEqual(first, payload);
  assert.equal(decodeTree(view), first); // parsed once per buffer
  assert.deepEqual(decodeTree(payload), payload); // a plain object passes through
  assert.deepEqual(decodeTree(undefined), {});
});
