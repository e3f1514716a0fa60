// @ts-check
// sd_widgets Explorer front end: one anywidget view drawing the whole side-by-side tree.
//
// This file is `render`: a short composition of the view's parts, each an ES module it imports
// (explorer.js, the entry anywidget loads, exports it; `npm run build` bundles them all):
//   lib.js       pure: payload access (TreeData), filtering, visible rows, range selection, the
//                keyboard reducer, names, details, column widths, formatting
//   actionbar.js the sticky action bar (host boxes unclipped, the tree's height cap)
//   dom.js       element factory, layout constants, the View / ViewState typedefs
//   rows.js      what a row shows (pure) and the row elements
//   tabs.js      the Selection / Renames / Code / Results tabs
//   skeleton.js  every element of the contract below, created once
//   treeview.js  drawing rows (windowed), breadcrumb, column header and widths, details
//   treenav.js   focus, keyboard and clicks on rows (pure key/click outcomes + DOM)
//   filters.js   search, "only problems", legend toggles, the problems strip
//   traits.js    traits → DOM and the buttons outside the tree
//   panels.js    the panels around the tree (banner, error/stale states, results table, ...)
//   values.js    the value comparison: change badges in the rows, the Values panel
// The pure functions are unit-tested with `node --test tests/js`, which imports these modules.
// Every trait is read and observed by one module, its owner (docs/widget-protocol.md lists
// them): the others get it from the view (v.s) or through the v.fn functions the owner calls.
// Every decision about what a gesture selects, what loads, undo and renames is made in Python
// (sd_widgets/widget/_explorer.py, _actions.py, _payload.py); the view shows trait values and
// sends gestures as custom messages `{action: ...}`. Statuses: the view decides by
// the legend's flags (statuses.py legend()), never by a status name. Strings from checkpoints
// and models are only ever inserted with textContent / title / value, never as HTML.
//
// Keyboard (WAI-ARIA tree view; the tree is ONE tab stop with a roving tabindex): Up/Down,
// Home/End, PageUp/PageDown move; Right/Left expand/collapse or go to child/parent; Space toggles
// the selection (modules: the subtree; an adaptable shape mismatch: its adapter); Shift+Up/Down
// extend it; Enter opens the details of the row; a letter jumps by name; "/" goes to the search.
// Every key the widget handles stops there (preventDefault + stopPropagation), and plain keys
// typed anywhere inside the widget never reach JupyterLab's command-mode shortcuts.
//
// Problems first: when the comparison has problems, a "Problems" strip above the tree lists the
// first ones (each reveals and focuses its row) with "Show only problems"; a big tree opens with
// the first problems' modules expanded. Tree order itself is never changed.
//
// DOM contract (the browser tests rely on it; keep it stable)
// -----------------------------------------------------------
// .sdw-explorer[data-role=explorer]            root; data-ready="true" once the tree is drawn,
//                                              data-n-keys, data-n-visible, data-busy
// [data-role=message][data-level]              message bar (level: info|success|warning|error)
// [data-role=summary]                          "N keys: ..." counts line
// [data-role=problems] > [data-action=goto-problem][data-key]   problems strip (first ones);
//   [data-action=show-problems]                turns "only problems" on
// input[data-role=search]                      search box (substring of key / checkpoint key)
// input[data-role=only-problems]               "only problems" checkbox
// [data-role=legend] > [data-role=legend-item][data-status][aria-pressed]
//                                              legend entries; clicking one toggles that status
// [data-action=expand-all|collapse-all|select-loadable|select-none]   toolbar buttons
// [data-role=viewport] > [data-role=tree-head] (sticky) > [data-role=column-header]
//   (with [data-role=col-resize][data-col=ckpt|status] separators; [data-role=ckpt-prefix]:
//   the prefix every renamed checkpoint key shares, said once) and
//   [data-role=breadcrumb][data-path] (the module path of the first row in view)
// [data-role=viewport] > [data-role=canvas][role=tree]   the rows (virtualised above 600)
// .sdw-row[data-role=module][role=treeitem][data-path][data-expanded][data-depth][data-check]
//   [aria-expanded][aria-checked=true|false|mixed][aria-level][tabindex]
//   [data-action=expand]                       its caret (expand/collapse)
//   [data-role=counts] > .sdw-count.sdw-status-<status>[data-status][data-count]
// .sdw-row[data-role=leaf][role=treeitem].sdw-status-<status>[data-key][data-status]
//   [data-selectable][data-selected][data-skipped][data-depth][aria-checked][aria-disabled]
//   [data-role=ckpt] / [data-role=model]       the two columns (empty cell: side absent)
//     [data-role=name] (tree-relative; the original key in title) [data-role=rename-note]
//     (only when renamed keys do not share one prefix)
//     [data-role=shape] [data-role=dtype] [data-role=size]
//   [data-role=status]                         icon + label; [data-role=skip-note] "not loaded"
//   [data-action=adapt]                        adapter toggle on adaptable shape mismatches
// [data-role=details][data-key|data-path]      details of a row (Enter), dl of lines
// [data-role=tree-note]                        what the last key press could not do
// [data-role=preview][data-n-tensors][data-n-params][data-nbytes]   live selection preview
//   [data-role=preview-keys] > li              its keys (first 500)
// [data-role=tree-box] > [data-role=viewport] ... [data-role=actions][data-stuck] (sticky at the
//   notebook's bottom edge while the tree is on screen) > [data-action=load]
//   [data-action=undo]
// input[data-role=bn-policy][value=load|keep|reset]
// [data-role=tab][data-tab=preview|renames|code|results]    tabs; panels [data-panel=...]
// [data-role=suggestion][data-id] > [data-action=accept-suggestion]
// [data-role=rule][data-index] > [data-action=remove-rule]
// [data-role=rule-kind] [data-role=rule-old] [data-role=rule-new] [data-action=add-rule]
// pre[data-role=code]  [data-action=copy-code]
// [data-role=results]: select[data-role=histogram-picker], img[data-role=histogram][data-key],
//   img[data-role=histogram-single], img[data-role=bn-plot]
// [data-role=top-slot], [data-role=results-slot]   where panels.js mounts its panels
// .sdw-explorer[data-readonly=true]            the standalone report (widget/_html.py)
// .sdw-explorer[data-fit=full|narrow|scroll]   how the columns fit the container (fitColumns)

