// Unit tests of the pure parts of the Explorer's view modules (rows.js, treenav.js, filters.js,
// traits.js, actionbar.js, tree.js), imported as the modules they are. The DOM layer around them
// is exercised by the browser tests (tests/browser).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

import * as lib from "../../sd_widgets/widget/static/lib.js";
import * as rows from "../../sd_widgets/widget/static/rows.js";
import * as treenav from "../../sd_widgets/widget/static/treenav.js";
import * as filters from "../../sd_widgets/widget/static/filters.js";
import * as traits from "../../sd_widgets/widget/static/traits.js";
import * as actionbar from "../../sd_widgets/widget/static/actionbar.js";
import * as tree from "../../sd_widgets/widget/static/tree.js";
import entry from "../../sd_widgets/widget/static/explorer.js";

const here = dirname(fileURLToPath(import.meta.url));
const fixture = (name) => JSON.parse(readFileSync(join(here, "fixtures", `${name}.json`), "utf8"));
const B = { ...lib, ...rows, ...treenav, ...filters, ...traits, ...actionbar, ...tree };

function open(name, selected = [], adapters = {}) {
  const data = new B.TreeData(fixture(name));
  data.setSelection(selected, adapters);
  const expanded = B.initialExpansion(data);
  return { data, expanded, visible: B.computeVisible(data, expanded, null) };
}
const idx = (data, path) => data.keyIndex.get(path) ?? data.moduleIndex.get(path);

test("the shipped bundle is one self-contained module whose default export is explorer.js's render", async () => {
  assert.equal(entry.render, tree.render);
  const shipped = readFileSync(join(here, "..", "..", "sd_widgets", "widget", "static", "bundle", "explorer.js"), "utf8");
  assert.doesNotMatch(shipped, /^\s*import\b/m); // nothing left to fetch: one file
  const B2 = await import("data:text/javascript;base64," + Buffer.from(shipped).toString("base64"));
  assert.equal(typeof B2.default.render, "function");
  assert.deepEqual(Object.keys(B2), ["default"]);
});

// ----------------------------------------------------------------------------- rows.js

test("rowSig changes exactly when what a drawn row shows changes", () => {
  const { data } = open("new_head");
  const k = idx(data, "backbone.stem.conv.weight");
  const m = idx(data, "backbone.stem");
  const skipped = new Map();
  const before = [B.rowSig(data, k, skipped), B.rowSig(data, m, skipped)];
  assert.deepEqual(before, ["01||", "none"]);
  data.setSelection(["backbone.stem.conv.weight"], {});
  assert.deepEqual([B.rowSig(data, k, skipped), B.rowSig(data, m, skipped)], ["11||", "some"]);
  assert.equal(B.rowSig(data, k, new Map([["backbone.stem.conv.weight", "bn=keep"]])), "11||bn=keep");
  // an adapter on a shape mismatch makes it selectable and shows the adapter's name
  const head = idx(data, "classifier.weight");
  assert.equal(B.rowSig(data, head, skipped), "00||");
  data.setSelection(["classifier.weight"], { "classifier.weight": "overlap" });
  assert.equal(B.rowSig(data, head, skipped), "11|overlap|");
});

test("count chips: one kind of problem spelled out, several as icons, matches short", () => {
  const { data } = open("new_head");
  const cls = idx(data, "classifier");
  const r = B.countChips(data, cls);
  assert.deepEqual(r.chips.map((c) => [c.status, c.text, c.problem]), [["shape_mismatch", "≠ 2 shape mismatches", true]]);
  assert.equal(r.title, "2 shape mismatches");
  const root = B.countChips(data, idx(data, "backbone"));
  assert.ok(root.chips.every((c) => !c.problem && c.text === `✓ ${c.n}`), JSON.stringify(root));
  const rl = open("renamed_layer").data;
  const chips = B.countChips(rl, idx(rl, "classifier")).chips;
  assert.deepEqual(chips.map((c) => c.text), ["− 2 missing parameters"]);
  assert.equal(B.countChipText({ icon: "+", label: "unexpected key", plural: "unexpected keys" }, 1, false), "+ 1 unexpected key");
});

