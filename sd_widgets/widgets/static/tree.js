// sd_widgets Explorer front end: one anywidget view drawing the whole side-by-side tree.
//
// This file is the thin DOM layer. The pure logic (payload access, filtering, visible rows,
// range selection, the keyboard reducer, names, details, column widths, formatting) lives in
// lib.js (unit-tested with `node --test tests/js`), which is concatenated before this file into
// the one ESM anywidget loads, so its functions are in scope here. Every decision about what a
// gesture selects, what loads, undo and renames is made in Python (sd_widgets/widgets/
// explorer.py + payload.py); the view shows trait values and sends gestures as custom messages
// `{action: ...}`. Strings from checkpoints and models are only ever inserted with textContent /
// title / value, never as HTML.
//
// Sections: element helper · buttons and tabs (buildTabs: the Selection/Renames/Code/Results
// panels) · render(): skeleton · tree rows · focus and keyboard · the action bar · filters and
// problems · clicks · toolbar and actions · trait → DOM · wiring.
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

const ROW_H = 24;
const INDENT = 12; // px per tree level (lib.js columnWidths uses the same)
const MODEL_INDENT = 6; // the model column repeats the structure: a lighter indent saves width
const FULL_RENDER_MAX = 600; // draw every visible row up to this many; window above it
const OVERSCAN = 30;
const VIEWPORT_FALLBACK_H = 440;
const MAX_PROBLEM_CHIPS = 6;
let instanceCounter = 0;

// ================================================================================ element helper

/**
 * Create an element. `props`: className, text, title, dataset, attrs, on (events). Text only
 * ever goes in through textContent.
 * @param {string} tag
 * @param {{className?: string, text?: any, title?: any, dataset?: Record<string, any>, attrs?: Record<string, any>, on?: Record<string, EventListener>}} [props]
 * @param {(Node|string|null|undefined|false)[]} [children]
 * @returns {any}
 */
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

/** A text-width function for columnWidths(): canvas measureText with the widget's fonts. */
function textMeasurer(root) {
  const fallback = { name: 7.3, meta: 6.7, ui: 7.0 };
  const fonts = {};
  if (root.isConnected) {
    for (const [kind, cls] of [["name", "sdw-name"], ["meta", "sdw-meta"], ["ui", "sdw-badge"]]) {
      const probe = h("span", { className: cls, text: "x" });
      probe.style.position = "absolute";
      probe.style.visibility = "hidden";
      root.appendChild(probe);
      const cs = getComputedStyle(probe);
      fonts[kind] = `${cs.fontWeight} ${cs.fontSize} ${cs.fontFamily}`;
      probe.remove();
    }
  }
  const ctx = root.isConnected ? document.createElement("canvas").getContext("2d") : null;
  return (text, kind) => {
    if (ctx && fonts[kind]) {
      ctx.font = fonts[kind];
      return ctx.measureText(text).width + 2;
    }
    return text.length * fallback[kind];
  };
}

// ================================================================================ buttons and tabs

/** A toolbar button sending `data-action` (handled by render()'s click handler). */
function button(text, action, titleText, extra = {}) {
  return h("button", { className: `sdw-btn ${extra.className || ""}`.trim(), text, title: titleText, dataset: { action }, attrs: { type: "button" } });
}

/**
 * The tabs under the tree (Selection, Renames, Code, Results): their elements, the functions that
 * draw them from the model's traits, and showTab. Buttons inside carry `data-action`, handled by
 * render()'s click handler; the Selection panel is drawn by render() (it marks tree rows too).
 */
