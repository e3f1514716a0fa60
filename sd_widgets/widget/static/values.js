// @ts-check
// sd_widgets Explorer: the value view (issue 18) — what changed, and did it really load? The
// `values` trait (widgets/values_view.py values_payload) carries, per key, the change (an index
// into its legend: NaN appeared / from zero / changed / tiny / identical / not compared), the
// relative L2 change and max |Δ|, and per module a roll-up ("backbone: 0 of 160 tensors
// changed"). Pure part: the index, the colour scale, the texts, the filtered and sorted list.
// DOM part: a badge in every tree row's status cell (rows.js), and the Values panel above the
// tree (Compare button, summary, frozen-BatchNorm call-outs, a filterable most-changed list
// whose rows plot before/after and difference histograms). Text only through textContent.

/**
 * @typedef {object} ChangeItem   one entry of the change legend (from Python)
 * @property {string} change
 * @property {string} label
 * @property {string} icon
 * @property {string} tone   ok | info | warn | error | none
 */

/**
 * @typedef {object} ValueIndex   the value payload, indexed for rows
 * @property {string} state                      "ready" | "stale"
 * @property {ChangeItem[]} legend
 * @property {Map<string, number>} row           key -> row index
 * @property {Object<string, any[]>} rows        columns: key, change, rel, max_abs, cosine, rank
 * @property {Object<string, any[]>} modules     path -> [tensors, changed, max_rel, text]
 * @property {number} tiny                       relative change at most this is "tiny"
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
  return { state: payload.state, legend: payload.legend || [], row, rows, modules: payload.modules || {}, tiny: payload.tiny || 1e-3 };
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
 * What a module row's badge shows: "0 of 160 changed" and the shade of its largest change.
 * @param {ValueIndex|null} vi
 * @param {string} path
 */
export function moduleValueCell(vi, path) {
  if (!vi) return null;
  const m = vi.modules[path];
  if (!m) return null;
  const [tensors, changed, maxRel, text] = m;
  return {
    text: `${changed.toLocaleString("en-US")} of ${tensors.toLocaleString("en-US")} changed`,
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

// ============================================================================ DOM

/**
 * The badge of a tree row (a tensor's change or a module's roll-up), or null.
 * @param {ValueIndex|null|undefined} vi
 * @param {string} path
 * @param {boolean} isModule
 */
function valueBadge(vi, path, isModule) {
  const cell = vi ? (isModule ? moduleValueCell(vi, path) : valueCell(vi, path)) : null;
  if (!cell) return null;
  const el = h("span", {
    className: `sdw-value sdw-tone-${cell.tone}${cell.stale ? " sdw-value-stale" : ""}`,
    text: cell.text,
    title: cell.stale ? `${cell.title}\n(compared before the last load: compare again)` : cell.title,
    dataset: { role: "value", shade: String(cell.shade) },
  });
  el.style.setProperty("--sdw-shade", String(cell.shade));
  return el;
}

const VALUE_LIST_MAX = 50;

/** @param {View} v */
function mountValues(v) {
  const { model, send, on } = v;
  const s = v.s;
  const compareBtn = h("button", { className: "sdw-btn", text: "Compare values", title: "Compare the model's values with the checkpoint's, key by key (streamed)", dataset: { action: "compare_values" }, attrs: { type: "button" } });
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

  function draw() {
    const payload = model.get("values") || {};
    s.values = valueIndex(payload);
    const vi = s.values;
    box.dataset.state = payload.state || "none";
    summary.textContent = !vi ? "" : `${payload.root || ""}${vi.state === "stale" ? " (before the last load: compare again)" : ""}`;
    callouts.replaceChildren(...(vi ? payload.callouts || [] : []).map((/** @type {string} */ t) => h("p", { className: "sdw-tone-warn", text: t, dataset: { role: "values-callout" } })));
    if (vi && payload.callouts && payload.callouts.length) /** @type {HTMLDetailsElement} */ (box).open = true;
    const current = /** @type {HTMLSelectElement} */ (filter).value;
    filter.replaceChildren(
      h("option", { text: "changed (all kinds)", attrs: { value: "nan_appeared,from_zero,large,tiny" } }),
      h("option", { text: "every key", attrs: { value: "" } }),
      ...(vi ? vi.legend : []).map((item) => h("option", { text: `${item.icon} ${item.label}`, attrs: { value: item.change } })),
    );
    /** @type {HTMLSelectElement} */ (filter).value = current || "nan_appeared,from_zero,large,tiny";
    drawList();
    v.fn.refreshTree();
  }

  function drawPlot() {
    const p = model.get("value_plot") || {};
    plot.replaceChildren(...(p.src ? [h("img", { attrs: { src: p.src, alt: `values of ${p.key}: before/after and difference histograms` }, dataset: { role: "values-plot-img", key: p.key } })] : []));
  }

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
  draw();
  drawPlot();
}