test("leafView: marks, hover text and the adapter button of each kind of row", () => {
  const { data } = open("new_head", ["backbone.stem.conv.weight"]);
  const sel = B.leafView(data, idx(data, "backbone.stem.conv.weight"), new Map());
  assert.deepEqual([sel.mark, sel.check, sel.selected, sel.disabled, sel.problem, sel.adapt], ["☑", "all", true, false, false, null]);
  assert.equal(sel.ariaLabel, "weight: match, selected");
  const skip = B.leafView(data, idx(data, "backbone.stem.conv.weight"), new Map([["backbone.stem.conv.weight", "kept by bn='keep'"]]));
  assert.equal(skip.mark, "☒");
  assert.ok(skip.title.endsWith("selected but not loaded: kept by bn='keep'"));
  const head = B.leafView(data, idx(data, "classifier.weight"), new Map());
  assert.deepEqual([head.mark, head.check, head.selectable, head.disabled, head.problem], ["☐", "none", false, false, true]);
  assert.deepEqual(head.adapt && [head.adapt.on, head.adapt.text], [false, "adapt"]);
  assert.match(head.title, /not selectable: /);
  const rl = open("renamed_layer").data;
  const missing = B.leafView(rl, idx(rl, "classifier.weight"), new Map());
  assert.deepEqual([missing.mark, missing.check, missing.disabled], ["⊘", "na", true]);
});

test("moduleView: tri-state mark and the labels of a module row", () => {
  const { data } = open("new_head", ["backbone.stem.conv.weight"]);
  const stem = idx(data, "backbone.stem");
  const mv = B.moduleView(data, stem);
  assert.equal(mv.state, "some");
  assert.equal(mv.mark, "◩");
  const n = data.c.counts[stem][data.statuses.indexOf("match")];
  assert.equal(mv.ariaLabel, `stem (${data.c.module_type[stem]}): ${n} matches`);
  assert.equal(B.moduleView(data, idx(data, "backbone.stem.conv")).mark, "☑");
  assert.match(mv.title, /click or Space to select every loadable key below/);
});

test("the shared rename prefix is said once in the column header", () => {
  assert.equal(B.sharedRenameNote(open("dataparallel_stripped").data), "module.");
  assert.equal(B.sharedRenameNote(open("new_head").data), "");
  assert.deepEqual(B.sharedNoteLabel("module."), { text: "keys under module.", title: "every renamed checkpoint key starts with 'module.'; hover a name for its full key" });
  assert.equal(B.sharedNoteLabel("−model.").text, "keys without model.");
});

test("rowWindow draws everything up to the limit, a window with overscan above it", () => {
  const m = { scrollTop: 0, offsetTop: 44, height: 440, rowH: 24, max: 600, overscan: 30 };
  assert.deepEqual(B.rowWindow(500, m), { from: 0, to: 500 });
  assert.deepEqual(B.rowWindow(5000, m), { from: 0, to: 49 });
  assert.deepEqual(B.rowWindow(5000, { ...m, scrollTop: 24 * 1000 + 44 }), { from: 970, to: 1049 });
  assert.deepEqual(B.rowWindow(5000, { ...m, scrollTop: 24 * 5000 }), { from: 4968, to: 5000 });
});

// ----------------------------------------------------------------------------- treenav.js

