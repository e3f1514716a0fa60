// @ts-check
// sd_widgets Explorer: the value view (issue 18) — what changed, and did it really load? The
// `values` trait (widgets/values_view.py values_payload) carries, per key, the change (an index
// into its legend: NaN appeared / from zero / changed / tiny / identical / not compared), the
// relative L2 change and max |Δ|, and per module a roll-up ("backbone: 0 of 160 tensors
// changed"). Pure part: the index, the colour scale, the texts, the filtered and sorted list.
// DOM part: a badge in every tree row's status cell (rows.js), and the Values panel above the
// tree (Compare button, summary, frozen-BatchNorm call-outs, a filterable most-changed list
// whose rows plot before/after and difference histograms). Text only through textContent.

import { computeVisible } from "./lib.js";
import { h } from "./dom.js";
/** @import { TreeData } from "./lib.js" */
/** @import { View, ViewState } from "./dom.js" */

/**
 * @typedef {object} ChangeItem   one entry of the change legend (from Python)
 * @property {string} change
 * @property {string} label
 * @property {string} icon
 * @property {string} tone   ok | info | warn | error | none
 * @property {boolean} changed  a change of the values (not identical, not "not compared")
 * @property {boolean} compared  both tensors were read (there is something to plot)
 */

/**
 * @typedef {object} ValueIndex   the value payload, indexed for rows
 * @property {string} state                      "ready" | "stale"
 * @property {ChangeItem[]} legend
 * @property {Map<string, number>} row           key -> row index
 * @property {Object<string, any[]>} rows        columns: key, change, rel, max_abs, cosine, rank
 * @property {Object<string, any[]>} modules     path -> [tensors, changed, max_rel, text]
 * @property {number} tiny                       relative change at most this is "tiny"
 * @property {Object<string, string>} frozenBn   module path -> why it looks frozen yet its
 *                                               BatchNorm statistics changed
 * @property {boolean} checkpoints               both sides are checkpoints (no model)
 */

// ============================================================================ pure

/**
 * The value payload indexed by key, or null before any comparison.
 * @param {any} payload
 * @returns {ValueIndex|null}
 */
export function valueIndex(payload) {
  if (!payload || (payload.state !== "ready" && payload.state !== "stale")) return null;
  const rows = payload.rows || { key: [] };
  const row = new Map();
  rows.key.forEach((k, i) => row.set(k, i));
  return {
    state: payload.state,
    legend: payload.legend || [],
    row,
    rows,
    modules: payload.modules || {},
    tiny: payload.tiny || 1e-3,
    frozenBn: payload.frozen_bn || {},
    checkpoints: payload.a_is_model === false,
  };
}

/**
 * A relative change as a number: "inf" (a change from zero) is Infinity, null stays null.
 * @param {any} v
 * @returns {number|null}
 */
export function relNumber(v) {
  if (v === "inf") return Infinity;
  return typeof v === "number" ? v : null;
}

/**
 * Colour intensity of a change, 0..1, on a log scale: `tiny` and below 0.15, 1.0 at a relative
 * change of 1 or more (and from zero); 0 for identical or unmeasured.
 * @param {any} rel
 * @param {number} tiny
 */
export function changeShade(rel, tiny) {
  const r = relNumber(rel);
  if (r === null || r <= 0) return 0;
  if (r === Infinity || r >= 1) return 1;
  const lo = Math.log10(tiny);
  const t = (Math.log10(r) - lo) / (0 - lo); // 0 at tiny, 1 at 1
  return Math.round(Math.min(1, Math.max(0.15, 0.15 + 0.85 * t)) * 100) / 100;
}

/**
 * How a relative change reads: "∞ (from 0)", "3.2e-04", "0.41"; "" when unmeasured.
 * @param {any} rel
 */
export function relText(rel) {
  const r = relNumber(rel);
  if (r === null) return "";
  if (r === Infinity) return "∞ (from 0)";
  if (r === 0) return "0";
  return r < 1e-3 || r >= 1e4 ? r.toExponential(1) : r.toPrecision(2);
}

/**
 * What one tensor row's badge shows: text, tone, shade and hover text; null when the key was
 * not part of the comparison.
 * @param {ValueIndex|null} vi
 * @param {string} key
 */
