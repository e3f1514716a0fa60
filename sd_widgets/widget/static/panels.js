// @ts-check
// sd_widgets Explorer: the panels around the tree — the one-rule banner, the error and stale
// states, the busy sign, weight sets, meta-device leftovers, the model-name input of the Code
// tab and the per-tensor results table. Mounted by tree.js's render() through mountPanels(ctx).
// Every decision is Python's (docs/widget-protocol.md); this file draws traits and sends the
// actions named there. Strings from checkpoints only ever go in through textContent/title/value.

import { focusedIn, h, uniqueId } from "./dom.js";

/**
 * @typedef {object} PanelContext
 * @property {any} model   the anywidget model (get/set/save_changes/send)
 * @property {(content: object) => void} send
 * @property {(name: string, fn: Function) => void} on   model.on with automatic cleanup
 * @property {HTMLElement} root
 * @property {{top: HTMLElement, results: HTMLElement, code?: HTMLElement}} slots
 * @property {{setResults: (results: any) => void, setHistogram: (one: any) => void}} tabs
 *   tabs.js, which shows the `results` count and the `histogram` in the Results tab
 * @property {(lora: LoraPayload) => void} [onLora]   the tree, which marks the rows a LoRA
 *   adapter's pairs touch (rows.js loraNotes)
 */

/**
 * @typedef {object} ResultsTable
 * @property {string} state   "none" | "computing" | "ready" | "stale"
 * @property {{name: string, label: string, type: string}[]} columns
 * @property {Object<string, any[]>} data
 * @property {number} n
 */

/**
 * @typedef {object} LoraPair   one factor pair of the `lora` trait
 * @property {string} base      model key of the weight it modifies
 * @property {string} a_key
 * @property {string} b_key
 * @property {string} factors   "lora_A [4, 32] · lora_B [96, 4], × 2"
 * @property {string} problem   why it is not merged ("" when it is)
 */

/**
 * @typedef {object} LoraPayload   the `lora` trait (payload.lora_payload); {} for other checkpoints
 * @property {string} text          "LoRA adapter, rank 4, alpha 8, targets ...; holds no base weights"
 * @property {string} describe      LoraAdapter.describe()
 * @property {boolean} can_merge
 * @property {string} why_not       why no merge is offered ("" when it is)
 * @property {string} merge_label
 * @property {string} merge_title
 * @property {boolean} merged       the last load merged it (and is not undone)
 * @property {LoraPair[]} pairs     the first ones
 * @property {number} n_pairs
 * @property {string} pairs_label
 */

const RESULTS_PAGE = 50;

/**
 * Row order of a results table: filtered by a lower-case substring of the key, sorted by one
 * column (nulls last whatever the direction). Pure: exported for tests.
 * @param {ResultsTable} table
 * @param {string} query
 * @param {string} sortBy
 * @param {number} dir   1 ascending, -1 descending
 * @returns {number[]}
 */
export function resultsOrder(table, query, sortBy, dir) {
  const d = table.data || {};
  const keys = d.key || [];
  const idx = [];
  const q = (query || "").toLowerCase();
  for (let i = 0; i < keys.length; i++) if (!q || String(keys[i]).toLowerCase().includes(q)) idx.push(i);
  const col = d[sortBy];
  if (col) {
    idx.sort((a, b) => {
      // a change from zero is sent as "inf" (JSON has no infinity): the largest change
      const x = col[a] === "inf" ? Infinity : col[a];
      const y = col[b] === "inf" ? Infinity : col[b];
      const xn = x === null || x === undefined;
      const yn = y === null || y === undefined;
      if (xn || yn) return xn && yn ? a - b : xn ? 1 : -1;
      if (typeof x === "number" && typeof y === "number") return x === y ? a - b : (x - y) * dir;
      const c = String(x).localeCompare(String(y));
      return c === 0 ? a - b : c * dir;
    });
  }
  return idx;
}

/** @param {any} v @param {string} type */
export function fmtCell(v, type) {
  if (v === null || v === undefined) return "";
  if (type === "num") {
    if (v === "inf") return "∞ (from 0)";
    const a = Math.abs(v);
    if (a === 0) return "0";
    return a >= 1e4 || a < 1e-3 ? v.toExponential(2) : v.toPrecision(3);
  }
  if (type === "int") return Number(v).toLocaleString("en-US");
  return String(v);
}