test("keyOutcome turns navigate's effects into messages, expansion, details and notes", () => {
  const out = B.keyOutcome([{ type: "toggle", modules: ["a"] }, { type: "expand", index: 3, value: 1 }], { detailsOpen: -1, detailsShown: false });
  assert.deepEqual(out.messages, [{ action: "toggle", keys: [], modules: ["a"] }]);
  assert.deepEqual(out.expand, [{ index: 3, value: 1 }]);
  assert.equal(out.detailsOpen, undefined);
  assert.equal(out.note, "");
  // Enter opens the details; Enter again on the same row closes them
  assert.equal(B.keyOutcome([{ type: "details", index: 5 }], { detailsOpen: -1, detailsShown: false }).detailsOpen, 5);
  assert.equal(B.keyOutcome([{ type: "details", index: 5 }], { detailsOpen: 5, detailsShown: true }).detailsOpen, -1);
  assert.equal(B.keyOutcome([{ type: "details", index: 5 }], { detailsOpen: 4, detailsShown: true }).detailsOpen, 5);
  const r = B.keyOutcome([{ type: "range", keys: ["k"], modules: [], select: true }, { type: "adapt", key: "w", adapter: "auto" }, { type: "announce", text: "why" }, { type: "search" }], { detailsOpen: -1, detailsShown: false });
  assert.deepEqual(r.messages, [{ action: "select_range", keys: ["k"], modules: [], select: true }, { action: "adapt", key: "w", adapter: "auto" }]);
  assert.equal(r.note, "why");
  assert.equal(r.search, true);
});

test("navigate + keyOutcome: Space on an adaptable row switches its adapter on", () => {
  const { data, expanded, visible } = open("new_head");
  const head = idx(data, "classifier.weight");
  const r = B.navigate({ focus: head, anchor: head }, { key: " " }, { data, visible, expanded, matches: null });
  assert.deepEqual(B.keyOutcome(r.effects, { detailsOpen: -1, detailsShown: false }).messages, [{ action: "adapt", key: "classifier.weight", adapter: "auto" }]);
});

test("reachesHost: only Tab, Escape, Shift+Enter and modified keys leave the widget", () => {
  for (const k of ["a", " ", "Enter", "ArrowDown", "d", "M"]) assert.equal(B.reachesHost({ key: k }), false, k);
  for (const ev of [{ key: "Tab" }, { key: "Escape" }, { key: "Enter", shiftKey: true }, { key: "s", ctrlKey: true }, { key: "a", metaKey: true }, { key: "x", altKey: true }]) assert.equal(B.reachesHost(ev), true, JSON.stringify(ev));
  assert.equal(B.pageRows(440, 44), 15);
  assert.equal(B.pageRows(10, 44), 1);
});

test("rowClick: caret, adapt button, range, module and row toggles", () => {
  const { data, expanded, visible } = open("new_head");
  const k = idx(data, "backbone.stem.conv.weight");
  const m = idx(data, "backbone.stem");
  const head = idx(data, "classifier.weight");
  assert.deepEqual(B.rowClick(data, m, { action: "expand" }, false, null), { type: "expand" });
  assert.deepEqual(B.rowClick(data, head, { action: "adapt", on: "false" }, false, null), { type: "send", message: { action: "adapt", key: "classifier.weight", adapter: "auto" } });
  assert.deepEqual(B.rowClick(data, head, { action: "adapt", on: "true" }, false, null).message.adapter, null);
  assert.deepEqual(B.rowClick(data, m, null, false, null), { type: "send", message: { action: "toggle", modules: ["backbone.stem"] }, anchor: { kind: "module", path: "backbone.stem" } });
  assert.deepEqual(B.rowClick(data, k, null, false, null), { type: "send", message: { action: "toggle", keys: ["backbone.stem.conv.weight"] }, anchor: { kind: "key", path: "backbone.stem.conv.weight" } });
  // a row that cannot be selected sends nothing but becomes the anchor
  assert.deepEqual(B.rowClick(data, head, null, false, null), { type: "none", anchor: { kind: "key", path: "classifier.weight" } });
  const anchor = { kind: "key", path: "backbone.stem.conv.weight" };
  assert.deepEqual(B.rowClick(data, head, null, true, anchor), { type: "range" });
  // the range deselects when the anchor is not selected, selects when it is
  const to = idx(data, "backbone.stem.bn.bias");
  const msg = B.anchorRange(data, visible, expanded, null, anchor, to);
  assert.equal(msg.action, "select_range");
  assert.equal(msg.select, false);
  assert.deepEqual(msg.keys.slice(0, 3), ["backbone.stem.conv.weight", "backbone.stem.bn.weight", "backbone.stem.bn.bias"]);
  data.setSelection(["backbone.stem.conv.weight"], {});
  assert.equal(B.anchorRange(data, visible, expanded, null, anchor, to).select, true);
  assert.equal(B.anchorRange(data, visible, expanded, null, { kind: "key", path: "gone" }, to), null);
});

