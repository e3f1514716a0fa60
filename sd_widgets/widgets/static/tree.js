// sd_widgets Explorer front end: one anywidget view drawing the whole side-by-side tree.
//
// This file is a view. Every decision (what a click on a module selects, which keys can be
// loaded, what the preview holds, loading, undo, renames) is made in Python
// (sd_widgets/widgets/explorer.py + payload.py); the view shows trait values and sends user
// gestures as custom messages `{action: ...}`. Strings from checkpoints and models are only
// ever inserted with textContent / title / value, never as HTML.
//
// DOM contract (the browser tests rely on it; keep it stable)
// -----------------------------------------------------------
// .sdw-explorer[data-role=explorer]            root; data-ready="true" once the tree is drawn,
//                                              data-n-keys, data-n-visible, data-busy
// [data-role=message][data-level]              message bar (level: info|success|warning|error)
// [data-role=summary]                          "N keys: ..." counts line
// input[data-role=search]                      search box (substring of key / checkpoint key)
// input[data-role=only-problems]               "only problems" checkbox
// [data-role=legend] > [data-role=legend-item][data-status][aria-pressed]
//                                              legend entries; clicking one toggles that status
// [data-action=expand-all|collapse-all|select-loadable|select-none]   toolbar buttons
// [data-role=viewport] > [data-role=canvas]    the scrolling tree (virtualised above 600 rows)
// .sdw-row[data-role=module][data-path][data-expanded][data-depth][data-check]
//   [data-action=expand]                       its caret (expand/collapse)
//   [data-role=counts] > .sdw-count.sdw-status-<status>[data-status][data-count]
// .sdw-row[data-role=leaf].sdw-status-<status>[data-key][data-status][data-selectable]
//   [data-selected][data-depth]               one per comparison row; title = reason/hover
//   [data-role=ckpt] / [data-role=model]       the two columns (empty cell: side absent)
//     [data-role=shape] [data-role=dtype] [data-role=size] [data-role=name]
//   [data-role=status]                         icon + label
//   [data-action=adapt]                        adapter toggle on adaptable shape mismatches
// [data-role=preview][data-n-tensors][data-n-params][data-nbytes]   live selection preview
//   [data-role=preview-keys] > li              its keys (first 500)
// [data-action=load] [data-action=undo]        Load selected / Undo
// input[data-role=bn-policy][value=load|keep|reset]
// [data-role=tab][data-tab=preview|renames|code|results]    tabs; panels [data-panel=...]
// [data-role=suggestion][data-id] > [data-action=accept-suggestion]
// [data-role=rule][data-index] > [data-action=remove-rule]
// [data-role=rule-kind] [data-role=rule-old] [data-role=rule-new] [data-action=add-rule]
// pre[data-role=code]  [data-action=copy-code]
// [data-role=results]: select[data-role=histogram-picker], img[data-role=histogram][data-key],
//   img[data-role=histogram-single], img[data-role=bn-plot]

const ROW_H = 24;
const FULL_RENDER_MAX = 600; // draw every visible row up to this many; window above it
const OVERSCAN = 30;
const VIEWPORT_FALLBACK_H = 440;
let instanceCounter = 0;

/** Create an element. `props`: className, text, title, dataset, attrs, on (events). */
function h(tag, props = {}, children = []) {
  const el = document.createElement(tag);
  if (props.className) el.className = props.className;
  if (props.text !== undefined && props.text !== null) el.textContent = String(props.text);
  if (props.title) el.title = String(props.title);
  if (props.dataset) {
    for (const [k, v] of Object.entries(props.dataset)) {
      if (v !== undefined && v !== null) el.dataset[k] = String(v);
    }
  }
  if (props.attrs) {
    for (const [k, v] of Object.entries(props.attrs)) {
      if (v !== undefined && v !== null && v !== false) el.setAttribute(k, v === true ? "" : String(v));
    }
  }
  if (props.on) for (const [ev, fn] of Object.entries(props.on)) el.addEventListener(ev, fn);
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
  }
  return el;
}

function fmtBytes(n) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (Math.abs(n) >= 1000 && i < units.length - 1) {
    n /= 1000;
    i += 1;
  }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
}
const fmtInt = (n) => Number(n || 0).toLocaleString("en-US");
const fmtShape = (s) => (s === null || s === undefined ? "" : `[${s.join(", ")}]`);