function buildTabs(model) {
  const btn = button;
  let activeTab = "preview";
  let histogramMode = "grid";

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
  const codeSlot = h("div", { className: "sdw-code-slot", dataset: { role: "code-slot" } });
  panels.code.append(codeSlot, h("div", { className: "sdw-code-bar" }, [h("span", { className: "sdw-muted", text: "plan.to_code(): the same partial load with plain torch" }), h("span", { className: "sdw-spacer" }), copyBtn]), codePre);

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


  tabBar.addEventListener("click", (ev) => {
    const t = ev.target.closest("[data-role=tab]");
    if (t) showTab(t.dataset.tab);
  });

  tabBar.addEventListener("keydown", (ev) => {
    if (ev.key !== "ArrowLeft" && ev.key !== "ArrowRight") return;
    const names = Object.keys(tabs);
    const k = names.indexOf(activeTab) + (ev.key === "ArrowRight" ? 1 : -1);
    const next = names[(k + names.length) % names.length];
    ev.preventDefault();
    showTab(next);
    tabs[next].focus();
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

  function showTab(name, { fromModel = false } = {}) {
    if (!tabs[name]) return;
    activeTab = name;
    for (const [k, t] of Object.entries(tabs)) {
      t.classList.toggle("sdw-tab-active", k === name);
      t.setAttribute("aria-selected", String(k === name));
      t.setAttribute("tabindex", k === name ? "0" : "-1");
      panels[k].hidden = k !== name;
    }
    if (fromModel) return;
    // the `tab` trait is the state (Python mirrors show_code from it); show_code is also set
    // for a Python side without `tab`
    let changed = false;
    if (model.get("tab") !== undefined && model.get("tab") !== name) {
      model.set("tab", name);
      changed = true;
    }
    const wantCode = name === "code"; // Python keeps `code` current only while it is shown
    if (!!model.get("show_code") !== wantCode) {
      model.set("show_code", wantCode);
      changed = true;
    }
    if (changed) model.save_changes();
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
        : [h("li", { className: "sdw-muted", text: "No suggestions: no key only the checkpoint has looks like one only the model has." })]),
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

  return {
    tabs, panels, tabBar, preview, previewStats, previewKeys, previewMore, skippedList,
    ruleKind, ruleOld, ruleNew, codePre, copyBtn, picker, codeSlot,
    showTab, copyCode, drawRenames, drawCode, drawResults,
  };
}

// ================================================================================ render

function render({ model, el }) {
  const uid = `sdw${++instanceCounter}`;
  const cleanups = [];
  const on = (name, fn) => {
    model.on(name, fn);
    cleanups.push(() => model.off(name, fn));
  };
  const send = (content) => model.send(content);

  // ------------------------------------------------------------------ view state
  let data = new TreeData(decodeTree(model.get("tree")));
  let expanded = new Uint8Array(0); // modules, unfiltered view
  let filterExpanded = new Uint8Array(0); // modules, while a filter is active
  let matches = null;
  let visible = new Int32Array(0);
  let clickAnchor = null; // {kind: "key"|"module", path} of the last plain click
  let nav = { focus: -1, anchor: -1 }; // roving tab stop and Shift+Arrow anchor (entries)
  let detailsOpen = -1; // entry whose details are shown, -1 when closed
  let skipped = new Map(); // key -> why the plan skips it (from the preview)
  let userWidths = {}; // column widths the user dragged
  let query = "";
  let statusOn = new Set();
  const exp = () => (matches ? filterExpanded : expanded);

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
  const problems = h("div", { className: "sdw-problems", dataset: { role: "problems" }, attrs: { role: "region", "aria-label": "Problems" } });

  const search = h("input", {
    className: "sdw-search",
    attrs: { type: "search", placeholder: "Search keys…", "aria-label": "Search keys", spellcheck: "false" },
    dataset: { role: "search" },
  });
  const onlyProblems = h("input", { attrs: { type: "checkbox" }, dataset: { role: "only-problems" } });
  const btn = button;
  const toolbar = h("div", { className: "sdw-toolbar", dataset: { role: "toolbar" } }, [
    search,
    h("label", { className: "sdw-check-label", title: "Show only the rows with a problem" }, [onlyProblems, " only problems"]),
    h("span", { className: "sdw-spacer" }),
    btn("Expand all", "expand-all", "Expand every module"),
    btn("Collapse all", "collapse-all", "Collapse every module"),
    btn("Select all loadable", "select-loadable", "Select every key that can be loaded as it is (and adapted keys)"),
    btn("Clear selection", "select-none", "Deselect everything"),
  ]);
  const legend = h("div", { className: "sdw-legend", dataset: { role: "legend" }, attrs: { "aria-label": "Legend: status colours, icons and filters" } });
  const resizer = (col, label) =>
    h("span", { className: "sdw-col-resize", title: `Drag (or focus and press ←/→) to resize the ${label} column`, dataset: { role: "col-resize", col }, attrs: { role: "separator", "aria-orientation": "vertical", "aria-label": `Resize the ${label} column`, tabindex: "0" } });
  const colHeader = h("div", { className: "sdw-row sdw-colheader", dataset: { role: "column-header" }, attrs: { "aria-hidden": "false" } }, [
    h("span", { className: "sdw-cell sdw-cell-check" }),
    h("span", { className: "sdw-cell sdw-cell-side sdw-head-cell", dataset: { role: "ckpt-head" } }, ["Checkpoint", resizer("ckpt", "checkpoint")]),
    h("span", { className: "sdw-cell sdw-cell-status sdw-head-cell", text: "Status" }, [resizer("status", "status")]),
    h("span", { className: "sdw-cell sdw-cell-side", text: "Model" }),
  ]);
  const crumb = h("div", { className: "sdw-breadcrumb", dataset: { role: "breadcrumb" }, attrs: { "aria-hidden": "true" } });
  const treeHead = h("div", { className: "sdw-tree-head", dataset: { role: "tree-head" } }, [colHeader, crumb]);
  const canvas = h("div", { className: "sdw-canvas", dataset: { role: "canvas" }, attrs: { role: "tree", "aria-multiselectable": "true", "aria-label": "Checkpoint and model keys side by side" } });
  const viewport = h("div", { className: "sdw-viewport", dataset: { role: "viewport" } }, [treeHead, canvas]);
  const treeNote = h("div", { className: "sdw-tree-note", dataset: { role: "tree-note" }, attrs: { role: "status", "aria-live": "polite" } });
  const detailsBody = h("div", { className: "sdw-details-list", dataset: { role: "details-list" } });
  const details = h("div", { className: "sdw-details", dataset: { role: "details" }, attrs: { role: "region", "aria-label": "Details of the row", "aria-live": "polite" } }, [
    h("div", { className: "sdw-details-head" }, [
      h("span", { className: "sdw-subhead", text: "Details" }),
      h("span", { className: "sdw-muted", text: " (Enter on a row; Enter again closes)" }),
      h("span", { className: "sdw-spacer" }),
      h("button", { className: "sdw-btn sdw-btn-icon", text: "×", title: "Close the details", dataset: { action: "close-details" }, attrs: { type: "button", "aria-label": "Close the details" } }),
    ]),
    detailsBody,
  ]);
  details.hidden = true;
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
  const actionsEnd = h("div", { className: "sdw-actions-end", dataset: { role: "actions-end" }, attrs: { "aria-hidden": "true" } });

  // tabs under the tree
  const { tabs, panels, tabBar, preview, previewStats, previewKeys, previewMore, skippedList, ruleKind, ruleOld, ruleNew, codeSlot, showTab, copyCode, drawRenames, drawCode, drawResults } = buildTabs(model);

  const topSlot = h("div", { className: "sdw-top-slot", dataset: { role: "top-slot" } });
  const resultsSlot = h("div", { className: "sdw-results-slot", dataset: { role: "results-slot" } });
  panels.results.prepend(resultsSlot);
  const statusStyle = h("style", { dataset: { role: "status-style" } });
  // the bar sticks only while the tree is on screen: its containing block is the tree's box
  const treeBox = h("div", { className: "sdw-tree-box", dataset: { role: "tree-box" } }, [viewport, treeNote, emptyNote, actions]);
  root.append(statusStyle, title, messageBar, topSlot, summary, problems, toolbar, legend, treeBox, actionsEnd, details, tabBar, ...Object.values(panels));
  el.appendChild(root);
  mountPanels({ model, send, on, h, root, slots: { top: topSlot, results: resultsSlot, code: codeSlot } });

  // ------------------------------------------------------------------ tree rows
  function refreshVisible() {
    visible = computeVisible(data, exp(), matches);
    canvas.style.height = `${visible.length * ROW_H}px`;
    root.dataset.nVisible = String(visible.length);
    nav.focus = settleFocus(data, visible, nav.focus);
    if (nav.anchor >= 0 && visible.indexOf(nav.anchor) < 0) nav.anchor = -1;
  }

  /** The wrapper prefix shared by every renamed checkpoint key ("module."), or "". */
  let sharedNote = "";
  function drawCkptHead() {
    const c = data.c;
    const notes = new Set();
    for (let i = 0; i < data.n; i++) if (c.t[i] === 1 && c.ckpt_key[i]) notes.add(relativeName(c.path[i], c.ckpt_key[i]).note);
    sharedNote = notes.size === 1 ? [...notes][0] : "";
    const head = colHeader.querySelector("[data-role=ckpt-head]");
    for (const old of head.querySelectorAll("[data-role=ckpt-prefix]")) old.remove();
    if (sharedNote) {
      const text = sharedNote.startsWith("−") ? `keys without ${sharedNote.slice(1)}` : `keys under ${sharedNote}`;
      head.insertBefore(h("span", { className: "sdw-rename-note sdw-head-note", text, title: `every renamed checkpoint key ${sharedNote.startsWith("−") ? "lacks" : "starts with"} '${sharedNote.replace("−", "")}'; hover a name for its full key`, dataset: { role: "ckpt-prefix" } }), head.lastChild);
    }
  }

  function sizeColumns() {
    const w = columnWidths(data, textMeasurer(root), { sharedNote, indent: INDENT, modelIndent: MODEL_INDENT });
    const ckpt = userWidths.ckpt || w.ckpt;
    const status = userWidths.status || w.status;
    const modelW = userWidths.model || w.model;
    root.style.setProperty("--sdw-col-ckpt", `${ckpt}px`);
    root.style.setProperty("--sdw-col-status", `${status}px`);
    root.style.setProperty("--sdw-col-model", `${modelW}px`);
    root.style.setProperty("--sdw-tree-min", `${26 + ckpt + status + modelW}px`);
    for (const r of colHeader.querySelectorAll("[data-role=col-resize]")) {
      r.setAttribute("aria-valuenow", String(r.dataset.col === "ckpt" ? ckpt : status));
    }
  }

  function nameCell(i, side) {
    const c = data.c;
    const other = side === "ckpt" ? c.ckpt_key[i] : c.model_key[i];
    const rel = relativeName(c.path[i], other);
    const full = other || c.path[i];
    const name = h("span", { className: `sdw-name${rel.renamed ? " sdw-renamed" : ""}`, dataset: { role: "name" }, title: rel.renamed ? `${side === "ckpt" ? "checkpoint" : "model"} key ${full} (renamed)` : full }, [
      h("span", { className: "sdw-name-text", text: rel.text, attrs: { dir: "ltr" } }),
    ]);
    const out = [name];
    // a prefix every renamed key shares is said once, in the column header
    if (rel.note && !(side === "ckpt" && sharedNote === rel.note)) out.push(h("span", { className: "sdw-rename-note", text: rel.note, title: `${side === "ckpt" ? "checkpoint" : "model"} key: ${full}`, dataset: { role: "rename-note" } }));
    return out;
  }

  function sideCell(i, side) {
    const c = data.c;
    const depth = c.depth[i];
    const cell = h("span", { className: `sdw-cell sdw-cell-side sdw-${side}`, dataset: { role: side } });
    const present = c.sides[i] & (side === "ckpt" ? 1 : 2);
    cell.style.paddingLeft = `${6 + depth * (side === "model" ? MODEL_INDENT : INDENT)}px`;
    if (c.t[i] === 0) {
      if (!present) {
        cell.classList.add("sdw-absent");
        return cell;
      }
      const isExp = exp()[i] === 1;
      cell.append(
        h("span", { className: "sdw-caret", text: isExp ? "▾" : "▸", dataset: { action: "expand" }, title: isExp ? "Collapse" : "Expand", attrs: { "aria-hidden": "true" } }),
        h("span", { className: "sdw-name sdw-module-name", dataset: { role: "name" } }, [h("span", { className: "sdw-name-text", text: c.name[i], attrs: { dir: "ltr" } })]),
      );
      if (c.module_type[i]) cell.append(h("span", { className: "sdw-meta sdw-type", text: c.module_type[i], title: c.module_type[i] }));
      if (side === "ckpt") cell.append(h("span", { className: "sdw-meta sdw-size", text: fmtBytes(c.nbytes[i] || 0), dataset: { role: "size" } }));
      return cell;
    }
    if (!present) {
      cell.classList.add("sdw-absent");
      cell.append(h("span", { className: "sdw-absent-mark", text: "—", attrs: { "aria-label": "absent" } }));
      return cell;
    }
    cell.append(...nameCell(i, side));
    const shape = side === "ckpt" ? c.ckpt_shape[i] : c.model_shape[i];
    const dt = side === "ckpt" ? c.ckpt_dtype[i] : c.model_dtype[i];
    const differs = data.item(i).differs;
    cell.append(
      h("span", { className: `sdw-meta sdw-shape${differs === "shape" ? " sdw-diff" : ""}`, text: fmtShape(shape), dataset: { role: "shape" } }),
      h("span", { className: `sdw-meta sdw-dtype${differs === "dtype" ? " sdw-diff" : ""}`, text: dtypeName(data.p, dt), dataset: { role: "dtype" } }),
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
    const problemKinds = counts.filter((n, s) => n && data.problem[s]).length;
    counts.forEach((n, s) => {
      if (!n) return;
      const status = data.statuses[s];
      const item = data.legend[status] || { icon: "?", label: status, plural: status };
      const label = countChipText(item, n, !data.problem[s] || problemKinds > 1);
      parts.push(`${n} ${n === 1 ? item.label : item.plural}`);
      cell.appendChild(h("span", { className: `sdw-count sdw-status-${status}${data.problem[s] ? " sdw-is-problem" : ""}`, text: label, dataset: { status, count: n } }));
    });
    cell.title = parts.join(", ");
    return cell;
  }

  function treeitem(i, pos) {
    const c = data.c;
    const row = h("div", { className: "sdw-row", dataset: { idx: i, depth: c.depth[i] } });
    row.style.top = `${pos * ROW_H}px`;
    row.setAttribute("role", "treeitem");
    row.setAttribute("aria-level", String(c.depth[i] + 1));
    row.setAttribute("aria-posinset", String(data.posInSet[i]));
    row.setAttribute("aria-setsize", String(data.setSize[i]));
    row.setAttribute("tabindex", i === nav.focus ? "0" : "-1");
    const checked = data.ariaChecked(i);
    if (checked !== null) row.setAttribute("aria-checked", checked);
    return row;
  }

  function moduleRow(i, pos) {
    const c = data.c;
    const row = treeitem(i, pos);
    const state = data.moduleState(i);
    const isExp = exp()[i] === 1;
    row.classList.add("sdw-module");
    row.dataset.role = "module";
    row.dataset.path = c.path[i];
    row.dataset.expanded = String(isExp);
    row.dataset.check = state;
    row.setAttribute("aria-expanded", String(isExp));
    const counts = (c.counts[i] || []).map((n, s) => (n ? `${n} ${n === 1 ? (data.legend[data.statuses[s]] || {}).label : (data.legend[data.statuses[s]] || {}).plural}` : "")).filter(Boolean);
    row.setAttribute("aria-label", `${c.name[i]}${c.module_type[i] ? ` (${c.module_type[i]})` : ""}: ${counts.join(", ")}`);
    row.title = `${c.path[i]}${c.module_type[i] ? ` (${c.module_type[i]})` : ""}: click or Space to ${state === "all" ? "deselect" : "select"} every loadable key below; shift-click selects a range`;
    row.append(
      h("span", { className: `sdw-cell sdw-cell-check sdw-check sdw-check-${state}`, text: { all: "☑", some: "◩", none: "☐", na: "⊘" }[state], attrs: { "aria-hidden": "true" } }),
      sideCell(i, "ckpt"),
      countsCell(i),
      sideCell(i, "model"),
    );
    return row;
  }

  function leafRow(i, pos) {
    const c = data.c;
    const row = treeitem(i, pos);
    const status = data.statusName(i);
    const item = data.item(i);
    const selectable = data.selectable(i);
    const selected = data.selected[i] === 1;
    const skip = selected ? skipped.get(c.path[i]) : undefined;
    row.classList.add("sdw-leaf", `sdw-status-${status}`);
    if (data.isProblem(i)) row.classList.add("sdw-is-problem");
    if (!selectable) row.classList.add("sdw-unselectable");
    if (selected) row.classList.add("sdw-selected");
    if (skip) row.classList.add("sdw-skipped");
    row.dataset.role = "leaf";
    row.dataset.key = c.path[i];
    row.dataset.status = status;
    row.dataset.selectable = String(selectable);
    row.dataset.selected = String(selected);
    row.dataset.skipped = String(!!skip);
    // aria-disabled only when no gesture can select it (an adaptable row has an enabled button)
    if (!data.actionable(i)) row.setAttribute("aria-disabled", "true");
    const hover = [c.path[i]];
    if (c.ckpt_key[i]) hover.push(`checkpoint key: ${c.ckpt_key[i]}`);
    if (item.cast) hover.push(castText(data, i));
    if (!selectable) hover.push(`not selectable: ${c.reason[i] || item.label}`);
    else if (c.adaptable[i]) hover.push(`loads through the '${data.adapters[c.path[i]]}' adapter`);
    if (skip) hover.push(`selected but not loaded: ${skip}`);
    row.title = hover.join("\n");
    row.setAttribute("aria-label", `${c.name[i]}: ${item.label}${selected ? ", selected" : ""}${skip ? `, not loaded (${skip})` : ""}`);
    const statusCell = h("span", { className: "sdw-cell sdw-cell-status", dataset: { role: "status" } }, [
      h("span", { className: `sdw-badge sdw-status-${status}`, text: `${item.icon} ${item.label}` }),
    ]);
    if (skip) statusCell.appendChild(h("span", { className: "sdw-skip-note", text: "not loaded", title: skip, dataset: { role: "skip-note" } }));
    if (c.adaptable[i]) {
      const onAdapter = data.hasAdapter(i);
      statusCell.appendChild(
        h("button", {
          className: `sdw-adapt${onAdapter ? " sdw-adapt-on" : ""}`,
          text: onAdapter ? "overlap ✓" : "adapt",
          title: onAdapter ? "Stop adapting this tensor" : "Load the overlapping slice with the 'overlap' adapter (Space on the row)",
          dataset: { action: "adapt", key: c.path[i], on: String(onAdapter) },
          attrs: { type: "button", tabindex: "-1" },
        }),
      );
    }
    const mark = skip ? "☒" : selectable ? (selected ? "☑" : "☐") : c.adaptable[i] ? "☐" : "⊘";
    row.append(
      h("span", { className: `sdw-cell sdw-cell-check sdw-check sdw-check-${selectable || c.adaptable[i] ? (selected ? "all" : "none") : "na"}`, text: mark, attrs: { "aria-hidden": "true" } }),
      sideCell(i, "ckpt"),
      statusCell,
      sideCell(i, "model"),
    );
    return row;
  }

  /** What a drawn row shows that a selection (or adapter, or skip) change can alter. */
  function rowSig(i) {
    if (data.c.t[i] === 0) return data.moduleState(i);
    const key = data.c.path[i];
    const selected = data.selected[i] === 1;
    return `${selected ? 1 : 0}${data.selectable(i) ? 1 : 0}|${data.hasAdapter(i) ? data.adapters[key] : ""}|${selected ? skipped.get(key) || "" : ""}`;
  }

  const rowFor = (i, pos) => {
    const row = data.c.t[i] === 0 ? moduleRow(i, pos) : leafRow(i, pos);
    row._sdwSig = rowSig(i);
    row._sdwPos = pos;
    return row;
  };

  /**
   * After a selection change: redraw only the drawn rows whose state changed (a click changes
   * a few), not every row. Rebuilding all ~600 rows made the browser lay the tree out again
   * on every click (most of a click's round trip at 10k keys).
   */
  function patchRows() {
    const hadFocus = canvas.contains(document.activeElement);
    for (const el of [...canvas.children]) {
      const i = Number(el.dataset.idx);
      if (el._sdwSig !== rowSig(i)) el.replaceWith(rowFor(i, el._sdwPos));
    }
    if (hadFocus && !canvas.contains(document.activeElement)) focusRowElement();
  }

  let drawn = { from: -1, to: -1, focus: -1 };
  function drawRows(force = false) {
    const total = visible.length;
    let from = 0;
    let to = total;
    if (total > FULL_RENDER_MAX) {
      const hgt = viewport.clientHeight || VIEWPORT_FALLBACK_H;
      const top = Math.max(0, viewport.scrollTop - canvas.offsetTop);
      from = Math.max(0, Math.floor(top / ROW_H) - OVERSCAN);
      to = Math.min(total, Math.ceil((top + hgt) / ROW_H) + OVERSCAN);
    }
    // the focused row (the tree's one tab stop) is always drawn, even when scrolled away
    const fpos = nav.focus >= 0 ? visible.indexOf(nav.focus) : -1;
    const extra = fpos >= 0 && (fpos < from || fpos >= to) ? fpos : -1;
    if (!force && from === drawn.from && to === drawn.to && extra === drawn.focus) return;
    drawn = { from, to, focus: extra };
    const hadFocus = canvas.contains(document.activeElement);
    const frag = document.createDocumentFragment();
    if (extra >= 0 && extra < from) frag.appendChild(rowFor(visible[extra], extra));
    for (let p = from; p < to; p++) frag.appendChild(rowFor(visible[p], p));
    if (extra >= to) frag.appendChild(rowFor(visible[extra], extra));
    canvas.replaceChildren(frag);
    if (hadFocus) focusRowElement();
    drawCrumb();
  }

  function refreshTree() {
    refreshVisible();
    drawRows(true);
    emptyNote.textContent = data.n === 0 ? "No keys to show." : visible.length === 0 ? "No key matches the search and status filter." : "";
    emptyNote.style.display = emptyNote.textContent ? "" : "none";
    if (detailsOpen >= 0) drawDetails();
    queueStick();
  }

  /** The module path of the first row in view, above the rows. */
  function drawCrumb() {
    const top = Math.max(0, viewport.scrollTop - 0);
    const pos = Math.min(visible.length - 1, Math.floor(top / ROW_H));
    const names = pos >= 0 ? breadcrumb(data, visible[pos]) : [];
    // shortened from the left when long (the innermost modules stay readable)
    crumb.replaceChildren(h("span", { text: names.length ? `in ${names.join(" › ")}` : " ", attrs: { dir: "ltr" } }));
    crumb.title = names.join(".");
    crumb.dataset.path = names.join(".");
  }

  let scrollQueued = false;
  viewport.addEventListener("scroll", () => {
    if (scrollQueued) return;
    scrollQueued = true;
    requestAnimationFrame(() => {
      scrollQueued = false;
      if (visible.length > FULL_RENDER_MAX) drawRows(false);
      else drawCrumb();
    });
  });

  // ------------------------------------------------------------------ focus and keyboard
  function rowElement(i) {
    return canvas.querySelector(`.sdw-row[data-idx="${i}"]`);
  }

  function focusRowElement() {
    const rowEl = nav.focus >= 0 ? rowElement(nav.focus) : null;
    if (rowEl) rowEl.focus({ preventScroll: true });
  }

  /** Keep row `pos` inside the viewport, below the sticky column header and breadcrumb. */
  function scrollToPos(pos) {
    if (pos < 0) return;
    const headH = treeHead.offsetHeight;
    const rowTop = canvas.offsetTop + pos * ROW_H;
    const viewH = viewport.clientHeight || VIEWPORT_FALLBACK_H;
    if (rowTop - headH < viewport.scrollTop) viewport.scrollTop = rowTop - headH;
    else if (rowTop + ROW_H > viewport.scrollTop + viewH) viewport.scrollTop = rowTop + ROW_H - viewH;
  }

  /** Move the roving tab stop to entry `i`, scroll it into view and focus it. */
  function moveFocus(i, { focus = true } = {}) {
    nav.focus = i;
    scrollToPos(visible.indexOf(i));
    drawRows(false);
    for (const other of canvas.querySelectorAll('.sdw-row[tabindex="0"]')) other.setAttribute("tabindex", "-1");
    const rowEl = rowElement(i);
    if (rowEl) {
      rowEl.setAttribute("tabindex", "0");
      if (focus) {
        rowEl.focus({ preventScroll: true });
        // keep it on screen in the notebook too
        const sc = scrollerOf(root);
        if (sc) sc.scrollTop += scrollIntoNotebook(rowEl.getBoundingClientRect(), sc.getBoundingClientRect(), actions.getBoundingClientRect().top);
      }
    }
    drawCrumb();
    if (detailsOpen >= 0) {
      detailsOpen = i;
      drawDetails();
    }
  }

  function note(text) {
    treeNote.textContent = text || "";
    treeNote.style.display = text ? "" : "none";
  }

  canvas.addEventListener("keydown", (ev) => {
    const rowEl = ev.target.closest(".sdw-row");
    if (!rowEl || !canvas.contains(rowEl)) return;
    if (nav.focus !== Number(rowEl.dataset.idx)) nav.focus = Number(rowEl.dataset.idx);
    const hgt = viewport.clientHeight || VIEWPORT_FALLBACK_H;
    const r = navigate(nav, ev, { data, visible, expanded: exp(), matches, pageRows: Math.max(1, Math.floor((hgt - treeHead.offsetHeight) / ROW_H) - 1) });
    if (!r.handled) return;
    ev.preventDefault();
    ev.stopPropagation();
    const before = nav.focus;
    nav = r.state;
    note("");
    let redraw = false;
    for (const e of r.effects) {
      if (e.type === "expand") {
        exp()[e.index] = e.value;
        redraw = true;
      } else if (e.type === "toggle") send({ action: "toggle", keys: e.keys || [], modules: e.modules || [] });
      else if (e.type === "range") send({ action: "select_range", keys: e.keys, modules: e.modules, select: e.select });
      else if (e.type === "adapt") send({ action: "adapt", key: e.key, adapter: e.adapter });
      else if (e.type === "details") {
        detailsOpen = detailsOpen === e.index && !details.hidden ? -1 : e.index;
        drawDetails();
      } else if (e.type === "announce") note(e.text);
      else if (e.type === "search") search.focus();
    }
    if (redraw) refreshTree();
    if (nav.focus !== before || redraw) moveFocus(nav.focus);
  });

  canvas.addEventListener("focusin", (ev) => {
    const rowEl = ev.target.closest && ev.target.closest(".sdw-row");
    if (!rowEl) return;
    const i = Number(rowEl.dataset.idx);
    if (i !== nav.focus || rowEl.getAttribute("tabindex") !== "0") {
      for (const other of canvas.querySelectorAll('.sdw-row[tabindex="0"]')) other.setAttribute("tabindex", "-1");
      nav.focus = i;
      rowEl.setAttribute("tabindex", "0");
    }
  });

  // Plain keys typed anywhere in the widget (buttons, radios, the search box) never reach
  // JupyterLab: Space/Enter on a focused button must press it, not scroll or edit the cell, and
  // letters must not insert cells. Tab, Escape, Shift+Enter and modified keys pass.
  root.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (ev.key === "Tab" || ev.key === "Escape" || (ev.key === "Enter" && ev.shiftKey)) return;
    ev.stopPropagation();
  });

  function drawDetails() {
    if (detailsOpen < 0 || detailsOpen >= data.n) {
      details.hidden = true;
      delete details.dataset.key;
      delete details.dataset.path;
      return;
    }
    details.hidden = false;
    const i = detailsOpen;
    if (data.c.t[i] === 1) {
      details.dataset.key = data.c.path[i];
      delete details.dataset.path;
    } else {
      details.dataset.path = data.c.path[i];
      delete details.dataset.key;
    }
    const items = [];
    for (const [label, value] of detailLines(data, i, { skipped })) {
      items.push(h("span", { className: "sdw-detail-label", text: label }), h("span", { className: "sdw-detail-value sdw-key", text: value }));
    }
    detailsBody.replaceChildren(...items);
  }

  // column resizing: drag the separators, or focus one and press Left/Right
  function setWidth(col, px) {
    userWidths = { ...userWidths, [col]: Math.max(90, Math.round(px)) };
    sizeColumns();
  }
  colHeader.addEventListener("pointerdown", (ev) => {
    const r = ev.target.closest("[data-role=col-resize]");
    if (!r) return;
    ev.preventDefault();
    const col = r.dataset.col;
    const start = ev.clientX;
    const startW = r.parentElement.getBoundingClientRect().width;
    r.setPointerCapture(ev.pointerId);
    const move = (e) => setWidth(col, startW + e.clientX - start);
    const up = () => {
      r.removeEventListener("pointermove", move);
      r.removeEventListener("pointerup", up);
    };
    r.addEventListener("pointermove", move);
    r.addEventListener("pointerup", up);
  });
  colHeader.addEventListener("keydown", (ev) => {
    const r = ev.target.closest("[data-role=col-resize]");
    if (!r || (ev.key !== "ArrowLeft" && ev.key !== "ArrowRight")) return;
    ev.preventDefault();
    ev.stopPropagation();
    setWidth(r.dataset.col, r.parentElement.getBoundingClientRect().width + (ev.key === "ArrowRight" ? 24 : -24));
  });

  // ------------------------------------------------------------------ the action bar stays reachable
  // sticky to the notebook's scroller (actionbar.js), the tree's height capped to fit with it
  let fitQueued = false;
  let unclip = null;
  function fitTree() {
    fitQueued = false;
    if (!root.isConnected) return;
    if (!unclip) unclip = unclipHosts(root, el);
    const sc = scrollerOf(root);
    const avail = Math.min(window.innerHeight, sc ? sc.clientHeight : window.innerHeight);
    const px = `${treeMaxHeight({ avail, bar: actions.offsetHeight || 56, head: treeHead.offsetHeight, rowH: ROW_H, fallback: VIEWPORT_FALLBACK_H })}px`;
    if (viewport.style.maxHeight !== px) viewport.style.maxHeight = px;
  }
  function queueStick() {
    if (fitQueued) return;
    fitQueued = true;
    requestAnimationFrame(fitTree);
  }
  window.addEventListener("resize", queueStick);
  cleanups.push(() => window.removeEventListener("resize", queueStick));
  cleanups.push(watchStuck(actions, actionsEnd));
  cleanups.push(() => unclip && unclip());

  // ------------------------------------------------------------------ filters and problems
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
    const probs = problemStatuses();
    onlyProblems.checked = statusOn.size === probs.size && [...probs].every((s) => statusOn.has(s));
    refreshTree();
  }
  function allStatuses() {
    return new Set(data.statuses.map((_, s) => s));
  }
  function problemStatuses() {
    return new Set(data.statuses.map((_, s) => s).filter((s) => data.problem[s]));
  }
  function setOnlyProblems(onOff) {
    statusOn = onOff ? problemStatuses() : allStatuses();
    applyFilter();
  }
  let searchTimer = null;
  search.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      query = search.value.trim().toLowerCase();
      applyFilter();
    }, 120);
  });
  search.addEventListener("keydown", (ev) => {
    // Down from the search box goes into the tree (the first row that matches)
    if (ev.key === "ArrowDown" && visible.length) {
      ev.preventDefault();
      clearTimeout(searchTimer);
      const q = search.value.trim().toLowerCase();
      if (q !== query) {
        query = q;
        applyFilter();
      }
      moveFocus(visible[0]);
    }
  });
  onlyProblems.addEventListener("change", () => setOnlyProblems(onlyProblems.checked));
  legend.addEventListener("click", (ev) => {
    const item = ev.target.closest("[data-role=legend-item]");
    if (!item) return;
    const s = data.statuses.indexOf(item.dataset.status);
    if (statusOn.has(s)) statusOn.delete(s);
    else statusOn.add(s);
    applyFilter();
  });

  /** One `.sdw-status-<status> { --sdw-c }` rule per status of the payload's legend. */
  function drawStatusStyle() {
    const rules = [];
    for (const item of data.p.legend || []) {
      if (!/^[a-z_]+$/.test(item.status)) continue;
      const colour = /^#[0-9a-fA-F]{3,8}$/.test(item.colour || "") ? item.colour : "#888888";
      rules.push(`.sdw-explorer .sdw-status-${item.status} { --sdw-c: var(--sdw-c-${item.status}, ${colour}); }`);
      if (/^[a-z]+$/.test(item.tone || "") && /^#[0-9a-fA-F]{3,8}$/.test(item.tone_colour || "")) root.style.setProperty(`--sdw-tone-${item.tone}`, item.tone_colour);
    }
    statusStyle.textContent = rules.join("\n");
  }

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

  function drawProblems() {
    const list = data.problemEntries();
    problems.hidden = list.length === 0;
    if (!list.length) {
      problems.replaceChildren();
      return;
    }
    const chips = list.slice(0, MAX_PROBLEM_CHIPS).map((i) => {
      const status = data.statusName(i);
      const item = data.legend[status] || { icon: "?", label: status };
      return h("button", { className: `sdw-problem sdw-status-${status}`, title: `${data.c.path[i]}: ${item.label}. Show it in the tree.`, dataset: { action: "goto-problem", key: data.c.path[i] }, attrs: { type: "button" } }, [
        h("span", { className: "sdw-legend-icon", text: item.icon, attrs: { "aria-hidden": "true" } }),
        h("span", { className: "sdw-problem-key", text: data.c.path[i], attrs: { dir: "ltr" } }),
      ]);
    });
    const more = list.length - chips.length;
    const parts = [h("span", { className: "sdw-problems-title", text: `⚠ ${problemPhrase(list.length)}:` }), ...chips];
    if (more > 0) parts.push(h("span", { className: "sdw-muted", text: `… and ${fmtInt(more)} more` }));
    parts.push(btn("Show only problems", "show-problems", "Show only the rows with a problem"));
    problems.replaceChildren(...parts);
  }

  /** Make entry `i` visible (open its modules; drop a filter that hides it) and focus it. */
  function reveal(i) {
    if (matches && !matches[i]) {
      query = "";
      search.value = "";
      statusOn = allStatuses();
      matches = null;
      applyFilter();
    }
    expandTo(data, exp(), i);
    refreshTree();
    moveFocus(i);
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
    nav = { focus: i, anchor: i };
    const actionEl = ev.target.closest("[data-action]");
    if (actionEl && actionEl.dataset.action === "expand") {
      exp()[i] = exp()[i] ? 0 : 1;
      refreshTree();
      return;
    }
    if (actionEl && actionEl.dataset.action === "adapt") {
      send({ action: "adapt", key: c.path[i], adapter: actionEl.dataset.on === "true" ? null : "auto" });
      return;
    }
    if (ev.shiftKey && clickAnchor) {
      rangeClick(i);
      return;
    }
    if (c.t[i] === 0) {
      clickAnchor = { kind: "module", path: c.path[i] };
      send({ action: "toggle", modules: [c.path[i]] });
    } else {
      clickAnchor = { kind: "key", path: c.path[i] };
      if (!data.selectable(i)) return; // the hover text says why
      send({ action: "toggle", keys: [c.path[i]] });
    }
  });

  function rangeClick(i) {
    const anchorIdx = clickAnchor.kind === "module" ? data.moduleIndex.get(clickAnchor.path) : data.keyIndex.get(clickAnchor.path);
    if (anchorIdx === undefined) return;
    const select = clickAnchor.kind === "module" ? data.moduleState(anchorIdx) === "all" : data.selected[anchorIdx] === 1;
    const g = rangeGesture(data, visible, exp(), matches, anchorIdx, i, select);
    if (g) send({ action: "select_range", ...g });
  }

  // ------------------------------------------------------------------ toolbar + actions
  root.addEventListener("click", (ev) => {
    const actionEl = ev.target.closest("[data-action]");
    if (!actionEl || canvas.contains(actionEl)) return;
    const action = actionEl.dataset.action;
    if (action === "expand-all" || action === "collapse-all") {
      const v = action === "expand-all" ? 1 : 0;
      const e = exp();
      for (let i = 0; i < data.n; i++) if (data.c.t[i] === 0) e[i] = v;
      refreshTree();
    } else if (action === "select-loadable") send({ action: "select_all_loadable" });
    else if (action === "select-none") send({ action: "select_none" });
    else if ((action === "load" || action === "undo") && actionEl.getAttribute("aria-disabled") === "true") return;
    else if (action === "load") send({ action: "load" });
    else if (action === "undo") send({ action: "undo" });
    else if (action === "dismiss-message") send({ action: "dismiss_message" });
    else if (action === "accept-suggestion") send({ action: "accept_suggestion", id: actionEl.dataset.id });
    else if (action === "remove-rule") send({ action: "remove_rule", index: Number(actionEl.dataset.index) });
    else if (action === "add-rule") send({ action: "add_rule", kind: ruleKind.value, old: ruleOld.value, new: ruleNew.value });
    else if (action === "copy-code") copyCode();
    else if (action === "goto-problem") {
      const i = data.keyIndex.get(actionEl.dataset.key);
      if (i !== undefined) reveal(i);
    } else if (action === "show-problems") setOnlyProblems(true);
    else if (action === "close-details") {
      detailsOpen = -1;
      drawDetails();
      if (nav.focus >= 0) moveFocus(nav.focus);
    }
  });
  bnGroup.addEventListener("change", (ev) => {
    if (ev.target.dataset.role === "bn-policy" && ev.target.checked) {
      model.set("bn_policy", ev.target.value);
      model.save_changes();
    }
  });




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
    patchRows();
    if (detailsOpen >= 0) drawDetails();
  }

  function drawPreview() {
    const pv = model.get("preview") || {};
    preview.dataset.nTensors = String(pv.n_tensors || 0);
    preview.dataset.nParams = String(pv.n_params || 0);
    preview.dataset.nbytes = String(pv.nbytes || 0);
    const line = `${fmtInt(pv.n_tensors)} tensors · ${fmtInt(pv.n_params)} parameters · ${fmtBytes(pv.nbytes || 0)}`;
    previewLine.textContent = `Selected: ${line}`;
    previewStats.textContent = line + (pv.bn ? ` · BatchNorm stats: ${pv.bn}` : "");
    // up to 500 keys: the items already there are reused (their text changed only where a
    // click shifted the list), fewer elements to create and lay out per click
    const pkeys = pv.keys || [];
    const items = previewKeys.children;
    for (let j = 0; j < pkeys.length; j++) {
      if (j >= items.length) previewKeys.appendChild(h("li", { text: pkeys[j] }));
      else if (items[j].textContent !== pkeys[j]) items[j].textContent = pkeys[j];
    }
    while (items.length > pkeys.length) previewKeys.lastElementChild.remove();
    const more = (pv.n_keys_total || 0) - (pv.keys || []).length;
    previewMore.textContent = more > 0 ? `… and ${fmtInt(more)} more` : (pv.n_tensors ? "" : "Nothing selected: click rows or module nodes, or “Select all loadable”.");
    const skippedPairs = pv.skipped || [];
    // the tree marks the selected keys the plan skips ("not loaded", e.g. bn='keep')
    const nextSkipped = skippedKeys(pv);
    const changed = nextSkipped.size !== skipped.size || [...nextSkipped].some(([k, v]) => skipped.get(k) !== v);
    skipped = nextSkipped;
    if (changed) {
      patchRows();
      if (detailsOpen >= 0) drawDetails();
    }
    skippedList.replaceChildren(...(skippedPairs.length
      ? skippedPairs.map(([k, why]) => h("li", { title: why }, [h("span", { className: "sdw-key", text: k }), h("span", { className: "sdw-muted", text: ` — ${why}` })]))
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
    // while busy the buttons say so with aria-disabled instead of `disabled`: a disabled button
    // drops keyboard focus to the page body, so the user pressing Load would lose their place
    const canUndo = !!model.get("can_undo");
    const soft = (b, off) => (off ? b.setAttribute("aria-disabled", "true") : b.removeAttribute("aria-disabled"));
    soft(loadBtn, busy);
    const err = model.get("error");
    loadBtn.disabled = !!(err && err.text); // nothing to load from: a real disabled button
    if (!canUndo && undoBtn === document.activeElement) {
      undoBtn.disabled = false; // it has the focus: keep it (announced as unavailable)
      soft(undoBtn, true);
    } else {
      undoBtn.disabled = !canUndo;
      soft(undoBtn, busy && canUndo);
    }
    undoBtn.title = canUndo ? "Restore the tensors the last load replaced" : "Nothing to undo yet";
  }

  function drawBn() {
    const v = model.get("bn_policy");
    for (const r of bnGroup.querySelectorAll("input")) r.checked = r.value === v;
  }





  function onTree() {
    const oldData = data;
    const oldExpandedPaths = new Set();
    for (let i = 0; i < oldData.n; i++) if (oldData.c.t[i] === 0 && expanded[i]) oldExpandedPaths.add(oldData.c.path[i]);
    const hadTree = oldData.n > 0;
    const focusPath = nav.focus >= 0 && nav.focus < oldData.n ? [oldData.c.t[nav.focus], oldData.c.path[nav.focus]] : null;
    data = new TreeData(decodeTree(model.get("tree")));
    statusOn = onlyProblems.checked ? problemStatuses() : allStatuses();
    expanded = initialExpansion(data);
    if (hadTree) {
      // keep what the user had open across a re-alignment
      for (let i = 0; i < data.n; i++) if (data.c.t[i] === 0 && oldExpandedPaths.has(data.c.path[i])) expanded[i] = 1;
    }
    // keep the tab stop on the same row (by path) when it still exists
    let focus = -1;
    if (focusPath) {
      const found = focusPath[0] === 1 ? data.keyIndex.get(focusPath[1]) : data.moduleIndex.get(focusPath[1]);
      if (found !== undefined) focus = found;
    }
    nav = { focus, anchor: -1 };
    clickAnchor = null;
    if (detailsOpen >= 0) detailsOpen = focus;
    data.setSelection(model.get("selected_keys"), model.get("adapters"));
    drawHeader();
    drawStatusStyle();
    drawCkptHead();
    drawLegend();
    drawProblems();
    sizeColumns();
    applyFilter();
    drawDetails();
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
  on("change:tab", () => showTab(model.get("tab"), { fromModel: true }));
  on("change:error", drawBusy);
  on("msg:custom", (msg) => {
    if (msg && msg.type === "show_tab" && tabs[msg.tab]) showTab(msg.tab, { fromModel: true });
  });

  onTree();
  drawPreview();
  drawMessage();
  drawBusy();
  drawBn();
  drawRenames();
  drawCode();
  drawResults();
  showTab(tabs[model.get("tab")] ? model.get("tab") : "preview", { fromModel: true });
  note("");
  root.dataset.ready = "true";
  // the fonts are known only once the root is in the document: size the columns again then
  let sized = root.isConnected;
  const ro = typeof ResizeObserver === "function" ? new ResizeObserver(() => {
    queueStick();
    crumb.style.width = `${viewport.clientWidth}px`; // sticky left: stays in view when scrolled sideways
    if (!sized && root.isConnected) {
      sized = true;
      sizeColumns();
    }
    if (visible.length > FULL_RENDER_MAX) drawRows(false);
  }) : null;
  if (ro) {
    ro.observe(viewport);
    ro.observe(root);
  }

  return () => {
    for (const fn of cleanups) fn();
    clearTimeout(searchTimer);
    if (ro) ro.disconnect();
  };
}

export default { render };