// ----------------------------------------------------------------------------- filters.js

test("filters: status sets from the legend, only-problems, toggles, expansion, empty note", () => {
  const { data } = open("renamed_layer");
  const all = B.allStatuses(data);
  const probs = B.problemStatuses(data);
  assert.equal(all.size, data.statuses.length);
  assert.deepEqual([...probs].map((s) => data.statuses[s]), data.statuses.filter((s) => data.legend[s].problem));
  assert.equal(B.onlyProblemsShown(data, probs), true);
  assert.equal(B.onlyProblemsShown(data, all), false);
  const one = B.toggleStatus(probs, probs.values().next().value);
  assert.equal(one.size, probs.size - 1);
  assert.equal(probs.size, data.statuses.filter((s) => data.legend[s].problem).length, "toggleStatus returns a new set");
  assert.deepEqual(B.toggleStatus(one, probs.values().next().value), probs);
  const fe = B.filterExpansion(data);
  for (let i = 0; i < data.n; i++) assert.equal(fe[i], data.c.t[i] === 0 ? 1 : 0);
  const s = { matches: null, expanded: new Uint8Array(1), filterExpanded: fe };
  assert.equal(B.expansion(s), s.expanded);
  assert.equal(B.expansion({ ...s, matches: new Uint8Array(1) }), fe);
  assert.equal(B.emptyText(data, 0), "No key matches the search and status filter.");
  assert.equal(B.emptyText(data, 3), "");
  assert.equal(B.emptyText(new B.TreeData(null), 0), "No keys to show.");
});

// ----------------------------------------------------------------------------- traits.js

test("summary and preview texts", () => {
  assert.equal(B.summaryText(open("renamed_layer").data), "40 keys: 36 matches, 2 missing parameters, 2 unexpected keys");
  // a payload's diagnosis (every shape mismatch shares one size ratio) follows the counts
  const diagnosed = new B.TreeData({ ...fixture("renamed_layer"), diagnosis: "All 2 shape mismatches differ by one factor: built with a different config?" });
  assert.equal(B.summaryText(diagnosed), "40 keys: 36 matches, 2 missing parameters, 2 unexpected keys. All 2 shape mismatches differ by one factor: built with a different config?");
  assert.deepEqual(B.previewTexts({ n_tensors: 3, n_params: 12001, nbytes: 1728, bn: "load", keys: ["a", "b"], n_keys_total: 3 }), {
    bar: "Selected: 3 tensors · 12,001 parameters · 1.7 KB",
    stats: "3 tensors · 12,001 parameters · 1.7 KB · BatchNorm stats: load",
    more: "… and 1 more",
  });
  assert.equal(B.previewTexts({}).more, "Nothing selected: click rows or module nodes, or “Select all loadable”.");
  assert.equal(B.sameSkipped(new Map([["a", "x"]]), new Map([["a", "x"]])), true);
  assert.equal(B.sameSkipped(new Map([["a", "x"]]), new Map([["a", "y"]])), false);
  assert.equal(B.sameSkipped(new Map(), new Map([["a", "x"]])), false);
});

test("actionMessage: every button outside the tree, and soft-disabled Load/Undo send nothing", () => {
  const form = { kind: "prefix", old: "module.", new: "" };
  assert.deepEqual(B.actionMessage("load", {}, form, false), { action: "load" });
  assert.equal(B.actionMessage("load", {}, form, true), null);
  assert.equal(B.actionMessage("undo", {}, form, true), null);
  assert.deepEqual(B.actionMessage("add-rule", {}, form, false), { action: "add_rule", kind: "prefix", old: "module.", new: "" });
  assert.deepEqual(B.actionMessage("remove-rule", { index: "2" }, form, false), { action: "remove_rule", index: 2 });
  assert.deepEqual(B.actionMessage("accept-suggestion", { id: "s1" }, form, false), { action: "accept_suggestion", id: "s1" });
  assert.deepEqual(B.actionMessage("select-loadable", {}, form, false), { action: "select_all_loadable" });
  assert.deepEqual(B.actionMessage("select-none", {}, form, false), { action: "select_none" });
  assert.deepEqual(B.actionMessage("dismiss-message", {}, form, false), { action: "dismiss_message" });
  assert.equal(B.actionMessage("copy-code", {}, form, false), null);
});