/** Everything derived from one tree payload; rebuilt when the payload changes. */
class TreeData {
  constructor(p) {
    this.p = p && p.columns ? p : { columns: {}, statuses: [], legend: [], dtypes: [], counts: [], n_keys: 0, n_entries: 0 };
    const c = (this.c = this.p.columns);
    const n = (this.n = this.p.n_entries || 0);
    this.statuses = this.p.statuses || [];
    this.legend = {};
    for (const item of this.p.legend || []) this.legend[item.status] = item;
    this.keyIndex = new Map();
    this.moduleIndex = new Map();
    for (let i = 0; i < n; i++) {
      if (c.t[i] === 1) this.keyIndex.set(c.path[i], i);
      else this.moduleIndex.set(c.path[i], i);
    }
    this.selected = new Uint8Array(n);
    this.selCount = new Int32Array(n); // modules: selected leaves in subtree
    this.selectableCount = new Int32Array(n); // modules: selectable leaves in subtree
    this.adapters = {};
    this.haystack = null;
  }
  statusName(i) {
    return this.statuses[this.c.status[i]];
  }
  selectable(i) {
    const c = this.c;
    return c.t[i] === 1 && (c.loadable[i] === 1 || (c.adaptable[i] === 1 && Object.prototype.hasOwnProperty.call(this.adapters, c.path[i])));
  }
  setSelection(keys, adapters) {
    this.adapters = adapters || {};
    this.selected.fill(0);
    for (const k of keys || []) {
      const i = this.keyIndex.get(k);
      if (i !== undefined) this.selected[i] = 1;
    }
    const c = this.c;
    this.selCount.fill(0);
    this.selectableCount.fill(0);
    // reverse pre-order: children are seen before their parent
    for (let i = this.n - 1; i >= 0; i--) {
      const parent = c.parent[i];
      let s, a;
      if (c.t[i] === 1) {
        s = this.selected[i];
        a = this.selectable(i) ? 1 : 0;
      } else {
        s = this.selCount[i];
        a = this.selectableCount[i];
      }
      if (parent >= 0) {
        this.selCount[parent] += s;
        this.selectableCount[parent] += a;
      }
    }
  }
  moduleState(i) {
    const a = this.selectableCount[i];
    const s = this.selCount[i];
    if (a === 0) return "na";
    if (s === 0) return "none";
    return s >= a ? "all" : "some";
  }
  /** Per-entry match flags for a filter; null when nothing is filtered. */
  computeMatches(query, statusOn) {
    const allStatuses = statusOn.size >= this.statuses.length;
    if (!query && allStatuses) return null;
    const c = this.c;
    if (query && !this.haystack) {
      this.haystack = new Array(this.n);
      for (let i = 0; i < this.n; i++) {
        if (c.t[i] !== 1) continue;
        let s = c.path[i];
        if (c.ckpt_key[i]) s += "\n" + c.ckpt_key[i];
        if (c.model_key[i]) s += "\n" + c.model_key[i];
        this.haystack[i] = s.toLowerCase();
      }
    }
    const m = new Uint8Array(this.n);
    for (let i = this.n - 1; i >= 0; i--) {
      if (c.t[i] === 1) {
        const okStatus = allStatuses || statusOn.has(c.status[i]);
        const okQuery = !query || this.haystack[i].includes(query);
        if (okStatus && okQuery) m[i] = 1;
      }
      if (m[i] && c.parent[i] >= 0) m[c.parent[i]] = 1;
    }
    return m;
  }
}

