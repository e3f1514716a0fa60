// @ts-check
// sd_widgets Explorer: the tabs under the tree (Selection, Renames, Code, Results) — their
// elements, the functions that draw them from the model's traits, and showTab. Buttons inside
// carry `data-action`, handled by traits.js's click handler; the Selection panel's contents are
// drawn by traits.js (it marks tree rows too). The one owner of the traits `tab` (its one writer
// in the browser), `suggestions`, `rename_rules`, `code`, `histograms`, `histogram_keys`,
// `last_load` and `bn_plot` (docs/widget-protocol.md); `results` and `histogram` come from
// panels.js, their owner, through setResults / setHistogram.

import { button, h } from "./dom.js";

/**
 * What buildTabs returns (spread into the view's elements, v.els).
 * @typedef {object} TabsUi
 * @property {Record<string, HTMLElement>} tabs     tab buttons by name
 * @property {Record<string, HTMLElement>} panels   tab panels by name
 * @property {HTMLElement} tabBar
 * @property {HTMLElement} preview  the Selection panel's summary box (data-n-tensors, ...)
 * @property {(name: string, opts?: {fromModel?: boolean}) => void} showTab
 * @property {() => void} copyCode
 * @property {(results: {state?: string, n?: number}) => void} setResults  panels.js: the `results` trait
 * @property {(one: {key?: string, src?: string}) => void} setHistogram      panels.js: the `histogram` trait
 */

/**
 * The tabs under the tree (Selection, Renames, Code, Results): their elements, the functions that
 * draw them from the model's traits, and showTab. Buttons inside carry `data-action`, handled by
 * traits.js's click handler; the Selection panel is drawn by traits.js (it marks tree rows too).
 * @param {any} model  the anywidget model
 * @param {(name: string, fn: Function) => void} on  model.on, undone when the view goes
 * @returns {TabsUi & Record<string, any>}
 */
export function buildTabs(model, on) {
  const btn = button;
  let activeTab = "preview";
  let histogramMode = "grid";
  /** @type {{state?: string, n?: number}} the `results` trait, from panels.js */
  let results = {};
  /** @type {{key?: string, src?: string}} the `histogram` trait, from panels.js */
  let picked = {};

  // tabs
  /** @type {Record<string, HTMLElement>} */
  const tabs = {};
  /** @type {Record<string, HTMLElement>} */
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
  // the picker only when there is something to pick (not before a load, not after an undo)
  const pickerBar = h("div", { className: "sdw-picker-bar" }, [h("span", { className: "sdw-muted", text: "Before/after histograms: " }), picker]);
  const grid = h("div", { className: "sdw-grid", dataset: { role: "histogram-grid" } });
  const single = h("div", { className: "sdw-single", dataset: { role: "histogram-single-box" } });
  const bnBox = h("div", { className: "sdw-bnplot", dataset: { role: "bn-plot-box" } });
  panels.results.append(
    loadSummary,
    pickerBar,
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
    if (histogramMode === "single") model.send({ action: "histogram", key: picker.value });
    drawResults();
  });

  function copyCode() {
    const text = codePre.textContent || "";
    if (!text) return;
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
    // the `tab` trait is the state; this is its one writer in the browser (Python keeps `code`
    // current only while the Code tab is shown)
    if (model.get("tab") !== name) {
      model.set("tab", name);
      model.save_changes();
    }
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
    const code = model.get("code") || "";
    codePre.textContent = code;
    // "" until the kernel has written it (it may be busy, e.g. drawing a load's plots): a copy
    // then would put nothing on the clipboard and the pasted cell would do nothing
    copyBtn.disabled = !code;
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
    pickerBar.hidden = !hist.length && !keys.length;
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
    const one = picked;
    single.replaceChildren(
      ...(histogramMode === "single" && one.src
        ? [h("img", { attrs: { src: one.src, alt: `before/after histogram of ${one.key}` }, dataset: { role: "histogram-single", key: one.key } })]
        : []),
    );
    const bn = model.get("bn_plot") || {};
    bnBox.replaceChildren(
      ...(bn.src
        ? [h("img", { attrs: { src: bn.src, alt: "BatchNorm running statistics before and after" }, dataset: { role: "bn-plot" } })]
        : [h("span", { className: "sdw-muted", text: bn.text || "No plot yet: load something to see BatchNorm running statistics here." })]),
    );
    // the tab counts tensors (the results table's rows), not the histogram images
    const res = results;
    const nTensors = res.state === "ready" || res.state === "stale" ? res.n || 0 : 0;
    tabs.results.textContent = nTensors ? `Results (${nTensors.toLocaleString("en-US")} tensor${nTensors === 1 ? "" : "s"})` : "Results";
  }

  on("change:suggestions", drawRenames);
  on("change:rename_rules", drawRenames);
  on("change:code", drawCode);
  on("change:histograms", drawResults);
  on("change:histogram_keys", drawResults);
  on("change:bn_plot", drawResults);
  on("change:last_load", drawResults);
  on("change:tab", () => showTab(model.get("tab"), { fromModel: true }));
  drawRenames();
  drawCode();
  drawResults();
  showTab(tabs[model.get("tab")] ? model.get("tab") : "preview", { fromModel: true });

  return {
    tabs, panels, tabBar, preview, previewStats, previewKeys, previewMore, skippedList,
    ruleKind, ruleOld, ruleNew, codePre, copyBtn, picker, codeSlot,
    showTab, copyCode,
    setResults(/** @type {{state?: string, n?: number}} */ value) {
      results = value || {};
      drawResults();
    },
    setHistogram(/** @type {{key?: string, src?: string}} */ value) {
      picked = value || {};
      drawResults();
    },
  };
}