export function valueCell(vi, key) {
  if (!vi) return null;
  const i = vi.row.get(key);
  if (i === undefined) return null;
  const item = vi.legend[vi.rows.change[i]] || { change: "", label: "?", icon: "?", tone: "none" };
  const rel = vi.rows.rel[i];
  const extra = relText(rel);
  // short, to fit the status column: the number for a change, the label otherwise (both on hover)
  const measured = extra && extra !== "0" && !extra.startsWith("∞");
  const text = `${item.icon} ${measured && item.tone !== "error" ? extra : item.label}`;
  const mx = vi.rows.max_abs[i];
  const title = [`values: ${item.label}`, extra ? `relative L2 change ${extra}` : "", typeof mx === "number" && mx > 0 ? `max |Δ| ${mx.toPrecision(3)}` : ""].filter(Boolean).join("\n");
  return { text, tone: item.tone, change: item.change, shade: changeShade(rel, vi.tiny), title, stale: vi.state === "stale" };
}

/**
 * What a module row's badge shows: "Δ 12/36" (12 of its 36 compared tensors changed; "= 0/160"
 * when none did), short to fit the status column of a narrow tree beside the count chips; the
 * sentence on hover. The shade is its largest change.
 * @param {ValueIndex|null} vi
 * @param {string} path
 */
export function moduleValueCell(vi, path) {
  if (!vi) return null;
  const m = vi.modules[path];
  if (!m) return null;
  const [tensors, changed, maxRel, text] = m;
  return {
    text: `${changed ? "Δ" : "="} ${changed.toLocaleString("en-US")}/${tensors.toLocaleString("en-US")}`,
    tone: changed ? "warn" : "ok",
    shade: changed ? changeShade(maxRel, vi.tiny) : 0,
    title: text + (changed ? `; largest relative change ${relText(maxRel)}` : ""),
    stale: vi.state === "stale",
  };
}

/**
 * Row indices of the value list: those whose change is in `changes` (all when empty) and whose
 * key holds `query`, most changed first (the payload's rank).
 * @param {ValueIndex} vi
 * @param {Set<string>} changes
 * @param {string} query
 * @returns {number[]}
 */
export function valueOrder(vi, changes, query) {
  const q = (query || "").toLowerCase();
  const out = [];
  for (let i = 0; i < vi.rows.key.length; i++) {
    const item = vi.legend[vi.rows.change[i]];
    if (changes.size && !(item && changes.has(item.change))) continue;
    if (q && !String(vi.rows.key[i]).toLowerCase().includes(q)) continue;
    out.push(i);
  }
  return out.sort((a, b) => vi.rows.rank[a] - vi.rows.rank[b]);
}

/**
 * The tree's change filter on top of `base` (the search and status filter's flags, or null): a
 * tensor row passes when its change is one of `changes`; a module when anything below it passes.
 * `base` as it is when no change is chosen or there is no comparison.
 * @param {TreeData} data
 * @param {ValueIndex|null|undefined} vi
 * @param {Set<string>} changes
 * @param {Uint8Array|null} base
 * @returns {Uint8Array|null}
 */
export function valueMatches(data, vi, changes, base) {
  if (!vi || !changes || changes.size === 0) return base;
  const c = data.c;
  const m = new Uint8Array(data.n);
  for (let i = data.n - 1; i >= 0; i--) {
    if (c.t[i] === 1 && (!base || base[i])) {
      const r = vi.row.get(c.path[i]);
      const item = r === undefined ? null : vi.legend[vi.rows.change[r]];
      if (item && changes.has(item.change)) m[i] = 1;
    }
    if (m[i] && c.parent[i] >= 0) m[c.parent[i]] = 1;
  }
  return m;
}

/**
 * Per tree entry, where it sorts by change: a tensor row its rank (0 = most changed), a module
 * the best rank in its subtree; Infinity for rows the comparison does not hold.
 * @param {TreeData} data
 * @param {ValueIndex} vi
 * @returns {Float64Array}
 */