test("carryOver keeps open modules and the focused row across a re-alignment", () => {
  const before = open("renamed_layer").data;
  const after = open("new_head").data; // the same model, another payload
  const exp = new Uint8Array(before.n);
  const keep = idx(before, "backbone.layer1.0");
  exp[keep] = 1;
  const focus = idx(before, "backbone.stem.conv.weight");
  const r = B.carryOver(before, exp, focus, after);
  assert.equal(r.expanded[idx(after, "backbone.layer1.0")], 1);
  assert.equal(r.focus, idx(after, "backbone.stem.conv.weight"));
  // a row that is gone leaves no tab stop; a first payload carries nothing
  assert.equal(B.carryOver(before, exp, idx(before, "fc.weight"), after).focus, -1);
  const empty = new B.TreeData(null);
  assert.deepEqual([...B.carryOver(empty, new Uint8Array(0), -1, after).expanded], [...B.initialExpansion(after)]);
});

// ----------------------------------------------------------------------------- actionbar.js

test("hostsToUnclip: JupyterLab's output boxes and the host, up to the real scroller", () => {
  const box = (className, overflowX, overflowY, extra = {}) => ({ className, overflowX, overflowY, ...extra });
  const lab = [
    box("lm-Widget", "visible", "visible", { isHost: true }),
    box("lm-Widget lm-Panel jp-OutputArea-output", "auto", "auto"),
    box("lm-Widget lm-Panel jp-OutputArea-child", "hidden", "hidden"),
    box("lm-Widget jp-OutputArea jp-Cell-outputArea", "auto", "auto"),
    box("lm-Widget lm-Panel jp-Cell-outputWrapper", "visible", "visible"),
    box("jp-WindowedPanel-outer", "auto", "auto"),
    box("lm-Widget jp-LabShell", "hidden", "hidden"),
  ];
  assert.deepEqual(B.hostsToUnclip(lab), [1, 2, 3]);
  // Voila: the widget's host box clips too
  const voila = [box("lm-Widget", "hidden", "hidden", { isHost: true }), box("lm-Widget lm-Panel jp-OutputArea-output", "auto", "auto"), box("lm-BoxPanel-child", "auto", "auto")];
  assert.deepEqual(B.hostsToUnclip(voila), [0, 1]);
  // a cell whose outputs scroll keeps its scroller (the bar sticks to it)
  const scrolled = lab.map((b, k) => (k === 3 ? { ...b, inScrolledOutput: true } : b));
  assert.deepEqual(B.hostsToUnclip(scrolled), [1, 2]);
  // a second widget in the same output: the boxes the first unclipped are held by both
  const second = lab.map((b, k) => (k >= 1 && k <= 3 ? { ...b, overflowX: "clip", overflowY: "visible", held: true } : b));
  assert.deepEqual(B.hostsToUnclip(second), [1, 2, 3]);
  // an unknown scroll box stops the walk: nothing above it is touched
  assert.deepEqual(B.hostsToUnclip([box("my-app", "auto", "auto"), box("jp-OutputArea", "auto", "auto")]), []);
  assert.equal(B.isScrollContainer("clip", "visible"), false);
  assert.equal(B.isScrollContainer("auto", "visible"), true);
});