function render({ model, el }) {
  const uid = `sdw${++instanceCounter}`;
  const cleanups = [];
  const on = (name, fn) => {
    model.on(name, fn);
    cleanups.push(() => model.off(name, fn));
  };
  const send = (content) => model.send(content);

  // ------------------------------------------------------------------ view state
  let data = new TreeData(model.get("tree"));
  let expanded = new Uint8Array(0); // modules, unfiltered view
  let filterExpanded = new Uint8Array(0); // modules, while a filter is active
  let matches = null;
  let visible = new Int32Array(0);
  let anchor = null; // {kind: "key"|"module", path}
  let query = "";
  let statusOn = new Set();
  let activeTab = "preview";
  let histogramMode = "grid";

  // ------------------------------------------------------------------ skeleton
  const root = h("div", { className: "sdw-explorer", dataset: { role: "explorer", ready: "false" } });
  const title = h("div", { className: "sdw-title", dataset: { role: "title" } });
  const summary = h("div", { className: "sdw-summary", dataset: { role: "summary" } });
  const messageText = h("span", { className: "sdw-message-text", dataset: { role: "message-text" } });
  const messageDetail = h("details", { className: "sdw-message-detail" }, [
    h("summary", { text: "details" }),
    h("pre", { dataset: { role: "message-detail" } }),
  ]);
  const messageBar = h("div", { className: "sdw-message", dataset: { role: "message", level: "none" }, attrs: { role: "status", "aria-live": "polite" } }, [
    messageText,
    messageDetail,
    h("button", { className: "sdw-btn sdw-btn-icon", text: "×", title: "Dismiss", dataset: { action: "dismiss-message" }, attrs: { type: "button", "aria-label": "Dismiss message" } }),
  ]);

  const search = h("input", {
    className: "sdw-search",
    attrs: { type: "search", placeholder: "Search keys…", "aria-label": "Search keys", spellcheck: "false" },
    dataset: { role: "search" },
  });
  const onlyProblems = h("input", { attrs: { type: "checkbox" }, dataset: { role: "only-problems" } });
  const btn = (text, action, titleText, extra = {}) =>
    h("button", { className: `sdw-btn ${extra.className || ""}`.trim(), text, title: titleText, dataset: { action }, attrs: { type: "button" } });
  const toolbar = h("div", { className: "sdw-toolbar", dataset: { role: "toolbar" } }, [
    search,
    h("label", { className: "sdw-check-label", title: "Hide rows whose status is match" }, [onlyProblems, " only problems"]),
    h("span", { className: "sdw-spacer" }),
    btn("Expand all", "expand-all", "Expand every module"),
    btn("Collapse all", "collapse-all", "Collapse every module"),
    btn("Select all loadable", "select-loadable", "Select every key that can be loaded as it is (and adapted keys)"),
    btn("Clear selection", "select-none", "Deselect everything"),
  ]);
  const legend = h("div", { className: "sdw-legend", dataset: { role: "legend" }, attrs: { "aria-label": "Legend: status colours, icons and filters" } });
  const colHeader = h("div", { className: "sdw-row sdw-colheader", dataset: { role: "column-header" } }, [
    h("span", { className: "sdw-cell sdw-cell-check" }),
    h("span", { className: "sdw-cell sdw-cell-side", text: "Checkpoint" }),
    h("span", { className: "sdw-cell sdw-cell-status", text: "Status" }),
    h("span", { className: "sdw-cell sdw-cell-side", text: "Model" }),
  ]);
  const canvas = h("div", { className: "sdw-canvas", dataset: { role: "canvas" }, attrs: { role: "tree", "aria-multiselectable": "true" } });
  const viewport = h("div", { className: "sdw-viewport", dataset: { role: "viewport" } }, [canvas]);
  const emptyNote = h("div", { className: "sdw-empty", dataset: { role: "empty" } });

  // actions bar: load / undo / BN policy / preview summary
  const loadBtn = btn("Load selected", "load", "Run partial_load on the live model with this selection", { className: "sdw-btn-primary" });
  const undoBtn = btn("Undo", "undo", "Restore the tensors the last load replaced");
  const bnGroup = h("span", { className: "sdw-bn", dataset: { role: "bn-group" }, attrs: { role: "radiogroup", "aria-label": "BatchNorm running statistics" } }, [
    h("span", { className: "sdw-muted", text: "BatchNorm stats:" }),
  ]);
  const bnTitles = {
    load: "load running_mean / running_var / num_batches_tracked from the checkpoint",
    keep: "keep the model's current running statistics",
    reset: "reset running statistics (0 / 1 / 0) of the BatchNorm modules touched",
  };
  for (const policy of ["load", "keep", "reset"]) {
    bnGroup.appendChild(
      h("label", { className: "sdw-radio", title: bnTitles[policy] }, [
        h("input", { attrs: { type: "radio", name: `${uid}-bn`, value: policy }, dataset: { role: "bn-policy" } }),
        ` ${policy}`,
      ]),
    );
  }
  const previewLine = h("span", { className: "sdw-preview-line", dataset: { role: "preview-line" } });
  const busyNote = h("span", { className: "sdw-busy", text: "working…", dataset: { role: "busy" } });
  const actions = h("div", { className: "sdw-actions", dataset: { role: "actions" } }, [loadBtn, undoBtn, bnGroup, h("span", { className: "sdw-spacer" }), busyNote, previewLine]);

  // tabs
  const tabs = {};
  const panels = {};
  const tabBar = h("div", { className: "sdw-tabs", attrs: { role: "tablist" } });
  for (const [name, label] of [["preview", "Selection"], ["renames", "Renames"], ["code", "Code"], ["results", "Results"]]) {
    tabs[name] = h("button", { className: "sdw-tab", text: label, dataset: { role: "tab", tab: name }, attrs: { type: "button", role: "tab" } });
    panels[name] = h("div", { className: "sdw-panel", dataset: { panel: name }, attrs: { role: "tabpanel" } });
    tabBar.appendChild(tabs[name]);
  }

  // preview panel
  const previewStats = h("div", { className: "sdw-preview-stats" });
  const previewKeys = h("ul", { className: "sdw-keylist", dataset: { role: "preview-keys" } });
  const previewMore = h("div", { className: "sdw-muted", dataset: { role: "preview-more" } });
  const skippedList = h("ul", { className: "sdw-keylist sdw-skipped", dataset: { role: "preview-skipped" } });
  const preview = h("div", { className: "sdw-preview", dataset: { role: "preview" } }, [
    previewStats,
    h("div", { className: "sdw-subhead", text: "Keys of the OrderedDict this selection builds" }),
    previewKeys,
    previewMore,
    h("div", { className: "sdw-subhead", text: "Selected but not loaded" }),
    skippedList,
  ]);
  panels.preview.appendChild(preview);

  // renames panel
  const suggestionList = h("ul", { className: "sdw-list", dataset: { role: "suggestions" } });
  const ruleList = h("ul", { className: "sdw-list", dataset: { role: "rules" } });
  const ruleKind = h("select", { dataset: { role: "rule-kind" }, attrs: { "aria-label": "Rule kind" } }, [
    h("option", { text: "prefix", attrs: { value: "prefix" } }),
    h("option", { text: "regex", attrs: { value: "regex" } }),
    h("option", { text: "exact key", attrs: { value: "exact" } }),
  ]);
  const ruleOld = h("input", { attrs: { type: "text", placeholder: "from (e.g. module.)", "aria-label": "Rename from", spellcheck: "false" }, dataset: { role: "rule-old" } });
  const ruleNew = h("input", { attrs: { type: "text", placeholder: "to (empty strips)", "aria-label": "Rename to", spellcheck: "false" }, dataset: { role: "rule-new" } });
  panels.renames.append(
    h("div", { className: "sdw-subhead", text: "Suggested renames" }),
    suggestionList,
    h("div", { className: "sdw-subhead", text: "Rename rules (applied to checkpoint keys, in order)" }),
    ruleList,
    h("div", { className: "sdw-rule-form" }, [ruleKind, ruleOld, h("span", { text: "→" }), ruleNew, btn("Add rule", "add-rule", "Add this rule and re-align the tree")]),
  );

  // code panel
  const codePre = h("pre", { className: "sdw-code", dataset: { role: "code" } });
  const copyBtn = btn("Copy", "copy-code", "Copy the code to the clipboard");
  panels.code.append(h("div", { className: "sdw-code-bar" }, [h("span", { className: "sdw-muted", text: "plan.to_code(): the same partial load with plain torch" }), h("span", { className: "sdw-spacer" }), copyBtn]), codePre);

  // results panel
  const loadSummary = h("div", { className: "sdw-load-summary", dataset: { role: "load-summary" } });
  const picker = h("select", { dataset: { role: "histogram-picker" }, attrs: { "aria-label": "Tensor to plot" } });
  const grid = h("div", { className: "sdw-grid", dataset: { role: "histogram-grid" } });
  const single = h("div", { className: "sdw-single", dataset: { role: "histogram-single-box" } });
  const bnBox = h("div", { className: "sdw-bnplot", dataset: { role: "bn-plot-box" } });
  panels.results.append(
    loadSummary,
    h("div", { className: "sdw-picker-bar" }, [h("span", { className: "sdw-muted", text: "Before/after histograms: " }), picker]),
    grid,
    single,
    h("div", { className: "sdw-subhead", text: "BatchNorm running mean / variance before and after" }),
    bnBox,
  );

  const topSlot = h("div", { className: "sdw-top-slot", dataset: { role: "top-slot" } });
  const resultsSlot = h("div", { className: "sdw-results-slot", dataset: { role: "results-slot" } });
  panels.results.prepend(resultsSlot);
  root.append(title, messageBar, topSlot, summary, toolbar, legend, colHeader, viewport, emptyNote, actions, tabBar, ...Object.values(panels));
  el.appendChild(root);
  mountPanels({ model, send, on, h, root, slots: { top: topSlot, results: resultsSlot } });

  // ------------------------------------------------------------------ tree
  function initialExpansion() {
    const c = data.c;
    const n = data.n;
    expanded = new Uint8Array(n);
    if (n <= 250) {
      for (let i = 0; i < n; i++) if (c.t[i] === 0) expanded[i] = 1;
      return;
    }
    // open level by level while the tree stays short
    let maxDepth = 0;
    for (let i = 0; i < n; i++) if (c.depth[i] > maxDepth) maxDepth = c.depth[i];
    for (let d = 0; d <= maxDepth; d++) {
      const trial = expanded.slice();
      for (let i = 0; i < n; i++) if (c.t[i] === 0 && c.depth[i] === d) trial[i] = 1;
      if (countVisible(trial, null) > 120) break;
      expanded = trial;
    }
  }

  function countVisible(exp, m) {
    const c = data.c;
    let count = 0;
    for (let i = 0; i < data.n; ) {
      if (m && !m[i]) {
        i = c.end[i];
        continue;
      }
      count++;
      i = c.t[i] === 0 && !exp[i] ? c.end[i] : i + 1;
    }
    return count;
  }

  function computeVisible() {
    const c = data.c;
    const exp = matches ? filterExpanded : expanded;
    const out = new Int32Array(countVisible(exp, matches));
    let k = 0;
    for (let i = 0; i < data.n; ) {
      if (matches && !matches[i]) {
        i = c.end[i];
        continue;
      }
      out[k++] = i;
      i = c.t[i] === 0 && !exp[i] ? c.end[i] : i + 1;
    }
    visible = out;
    canvas.style.height = `${visible.length * ROW_H}px`;
    root.dataset.nVisible = String(visible.length);
  }

  function sideCell(i, side) {
    const c = data.c;
    const depth = c.depth[i];
    const cell = h("span", { className: `sdw-cell sdw-cell-side sdw-${side}`, dataset: { role: side } });
    const present = c.sides[i] & (side === "ckpt" ? 1 : 2);
    cell.style.paddingLeft = `${6 + depth * 14}px`;
    if (c.t[i] === 0) {
      if (!present) {
        cell.classList.add("sdw-absent");
        return cell;
      }
      const isExp = (matches ? filterExpanded : expanded)[i] === 1;
      cell.append(
        h("span", { className: "sdw-caret", text: isExp ? "▾" : "▸", dataset: { action: "expand" }, title: isExp ? "Collapse" : "Expand", attrs: { "aria-hidden": "true" } }),
        h("span", { className: "sdw-name sdw-module-name", text: c.name[i], dataset: { role: "name" } }),
      );
      if (c.module_type[i]) cell.append(h("span", { className: "sdw-meta sdw-type", text: c.module_type[i] }));
      if (side === "ckpt") cell.append(h("span", { className: "sdw-meta sdw-size", text: fmtBytes(c.nbytes[i] || 0), dataset: { role: "size" } }));
      return cell;
    }
    if (!present) {
      cell.classList.add("sdw-absent");
      cell.append(h("span", { className: "sdw-absent-mark", text: "—", attrs: { "aria-label": "absent" } }));
      return cell;
    }
    const otherKey = side === "ckpt" ? c.ckpt_key[i] : c.model_key[i];
    const name = otherKey ? otherKey : c.name[i];
    cell.append(h("span", { className: `sdw-name${otherKey ? " sdw-renamed" : ""}`, text: name, dataset: { role: "name" }, title: otherKey ? `${side === "ckpt" ? "checkpoint" : "model"} key ${otherKey} (renamed)` : null }));
    const shape = side === "ckpt" ? c.ckpt_shape[i] : c.model_shape[i];
    const dt = side === "ckpt" ? c.ckpt_dtype[i] : c.model_dtype[i];
    const status = data.statusName(i);
    cell.append(
      h("span", { className: `sdw-meta sdw-shape${status === "shape_mismatch" ? " sdw-diff" : ""}`, text: fmtShape(shape), dataset: { role: "shape" } }),
      h("span", { className: `sdw-meta sdw-dtype${status === "dtype_mismatch" ? " sdw-diff" : ""}`, text: dt === null || dt === undefined ? "" : data.p.dtypes[dt], dataset: { role: "dtype" } }),
    );
    if (side === "ckpt") cell.append(h("span", { className: "sdw-meta sdw-size", text: fmtBytes(c.nbytes[i] || 0), dataset: { role: "size" } }));
    if (c.tied[i] && side === "model") cell.append(h("span", { className: "sdw-meta sdw-tied", text: "tied", title: `shares storage with ${c.tied[i].join(", ")}` }));
    return cell;
  }

  function countsCell(i) {
    const c = data.c;
    const cell = h("span", { className: "sdw-cell sdw-cell-status sdw-counts", dataset: { role: "counts" } });
    const parts = [];
    const counts = c.counts[i] || [];
    // one kind of problem: spelled out ("≠ 2 shape mismatches"); several: icon + count chips
    // that fit the column (the legend names the icons, the hover text spells them out)
    const problemKinds = counts.filter((n, s) => n && data.statuses[s] !== "match").length;
    counts.forEach((n, s) => {
      if (!n) return;
      const status = data.statuses[s];
      const item = data.legend[status] || { icon: "?", label: status, plural: status };
      const label = status === "match" || problemKinds > 1 ? `${item.icon} ${n}` : `${item.icon} ${n} ${n === 1 ? item.label : item.plural}`;
      parts.push(`${n} ${n === 1 ? item.label : item.plural}`);
      cell.appendChild(h("span", { className: `sdw-count sdw-status-${status}`, text: label, dataset: { status, count: n } }));
    });
    cell.title = parts.join(", ");
    return cell;
  }

  function rowFor(i, pos) {
    const c = data.c;
    const isModule = c.t[i] === 0;
    const row = h("div", { className: "sdw-row", dataset: { idx: i, depth: c.depth[i] } });
    row.style.top = `${pos * ROW_H}px`;
    row.setAttribute("role", "treeitem");
    row.setAttribute("aria-level", String(c.depth[i] + 1));
    if (isModule) {
      const state = data.moduleState(i);
      const isExp = (matches ? filterExpanded : expanded)[i] === 1;
      row.classList.add("sdw-module");
      row.dataset.role = "module";
      row.dataset.path = c.path[i];
      row.dataset.expanded = String(isExp);
      row.dataset.check = state;
      row.setAttribute("aria-expanded", String(isExp));
      row.title = `${c.path[i]}${c.module_type[i] ? ` (${c.module_type[i]})` : ""}: click to ${state === "all" ? "deselect" : "select"} every loadable key below; shift-click selects a range`;
      row.append(
        h("span", { className: `sdw-cell sdw-cell-check sdw-check sdw-check-${state}`, text: { all: "☑", some: "◩", none: "☐", na: "⊘" }[state], attrs: { "aria-hidden": "true" } }),
        sideCell(i, "ckpt"),
        countsCell(i),
        sideCell(i, "model"),
      );
      return row;
    }
    const status = data.statusName(i);
    const item = data.legend[status] || { icon: "?", label: status };
    const selectable = data.selectable(i);
    const selected = data.selected[i] === 1;
    row.classList.add("sdw-leaf", `sdw-status-${status}`);
    if (!selectable) row.classList.add("sdw-unselectable");
    if (selected) row.classList.add("sdw-selected");
    row.dataset.role = "leaf";
    row.dataset.key = c.path[i];
    row.dataset.status = status;
    row.dataset.selectable = String(selectable);
    row.dataset.selected = String(selected);
    row.setAttribute("aria-selected", String(selected));
    if (!selectable) row.setAttribute("aria-disabled", "true");
    const hover = [c.path[i]];
    if (c.ckpt_key[i]) hover.push(`checkpoint key: ${c.ckpt_key[i]}`);
    if (status === "dtype_mismatch") hover.push(`loads, cast from ${data.p.dtypes[c.ckpt_dtype[i]]} to ${data.p.dtypes[c.model_dtype[i]]}`);
    if (!selectable) hover.push(`not selectable: ${c.reason[i] || item.label}`);
    else if (c.adaptable[i]) hover.push(`loads through the '${data.adapters[c.path[i]]}' adapter`);
    row.title = hover.join("\n");
    const statusCell = h("span", { className: "sdw-cell sdw-cell-status", dataset: { role: "status" } }, [
      h("span", { className: `sdw-badge sdw-status-${status}`, text: `${item.icon} ${item.label}` }),
    ]);
    if (c.adaptable[i]) {
      const onAdapter = Object.prototype.hasOwnProperty.call(data.adapters, c.path[i]);
      statusCell.appendChild(
        h("button", {
          className: `sdw-adapt${onAdapter ? " sdw-adapt-on" : ""}`,
          text: onAdapter ? "overlap ✓" : "adapt",
          title: onAdapter ? "Stop adapting this tensor" : "Load the overlapping slice with the 'overlap' adapter",
          dataset: { action: "adapt", key: c.path[i], on: String(onAdapter) },
          attrs: { type: "button" },
        }),
      );
    }
    row.append(
      h("span", { className: `sdw-cell sdw-cell-check sdw-check sdw-check-${selectable ? (selected ? "all" : "none") : "na"}`, text: selectable ? (selected ? "☑" : "☐") : "⊘", attrs: { "aria-hidden": "true" } }),
      sideCell(i, "ckpt"),
      statusCell,
      sideCell(i, "model"),
    );
    return row;
  }

  let drawn = { from: -1, to: -1 };
  function drawRows(force = false) {
    const total = visible.length;
    let from = 0;
    let to = total;
    if (total > FULL_RENDER_MAX) {
      const hgt = viewport.clientHeight || VIEWPORT_FALLBACK_H;
      from = Math.max(0, Math.floor(viewport.scrollTop / ROW_H) - OVERSCAN);
      to = Math.min(total, Math.ceil((viewport.scrollTop + hgt) / ROW_H) + OVERSCAN);
    }
    if (!force && from === drawn.from && to === drawn.to) return;
    drawn = { from, to };
    const frag = document.createDocumentFragment();
    for (let p = from; p < to; p++) frag.appendChild(rowFor(visible[p], p));
    canvas.replaceChildren(frag);
  }

  function refreshTree() {
    computeVisible();
    drawRows(true);
    emptyNote.textContent = data.n === 0 ? "No keys to show." : visible.length === 0 ? "No key matches the search and status filter." : "";
    emptyNote.style.display = emptyNote.textContent ? "" : "none";
  }

  let scrollQueued = false;
  viewport.addEventListener("scroll", () => {
    if (visible.length <= FULL_RENDER_MAX || scrollQueued) return;
    scrollQueued = true;
    requestAnimationFrame(() => {
      scrollQueued = false;
      drawRows(false);
    });
  });

  // ------------------------------------------------------------------ filters
  function applyFilter() {
    matches = data.computeMatches(query, statusOn);
    if (matches) {
      filterExpanded = new Uint8Array(data.n);
      for (let i = 0; i < data.n; i++) if (data.c.t[i] === 0) filterExpanded[i] = 1;
    }
    for (const btnEl of legend.querySelectorAll("[data-role=legend-item]")) {
      const s = data.statuses.indexOf(btnEl.dataset.status);
      btnEl.setAttribute("aria-pressed", String(statusOn.has(s)));
    }
    const problems = new Set(data.statuses.map((_, s) => s).filter((s) => data.statuses[s] !== "match"));
    onlyProblems.checked = statusOn.size === problems.size && [...problems].every((s) => statusOn.has(s));
    refreshTree();
  }
  let searchTimer = null;
  search.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      query = search.value.trim().toLowerCase();
      applyFilter();
    }, 120);
  });
  onlyProblems.addEventListener("change", () => {
    statusOn = new Set(data.statuses.map((_, s) => s));
    if (onlyProblems.checked) statusOn.delete(data.statuses.indexOf("match"));
    applyFilter();
  });
  legend.addEventListener("click", (ev) => {
    const item = ev.target.closest("[data-role=legend-item]");
    if (!item) return;
    const s = data.statuses.indexOf(item.dataset.status);
    if (statusOn.has(s)) statusOn.delete(s);
    else statusOn.add(s);
    applyFilter();
  });

  function drawLegend() {
    legend.replaceChildren(h("span", { className: "sdw-muted", text: "Show:" }));
    data.statuses.forEach((status, s) => {
      const item = data.legend[status] || { icon: "?", label: status, description: "" };
      const n = (data.p.counts || [])[s] || 0;
      legend.appendChild(
        h("button", { className: `sdw-legend-item sdw-status-${status}`, title: `${item.label}: ${item.description}. Click to show/hide.`, dataset: { role: "legend-item", status }, attrs: { type: "button", "aria-pressed": "true" } }, [
          h("span", { className: "sdw-swatch", attrs: { "aria-hidden": "true" } }),
          h("span", { className: "sdw-legend-icon", text: item.icon }),
          ` ${item.label} `,
          h("span", { className: "sdw-legend-count", text: `(${n})` }),
        ]),
      );
    });
  }

  // ------------------------------------------------------------------ clicks on rows
  canvas.addEventListener("mousedown", (ev) => {
    if (ev.shiftKey) ev.preventDefault(); // no text selection on shift-click
  });
  canvas.addEventListener("click", (ev) => {
    const row = ev.target.closest(".sdw-row");
    if (!row || !canvas.contains(row)) return;
    const i = Number(row.dataset.idx);
    const c = data.c;
    const actionEl = ev.target.closest("[data-action]");
    if (actionEl && actionEl.dataset.action === "expand") {
      const exp = matches ? filterExpanded : expanded;
      exp[i] = exp[i] ? 0 : 1;
      refreshTree();
      return;
    }
    if (actionEl && actionEl.dataset.action === "adapt") {
      send({ action: "adapt", key: c.path[i], adapter: actionEl.dataset.on === "true" ? null : "overlap" });
      return;
    }
    if (ev.shiftKey && anchor) {
      rangeClick(i);
      return;
    }
    if (c.t[i] === 0) {
      anchor = { kind: "module", path: c.path[i] };
      send({ action: "toggle", modules: [c.path[i]] });
    } else {
      anchor = { kind: "key", path: c.path[i] };
      if (!data.selectable(i)) return; // the hover text says why
      send({ action: "toggle", keys: [c.path[i]] });
    }
  });

  function rangeClick(i) {
    const c = data.c;
    const anchorIdx = anchor.kind === "module" ? data.moduleIndex.get(anchor.path) : data.keyIndex.get(anchor.path);
    let a = -1;
    let b = -1;
    for (let p = 0; p < visible.length; p++) {
      if (visible[p] === anchorIdx) a = p;
      if (visible[p] === i) b = p;
    }
    if (a < 0 || b < 0) return;
    if (a > b) [a, b] = [b, a];
    const select = anchor.kind === "module" ? data.moduleState(anchorIdx) === "all" : data.selected[anchorIdx] === 1;
    const keys = [];
    const modules = [];
    const exp = matches ? filterExpanded : expanded;
    for (let p = a; p <= b; p++) {
      const j = visible[p];
      if (c.t[j] === 1) keys.push(c.path[j]);
      else if (!exp[j]) {
        if (!matches) modules.push(c.path[j]);
        else for (let k = j + 1; k < c.end[j]; k++) if (c.t[k] === 1 && matches[k]) keys.push(c.path[k]);
      }
    }
    send({ action: "select_range", keys, modules, select });
  }

  // ------------------------------------------------------------------ toolbar + actions
  root.addEventListener("click", (ev) => {
    const actionEl = ev.target.closest("[data-action]");
    if (!actionEl || canvas.contains(actionEl)) return;
    const action = actionEl.dataset.action;
    if (action === "expand-all" || action === "collapse-all") {
      const exp = matches ? filterExpanded : expanded;
      const v = action === "expand-all" ? 1 : 0;
      for (let i = 0; i < data.n; i++) if (data.c.t[i] === 0) exp[i] = v;
      refreshTree();
    } else if (action === "select-loadable") send({ action: "select_all_loadable" });
    else if (action === "select-none") send({ action: "select_none" });
    else if (action === "load") send({ action: "load" });
    else if (action === "undo") send({ action: "undo" });
    else if (action === "dismiss-message") send({ action: "dismiss_message" });
    else if (action === "accept-suggestion") send({ action: "accept_suggestion", id: actionEl.dataset.id });
    else if (action === "remove-rule") send({ action: "remove_rule", index: Number(actionEl.dataset.index) });
    else if (action === "add-rule") send({ action: "add_rule", kind: ruleKind.value, old: ruleOld.value, new: ruleNew.value });
    else if (action === "copy-code") copyCode();
  });
  tabBar.addEventListener("click", (ev) => {
    const t = ev.target.closest("[data-role=tab]");
    if (t) showTab(t.dataset.tab);
  });
  bnGroup.addEventListener("change", (ev) => {
    if (ev.target.dataset.role === "bn-policy" && ev.target.checked) {
      model.set("bn_policy", ev.target.value);
      model.save_changes();
    }
  });
  picker.addEventListener("change", () => {
    histogramMode = picker.value === "" ? "grid" : "single";
    if (histogramMode === "single") {
      model.set("histogram_key", picker.value);
      model.save_changes();
    }
    drawResults();
  });

  function copyCode() {
    const text = codePre.textContent || "";
    const done = (ok) => {
      copyBtn.textContent = ok ? "Copied" : "Select the text and copy";
      setTimeout(() => (copyBtn.textContent = "Copy"), 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(() => done(true), () => done(fallbackCopy(text)));
    } else done(fallbackCopy(text));
  }
  function fallbackCopy(text) {
    const ta = h("textarea", { attrs: { readonly: true } });
    ta.value = text;
    ta.style.position = "fixed";
    ta.style.opacity = "0";
    document.body.appendChild(ta);
    ta.select();
    let ok = false;
    try {
      ok = document.execCommand("copy");
    } catch (e) {
      ok = false;
    }
    ta.remove();
    return ok;
  }

  function showTab(name) {
    activeTab = name;
    for (const [k, t] of Object.entries(tabs)) {
      t.classList.toggle("sdw-tab-active", k === name);
      t.setAttribute("aria-selected", String(k === name));
      panels[k].hidden = k !== name;
    }
    const wantCode = name === "code"; // Python keeps `code` current only while it is shown
    if (!!model.get("show_code") !== wantCode) {
      model.set("show_code", wantCode);
      model.save_changes();
    }
  }

  // ------------------------------------------------------------------ trait → DOM
  function drawHeader() {
    const p = data.p;
    title.replaceChildren(
      h("span", { className: "sdw-title-main", text: "State dict explorer" }),
      h("span", { className: "sdw-muted", text: ` ${p.model || "model"} ← ${p.source || "checkpoint"}` }),
    );
    const parts = [];
    data.statuses.forEach((status, s) => {
      const n = (p.counts || [])[s] || 0;
      if (!n) return;
      const item = data.legend[status] || { label: status, plural: status };
      parts.push(`${fmtInt(n)} ${n === 1 ? item.label : item.plural}`);
    });
    summary.textContent = `${fmtInt(p.n_keys || 0)} keys: ${parts.join(", ") || "none"}`;
    root.dataset.nKeys = String(p.n_keys || 0);
  }

  function drawSelection() {
    data.setSelection(model.get("selected_keys"), model.get("adapters"));
    drawRows(true);
  }

  function drawPreview() {
    const pv = model.get("preview") || {};
    preview.dataset.nTensors = String(pv.n_tensors || 0);
    preview.dataset.nParams = String(pv.n_params || 0);
    preview.dataset.nbytes = String(pv.nbytes || 0);
    const line = `${fmtInt(pv.n_tensors)} tensors · ${fmtInt(pv.n_params)} parameters · ${fmtBytes(pv.nbytes || 0)}`;
    previewLine.textContent = `Selected: ${line}`;
    previewStats.textContent = line + (pv.bn ? ` · BatchNorm stats: ${pv.bn}` : "");
    previewKeys.replaceChildren(...(pv.keys || []).map((k) => h("li", { text: k })));
    const more = (pv.n_keys_total || 0) - (pv.keys || []).length;
    previewMore.textContent = more > 0 ? `… and ${fmtInt(more)} more` : (pv.n_tensors ? "" : "Nothing selected: click rows or module nodes, or “Select all loadable”.");
    const skipped = pv.skipped || [];
    skippedList.replaceChildren(...(skipped.length
      ? skipped.map(([k, why]) => h("li", { title: why }, [h("span", { className: "sdw-key", text: k }), h("span", { className: "sdw-muted", text: ` — ${why}` })]))
      : [h("li", { className: "sdw-muted", dataset: { role: "preview-skipped-none" }, text: pv.n_tensors ? "Nothing: every selected key will be loaded." : "—" })]));
  }

  function drawMessage() {
    const m = model.get("message") || {};
    const level = m.text ? m.level || "info" : "none";
    messageBar.dataset.level = level;
    messageText.textContent = m.text || "";
    const detail = m.detail || "";
    messageDetail.querySelector("pre").textContent = detail;
    messageDetail.style.display = detail ? "" : "none";
  }

  function drawBusy() {
    const busy = !!model.get("busy");
    root.dataset.busy = String(busy);
    busyNote.style.visibility = busy ? "visible" : "hidden";
    loadBtn.disabled = busy;
    const canUndo = !!model.get("can_undo");
    undoBtn.disabled = busy || !canUndo;
    undoBtn.title = canUndo ? "Restore the tensors the last load replaced" : "Nothing to undo yet";
  }

  function drawBn() {
    const v = model.get("bn_policy");
    for (const r of bnGroup.querySelectorAll("input")) r.checked = r.value === v;
  }

  function drawRenames() {
    const sugg = model.get("suggestions") || [];
    suggestionList.replaceChildren(
      ...(sugg.length
        ? sugg.map((s) =>
            h("li", { className: "sdw-suggestion", dataset: { role: "suggestion", id: s.id } }, [
              h("button", { className: "sdw-btn", text: "Accept", dataset: { action: "accept-suggestion", id: s.id }, attrs: { type: "button" }, title: "Add this rename rule" }),
              h("span", { className: "sdw-key", text: ` ${s.label}` }),
              h("span", { className: "sdw-muted", text: s.reason ? ` — ${s.reason}` : "" }),
            ]),
          )
        : [h("li", { className: "sdw-muted", text: "No suggestions: no unexpected key looks like a missing one." })]),
    );
    const rules = model.get("rename_rules") || [];
    ruleList.replaceChildren(
      ...(rules.length
        ? rules.map((r, i) =>
            h("li", { dataset: { role: "rule", index: i } }, [
              h("button", { className: "sdw-btn", text: "Remove", dataset: { action: "remove-rule", index: i }, attrs: { type: "button" } }),
              h("span", { className: "sdw-key", text: ` ${r.label || `${r.kind}: ${r.old} → ${r.new}`}` }),
            ]),
          )
        : [h("li", { className: "sdw-muted", text: "No rules." })]),
    );
    tabs.renames.textContent = sugg.length ? `Renames (${sugg.length})` : "Renames";
  }

  function drawCode() {
    codePre.textContent = model.get("code") || "";
  }

  function drawResults() {
    const hist = model.get("histograms") || [];
    const keys = model.get("histogram_keys") || [];
    const last = model.get("last_load") || {};
    loadSummary.textContent = last.text || "Nothing loaded yet. Select keys and press “Load selected”.";
    const current = picker.value;
    picker.replaceChildren(
      h("option", { text: `Grid (${hist.length} tensor${hist.length === 1 ? "" : "s"})`, attrs: { value: "" } }),
      ...keys.map((k) => h("option", { text: k, attrs: { value: k } })),
    );
    picker.value = histogramMode === "single" && keys.includes(current) ? current : "";
    if (picker.value === "") histogramMode = "grid";
    grid.replaceChildren(
      ...(histogramMode === "grid"
        ? hist.map((item) =>
            h("figure", { className: "sdw-fig" }, [
              h("img", { attrs: { src: item.src, alt: `before/after histogram of ${item.key}` }, dataset: { role: "histogram", key: item.key } }),
              h("figcaption", { text: item.key }),
            ]),
          )
        : []),
    );
    const one = model.get("histogram") || {};
    single.replaceChildren(
      ...(histogramMode === "single" && one.src
        ? [h("img", { attrs: { src: one.src, alt: `before/after histogram of ${one.key}` }, dataset: { role: "histogram-single", key: one.key } })]
        : []),
    );
    const bn = model.get("bn_plot") || {};
    bnBox.replaceChildren(
      ...(bn.src
        ? [h("img", { attrs: { src: bn.src, alt: "BatchNorm running statistics before and after" }, dataset: { role: "bn-plot" } })]
        : [h("span", { className: "sdw-muted", text: bn.text || "No BatchNorm statistics changed by the last load." })]),
    );
    tabs.results.textContent = hist.length ? `Results (${hist.length})` : "Results";
  }

  function onTree() {
    const oldData = data;
    const oldExpandedPaths = new Set();
    for (let i = 0; i < oldData.n; i++) if (oldData.c.t[i] === 0 && expanded[i]) oldExpandedPaths.add(oldData.c.path[i]);
    const hadTree = oldData.n > 0;
    data = new TreeData(model.get("tree"));
    statusOn = new Set(data.statuses.map((_, s) => s));
    if (onlyProblems.checked) statusOn.delete(data.statuses.indexOf("match"));
    initialExpansion();
    if (hadTree) {
      // keep what the user had open across a re-alignment
      for (let i = 0; i < data.n; i++) if (data.c.t[i] === 0 && oldExpandedPaths.has(data.c.path[i])) expanded[i] = 1;
    }
    anchor = null;
    data.setSelection(model.get("selected_keys"), model.get("adapters"));
    drawHeader();
    drawLegend();
    applyFilter();
  }

  on("change:tree", onTree);
  on("change:selected_keys", drawSelection);
  on("change:adapters", drawSelection);
  on("change:preview", drawPreview);
  on("change:message", drawMessage);
  on("change:busy", drawBusy);
  on("change:can_undo", drawBusy);
  on("change:bn_policy", drawBn);
  on("change:suggestions", drawRenames);
  on("change:rename_rules", drawRenames);
  on("change:code", drawCode);
  for (const name of ["histograms", "histogram_keys", "histogram", "bn_plot", "last_load"]) on(`change:${name}`, drawResults);
  on("msg:custom", (msg) => {
    if (msg && msg.type === "show_tab" && tabs[msg.tab]) showTab(msg.tab);
  });

  onTree();
  drawPreview();
  drawMessage();
  drawBusy();
  drawBn();
  drawRenames();
  drawCode();
  drawResults();
  showTab(activeTab);
  root.dataset.ready = "true";

  return () => {
    for (const fn of cleanups) fn();
    clearTimeout(searchTimer);
  };
}

export default { render };