export function changeRanks(data, vi) {
  const c = data.c;
  const ranks = new Float64Array(data.n).fill(Infinity);
  for (let i = data.n - 1; i >= 0; i--) {
    if (c.t[i] === 1) {
      const r = vi.row.get(c.path[i]);
      if (r !== undefined) ranks[i] = vi.rows.rank[r];
    }
    const p = c.parent[i];
    if (p >= 0 && ranks[i] < ranks[p]) ranks[p] = ranks[i];
  }
  return ranks;
}

/**
 * The entries shown, as lib.js computeVisible (collapsed subtrees and filtered rows skipped),
 * with the children of every module ordered by `ranks` (most changed first; ties keep tree
 * order).
 * @param {TreeData} data
 * @param {Uint8Array} expanded
 * @param {Uint8Array|null} matches
 * @param {Float64Array} ranks
 * @returns {Int32Array}
 */
export function sortedVisible(data, expanded, matches, ranks) {
  const c = data.c;
  /** @type {number[]} */
  const out = [];
  /** @param {number} first @param {number} end */
  const visit = (first, end) => {
    const kids = [];
    for (let j = first; j < end; j = c.end[j]) if (!matches || matches[j]) kids.push(j);
    kids.sort((a, b) => (ranks[a] === ranks[b] ? a - b : ranks[a] < ranks[b] ? -1 : 1));
    for (const j of kids) {
      out.push(j);
      if (c.t[j] === 0 && expanded[j]) visit(j + 1, c.end[j]);
    }
  };
  visit(0, data.n);
  return Int32Array.from(out);
}

/**
 * The tree's rows in the order chosen: by change when sorting is on and there is a comparison,
 * else tree order (lib.js computeVisible).
 * @param {ViewState} s
 * @param {Uint8Array} expanded
 * @returns {Int32Array}
 */
export function visibleRows(s, expanded) {
  if (s.sortByChange && s.values) return sortedVisible(s.data, expanded, s.matches, changeRanks(s.data, s.values));
  return computeVisible(s.data, expanded, s.matches);
}

/**
 * The options of the tree's change filter: every change of the legend, and "changed" (every
 * kind of change) first. Values are comma-separated change names ("" = no filter).
 * @param {ChangeItem[]} legend
 * @returns {{value: string, text: string}[]}
 */
export function changeFilterOptions(legend) {
  const changed = legend.filter((item) => item.changed).map((item) => item.change);
  return [
    { value: "", text: "any" },
    { value: changed.join(","), text: "changed (any kind)" },
    ...legend.map((item) => ({ value: item.change, text: `${item.icon} ${item.label}` })),
  ];
}

/**
 * The lines the details of a compared tensor row add: its change and the numbers.
 * @param {ValueIndex} vi
 * @param {string} key
 * @returns {[string, string][]}
 */
export function valueDetailLines(vi, key) {
  const i = vi.row.get(key);
  if (i === undefined) return [];
  const item = vi.legend[vi.rows.change[i]];
  const num = (/** @type {any} */ x) => (typeof x === "number" ? x.toPrecision(4) : "–");
  return [
    ["values", item ? `${item.icon} ${item.label}` : "?"],
    ["relative L2 change", relText(vi.rows.rel[i]) || "–"],
    ["max |Δ|", num(vi.rows.max_abs[i])],
    ["cosine", num(vi.rows.cosine[i])],
  ];
}

// ============================================================================ DOM

/**
 * The badge of a tree row (a tensor's change, or a module's roll-up), or null.
 * @param {ValueIndex|null|undefined} vi
 * @param {string} path
 * @param {boolean} isModule
 * @returns {HTMLElement|null}
 */
export function valueBadge(vi, path, isModule) {
  const cell = vi ? (isModule ? moduleValueCell(vi, path) : valueCell(vi, path)) : null;
  if (!vi || !cell) return null;
  const hint = isModule ? "" : "\nClick (or Enter on the row): before/after and difference histograms";
  const el = h("span", {
    className: `sdw-value sdw-tone-${cell.tone}${cell.stale ? " sdw-value-stale" : ""}`,
    text: cell.text,
    title: (cell.stale ? `${cell.title}\n(compared before the model or the rows changed: compare again)` : cell.title) + hint,
    dataset: { role: "value", shade: String(cell.shade) },
  });
  el.style.setProperty("--sdw-shade", String(cell.shade));
  return el;
}