/**
 * Mount the panels. They own the traits they draw (docs/widget-protocol.md); `busy`,
 * `busy_text` and `error` are traits.js's, which draws the busy sign and the error state here
 * through the functions returned.
 * @param {PanelContext} ctx
 * @returns {{drawBusy: (busy: boolean, text: string) => void, drawError: (error: {title?: string, text?: string, fix?: string}) => void}}
 */
export function mountPanels(ctx) {
  const { model, send, on, root, slots } = ctx;
  const button = (text, action, title, extra = "") =>
    h("button", { className: `sdw-btn ${extra}`.trim(), text, title, dataset: { action }, attrs: { type: "button" } });

  // ------------------------------------------------------------------ busy sign
  const busyText = h("span", { className: "sdw-busy-text", dataset: { role: "busy-text" } });
  const busyPanel = h("div", { className: "sdw-busy-panel", dataset: { role: "busy-panel", busy: "false" }, attrs: { role: "status", "aria-live": "polite" } }, [
    h("span", { className: "sdw-spinner", attrs: { "aria-hidden": "true" } }),
    busyText,
  ]);
  /** @param {boolean} busy @param {string} text */
  function drawBusy(busy, text) {
    busyPanel.dataset.busy = String(busy);
    busyText.textContent = busy ? text || "working…" : "";
  }

  // ------------------------------------------------------------------ error state
  const errorTitle = h("div", { className: "sdw-error-title", dataset: { role: "error-title" } });
  const errorText = h("pre", { className: "sdw-error-text", dataset: { role: "error-text" } });
  const errorFix = h("div", { className: "sdw-error-fix", dataset: { role: "error-fix" } });
  const errorPanel = h("div", { className: "sdw-error-state", dataset: { role: "error-state" }, attrs: { role: "alert" } }, [
    errorTitle,
    errorText,
    h("div", { className: "sdw-error-fix-head", text: "How to fix it" }),
    errorFix,
  ]);
  /** The error state; Load is disabled by traits.js. @param {{title?: string, text?: string, fix?: string}} e */
  function drawError(e) {
    const isError = !!(e && e.text);
    root.dataset.state = isError ? "error" : "ok";
    errorPanel.hidden = !isError;
    errorTitle.textContent = e.title || "";
    errorText.textContent = e.text || "";
    errorFix.textContent = e.fix || "";
  }

  // ------------------------------------------------------------------ stale view
  const staleText = h("span", { className: "sdw-stale-text", dataset: { role: "stale-text" } });
  const stalePanel = h("div", { className: "sdw-stale", dataset: { role: "stale" }, attrs: { role: "alert" } }, [
    h("span", { className: "sdw-stale-icon", text: "⟳", attrs: { "aria-hidden": "true" } }),
    staleText,
    button("Refresh", "refresh", "Compare the model as it is now and clear the old statistics", "sdw-btn-primary"),
  ]);
  function drawStale() {
    const s = model.get("stale") || {};
    const isStale = !!(s && s.text);
    root.dataset.stale = String(isStale);
    stalePanel.hidden = !isStale;
    staleText.textContent = s.text || "";
  }

  // ------------------------------------------------------------------ the one-rule banner
  const bannerHead = h("span", { className: "sdw-banner-head", dataset: { role: "banner-head" } });
  const bannerText = h("span", { className: "sdw-banner-text", dataset: { role: "banner-text" } });
  const bannerPanel = h("div", { className: "sdw-banner", dataset: { role: "banner" } }, [
    h("span", { className: "sdw-banner-icon", text: "Fix", attrs: { "aria-hidden": "true" } }),
    h("span", { className: "sdw-banner-body" }, [bannerHead, bannerText]),
    button("Apply", "apply-banner", "Add this rename rule and re-align the tree", "sdw-btn-primary"),
    button("×", "dismiss-banner", "Hide this suggestion", "sdw-btn-icon"),
  ]);
  function drawBanner() {
    const b = model.get("banner") || {};
    bannerPanel.hidden = !(b && b.id);
    bannerPanel.dataset.id = b.id || "";
    bannerHead.textContent = b.head ? `${b.head}: ` : "";
    bannerText.textContent = b.text || "";
    bannerPanel.title = b.label ? `rule: ${b.label}` : "";
  }

  // ------------------------------------------------------------------ a LoRA adapter
  // The checkpoint is a PEFT LoRA adapter (the `lora` trait, payload.lora_payload): what it is,
  // each factor pair beside the model weight it modifies (a button shows that row in the tree),
  // and one button that merges the pairs into the model's weights (the `merge_lora` action:
  // plan(lora="merge") + the transactional load; Undo restores W).
  const loraText = h("span", { className: "sdw-lora-text", dataset: { role: "lora-text" } });
  const loraWhy = h("span", { className: "sdw-lora-why", dataset: { role: "lora-why" } });
  const loraMerge = button("Merge into the model's weights", "merge-lora", "", "sdw-btn-primary");
  const loraList = h("ul", { className: "sdw-lora-list", dataset: { role: "lora-list" } });
  const loraCount = h("summary", { dataset: { role: "lora-count" } });
  const loraPairs = h("details", { className: "sdw-lora-pairs", dataset: { role: "lora-pairs" } }, [loraCount, loraList]);
  const loraPanel = h("div", { className: "sdw-lora", dataset: { role: "lora" }, attrs: { role: "region", "aria-label": "LoRA adapter" } }, [
    h("div", { className: "sdw-lora-head" }, [
      h("span", { className: "sdw-banner-icon", text: "LoRA", attrs: { "aria-hidden": "true" } }),
      h("span", { className: "sdw-lora-body" }, [loraText, loraWhy]),
      loraMerge,
    ]),
    loraPairs,
  ]);
  function drawLora() {
    /** @type {LoraPayload} */
    const l = model.get("lora") || {};
    if (ctx.onLora) ctx.onLora(l);
    loraPanel.hidden = !(l && l.text);
    if (loraPanel.hidden) return;
    loraText.textContent = l.text;
    loraPanel.title = l.describe || "";
    loraWhy.textContent = l.why_not ? ` ${l.why_not}` : "";
    const b = /** @type {HTMLButtonElement} */ (loraMerge);
    b.hidden = !l.can_merge;
    b.disabled = !!l.merged;
    b.textContent = l.merged ? "Merged ✓ (Undo restores the weights)" : l.merge_label || "Merge into the model's weights";
    b.title = l.merge_title || "";
    const pairs = l.pairs || [];
    loraCount.textContent = l.pairs_label || `${pairs.length} factor pairs`;
    loraList.replaceChildren(
      ...pairs.map((p) =>
        h("li", { className: `sdw-lora-pair${p.problem ? " sdw-lora-blocked" : ""}`, dataset: { role: "lora-pair", key: p.base } }, [
          h("button", { className: "sdw-btn sdw-lora-base", text: p.base, title: `Show ${p.base} in the tree`, dataset: { action: "goto-problem", key: p.base }, attrs: { type: "button" } }),
          h("span", { className: "sdw-lora-factors", text: ` ← ${p.factors}`, title: `${p.a_key}\n${p.b_key}` }),
          ...(p.problem ? [h("span", { className: "sdw-lora-problem", text: ` not merged: ${p.problem}` })] : []),
        ]),
      ),
      ...(l.n_pairs > pairs.length ? [h("li", { className: "sdw-muted", text: `… and ${(l.n_pairs - pairs.length).toLocaleString("en-US")} more` })] : []),
    );
  }

  // ------------------------------------------------------------------ weight sets
  const weightSelect = h("select", { dataset: { role: "weight-set" }, attrs: { "aria-label": "Weight set of the checkpoint" } });
  const weightPanel = h("div", { className: "sdw-weight-sets", dataset: { role: "weight-sets" } }, [
    h("span", { className: "sdw-muted", text: "This checkpoint holds several weight sets; showing: " }),
    weightSelect,
  ]);
  function drawWeights() {
    const sets = model.get("weight_sets") || [];
    weightPanel.hidden = sets.length < 2;
    weightSelect.replaceChildren(
      ...sets.map((w) =>
        h("option", { text: `${w.key}${w.n_tensors !== null && w.n_tensors !== undefined ? ` (${w.n_tensors} tensors)` : ""}`, attrs: { value: w.key, selected: !!w.current } }),
      ),
    );
    const cur = sets.find((w) => w.current);
    if (cur) /** @type {HTMLSelectElement} */ (weightSelect).value = cur.key;
  }
  weightSelect.addEventListener("change", () => send({ action: "switch_weights", key: /** @type {HTMLSelectElement} */ (weightSelect).value }));

  // ------------------------------------------------------------------ meta leftovers
  const metaPanel = h("div", { className: "sdw-meta-leftovers", dataset: { role: "meta-leftovers" }, attrs: { role: "alert" } });
  function drawMeta() {
    const m = model.get("meta_leftovers") || {};
    metaPanel.hidden = !(m && m.n);
    metaPanel.replaceChildren(
      ...(m && m.n
        ? [
            h("div", { text: m.text || "" }),
            h("details", {}, [
              h("summary", { text: `the ${m.n} keys` }),
              h("ul", { className: "sdw-keylist" }, (m.keys || []).map((k) => h("li", { text: k }))),
            ]),
          ]
        : []),
    );
  }

  slots.top.append(errorPanel, stalePanel, bannerPanel, loraPanel, weightPanel, metaPanel, busyPanel);

  // ------------------------------------------------------------------ Code tab: model name
  const nameInput = h("input", {
    className: "sdw-model-name",
    attrs: { type: "text", spellcheck: "false", "aria-label": "Model variable name used by the code", size: "14" },
    dataset: { role: "model-name" },
  });
  const nameError = h("span", { className: "sdw-code-error", dataset: { role: "code-error" } });
  const nameBar = h("div", { className: "sdw-model-name-bar", dataset: { role: "model-name-bar" } }, [
    h("label", { className: "sdw-muted" }, ["Model variable: ", nameInput]),
    nameError,
  ]);
  const codeSlot = slots.code || null;
  if (codeSlot) codeSlot.append(nameBar);
  else {
    const pre = root.querySelector("[data-panel=code] [data-role=code]");
    if (pre && pre.parentNode) pre.parentNode.insertBefore(nameBar, pre);
    else (root.querySelector("[data-panel=code]") || slots.top).append(nameBar);
  }
  let nameTimer = 0;
  const commitName = () => {
    clearTimeout(nameTimer);
    const v = /** @type {HTMLInputElement} */ (nameInput).value.trim();
    if (v !== model.get("model_name")) send({ action: "set_model_name", name: v });
  };
  nameInput.addEventListener("input", () => {
    clearTimeout(nameTimer);
    nameTimer = window.setTimeout(commitName, 300);
  });
  nameInput.addEventListener("change", commitName);
  nameInput.addEventListener("keydown", (ev) => {
    ev.stopPropagation(); // typing here never triggers notebook shortcuts
    if (/** @type {KeyboardEvent} */ (ev).key === "Enter") commitName();
  });
  function drawName() {
    const el = /** @type {HTMLInputElement} */ (nameInput);
    if (focusedIn(el) !== el) el.value = model.get("model_name") || "model";
    const err = model.get("code_error") || "";
    nameError.textContent = err;
    el.setAttribute("aria-invalid", String(!!err));
  }

  // ------------------------------------------------------------------ results table
  let sortBy = "rel_change";
  let sortDir = -1;
  let query = "";
  let page = 0;
  /** @type {number[]} */
  let order = [];
  const resState = h("div", { className: "sdw-results-state", dataset: { role: "results-state" } });
  const resSearch = h("input", {
    className: "sdw-search",
    attrs: { type: "search", placeholder: "Search loaded tensors…", "aria-label": "Search loaded tensors", spellcheck: "false" },
    dataset: { role: "results-search" },
  });
  const resCount = h("span", { className: "sdw-muted", dataset: { role: "results-count" } });
  const prevBtn = button("‹ Prev", "page-prev", "Previous page");
  const nextBtn = button("Next ›", "page-next", "Next page");
  const pageText = h("span", { className: "sdw-muted", dataset: { role: "results-page" } });
  const thead = h("thead");
  const tbody = h("tbody");
  const table = h("table", { className: "sdw-results-table", dataset: { role: "results-table" } }, [thead, tbody]);
  const picked = h("div", { className: "sdw-picked", dataset: { role: "picked" } });
  const bnInput = h("input", {
    attrs: { type: "search", list: "", placeholder: "BatchNorm module…", "aria-label": "BatchNorm module to plot", spellcheck: "false" },
    dataset: { role: "bn-picker" },
  });
  const bnList = h("datalist", {});
  const bnListId = uniqueId("sdw-bn-list");
  bnList.id = bnListId;
  bnInput.setAttribute("list", bnListId);
  const bnCount = h("span", { className: "sdw-muted", dataset: { role: "bn-count" } });
  const bnBar = h("div", { className: "sdw-bn-picker-bar", dataset: { role: "bn-picker-bar" } }, [
    h("span", { className: "sdw-muted", text: "BatchNorm module: " }),
    bnInput,
    bnList,
    bnCount,
  ]);
  // search and pager: only when there are rows to search and page through
  const resBar = h("div", { className: "sdw-results-bar" }, [resSearch, resCount, h("span", { className: "sdw-spacer" }), prevBtn, pageText, nextBtn]);
  const resultsBox = h("div", { className: "sdw-results-box", dataset: { role: "results-box" } }, [
    resState,
    resBar,
    h("div", { className: "sdw-results-scroll" }, [table]),
    picked,
    bnBar,
  ]);
  slots.results.append(resultsBox);

  /** @returns {ResultsTable} */
  const results = () => model.get("results") || { state: "none", columns: [], data: {}, n: 0 };

  function recomputeOrder() {
    order = resultsOrder(results(), query, sortBy, sortDir);
    const pages = Math.max(1, Math.ceil(order.length / RESULTS_PAGE));
    if (page >= pages) page = pages - 1;
  }

  function drawTable() {
    const r = results();
    const cols = r.columns || [];
    const state = r.state || "none";
    resultsBox.dataset.state = state;
    resState.textContent =
      state === "computing"
        ? `computing statistics of ${r.n} tensors…`
        : state === "stale"
          ? "stale: the model changed after this load — Refresh (above) to compare it as it is now"
          : state === "none"
            ? "No results yet: load something to see per-tensor changes here."
            : "";
    resState.hidden = state === "ready";
    const hasRows = state === "ready" || state === "stale";
    table.hidden = !hasRows;
    resBar.hidden = !hasRows;
    thead.replaceChildren(
      h("tr", {}, cols.map((c) =>
        h("th", {
          text: c.label + (c.name === sortBy ? (sortDir > 0 ? " ▲" : " ▼") : ""),
          title: `Sort by ${c.label}`,
          dataset: { sort: c.name, type: c.type },
          attrs: { "aria-sort": c.name === sortBy ? (sortDir > 0 ? "ascending" : "descending") : "none", tabindex: "0", scope: "col" },
        }),
      )),
    );
    const d = r.data || {};
    const start = page * RESULTS_PAGE;
    const shown = hasRows ? order.slice(start, start + RESULTS_PAGE) : [];
    const current = model.get("histogram_key") || "";
    tbody.replaceChildren(
      ...shown.map((i) =>
        h("tr", {
          className: `sdw-result-row${d.key[i] === current ? " sdw-result-picked" : ""}`,
          dataset: { role: "result-row", key: d.key[i] },
          title: "Click to plot this tensor before/after",
          attrs: { tabindex: "0" },
        }, cols.map((c) => {
          const v = (d[c.name] || [])[i];
          const cls = c.name === "nonfinite" && v ? "sdw-cell-bad" : c.type === "str" ? "" : "sdw-num";
          return h("td", { className: cls, text: fmtCell(v, c.type), dataset: { col: c.name } });
        })),
      ),
    );
    const pages = Math.max(1, Math.ceil(order.length / RESULTS_PAGE));
    resCount.textContent = hasRows ? `${order.length.toLocaleString("en-US")} of ${(r.n || 0).toLocaleString("en-US")} tensors` : "";
    pageText.textContent = hasRows ? `page ${page + 1} / ${pages}` : "";
    /** @type {HTMLButtonElement} */ (prevBtn).disabled = !hasRows || page === 0;
    /** @type {HTMLButtonElement} */ (nextBtn).disabled = !hasRows || page >= pages - 1;
  }

  function onResults() {
    recomputeOrder();
    drawTable();
    ctx.tabs.setResults(results());
  }

  thead.addEventListener("click", (ev) => {
    const th = /** @type {HTMLElement} */ (ev.target).closest("th[data-sort]");
    if (!th) return;
    const name = /** @type {HTMLElement} */ (th).dataset.sort || "";
    if (name === sortBy) sortDir = -sortDir;
    else {
      sortBy = name;
      sortDir = /** @type {HTMLElement} */ (th).dataset.type === "str" ? 1 : -1;
    }
    page = 0;
    onResults();
  });
  thead.addEventListener("keydown", (ev) => {
    const k = /** @type {KeyboardEvent} */ (ev).key;
    if (k === "Enter" || k === " ") {
      ev.preventDefault();
      ev.stopPropagation();
      /** @type {HTMLElement} */ (ev.target).click();
    }
  });
  let searchTimer = 0;
  resSearch.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = window.setTimeout(() => {
      query = /** @type {HTMLInputElement} */ (resSearch).value.trim();
      page = 0;
      onResults();
    }, 120);
  });
  resSearch.addEventListener("keydown", (ev) => ev.stopPropagation());
  const pickRow = (tr) => {
    const key = tr.dataset.key;
    if (key) send({ action: "histogram", key });
  };
  tbody.addEventListener("click", (ev) => {
    const tr = /** @type {HTMLElement} */ (ev.target).closest("tr[data-role=result-row]");
    if (tr) pickRow(tr);
  });
  tbody.addEventListener("keydown", (ev) => {
    const k = /** @type {KeyboardEvent} */ (ev).key;
    const tr = /** @type {HTMLElement} */ (ev.target).closest("tr[data-role=result-row]");
    if (!tr) return;
    if (k === "Enter" || k === " ") {
      ev.preventDefault();
      ev.stopPropagation();
      pickRow(tr);
    } else if (k === "ArrowDown" || k === "ArrowUp") {
      ev.preventDefault();
      ev.stopPropagation();
      const next = k === "ArrowDown" ? tr.nextElementSibling : tr.previousElementSibling;
      if (next) /** @type {HTMLElement} */ (next).focus();
    }
  });

  function drawPicked() {
    const one = model.get("histogram") || {};
    picked.replaceChildren(
      ...(one && one.src
        ? [
            h("div", { className: "sdw-subhead", text: `Before/after: ${one.key}` }),
            h("img", { attrs: { src: one.src, alt: `before/after histogram of ${one.key}` }, dataset: { role: "picked-histogram", key: one.key } }),
          ]
        : []),
    );
    for (const tr of tbody.querySelectorAll("tr[data-role=result-row]")) {
      tr.classList.toggle("sdw-result-picked", /** @type {HTMLElement} */ (tr).dataset.key === one.key);
    }
    ctx.tabs.setHistogram(one);
  }

  function drawBnPicker() {
    const mods = model.get("bn_modules") || [];
    bnBar.hidden = mods.length === 0;
    bnList.replaceChildren(...mods.map((m) => h("option", { attrs: { value: m } })));
    bnCount.textContent = mods.length ? ` ${mods.length.toLocaleString("en-US")} modules changed; plotted: ${model.get("bn_module") || "—"}` : "";
    const el = /** @type {HTMLInputElement} */ (bnInput);
    if (focusedIn(el) !== el) el.value = model.get("bn_module") || "";
  }
  const commitBn = () => {
    const v = /** @type {HTMLInputElement} */ (bnInput).value.trim();
    const mods = model.get("bn_modules") || [];
    if (mods.includes(v) && v !== model.get("bn_module")) send({ action: "bn_module", module: v });
  };
  bnInput.addEventListener("change", commitBn);
  bnInput.addEventListener("input", () => {
    const v = /** @type {HTMLInputElement} */ (bnInput).value.trim();
    if ((model.get("bn_modules") || []).includes(v)) commitBn();
  });
  bnInput.addEventListener("keydown", (ev) => {
    ev.stopPropagation();
    if (/** @type {KeyboardEvent} */ (ev).key === "Enter") commitBn();
  });

  // ------------------------------------------------------------------ actions of the panels
  root.addEventListener("click", (ev) => {
    const el = /** @type {HTMLElement | null} */ (/** @type {HTMLElement} */ (ev.target).closest("[data-action]"));
    if (!el || !root.contains(el)) return;
    const action = el.dataset.action;
    if (action === "apply-banner") {
      const b = model.get("banner") || {};
      if (b.id) send({ action: "accept_suggestion", id: b.id });
    } else if (action === "dismiss-banner") send({ action: "dismiss_banner" });
    else if (action === "merge-lora") {
      if (!(/** @type {HTMLButtonElement} */ (el).disabled)) send({ action: "merge_lora" });
    }
    else if (action === "refresh") send({ action: "refresh" });
    else if (action === "page-prev" || action === "page-next") {
      page += action === "page-next" ? 1 : -1;
      if (page < 0) page = 0;
      drawTable();
    }
  });

  on("change:stale", drawStale);
  on("change:banner", drawBanner);
  on("change:lora", drawLora);
  on("change:weight_sets", drawWeights);
  on("change:meta_leftovers", drawMeta);
  on("change:model_name", drawName);
  on("change:code_error", drawName);
  on("change:results", onResults);
  on("change:histogram", drawPicked);
  on("change:bn_modules", drawBnPicker);
  on("change:bn_module", drawBnPicker);

  drawStale();
  drawBanner();
  drawLora();
  drawWeights();
  drawMeta();
  drawName();
  onResults();
  drawPicked();
  drawBnPicker();
  return { drawBusy, drawError };
}