import { TreeData } from "./lib.js";
import { FULL_RENDER_MAX, uniqueId } from "./dom.js";
import { mountActionBar } from "./actionbar.js";
import { mountValues } from "./values.js";
import { buildSkeleton } from "./skeleton.js";
import { mountTree } from "./treeview.js";
import { mountNav } from "./treenav.js";
import { mountFilters } from "./filters.js";
import { mountActions, mountTraits } from "./traits.js";
import { mountPanels } from "./panels.js";
import { loraNotes } from "./rows.js";
/** @import { LegendItem } from "./lib.js" */
/** @import { View, ViewFns } from "./dom.js" */

/**
 * The `<style>` rules colouring each status (`.sdw-status-<status> { --sdw-c }`, overridable by
 * `--sdw-c-<status>`) from the payload's legend; names and colours are checked, not trusted.
 * @param {LegendItem[]} legend
 */
export function statusStyleRules(legend) {
  const rules = [];
  for (const item of legend || []) {
    if (!/^[a-z_]+$/.test(item.status)) continue;
    const colour = /^#[0-9a-fA-F]{3,8}$/.test(item.colour || "") ? item.colour : "#888888";
    rules.push(`.sdw-explorer .sdw-status-${item.status} { --sdw-c: var(--sdw-c-${item.status}, ${colour}); }`);
  }
  return rules.join("\n");
}

/**
 * The status colours set on the root (`--sdw-c-<status>`) from the legend, checked as in
 * statusStyleRules (an entry with an unexpected name or colour sets nothing): [variable, colour].
 * @param {LegendItem[]} legend
 * @returns {[string, string][]}
 */