/**
 * The flag of a module row that looks frozen (every parameter identical) yet whose BatchNorm
 * running statistics changed, with the sentence saying so on hover; null for any other row.
 * Drawn in the module's model-side cell (rows.js), where there is room for it.
 * @param {ValueIndex|null|undefined} vi
 * @param {string} path
 * @returns {HTMLElement|null}
 */
export function frozenBnFlag(vi, path) {
  const why = vi ? vi.frozenBn[path] : undefined;
  if (!why) return null;
  return h("span", { className: `sdw-value sdw-value-frozen sdw-tone-warn${vi && vi.state === "stale" ? " sdw-value-stale" : ""}`, text: "⚠ frozen? BN stats changed", title: why, dataset: { role: "frozen-bn" } });
}

const VALUE_LIST_MAX = 50;

/** @param {View} v */
export function mountValues(v) {
  const { model, send, on } = v;
  const s = v.s;
  const { root, canvas, details, colHeader, onlyProblems } = v.els;
  const compareBtn = h("button", { className: "sdw-btn", text: "Compare values", title: "Compare the values of both sides, key by key (streamed)", dataset: { action: "compare_values" }, attrs: { type: "button" } });
  const summary = h("span", { className: "sdw-muted", dataset: { role: "values-summary" } });
  const callouts = h("div", { className: "sdw-values-callouts", dataset: { role: "values-callouts" } });
  const filter = h("select", { attrs: { "aria-label": "Show changes of kind" }, dataset: { role: "values-filter" } });
  const search = h("input", { className: "sdw-search", attrs: { type: "search", placeholder: "Search compared tensors…", "aria-label": "Search compared tensors", spellcheck: "false" }, dataset: { role: "values-search" } });
  const list = h("ol", { className: "sdw-values-list", dataset: { role: "values-list" } });
  const plot = h("div", { className: "sdw-values-plot", dataset: { role: "values-plot" } });
  const body = h("div", { className: "sdw-values-body" }, [h("div", { className: "sdw-values-bar" }, [filter, search]), list, plot]);
  const box = h("details", { className: "sdw-values", dataset: { role: "values" } }, [
    h("summary", {}, [h("span", { text: "Values: what changed? " }), summary]),
    h("div", { className: "sdw-values-bar" }, [compareBtn]),
    callouts,
    body,
  ]);
  // below the tree and its action bar: the second question, asked once keys line up (above the
  // tree it pushed the problems strip off the first screen at 1280x720)
  v.els.actionsEnd.after(box);
  compareBtn.addEventListener("click", () => send({ action: "compare_values" }));

  // the tree's own filter bar: show rows by change, and sort each module's rows by change
  const changeFilter = h("select", { attrs: { "aria-label": "Show the rows whose values changed so" }, dataset: { role: "change-filter" } });
  const sortBtn = h("button", {
    className: "sdw-btn",
    text: "Most changed first",
    title: "Sort the rows of every module by change of values, most changed first (press again: tree order)",
    dataset: { role: "sort-change" },
    attrs: { type: "button", "aria-pressed": "false" },
  });
  const changeControls = h("span", { className: "sdw-change-controls", dataset: { role: "change-controls" } }, [
    h("label", { className: "sdw-check-label", title: "Show only the rows whose values changed so" }, ["values: ", changeFilter]),
    sortBtn,
  ]);
  changeControls.hidden = true;
  onlyProblems.parentElement.after(changeControls);
  s.changeOn = new Set();
  s.sortByChange = false;

  /** The tree's change controls as the state says (also after a filter was dropped elsewhere). */
  function drawChangeControls() {
    const vi = s.values;
    changeControls.hidden = !vi;
    const want = [...s.changeOn].join(",");
    const options = vi ? changeFilterOptions(vi.legend) : [];
    changeFilter.replaceChildren(...options.map((o) => h("option", { text: o.text, attrs: { value: o.value } })));
    /** @type {HTMLSelectElement} */ (changeFilter).value = options.some((o) => o.value === want) ? want : "";
    sortBtn.setAttribute("aria-pressed", String(s.sortByChange));
  }
  changeFilter.addEventListener("change", () => {
    const value = /** @type {HTMLSelectElement} */ (changeFilter).value;
    s.changeOn = new Set(value ? value.split(",") : []);
    v.fn.applyFilter();
  });
  sortBtn.addEventListener("click", () => {
    s.sortByChange = !s.sortByChange;
    sortBtn.setAttribute("aria-pressed", String(s.sortByChange));
    v.fn.refreshTree();
  });

  function drawList() {
    const vi = s.values;
    body.hidden = !vi;
    if (!vi) return list.replaceChildren();
    const kind = /** @type {HTMLSelectElement} */ (filter).value;
    const order = valueOrder(vi, kind ? new Set(kind.split(",")) : new Set(), /** @type {HTMLInputElement} */ (search).value);
    list.replaceChildren(
      ...order.slice(0, VALUE_LIST_MAX).map((i) => {
        const key = vi.rows.key[i];
        const li = h("li", { className: "sdw-values-row", dataset: { role: "values-row", key }, attrs: { tabindex: "0" }, title: "Click: before/after and difference histograms" }, [h("span", { className: "sdw-values-key", text: key })]);
        const badge = valueBadge(vi, key, false);
        if (badge) li.append(badge);
        return li;
      }),
      ...(order.length > VALUE_LIST_MAX ? [h("li", { className: "sdw-muted", text: `… and ${(order.length - VALUE_LIST_MAX).toLocaleString("en-US")} more (search or filter to narrow)` })] : []),
    );
  }

  /** Column headers and the root say when both sides are checkpoints (nothing to load into). */
  function drawSides(/** @type {any} */ payload) {
    const vi = s.values;
    const two = !!(vi && vi.checkpoints);
    if (two) root.dataset.valuesOf = "checkpoints";
    else delete root.dataset.valuesOf;
    const ckptHead = colHeader.querySelector("[data-role=ckpt-head]");
    const modelHead = colHeader.querySelector("[data-role=model-head]");
    const label = (/** @type {Element|null} */ head, /** @type {string} */ text, /** @type {string} */ title) => {
      if (!head) return;
      const first = head.firstChild;
      if (first && first.nodeType === 3) first.textContent = text;
      /** @type {HTMLElement} */ (head).title = title;
    };
    label(ckptHead, two ? "b (after)" : "Checkpoint", two ? `b: ${payload.b || ""}` : "");
    label(modelHead, two ? "a (before)" : "Model", two ? `a: ${payload.a || ""}` : "");
  }

  function draw() {
    const payload = model.get("values") || {};
    s.values = valueIndex(payload);
    const vi = s.values;
    box.dataset.state = payload.state || "none";
    summary.textContent = !vi ? "" : `${payload.root || ""}${vi.state === "stale" ? " (out of date since a load, a rename or a change to the model: compare again)" : ""}`;
    callouts.replaceChildren(...(vi ? payload.callouts || [] : []).map((/** @type {string} */ t) => h("p", { className: "sdw-tone-warn", text: t, dataset: { role: "values-callout" } })));
    // two checkpoints: the values are what the view is for; else open it for a call-out
    if (vi && ((payload.callouts && payload.callouts.length) || vi.checkpoints)) /** @type {HTMLDetailsElement} */ (box).open = true;
    const current = /** @type {HTMLSelectElement} */ (filter).value;
    const options = vi ? changeFilterOptions(vi.legend) : [];
    filter.replaceChildren(
      h("option", { text: "changed (all kinds)", attrs: { value: options.length ? options[1].value : "" } }),
      h("option", { text: "every key", attrs: { value: "" } }),
      ...(vi ? vi.legend : []).map((item) => h("option", { text: `${item.icon} ${item.label}`, attrs: { value: item.change } })),
    );
    /** @type {HTMLSelectElement} */ (filter).value = current || (options.length ? options[1].value : "");
    if (!vi) {
      s.changeOn = new Set();
      s.sortByChange = false;
    }
    drawSides(payload);
    drawChangeControls();
    drawList();
    requested = "";
    drawValueDetail();
    v.fn.sizeColumns(); // the status column holds the change badges
    v.fn.applyFilter(); // the change filter and sort follow the new values
  }

  function drawPlot() {
    const p = model.get("value_plot") || {};
    plot.replaceChildren(...(p.src ? [h("img", { attrs: { src: p.src, alt: `values of ${p.key}: before/after and difference histograms` }, dataset: { role: "values-plot-img", key: p.key } })] : []));
    drawValueDetail();
  }

  // the details of a compared tensor row (Enter on it, or a click on its change badge) show its
  // numbers and its before/after and difference histograms
  const detailValues = h("div", { className: "sdw-value-detail", dataset: { role: "value-detail" } });
  detailValues.hidden = true;
  details.appendChild(detailValues);
  let requested = "";
  function drawValueDetail() {
    const key = details.hidden ? "" : details.dataset.key || "";
    const vi = s.values;
    const lines = vi && key ? valueDetailLines(vi, key) : [];
    detailValues.hidden = lines.length === 0;
    if (!vi || !lines.length) return detailValues.replaceChildren();
    const item = vi.legend[vi.rows.change[/** @type {number} */ (vi.row.get(key))]];
    const p = model.get("value_plot") || {};
    /** @type {Node} */
    let figure;
    if (!item || !item.compared) figure = h("span", { className: "sdw-muted", text: "not compared: no two tensors to plot" });
    else if (p.src && p.key === key) figure = h("img", { attrs: { src: p.src, alt: `values of ${key}: before/after and difference histograms` }, dataset: { role: "value-detail-img", key } });
    else if (v.s.readOnly) figure = h("span", { className: "sdw-muted", text: "histograms are drawn by the kernel (open the Explorer in a notebook)" });
    else if (vi.state !== "ready") figure = h("span", { className: "sdw-muted", text: "the values changed since they were compared: compare again to plot" });
    else {
      figure = h("span", { className: "sdw-muted", text: "plotting…", dataset: { role: "value-detail-wait" } });
      if (requested !== key) {
        requested = key;
        send({ action: "value_plot", key });
      }
    }
    const items = [];
    for (const [label, value] of lines) items.push(h("span", { className: "sdw-detail-label", text: label }), h("span", { className: "sdw-detail-value", text: value }));
    detailValues.replaceChildren(h("div", { className: "sdw-details-list" }, items), figure);
  }
  const watch = typeof MutationObserver === "function" ? new MutationObserver(() => drawValueDetail()) : null;
  if (watch) {
    watch.observe(details, { attributes: true, attributeFilter: ["data-key", "hidden"] });
    v.cleanups.push(() => watch.disconnect());
  }

  // a click on a tensor row's change badge opens that row's details (with its histograms)
  // instead of toggling its selection; with two checkpoints (nothing to select) a click anywhere
  // on the row does. Captured before the row's own click handler.
  canvas.addEventListener(
    "click",
    (/** @type {MouseEvent} */ ev) => {
      const target = /** @type {HTMLElement} */ (ev.target);
      const onRow = !!(s.values && s.values.checkpoints) && !ev.shiftKey;
      const hit = onRow ? target : target.closest("[data-role=value]");
      const row = hit && /** @type {HTMLElement|null} */ (hit.closest("[data-role=leaf]"));
      if (!row || !row.dataset.key) return;
      const i = s.data.keyIndex.get(row.dataset.key);
      if (i === undefined) return;
      ev.stopPropagation();
      ev.preventDefault();
      s.detailsOpen = i;
      v.fn.drawDetails();
      v.fn.moveFocus(i);
    },
    true,
  );

  list.addEventListener("click", (ev) => {
    const row = /** @type {HTMLElement|null} */ (/** @type {HTMLElement} */ (ev.target).closest("[data-role=values-row]"));
    if (row && row.dataset.key) send({ action: "value_plot", key: row.dataset.key });
  });
  list.addEventListener("keydown", (ev) => {
    const row = /** @type {HTMLElement|null} */ (/** @type {HTMLElement} */ (ev.target).closest("[data-role=values-row]"));
    if (row && row.dataset.key && (ev.key === "Enter" || ev.key === " ")) {
      ev.preventDefault();
      send({ action: "value_plot", key: row.dataset.key });
    }
  });
  filter.addEventListener("change", drawList);
  search.addEventListener("input", drawList);
  on("change:values", draw);
  on("change:value_plot", drawPlot);
  Object.assign(v.fn, { drawChangeControls });
  draw();
  drawPlot();
}