test("treeMaxHeight and scrollIntoNotebook", () => {
  assert.equal(B.treeMaxHeight({ avail: 599, bar: 56, head: 44, rowH: 24, fallback: 440 }), 440);
  assert.equal(B.treeMaxHeight({ avail: 400, bar: 56, head: 44, rowH: 24, fallback: 440 }), 320);
  assert.equal(B.treeMaxHeight({ avail: 100, bar: 56, head: 44, rowH: 24, fallback: 440 }), 188);
  const sc = { top: 100, bottom: 700 };
  assert.equal(B.scrollIntoNotebook({ top: 200, bottom: 224 }, sc, 900), 0);
  assert.equal(B.scrollIntoNotebook({ top: 80, bottom: 104 }, sc, 900), -20);
  // under a stuck bar (top at 650): scroll until the row's bottom meets the bar
  assert.equal(B.scrollIntoNotebook({ top: 640, bottom: 664 }, sc, 650), 14);
  assert.equal(B.scrollIntoNotebook({ top: 690, bottom: 714 }, sc, 900), 14);
});

// ----------------------------------------------------------------------------- tree.js

test("status style rules and tone colours come from the legend, checked", () => {
  const legend = fixture("new_head").legend;
  const rules = B.statusStyleRules(legend);
  assert.equal(rules.split("\n").length, legend.length);
  assert.ok(rules.includes(`.sdw-explorer .sdw-status-${legend[0].status} { --sdw-c: var(--sdw-c-${legend[0].status}, ${legend[0].colour}); }`));
  const tones = new Map(B.toneColours(legend));
  assert.deepEqual([...tones.keys()].sort(), ["--sdw-tone-error", "--sdw-tone-info", "--sdw-tone-ok", "--sdw-tone-warn"]);
  for (const item of legend) assert.equal(tones.get(`--sdw-tone-${item.tone}`), item.tone_colour);
  // hostile names and colours are dropped or replaced
  const bad = B.statusStyleRules([{ status: "x} body{display:none", colour: "#fff" }, { status: "ok_one", colour: "red;}" }]);
  assert.equal(bad, ".sdw-explorer .sdw-status-ok_one { --sdw-c: var(--sdw-c-ok_one, #888888); }");
  assert.deepEqual(B.toneColours([{ tone: "err;", tone_colour: "#fff" }, { tone: "ok", tone_colour: "url(x)" }]), []);
});

test("statusColours: one --sdw-c-<status> per legend entry, from the legend, hostile names and colours set nothing", () => {
  const legend = fixture("new_head").legend;
  const colours = new Map(B.statusColours(legend));
  assert.equal(colours.size, legend.length);
  for (const item of legend) assert.equal(colours.get(`--sdw-c-${item.status}`), item.colour);
  const bad = [{ status: "x} body{display:none", colour: "#fff" }, { status: "ok_one", colour: "red;}" }, { status: "fine", colour: "#123456" }];
  assert.deepEqual(B.statusColours(bad), [["--sdw-c-fine", "#123456"]]);
});

test("loraNotes: the weight a LoRA pair modifies and each factor say what they pair with", () => {
  const notes = rows.loraNotes({
    pairs: [
      { base: "h.0.attn.c_attn.weight", a_key: "base_model.model.h.0.attn.c_attn.lora_A.weight", b_key: "base_model.model.h.0.attn.c_attn.lora_B.weight", factors: "A (4, 32) · B (96, 4), × 2", problem: "" },
      { base: "h.1.attn.c_attn.weight", a_key: "a1", b_key: "b1", factors: "A (4, 32) · B (96, 4), × 2", problem: "the model's weight is [48, 144]" },
    ],
  });
  assert.equal(notes.get("h.0.attn.c_attn.weight"), "LoRA: + A (4, 32) · B (96, 4), × 2\nfactors: base_model.model.h.0.attn.c_attn.lora_A.weight, base_model.model.h.0.attn.c_attn.lora_B.weight");
  assert.equal(notes.get("base_model.model.h.0.attn.c_attn.lora_B.weight"), "LoRA factor B of h.0.attn.c_attn.weight");
  assert.equal(notes.get("h.1.attn.c_attn.weight"), "LoRA: not merged: the model's weight is [48, 144]\nfactors: a1, b1");
  assert.equal(notes.size, 6);
  assert.equal(rows.loraNotes({}).size, 0);
  assert.equal(rows.loraNotes(undefined).size, 0);
});