export function statusColours(legend) {
  /** @type {[string, string][]} */
  const out = [];
  for (const item of legend || []) {
    if (/^[a-z_]+$/.test(item.status) && /^#[0-9a-fA-F]{3,8}$/.test(item.colour || "")) out.push([`--sdw-c-${item.status}`, item.colour]);
  }
  return out;
}

/**
 * The tone colours (`--sdw-tone-<ok|warn|error|info>`: messages, warnings, the problems strip)
 * from the legend, checked: [variable, colour] pairs.
 * @param {LegendItem[]} legend
 * @returns {[string, string][]}
 */
export function toneColours(legend) {
  /** @type {Map<string, string>} */
  const out = new Map();
  for (const item of legend || []) {
    const tone = item.tone || "";
    const colour = item.tone_colour || "";
    if (/^[a-z]+$/.test(tone) && /^#[0-9a-fA-F]{3,8}$/.test(colour) && !out.has(tone)) out.set(tone, colour);
  }
  return [...out].map(([tone, colour]) => [`--sdw-tone-${tone}`, colour]);
}

/** @param {{model: any, el: HTMLElement}} args */
export function render({ model, el }) {
  /** @type {(() => void)[]} */
  const cleanups = [];
  /** @type {View} */
  const v = {
    model,
    el,
    uid: uniqueId("sdw"),
    cleanups,
    send: (content) => model.send(content),
    on: (name, fn) => {
      model.on(name, fn);
      cleanups.push(() => model.off(name, fn));
    },
    s: {
      data: new TreeData(null), // traits.js, the owner of `tree`, decodes it when it mounts
      readOnly: !!model.get("read_only"),
      expanded: new Uint8Array(0),
      filterExpanded: new Uint8Array(0),
      matches: null,
      visible: new Int32Array(0),
      clickAnchor: null,
      nav: { focus: -1, anchor: -1 },
      detailsOpen: -1,
      skipped: new Map(),
      userWidths: {},
      query: "",
      statusOn: new Set(),
      sharedNote: "",
      fittedTo: -1,
      loraNotes: new Map(),
    },
    els: {},
    fn: /** @type {ViewFns} */ ({}),
  };
  v.els = buildSkeleton(v);
  const { root, viewport, crumb, topSlot, resultsSlot, codeSlot, statusStyle } = v.els;
  // the standalone report (widget/_html.py): no kernel behind the model; tree.css hides what
  // would ask Python for something (load, undo, selection, renames, tabs)
  if (v.s.readOnly) root.dataset.readonly = "true";
  const tabs = { setResults: v.els.setResults, setHistogram: v.els.setHistogram };
  // a LoRA adapter (panels.js owns the `lora` trait): its pairing in the rows' hover
  const onLora = (/** @type {any} */ lora) => {
    v.s.loraNotes = loraNotes(lora);
    if (v.fn.sizeColumns) v.fn.sizeColumns(); // the status column holds the "LoRA" tags too
    if (v.fn.drawRows) v.fn.drawRows(true);
  };
  const panels = mountPanels({ model, send: v.send, on: v.on, root, slots: { top: topSlot, results: resultsSlot, code: codeSlot }, tabs, onLora });
  v.fn.drawBusyPanel = panels.drawBusy;
  v.fn.drawErrorState = panels.drawError;
  v.fn.drawStatusStyle = () => {
    const legend = v.s.data.p.legend;
    statusStyle.textContent = statusStyleRules(legend);
    for (const [name, colour] of [...statusColours(legend), ...toneColours(legend)]) root.style.setProperty(name, colour);
  };
  mountActionBar(v);
  mountTree(v);
  mountNav(v);
  mountFilters(v);
  mountActions(v);
  mountTraits(v);
  mountValues(v);
  v.fn.note("");
  root.dataset.ready = "true";

  // the fonts are known only once the root is in the document: size the columns again then
  let sized = root.isConnected;
  const ro = typeof ResizeObserver === "function" ? new ResizeObserver(() => {
    v.fn.queueStick();
    crumb.style.width = `${viewport.clientWidth}px`; // sticky left: stays in view when scrolled sideways
    // sized again once connected (fonts), and whenever the container's width changes
    if ((!sized && root.isConnected) || viewport.clientWidth !== v.s.fittedTo) {
      sized = root.isConnected;
      v.fn.sizeColumns();
    }
    if (v.s.visible.length > FULL_RENDER_MAX) v.fn.drawRows(false);
  }) : null;
  if (ro) {
    ro.observe(viewport);
    ro.observe(root);
  }

  return () => {
    for (const fn of cleanups) fn();
    if (ro) ro.disconnect();
  };
}
