// sd_widgets/widget/static/lib.js
function pyFixed(v, digits) {
  const out = v.toFixed(digits);
  const exact = Math.abs(v).toFixed(Math.min(100, digits + 60));
  const point = exact.indexOf(".");
  const kept = digits ? exact.slice(0, point + 1 + digits) : exact.slice(0, point);
  if (!/^50*$/.test(exact.slice(point + 1 + digits))) return out;
  return Number(kept.at(-1)) % 2 === 0 ? (v < 0 ? "-" : "") + kept : out;
}
function fmtBytes(n) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let v = Number(n) || 0;
  for (let i = 0; ; i++) {
    const text = pyFixed(v, i === 0 ? 0 : 1);
    if (Math.abs(Number(text)) < 1e3 || i === units.length - 1) return `${text} ${units[i]}`;
    v /= 1e3;
  }
}
function fmtInt(n) {
  return Number(n || 0).toLocaleString("en-US");
}
function fmtShape(s) {
  return s === null || s === void 0 ? "" : `[${s.join(", ")}]`;
}
function dtypeName(p, d) {
  return d === null || d === void 0 ? "" : String((p.dtypes || [])[d] ?? "");
}
function plural(s, n) {
  return n === 1 ? s : `${s}s`;
}
function noTree() {
  return { statuses: [], legend: [], dtypes: [], counts: [], n_keys: 0, n_entries: 0, columns: (
    /** @type {any} */
    {}
  ) };
}
var TreeData = class {
  /** @param {TreePayload|null|undefined} p */
  constructor(p) {
    this.p = p && p.columns ? p : noTree();
    const c = this.c = this.p.columns;
    const n = this.n = this.p.n_entries || (c.t ? c.t.length : 0);
    this.statuses = this.p.statuses || [];
    this.legend = {};
    for (const item of this.p.legend || []) this.legend[item.status] = item;
    this.problem = this.statuses.map((s) => !!(this.legend[s] && this.legend[s].problem));
    this.keyIndex = /* @__PURE__ */ new Map();
    this.moduleIndex = /* @__PURE__ */ new Map();
    for (let i = 0; i < n; i++) {
      if (c.t[i] === 1) this.keyIndex.set(c.path[i], i);
      else this.moduleIndex.set(c.path[i], i);
    }
    this.posInSet = new Int32Array(n);
    this.setSize = new Int32Array(n);
    this.maxDepth = 0;
    const rootKids = [];
    for (let i = 0; i < n; i = c.end[i]) rootKids.push(i);
    this._numberSiblings(rootKids);
    for (let i = 0; i < n; i++) {
      if (c.depth[i] > this.maxDepth) this.maxDepth = c.depth[i];
      if (c.t[i] === 0) {
        const kids = [];
        for (let j = i + 1; j < c.end[i]; j = c.end[j]) kids.push(j);
        this._numberSiblings(kids);
      }
    }
    this.selected = new Uint8Array(n);
    this.selCount = new Int32Array(n);
    this.selectableCount = new Int32Array(n);
    this.adapters = {};
    this.haystack = null;
  }
  /** @param {number[]} kids */
  _numberSiblings(kids) {
    kids.forEach((j, k) => {
      this.posInSet[j] = k + 1;
      this.setSize[j] = kids.length;
    });
  }
  /** @param {number} i */
  isModule(i) {
    return this.c.t[i] === 0;
  }
  /** Status name of tensor entry `i`. @param {number} i */
  statusName(i) {
    return this.statuses[
      /** @type {number} */
      this.c.status[i]
    ];
  }
  /** Whether tensor entry `i` is a problem (its status is, as the legend says). @param {number} i */
  isProblem(i) {
    return this.c.t[i] === 1 && this.problem[
      /** @type {number} */
      this.c.status[i]
    ] === true;
  }
  /**
   * The legend entry of a status name (a stand-in, with no flags, for a status the legend lacks).
   * @param {string} status
   * @returns {LegendItem}
   */
  legendOf(status) {
    return this.legend[status] || { status, icon: "?", label: status, plural: status, description: "" };
  }
  /**
   * "12 matches", "1 shape mismatch", ... for the non-zero entries of a per-status counts array
   * (a module's `counts`, the payload's totals), in the statuses' order.
   * @param {number[]} counts
   * @returns {string[]}
   */
  countPhrases(counts) {
    const parts = [];
    counts.forEach((n, s) => {
      if (!n) return;
      const item = this.legendOf(this.statuses[s]);
      parts.push(`${fmtInt(n)} ${n === 1 ? item.label : item.plural}`);
    });
    return parts;
  }
  /** The legend entry of tensor entry `i`. @param {number} i */
  item(i) {
    return this.legendOf(this.statusName(i));
  }
  /** @param {number} i */
  hasAdapter(i) {
    return Object.prototype.hasOwnProperty.call(this.adapters, this.c.path[i]);
  }
  /**
   * Selectable now, as Python decided it (`payload.row_selectable`): the payload's `loadable`, or
   * a key of the `adapters` trait (Python keeps only adapters that make their row selectable).
   * @param {number} i
   */
  selectable(i) {
    return this.c.t[i] === 1 && (this.c.loadable[i] === 1 || this.hasAdapter(i));
  }
  /** Selectable after a gesture on the row itself (an adaptable row gets its adapter). @param {number} i */
  actionable(i) {
    return this.selectable(i) || this.c.t[i] === 1 && this.c.adaptable[i] === 1;
  }
  /**
   * Take a selection (row keys) and adapters; recompute per-module counts.
   * @param {string[]|null|undefined} keys
   * @param {Adapters|null|undefined} adapters
   */
  setSelection(keys, adapters) {
    this.adapters = adapters || {};
    this.selected.fill(0);
    for (const k of keys || []) {
      const i = this.keyIndex.get(k);
      if (i !== void 0) this.selected[i] = 1;
    }
    const c = this.c;
    this.selCount.fill(0);
    this.selectableCount.fill(0);
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
  /** "all" | "some" | "none" | "na" (nothing selectable below). @param {number} i */
  moduleState(i) {
    const a = this.selectableCount[i];
    const s = this.selCount[i];
    if (a === 0) return "na";
    if (s === 0) return "none";
    return s >= a ? "all" : "some";
  }
  /**
   * The tri-state `aria-checked` of an entry: "true" | "false" | "mixed", or null when the row
   * cannot be checked at all (then it carries no aria-checked).
   * @param {number} i
   */
  ariaChecked(i) {
    if (this.c.t[i] === 0) {
      const st = this.moduleState(i);
      return st === "na" ? null : st === "all" ? "true" : st === "some" ? "mixed" : "false";
    }
    return this.selected[i] === 1 ? "true" : "false";
  }
  /** Tensor entries whose status is a problem, in tree order. */
  problemEntries() {
    const out = [];
    for (let i = 0; i < this.n; i++) if (this.isProblem(i)) out.push(i);
    return out;
  }
  /**
   * Per-entry match flags for a filter; null when nothing is filtered. A module matches when
   * anything below it does.
   * @param {string} query  lower-case substring of the key, checkpoint key or model key
   * @param {Set<number>} statusOn  status indices shown
   * @returns {Uint8Array|null}
   */
  computeMatches(query, statusOn) {
    const allStatuses2 = statusOn.size >= this.statuses.length;
    if (!query && allStatuses2) return null;
    const c = this.c;
    if (query && !this.haystack) {
      const hay2 = new Array(this.n);
      for (let i = 0; i < this.n; i++) {
        if (c.t[i] !== 1) continue;
        let s = c.path[i];
        if (c.ckpt_key[i]) s += "\n" + c.ckpt_key[i];
        if (c.model_key[i]) s += "\n" + c.model_key[i];
        hay2[i] = s.toLowerCase();
      }
      this.haystack = hay2;
    }
    const hay = this.haystack;
    const m = new Uint8Array(this.n);
    for (let i = this.n - 1; i >= 0; i--) {
      if (c.t[i] === 1) {
        const okStatus = allStatuses2 || statusOn.has(
          /** @type {number} */
          c.status[i]
        );
        const okQuery = !query || hay !== null && hay[i].includes(query);
        if (okStatus && okQuery) m[i] = 1;
      }
      if (m[i] && c.parent[i] >= 0) m[c.parent[i]] = 1;
    }
    return m;
  }
};
function computeVisible(data, expanded, matches) {
  const c = data.c;
  const out = [];
  for (let i = 0; i < data.n; ) {
    if (matches && !matches[i]) {
      i = c.end[i];
      continue;
    }
    out.push(i);
    i = c.t[i] === 0 && !expanded[i] ? c.end[i] : i + 1;
  }
  return Int32Array.from(out);
}
function initialExpansion(data, opts = {}) {
  const { smallTree = 250, maxRows = 120, revealProblems = 3 } = opts;
  const c = data.c;
  const n = data.n;
  let expanded = new Uint8Array(n);
  if (n <= smallTree) {
    for (let i = 0; i < n; i++) if (c.t[i] === 0) expanded[i] = 1;
    return expanded;
  }
  for (let d = 0; d <= data.maxDepth; d++) {
    const trial = expanded.slice();
    for (let i = 0; i < n; i++) if (c.t[i] === 0 && c.depth[i] === d) trial[i] = 1;
    if (computeVisible(data, trial, null).length > maxRows) break;
    expanded = trial;
  }
  const vis = computeVisible(data, expanded, null);
  if (!vis.some((i) => data.isProblem(i))) {
    for (const i of data.problemEntries().slice(0, revealProblems)) expandTo(data, expanded, i);
  }
  return expanded;
}
function expandTo(data, expanded, i) {
  for (let p = data.c.parent[i]; p >= 0; p = data.c.parent[p]) expanded[p] = 1;
}
function ancestors(data, i) {
  const out = [];
  for (let p = i >= 0 && i < data.n ? data.c.parent[i] : -1; p >= 0; p = data.c.parent[p]) out.push(p);
  return out.reverse();
}
function breadcrumb(data, top) {
  if (top < 0 || top >= data.n) return [];
  return ancestors(data, top).map((p) => data.c.name[p]);
}
function relativeName(path, other) {
  const leaf = path.slice(path.lastIndexOf(".") + 1);
  if (!other || other === path) return { text: leaf, note: "", renamed: false };
  if (other.endsWith("." + path)) return { text: leaf, note: other.slice(0, other.length - path.length), renamed: true };
  if (path.endsWith("." + other)) return { text: leaf, note: `\u2212${path.slice(0, path.length - other.length)}`, renamed: true };
  const a = path.split(".");
  const b = other.split(".");
  let k = 0;
  while (k < a.length - 1 && k < b.length - 1 && a[k] === b[k]) k++;
  return { text: b.slice(k).join("."), note: "", renamed: true };
}
function detailLines(data, i, extra = {}) {
  const c = data.c;
  const p = data.p;
  const out = [];
  if (i < 0 || i >= data.n) return out;
  const two = extra.checkpoints === true;
  if (c.t[i] === 0) {
    out.push(["Module", c.path[i]]);
    if (c.module_type[i]) out.push(["Type", String(c.module_type[i])]);
    out.push(["Keys below", data.countPhrases(c.counts[i] || []).join(", ") || "none"]);
    if (!two) out.push(["Selected", `${fmtInt(data.selCount[i])} of ${fmtInt(data.selectableCount[i])} selectable`]);
    out.push(["Size", `${fmtBytes(c.nbytes[i] || 0)}, ${fmtInt(c.numel[i])} elements`]);
    return out;
  }
  const status = data.statusName(i);
  const item = data.legendOf(status);
  const key = c.path[i];
  out.push(["Key", key]);
  const hasCkpt = (c.sides[i] & 1) !== 0;
  const hasModel = (c.sides[i] & 2) !== 0;
  const [ckptSide, modelSide] = two ? ["b (after)", "a (before)"] : ["Checkpoint", "Model"];
  out.push([two ? "b key" : "Checkpoint key", hasCkpt ? c.ckpt_key[i] || key : "\u2014 (absent)"]);
  out.push([two ? "a key" : "Model key", hasModel ? c.model_key[i] || key : "\u2014 (absent)"]);
  out.push(["Status", `${item.icon} ${item.label}${item.description && !two ? ` \u2014 ${item.description}` : ""}`]);
  if (hasCkpt) out.push([ckptSide, `${fmtShape(c.ckpt_shape[i])} ${dtypeName(p, c.ckpt_dtype[i])} \xB7 ${fmtBytes(c.nbytes[i] || 0)}`]);
  if (hasModel) out.push([modelSide, `${fmtShape(c.model_shape[i])} ${dtypeName(p, c.model_dtype[i])}${c.kind[i] ? ` \xB7 ${c.kind[i]}` : ""}`]);
  if (item.cast && !two) out.push(["Cast", castText(data, i)]);
  if (c.reason[i] && !two) out.push(["Why not as is", String(c.reason[i])]);
  if (c.adaptable[i] && !two) out.push(["Adapter", data.hasAdapter(i) ? `loads through '${data.adapters[key]}'` : "an adapter can load it; the reason says which and what it does (Space or the adapt button)"]);
  const tied = c.tied[i];
  if (tied && tied.length) out.push(["Tied with", tied.join(", ")]);
  const skip = extra.skipped && extra.skipped.get(key);
  if (!two) out.push(["Selected", data.selected[i] ? skip ? `yes, but not loaded: ${skip}` : "yes" : data.actionable(i) ? "no" : "cannot be selected"]);
  return out;
}
function rangeGesture(data, visible, expanded, matches, from, to, select) {
  const c = data.c;
  let a = visible.indexOf(from);
  let b = visible.indexOf(to);
  if (a < 0 || b < 0) return null;
  if (a > b) [a, b] = [b, a];
  const keys = [];
  const modules = [];
  for (let q = a; q <= b; q++) {
    const j = visible[q];
    if (c.t[j] === 1) keys.push(c.path[j]);
    else if (!expanded[j]) {
      if (!matches) modules.push(c.path[j]);
      else for (let k = j + 1; k < c.end[j]; k++) if (c.t[k] === 1 && matches[k]) keys.push(c.path[k]);
    }
  }
  return { keys, modules, select };
}
function typeahead(ctx, pos, ch) {
  const { data, visible } = ctx;
  const want = ch.toLowerCase();
  for (let k = 1; k <= visible.length; k++) {
    const j = visible[(pos + k) % visible.length];
    if (data.c.name[j].toLowerCase().startsWith(want)) return j;
  }
  return -1;
}
function navigate(state, ev, ctx) {
  const { data, visible, expanded, matches } = ctx;
  const c = data.c;
  const none = { state, effects: [], handled: false };
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return none;
  if (visible.length === 0) return { state, effects: [], handled: ev.key !== "Tab" && ev.key !== "Escape" };
  let pos = state.focus >= 0 ? visible.indexOf(state.focus) : -1;
  if (pos < 0) pos = 0;
  const cur = visible[pos];
  const last = visible.length - 1;
  const page = Math.max(1, ctx.pageRows || 10);
  const moveTo = (target) => {
    if (ev.shiftKey) {
      const anchor = state.anchor >= 0 && visible.indexOf(state.anchor) >= 0 ? state.anchor : cur;
      const g = rangeGesture(data, visible, expanded, matches, anchor, target, true);
      return { state: { focus: target, anchor }, effects: g ? [{ type: "range", ...g }] : [], handled: true };
    }
    return { state: { focus: target, anchor: target }, effects: [], handled: true };
  };
  switch (ev.key) {
    case "ArrowDown":
      return moveTo(visible[Math.min(last, pos + 1)]);
    case "ArrowUp":
      return moveTo(visible[Math.max(0, pos - 1)]);
    case "Home":
      return moveTo(visible[0]);
    case "End":
      return moveTo(visible[last]);
    case "PageDown":
      return moveTo(visible[Math.min(last, pos + page)]);
    case "PageUp":
      return moveTo(visible[Math.max(0, pos - page)]);
    case "ArrowRight": {
      if (ev.shiftKey || c.t[cur] !== 0) return { state, effects: [], handled: true };
      if (!expanded[cur]) return { state: { ...state, focus: cur }, effects: [{ type: "expand", index: cur, value: 1 }], handled: true };
      const next = visible[pos + 1];
      if (next !== void 0 && c.parent[next] === cur) return { state: { focus: next, anchor: next }, effects: [], handled: true };
      return { state, effects: [], handled: true };
    }
    case "ArrowLeft": {
      if (ev.shiftKey) return { state, effects: [], handled: true };
      if (c.t[cur] === 0 && expanded[cur]) return { state: { ...state, focus: cur }, effects: [{ type: "expand", index: cur, value: 0 }], handled: true };
      const parent = c.parent[cur];
      if (parent >= 0 && visible.indexOf(parent) >= 0) return { state: { focus: parent, anchor: parent }, effects: [], handled: true };
      return { state, effects: [], handled: true };
    }
    case " ":
    case "Spacebar": {
      const next = { focus: cur, anchor: cur };
      if (ctx.checkpoints) return { state: next, effects: [{ type: "announce", text: "Two checkpoints compared: nothing to select or load (Enter shows a row's details)" }], handled: true };
      if (c.t[cur] === 0) {
        if (data.moduleState(cur) === "na") return { state: next, effects: [{ type: "announce", text: `${c.path[cur]}: nothing below can be loaded` }], handled: true };
        return { state: next, effects: [{ type: "toggle", modules: [c.path[cur]] }], handled: true };
      }
      if (data.selectable(cur)) return { state: next, effects: [{ type: "toggle", keys: [c.path[cur]] }], handled: true };
      if (c.adaptable[cur] === 1) return { state: next, effects: [{ type: "adapt", key: c.path[cur], adapter: "auto" }], handled: true };
      return { state: next, effects: [{ type: "announce", text: `${c.path[cur]} cannot be selected: ${c.reason[cur] || data.item(cur).label}` }], handled: true };
    }
    case "Enter":
      if (ev.shiftKey) return none;
      return { state: { ...state, focus: cur }, effects: [{ type: "details", index: cur }], handled: true };
    case "/":
      return { state, effects: [{ type: "search" }], handled: true };
    case "Tab":
    case "Escape":
      return none;
    default:
      if (ev.key.length === 1 && !ev.shiftKey && /\S/.test(ev.key)) {
        const j = typeahead(ctx, pos, ev.key);
        return { state: j >= 0 ? { focus: j, anchor: j } : { ...state, focus: cur }, effects: [], handled: true };
      }
      return { state, effects: [], handled: ev.key.length === 1 };
  }
}
function settleFocus(data, visible, focus) {
  if (visible.length === 0) return -1;
  if (focus >= 0 && focus < data.n) {
    if (visible.indexOf(focus) >= 0) return focus;
    for (let p = data.c.parent[focus]; p >= 0; p = data.c.parent[p]) if (visible.indexOf(p) >= 0) return p;
  }
  return visible[0];
}
function columnWidths(data, measure, opts = {}) {
  const { indent = 12, modelIndent = indent, gap = 6, minName = 48, maxName = 220, minSide = 220, minStatus = 150, maxType = 72, noteW = 28, sharedNote = "", lora = null, valueText = null } = opts;
  const c = data.c;
  const p = data.p;
  let ckpt = minSide;
  let model = minSide;
  let status = minStatus;
  const cw = { name: measure("0000000000", "name") / 10, meta: measure("0000000000", "meta") / 10 };
  const cache = /* @__PURE__ */ new Map();
  const m = (s, kind) => {
    if (!s) return 0;
    if (kind !== "ui") return s.length * cw[kind];
    let w = cache.get(s);
    if (w === void 0) cache.set(s, w = measure(s, kind));
    return w;
  };
  const bytesW = /* @__PURE__ */ new Map();
  const wBytes = (n) => {
    let w = bytesW.get(n);
    if (w === void 0) bytesW.set(n, w = m(fmtBytes(n), "meta"));
    return w;
  };
  const wShape = (sh) => {
    if (!sh) return 0;
    let len = 2 + Math.max(0, sh.length - 1) * 2;
    for (const d of sh) len += String(d).length;
    return len * cw.meta;
  };
  const dtypeW = (p.dtypes || []).map((d) => m(String(d), "meta"));
  const wDtype = (d) => d === null || d === void 0 ? 0 : dtypeW[d] || 0;
  const statusW = data.statuses.map((st) => {
    const item = data.legendOf(st);
    return 6 + 11 + m(`${item.icon} ${item.label}`, "ui") + gap;
  });
  const skipW = data.statuses.map((st) => data.legendOf(st).loadable ? m("not loaded", "meta") + 8 + gap : 0);
  const adaptW = (i) => m(data.hasAdapter(i) ? `${data.adapters[c.path[i]]} \u2713` : "adapt", "meta") + 12 + gap;
  const valueW = (i, isModule) => {
    const text = valueText ? valueText(c.path[i], isModule) : null;
    return text ? m(text, "ui") + 14 + gap : 0;
  };
  for (let i = 0; i < data.n; i++) {
    const pad = 6 + c.depth[i] * indent + 4;
    const mpad = 6 + c.depth[i] * modelIndent + 4;
    if (c.t[i] === 0) {
      const nameW = Math.min(maxName, Math.max(minName, m(c.name[i], "name"))) + 14 + gap;
      const typeW = c.module_type[i] ? Math.min(maxType, m(String(c.module_type[i]), "meta")) + gap : 0;
      const sizeW = wBytes(c.nbytes[i] || 0) + gap;
      ckpt = Math.max(ckpt, pad + nameW + typeW + sizeW);
      model = Math.max(model, mpad + nameW + typeW);
      const counts = c.counts[i] || [];
      let kinds = 0;
      for (let s = 0; s < counts.length; s++) if (counts[s] && data.problem[s]) kinds++;
      let w = 6;
      for (let s = 0; s < counts.length; s++) {
        const n = counts[s];
        if (!n) continue;
        const item = data.legendOf(data.statuses[s]);
        const text = countChipText(item, n, !data.problem[s] || kinds > 1);
        w += m(text, "meta") + 10 + gap;
      }
      status = Math.max(status, w + valueW(i, true));
      continue;
    }
    const st = (
      /** @type {number} */
      c.status[i]
    );
    const sw = statusW[st] + Math.max(skipW[st], valueW(i, false)) + (c.adaptable[i] ? adaptW(i) : 0) + (lora && lora.has(c.path[i]) ? m("LoRA", "meta") + 8 + gap : 0);
    if (sw > status) status = sw;
    const sides = c.sides[i];
    if (sides & 1) {
      const rel = c.ckpt_key[i] ? relativeName(c.path[i], c.ckpt_key[i]) : null;
      let w = pad + Math.min(maxName, Math.max(minName, m(rel ? rel.text : c.name[i], "name"))) + gap;
      if (rel && rel.note && rel.note !== sharedNote) w += Math.min(noteW, m(rel.note, "meta") + 8) + gap;
      w += wShape(c.ckpt_shape[i]) + gap + wDtype(c.ckpt_dtype[i]) + gap + wBytes(c.nbytes[i] || 0) + gap;
      if (w > ckpt) ckpt = w;
    }
    if (sides & 2) {
      const rel = c.model_key[i] ? relativeName(c.path[i], c.model_key[i]) : null;
      let w = mpad + Math.min(maxName, Math.max(minName, m(rel ? rel.text : c.name[i], "name"))) + gap;
      if (rel && rel.note) w += Math.min(noteW, m(rel.note, "meta") + 8) + gap;
      w += wShape(c.model_shape[i]) + gap + wDtype(c.model_dtype[i]) + gap;
      if (c.tied[i]) w += m("tied", "meta") + 8 + gap;
      if (w > model) model = w;
    }
  }
  return { ckpt: Math.ceil(ckpt), status: Math.ceil(status), model: Math.ceil(model) };
}
function fitColumns(want, available, opts = {}) {
  const { minSide = 150, minStatus = 110 } = opts;
  const total = want.ckpt + want.status + want.model;
  if (!(available > 0) || total <= available) return { ...want, fit: "full" };
  const lowSide = Math.min(minSide, want.ckpt, want.model);
  const lowStatus = Math.min(minStatus, want.status);
  if (2 * lowSide + lowStatus > available) {
    return { ckpt: Math.min(want.ckpt, minSide), status: lowStatus, model: Math.min(want.model, minSide), fit: "scroll" };
  }
  const status = Math.max(lowStatus, Math.min(want.status, available - 2 * lowSide));
  const rest = available - status;
  let ckpt = Math.floor(rest * want.ckpt / (want.ckpt + want.model));
  ckpt = Math.max(lowSide, Math.min(ckpt, rest - lowSide, want.ckpt));
  const model = Math.min(want.model, rest - ckpt);
  return { ckpt, status, model, fit: "narrow" };
}
function countChipText(item, n, short) {
  return short ? `${item.icon} ${n}` : `${item.icon} ${n} ${n === 1 ? item.label : item.plural}`;
}
function castText(data, i) {
  const c = data.c;
  return `loads, cast from ${dtypeName(data.p, c.ckpt_dtype[i])} to ${dtypeName(data.p, c.model_dtype[i])}`;
}
function problemPhrase(n) {
  return `${fmtInt(n)} ${plural("problem", n)}`;
}
function skippedKeys(pv) {
  const out = /* @__PURE__ */ new Map();
  if (!pv) return out;
  for (const [k, why] of pv.skipped || []) out.set(k, String(why));
  for (const k of pv.skipped_keys || []) if (!out.has(k)) out.set(k, "skipped by the plan (see the Selection tab)");
  return out;
}
var decodedTrees = /* @__PURE__ */ new WeakMap();
function decodeTree(value) {
  if (value && typeof value === "object" && (ArrayBuffer.isView(value) || value instanceof ArrayBuffer)) {
    const key = (
      /** @type {object} */
      value
    );
    let out = decodedTrees.get(key);
    if (out === void 0) {
      const bytes = value instanceof ArrayBuffer ? new Uint8Array(value) : new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
      out = JSON.parse(new TextDecoder().decode(bytes));
      decodedTrees.set(key, out);
    }
    return out;
  }
  return value || {};
}

// sd_widgets/widget/static/dom.js
var ROW_H = 24;
var INDENT = 12;
var MODEL_INDENT = 6;
var CHECK_W = 26;
var ROW_BORDER_W = 3;
var FULL_RENDER_MAX = 600;
var OVERSCAN = 30;
var VIEWPORT_FALLBACK_H = 440;
var MAX_PROBLEM_CHIPS = 6;
function uniqueId(prefix) {
  const bytes = new Uint8Array(8);
  globalThis.crypto.getRandomValues(bytes);
  return `${prefix}-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}
function h(tag, props = {}, children = []) {
  const el = document.createElement(tag);
  if (props.className) el.className = props.className;
  if (props.text !== void 0 && props.text !== null) el.textContent = String(props.text);
  if (props.title) el.title = String(props.title);
  if (props.dataset) {
    for (const [k, v] of Object.entries(props.dataset)) {
      if (v !== void 0 && v !== null) el.dataset[k] = String(v);
    }
  }
  if (props.attrs) {
    for (const [k, v] of Object.entries(props.attrs)) {
      if (v !== void 0 && v !== null && v !== false) el.setAttribute(k, v === true ? "" : String(v));
    }
  }
  if (props.on) for (const [ev, fn] of Object.entries(props.on)) el.addEventListener(ev, fn);
  for (const c of children) {
    if (c === null || c === void 0 || c === false) continue;
    el.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
  }
  return el;
}
function focusedIn(el) {
  const root = (
    /** @type {Document|ShadowRoot} */
    el.getRootNode()
  );
  return "activeElement" in root ? root.activeElement : document.activeElement;
}
function textMeasurer(root) {
  const fallback = { name: 7.3, meta: 6.7, ui: 7 };
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
function button(text, action, titleText, extra = {}) {
  return h("button", { className: `sdw-btn ${extra.className || ""}`.trim(), text, title: titleText, dataset: { action }, attrs: { type: "button" } });
}

// sd_widgets/widget/static/actionbar.js
var OUTPUT_BOX = /(^|\s)jp-OutputArea(-output|-child)?(\s|$)/;
function isScrollContainer(overflowX, overflowY) {
  const clips = (v) => v !== "visible" && v !== "clip";
  return clips(overflowX) || clips(overflowY);
}
function hostsToUnclip(chain) {
  const out = [];
  for (let k = 0; k < chain.length; k++) {
    const b = chain[k];
    if (b.held) {
      out.push(k);
      continue;
    }
    if (!isScrollContainer(b.overflowX, b.overflowY)) continue;
    if (b.inScrolledOutput || !(b.isHost || OUTPUT_BOX.test(b.className))) break;
    out.push(k);
  }
  return out;
}
function treeMaxHeight({ avail, bar, head, rowH, fallback, margin = 24 }) {
  return Math.floor(Math.max(6 * rowH + head, Math.min(fallback, avail - bar - margin)));
}
function scrollIntoNotebook(row, scroller, barTop) {
  const bottom = Math.min(scroller.bottom, barTop);
  if (row.top < scroller.top) return row.top - scroller.top;
  if (row.bottom > bottom) return Math.min(row.bottom - bottom, row.top - scroller.top);
  return 0;
}
function scrollerOf(node) {
  for (let e = node.parentElement; e; e = e.parentElement) {
    const oy = getComputedStyle(e).overflowY;
    if ((oy === "auto" || oy === "scroll") && e.scrollHeight > e.clientHeight + 1) return e;
  }
  return null;
}
function unclipHosts(root, host) {
  const els = [];
  const chain = [];
  for (let e = root.parentElement; e && e !== document.body && e !== document.documentElement; e = e.parentElement) {
    const cs = getComputedStyle(e);
    els.push(e);
    chain.push({ className: String(e.className), overflowX: cs.overflowX, overflowY: cs.overflowY, isHost: e === host, inScrolledOutput: !!e.closest(".jp-mod-outputsScrolled"), held: e.dataset.sdwUnclip !== void 0 });
  }
  const undo = hostsToUnclip(chain).map((k) => {
    const e = els[k];
    if (e.dataset.sdwUnclip === void 0) {
      e.dataset.sdwUnclipBefore = JSON.stringify([e.style.overflowX, e.style.overflowY, e.style.minWidth]);
      e.style.overflowX = "clip";
      e.style.overflowY = "visible";
      e.style.minWidth = "0";
    }
    e.dataset.sdwUnclip = String(Number(e.dataset.sdwUnclip || 0) + 1);
    return () => {
      const left = Number(e.dataset.sdwUnclip || 1) - 1;
      if (left > 0) {
        e.dataset.sdwUnclip = String(left);
        return;
      }
      const before = JSON.parse(e.dataset.sdwUnclipBefore || '["", "", ""]');
      [e.style.overflowX, e.style.overflowY, e.style.minWidth] = before;
      delete e.dataset.sdwUnclip;
      delete e.dataset.sdwUnclipBefore;
    };
  });
  return () => undo.forEach((fn) => fn());
}
function watchStuck(bar, sentinel) {
  if (typeof IntersectionObserver !== "function") return () => {
  };
  const io = new IntersectionObserver(() => {
    bar.dataset.stuck = String(sentinel.getBoundingClientRect().top > bar.getBoundingClientRect().bottom + 1);
  });
  io.observe(sentinel);
  io.observe(bar);
  return () => io.disconnect();
}
function mountActionBar(v) {
  const { root, viewport, treeHead, actions, actionsEnd } = v.els;
  let fitQueued = false;
  let unclip = null;
  function fitTree() {
    fitQueued = false;
    if (!root.isConnected) return;
    if (!unclip) unclip = unclipHosts(root, v.el);
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
  v.cleanups.push(() => window.removeEventListener("resize", queueStick));
  v.cleanups.push(watchStuck(actions, actionsEnd));
  v.cleanups.push(() => unclip && unclip());
  v.fn.queueStick = queueStick;
}

// sd_widgets/widget/static/values.js
function valueIndex(payload) {
  if (!payload || payload.state !== "ready" && payload.state !== "stale") return null;
  const rows = payload.rows || { key: [] };
  const row = /* @__PURE__ */ new Map();
  rows.key.forEach((k, i) => row.set(k, i));
  return {
    state: payload.state,
    legend: payload.legend || [],
    row,
    rows,
    modules: payload.modules || {},
    tiny: payload.tiny || 1e-3,
    frozenBn: payload.frozen_bn || {},
    checkpoints: payload.a_is_model === false
  };
}
function relNumber(v) {
  if (v === "inf") return Infinity;
  return typeof v === "number" ? v : null;
}
function changeShade(rel, tiny) {
  const r = relNumber(rel);
  if (r === null || r <= 0) return 0;
  if (r === Infinity || r >= 1) return 1;
  const lo = Math.log10(tiny);
  const t = (Math.log10(r) - lo) / (0 - lo);
  return Math.round(Math.min(1, Math.max(0.15, 0.15 + 0.85 * t)) * 100) / 100;
}
function relText(rel) {
  const r = relNumber(rel);
  if (r === null) return "";
  if (r === Infinity) return "\u221E (from 0)";
  if (r === 0) return "0";
  return r < 1e-3 || r >= 1e4 ? r.toExponential(1) : r.toPrecision(2);
}
function valueCell(vi, key) {
  if (!vi) return null;
  const i = vi.row.get(key);
  if (i === void 0) return null;
  const item = vi.legend[vi.rows.change[i]] || { change: "", label: "?", icon: "?", tone: "none" };
  const rel = vi.rows.rel[i];
  const extra = relText(rel);
  const measured = extra && extra !== "0" && !extra.startsWith("\u221E");
  const text = `${item.icon} ${measured && item.tone !== "error" ? extra : item.label}`;
  const mx = vi.rows.max_abs[i];
  const title = [`values: ${item.label}`, extra ? `relative L2 change ${extra}` : "", typeof mx === "number" && mx > 0 ? `max |\u0394| ${mx.toPrecision(3)}` : ""].filter(Boolean).join("\n");
  return { text, tone: item.tone, change: item.change, shade: changeShade(rel, vi.tiny), title, stale: vi.state === "stale" };
}
function moduleValueCell(vi, path) {
  if (!vi) return null;
  const m = vi.modules[path];
  if (!m) return null;
  const [tensors, changed, maxRel, text] = m;
  return {
    text: `${changed ? "\u0394" : "="} ${changed.toLocaleString("en-US")}/${tensors.toLocaleString("en-US")}`,
    tone: changed ? "warn" : "ok",
    shade: changed ? changeShade(maxRel, vi.tiny) : 0,
    title: text + (changed ? `; largest relative change ${relText(maxRel)}` : ""),
    stale: vi.state === "stale"
  };
}
function valueOrder(vi, changes, query) {
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
function valueMatches(data, vi, changes, base) {
  if (!vi || !changes || changes.size === 0) return base;
  const c = data.c;
  const m = new Uint8Array(data.n);
  for (let i = data.n - 1; i >= 0; i--) {
    if (c.t[i] === 1 && (!base || base[i])) {
      const r = vi.row.get(c.path[i]);
      const item = r === void 0 ? null : vi.legend[vi.rows.change[r]];
      if (item && changes.has(item.change)) m[i] = 1;
    }
    if (m[i] && c.parent[i] >= 0) m[c.parent[i]] = 1;
  }
  return m;
}
function changeRanks(data, vi) {
  const c = data.c;
  const ranks = new Float64Array(data.n).fill(Infinity);
  for (let i = data.n - 1; i >= 0; i--) {
    if (c.t[i] === 1) {
      const r = vi.row.get(c.path[i]);
      if (r !== void 0) ranks[i] = vi.rows.rank[r];
    }
    const p = c.parent[i];
    if (p >= 0 && ranks[i] < ranks[p]) ranks[p] = ranks[i];
  }
  return ranks;
}
function sortedVisible(data, expanded, matches, ranks) {
  const c = data.c;
  const out = [];
  const visit = (first, end) => {
    const kids = [];
    for (let j = first; j < end; j = c.end[j]) if (!matches || matches[j]) kids.push(j);
    kids.sort((a, b) => ranks[a] === ranks[b] ? a - b : ranks[a] < ranks[b] ? -1 : 1);
    for (const j of kids) {
      out.push(j);
      if (c.t[j] === 0 && expanded[j]) visit(j + 1, c.end[j]);
    }
  };
  visit(0, data.n);
  return Int32Array.from(out);
}
function visibleRows(s, expanded) {
  if (s.sortByChange && s.values) return sortedVisible(s.data, expanded, s.matches, changeRanks(s.data, s.values));
  return computeVisible(s.data, expanded, s.matches);
}
function changeFilterOptions(legend) {
  const changed = legend.filter((item) => item.changed).map((item) => item.change);
  return [
    { value: "", text: "any" },
    { value: changed.join(","), text: "changed (any kind)" },
    ...legend.map((item) => ({ value: item.change, text: `${item.icon} ${item.label}` }))
  ];
}
function valueDetailLines(vi, key) {
  const i = vi.row.get(key);
  if (i === void 0) return [];
  const item = vi.legend[vi.rows.change[i]];
  const num = (x) => typeof x === "number" ? x.toPrecision(4) : "\u2013";
  return [
    ["values", item ? `${item.icon} ${item.label}` : "?"],
    ["relative L2 change", relText(vi.rows.rel[i]) || "\u2013"],
    ["max |\u0394|", num(vi.rows.max_abs[i])],
    ["cosine", num(vi.rows.cosine[i])]
  ];
}
function valueBadge(vi, path, isModule) {
  const cell = vi ? isModule ? moduleValueCell(vi, path) : valueCell(vi, path) : null;
  if (!vi || !cell) return null;
  const hint = isModule ? "" : "\nClick (or Enter on the row): before/after and difference histograms";
  const el = h("span", {
    className: `sdw-value sdw-tone-${cell.tone}${cell.stale ? " sdw-value-stale" : ""}`,
    text: cell.text,
    title: (cell.stale ? `${cell.title}
(compared before the model or the rows changed: compare again)` : cell.title) + hint,
    dataset: { role: "value", shade: String(cell.shade) }
  });
  el.style.setProperty("--sdw-shade", String(cell.shade));
  return el;
}
function frozenBnFlag(vi, path) {
  const why = vi ? vi.frozenBn[path] : void 0;
  if (!why) return null;
  return h("span", { className: `sdw-value sdw-value-frozen sdw-tone-warn${vi && vi.state === "stale" ? " sdw-value-stale" : ""}`, text: "\u26A0 frozen? BN stats changed", title: why, dataset: { role: "frozen-bn" } });
}
var VALUE_LIST_MAX = 50;
function mountValues(v) {
  const { model, send, on } = v;
  const s = v.s;
  const { root, canvas, details, colHeader, onlyProblems } = v.els;
  const compareBtn = h("button", { className: "sdw-btn", text: "Compare values", title: "Compare the values of both sides, key by key (streamed)", dataset: { action: "compare_values" }, attrs: { type: "button" } });
  const summary = h("span", { className: "sdw-muted", dataset: { role: "values-summary" } });
  const callouts = h("div", { className: "sdw-values-callouts", dataset: { role: "values-callouts" } });
  const filter = h("select", { attrs: { "aria-label": "Show changes of kind" }, dataset: { role: "values-filter" } });
  const search = h("input", { className: "sdw-search", attrs: { type: "search", placeholder: "Search compared tensors\u2026", "aria-label": "Search compared tensors", spellcheck: "false" }, dataset: { role: "values-search" } });
  const list = h("ol", { className: "sdw-values-list", dataset: { role: "values-list" } });
  const plot = h("div", { className: "sdw-values-plot", dataset: { role: "values-plot" } });
  const body = h("div", { className: "sdw-values-body" }, [h("div", { className: "sdw-values-bar" }, [filter, search]), list, plot]);
  const box = h("details", { className: "sdw-values", dataset: { role: "values" } }, [
    h("summary", {}, [h("span", { text: "Values: what changed? " }), summary]),
    h("div", { className: "sdw-values-bar" }, [compareBtn]),
    callouts,
    body
  ]);
  v.els.actionsEnd.after(box);
  compareBtn.addEventListener("click", () => send({ action: "compare_values" }));
  const changeFilter = h("select", { attrs: { "aria-label": "Show the rows whose values changed so" }, dataset: { role: "change-filter" } });
  const sortBtn = h("button", {
    className: "sdw-btn",
    text: "Most changed first",
    title: "Sort the rows of every module by change of values, most changed first (press again: tree order)",
    dataset: { role: "sort-change" },
    attrs: { type: "button", "aria-pressed": "false" }
  });
  const changeControls = h("span", { className: "sdw-change-controls", dataset: { role: "change-controls" } }, [
    h("label", { className: "sdw-check-label", title: "Show only the rows whose values changed so" }, ["values: ", changeFilter]),
    sortBtn
  ]);
  changeControls.hidden = true;
  onlyProblems.parentElement.after(changeControls);
  s.changeOn = /* @__PURE__ */ new Set();
  s.sortByChange = false;
  function drawChangeControls() {
    const vi = s.values;
    changeControls.hidden = !vi;
    const want = [...s.changeOn].join(",");
    const options = vi ? changeFilterOptions(vi.legend) : [];
    changeFilter.replaceChildren(...options.map((o) => h("option", { text: o.text, attrs: { value: o.value } })));
    changeFilter.value = options.some((o) => o.value === want) ? want : "";
    sortBtn.setAttribute("aria-pressed", String(s.sortByChange));
  }
  changeFilter.addEventListener("change", () => {
    const value = (
      /** @type {HTMLSelectElement} */
      changeFilter.value
    );
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
    const kind = (
      /** @type {HTMLSelectElement} */
      filter.value
    );
    const order = valueOrder(
      vi,
      kind ? new Set(kind.split(",")) : /* @__PURE__ */ new Set(),
      /** @type {HTMLInputElement} */
      search.value
    );
    list.replaceChildren(
      ...order.slice(0, VALUE_LIST_MAX).map((i) => {
        const key = vi.rows.key[i];
        const li = h("li", { className: "sdw-values-row", dataset: { role: "values-row", key }, attrs: { tabindex: "0" }, title: "Click: before/after and difference histograms" }, [h("span", { className: "sdw-values-key", text: key })]);
        const badge = valueBadge(vi, key, false);
        if (badge) li.append(badge);
        return li;
      }),
      ...order.length > VALUE_LIST_MAX ? [h("li", { className: "sdw-muted", text: `\u2026 and ${(order.length - VALUE_LIST_MAX).toLocaleString("en-US")} more (search or filter to narrow)` })] : []
    );
  }
  function drawSides(payload) {
    const vi = s.values;
    const two = !!(vi && vi.checkpoints);
    if (two) root.dataset.valuesOf = "checkpoints";
    else delete root.dataset.valuesOf;
    const ckptHead = colHeader.querySelector("[data-role=ckpt-head]");
    const modelHead = colHeader.querySelector("[data-role=model-head]");
    const label = (head, text, title) => {
      if (!head) return;
      const first = head.firstChild;
      if (first && first.nodeType === 3) first.textContent = text;
      head.title = title;
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
    callouts.replaceChildren(...(vi ? payload.callouts || [] : []).map((t) => h("p", { className: "sdw-tone-warn", text: t, dataset: { role: "values-callout" } })));
    if (vi && (payload.callouts && payload.callouts.length || vi.checkpoints)) box.open = true;
    const current = (
      /** @type {HTMLSelectElement} */
      filter.value
    );
    const options = vi ? changeFilterOptions(vi.legend) : [];
    filter.replaceChildren(
      h("option", { text: "changed (all kinds)", attrs: { value: options.length ? options[1].value : "" } }),
      h("option", { text: "every key", attrs: { value: "" } }),
      ...(vi ? vi.legend : []).map((item) => h("option", { text: `${item.icon} ${item.label}`, attrs: { value: item.change } }))
    );
    filter.value = current || (options.length ? options[1].value : "");
    if (!vi) {
      s.changeOn = /* @__PURE__ */ new Set();
      s.sortByChange = false;
    }
    drawSides(payload);
    drawChangeControls();
    drawList();
    requested = "";
    drawValueDetail();
    v.fn.sizeColumns();
    v.fn.applyFilter();
  }
  function drawPlot() {
    const p = model.get("value_plot") || {};
    plot.replaceChildren(...p.src ? [h("img", { attrs: { src: p.src, alt: `values of ${p.key}: before/after and difference histograms` }, dataset: { role: "values-plot-img", key: p.key } })] : []);
    drawValueDetail();
  }
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
    const item = vi.legend[vi.rows.change[
      /** @type {number} */
      vi.row.get(key)
    ]];
    const p = model.get("value_plot") || {};
    let figure;
    if (!item || !item.compared) figure = h("span", { className: "sdw-muted", text: "not compared: no two tensors to plot" });
    else if (p.src && p.key === key) figure = h("img", { attrs: { src: p.src, alt: `values of ${key}: before/after and difference histograms` }, dataset: { role: "value-detail-img", key } });
    else if (v.s.readOnly) figure = h("span", { className: "sdw-muted", text: "histograms are drawn by the kernel (open the Explorer in a notebook)" });
    else if (vi.state !== "ready") figure = h("span", { className: "sdw-muted", text: "the values changed since they were compared: compare again to plot" });
    else {
      figure = h("span", { className: "sdw-muted", text: "plotting\u2026", dataset: { role: "value-detail-wait" } });
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
  canvas.addEventListener(
    "click",
    (ev) => {
      const target = (
        /** @type {HTMLElement} */
        ev.target
      );
      const onRow = !!(s.values && s.values.checkpoints) && !ev.shiftKey;
      const hit = onRow ? target : target.closest("[data-role=value]");
      const row = hit && /** @type {HTMLElement|null} */
      hit.closest("[data-role=leaf]");
      if (!row || !row.dataset.key) return;
      const i = s.data.keyIndex.get(row.dataset.key);
      if (i === void 0) return;
      ev.stopPropagation();
      ev.preventDefault();
      s.detailsOpen = i;
      v.fn.drawDetails();
      v.fn.moveFocus(i);
    },
    true
  );
  list.addEventListener("click", (ev) => {
    const row = (
      /** @type {HTMLElement|null} */
      /** @type {HTMLElement} */
      ev.target.closest("[data-role=values-row]")
    );
    if (row && row.dataset.key) send({ action: "value_plot", key: row.dataset.key });
  });
  list.addEventListener("keydown", (ev) => {
    const row = (
      /** @type {HTMLElement|null} */
      /** @type {HTMLElement} */
      ev.target.closest("[data-role=values-row]")
    );
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

// sd_widgets/widget/static/tabs.js
function buildTabs(model, on) {
  const btn = button;
  let activeTab = "preview";
  let histogramMode = "grid";
  let results = {};
  let picked = {};
  const tabs = {};
  const panels = {};
  const tabBar = h("div", { className: "sdw-tabs", attrs: { role: "tablist" } });
  for (const [name, label] of [["preview", "Selection"], ["renames", "Renames"], ["code", "Code"], ["results", "Results"]]) {
    tabs[name] = h("button", { className: "sdw-tab", text: label, dataset: { role: "tab", tab: name }, attrs: { type: "button", role: "tab" } });
    panels[name] = h("div", { className: "sdw-panel", dataset: { panel: name }, attrs: { role: "tabpanel" } });
    tabBar.appendChild(tabs[name]);
  }
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
    skippedList
  ]);
  panels.preview.appendChild(preview);
  const suggestionList = h("ul", { className: "sdw-list", dataset: { role: "suggestions" } });
  const ruleList = h("ul", { className: "sdw-list", dataset: { role: "rules" } });
  const ruleKind = h("select", { dataset: { role: "rule-kind" }, attrs: { "aria-label": "Rule kind" } }, [
    h("option", { text: "prefix", attrs: { value: "prefix" } }),
    h("option", { text: "regex", attrs: { value: "regex" } }),
    h("option", { text: "exact key", attrs: { value: "exact" } })
  ]);
  const ruleOld = h("input", { attrs: { type: "text", placeholder: "from (e.g. module.)", "aria-label": "Rename from", spellcheck: "false" }, dataset: { role: "rule-old" } });
  const ruleNew = h("input", { attrs: { type: "text", placeholder: "to (empty strips)", "aria-label": "Rename to", spellcheck: "false" }, dataset: { role: "rule-new" } });
  panels.renames.append(
    h("div", { className: "sdw-subhead", text: "Suggested renames" }),
    suggestionList,
    h("div", { className: "sdw-subhead", text: "Rename rules (applied to checkpoint keys, in order)" }),
    ruleList,
    h("div", { className: "sdw-rule-form" }, [ruleKind, ruleOld, h("span", { text: "\u2192" }), ruleNew, btn("Add rule", "add-rule", "Add this rule and re-align the tree")])
  );
  const codePre = h("pre", { className: "sdw-code", dataset: { role: "code" } });
  const copyBtn = btn("Copy", "copy-code", "Copy the code to the clipboard");
  const codeSlot = h("div", { className: "sdw-code-slot", dataset: { role: "code-slot" } });
  panels.code.append(codeSlot, h("div", { className: "sdw-code-bar" }, [h("span", { className: "sdw-muted", text: "plan.to_code(): the same partial load with plain torch" }), h("span", { className: "sdw-spacer" }), copyBtn]), codePre);
  const loadSummary = h("div", { className: "sdw-load-summary", dataset: { role: "load-summary" } });
  const picker = h("select", { dataset: { role: "histogram-picker" }, attrs: { "aria-label": "Tensor to plot" } });
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
    bnBox
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
      setTimeout(() => copyBtn.textContent = "Copy", 1500);
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
    if (model.get("tab") !== name) {
      model.set("tab", name);
      model.save_changes();
    }
  }
  function drawRenames() {
    const sugg = model.get("suggestions") || [];
    suggestionList.replaceChildren(
      ...sugg.length ? sugg.map(
        (s) => h("li", { className: "sdw-suggestion", dataset: { role: "suggestion", id: s.id } }, [
          h("button", { className: "sdw-btn", text: "Accept", dataset: { action: "accept-suggestion", id: s.id }, attrs: { type: "button" }, title: "Add this rename rule" }),
          h("span", { className: "sdw-key", text: ` ${s.label}` }),
          h("span", { className: "sdw-muted", text: s.reason ? ` \u2014 ${s.reason}` : "" })
        ])
      ) : [h("li", { className: "sdw-muted", text: "No suggestions: no key only the checkpoint has looks like one only the model has." })]
    );
    const rules = model.get("rename_rules") || [];
    ruleList.replaceChildren(
      ...rules.length ? rules.map(
        (r, i) => h("li", { dataset: { role: "rule", index: i } }, [
          h("button", { className: "sdw-btn", text: "Remove", dataset: { action: "remove-rule", index: i }, attrs: { type: "button" } }),
          h("span", { className: "sdw-key", text: ` ${r.label || `${r.kind}: ${r.old} \u2192 ${r.new}`}` })
        ])
      ) : [h("li", { className: "sdw-muted", text: "No rules." })]
    );
    tabs.renames.textContent = sugg.length ? `Renames (${sugg.length})` : "Renames";
  }
  function drawCode() {
    const code = model.get("code") || "";
    codePre.textContent = code;
    copyBtn.disabled = !code;
  }
  function drawResults() {
    const hist = model.get("histograms") || [];
    const keys = model.get("histogram_keys") || [];
    const last = model.get("last_load") || {};
    loadSummary.textContent = last.text || "Nothing loaded yet. Select keys and press \u201CLoad selected\u201D.";
    const current = picker.value;
    picker.replaceChildren(
      h("option", { text: `Grid (${hist.length} tensor${hist.length === 1 ? "" : "s"})`, attrs: { value: "" } }),
      ...keys.map((k) => h("option", { text: k, attrs: { value: k } }))
    );
    picker.value = histogramMode === "single" && keys.includes(current) ? current : "";
    pickerBar.hidden = !hist.length && !keys.length;
    if (picker.value === "") histogramMode = "grid";
    grid.replaceChildren(
      ...histogramMode === "grid" ? hist.map(
        (item) => h("figure", { className: "sdw-fig" }, [
          h("img", { attrs: { src: item.src, alt: `before/after histogram of ${item.key}` }, dataset: { role: "histogram", key: item.key } }),
          h("figcaption", { text: item.key })
        ])
      ) : []
    );
    const one = picked;
    single.replaceChildren(
      ...histogramMode === "single" && one.src ? [h("img", { attrs: { src: one.src, alt: `before/after histogram of ${one.key}` }, dataset: { role: "histogram-single", key: one.key } })] : []
    );
    const bn = model.get("bn_plot") || {};
    bnBox.replaceChildren(
      ...bn.src ? [h("img", { attrs: { src: bn.src, alt: "BatchNorm running statistics before and after" }, dataset: { role: "bn-plot" } })] : [h("span", { className: "sdw-muted", text: bn.text || "No plot yet: load something to see BatchNorm running statistics here." })]
    );
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
    tabs,
    panels,
    tabBar,
    preview,
    previewStats,
    previewKeys,
    previewMore,
    skippedList,
    ruleKind,
    ruleOld,
    ruleNew,
    codePre,
    copyBtn,
    picker,
    codeSlot,
    showTab,
    copyCode,
    setResults(value) {
      results = value || {};
      drawResults();
    },
    setHistogram(value) {
      picked = value || {};
      drawResults();
    }
  };
}

// sd_widgets/widget/static/skeleton.js
function buildSkeleton(v) {
  const root = h("div", { className: "sdw-explorer", dataset: { role: "explorer", ready: "false" } });
  const title = h("div", { className: "sdw-title", dataset: { role: "title" } });
  const summary = h("div", { className: "sdw-summary", dataset: { role: "summary" } });
  const messageText = h("span", { className: "sdw-message-text", dataset: { role: "message-text" } });
  const messageDetail = h("details", { className: "sdw-message-detail" }, [
    h("summary", { text: "details" }),
    h("pre", { dataset: { role: "message-detail" } })
  ]);
  const messageOffer = h("button", { className: "sdw-btn sdw-btn-primary", dataset: { action: "message-offer", role: "message-offer" }, attrs: { type: "button" } });
  messageOffer.hidden = true;
  const messageBar = h("div", { className: "sdw-message", dataset: { role: "message", level: "none" }, attrs: { role: "status", "aria-live": "polite" } }, [
    messageText,
    messageOffer,
    messageDetail,
    h("button", { className: "sdw-btn sdw-btn-icon", text: "\xD7", title: "Dismiss", dataset: { action: "dismiss-message" }, attrs: { type: "button", "aria-label": "Dismiss message" } })
  ]);
  const problems = h("div", { className: "sdw-problems", dataset: { role: "problems" }, attrs: { role: "region", "aria-label": "Problems" } });
  const search = h("input", {
    className: "sdw-search",
    attrs: { type: "search", placeholder: "Search keys\u2026", "aria-label": "Search keys", spellcheck: "false" },
    dataset: { role: "search" }
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
    btn("Clear selection", "select-none", "Deselect everything")
  ]);
  const legend = h("div", { className: "sdw-legend", dataset: { role: "legend" }, attrs: { "aria-label": "Legend: status colours, icons and filters" } });
  const resizer = (col, label) => h("span", { className: "sdw-col-resize", title: `Drag (or focus and press \u2190/\u2192) to resize the ${label} column`, dataset: { role: "col-resize", col }, attrs: { role: "separator", "aria-orientation": "vertical", "aria-label": `Resize the ${label} column`, tabindex: "0" } });
  const colHeader = h("div", { className: "sdw-row sdw-colheader", dataset: { role: "column-header" }, attrs: { "aria-hidden": "false" } }, [
    h("span", { className: "sdw-cell sdw-cell-check" }),
    h("span", { className: "sdw-cell sdw-cell-side sdw-head-cell", dataset: { role: "ckpt-head" } }, ["Checkpoint", resizer("ckpt", "checkpoint")]),
    h("span", { className: "sdw-cell sdw-cell-status sdw-head-cell", text: "Status" }, [resizer("status", "status")]),
    h("span", { className: "sdw-cell sdw-cell-side", text: "Model", dataset: { role: "model-head" } })
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
      h("button", { className: "sdw-btn sdw-btn-icon", text: "\xD7", title: "Close the details", dataset: { action: "close-details" }, attrs: { type: "button", "aria-label": "Close the details" } })
    ]),
    detailsBody
  ]);
  details.hidden = true;
  const emptyNote = h("div", { className: "sdw-empty", dataset: { role: "empty" } });
  const loadBtn = btn("Load selected", "load", "Run partial_load on the live model with this selection", { className: "sdw-btn-primary" });
  const undoBtn = btn("Undo", "undo", "Restore the tensors the last load replaced");
  const bnGroup = h("span", { className: "sdw-bn", dataset: { role: "bn-group" }, attrs: { role: "radiogroup", "aria-label": "BatchNorm running statistics" } }, [
    h("span", { className: "sdw-muted", text: "BatchNorm stats:" })
  ]);
  const bnTitles = {
    load: "load running_mean / running_var / num_batches_tracked from the checkpoint",
    keep: "keep the model's current running statistics",
    reset: "reset running statistics (0 / 1 / 0) of the BatchNorm modules touched"
  };
  for (const policy of ["load", "keep", "reset"]) {
    bnGroup.appendChild(
      h("label", { className: "sdw-radio", title: bnTitles[policy] }, [
        h("input", { attrs: { type: "radio", name: `${v.uid}-bn`, value: policy }, dataset: { role: "bn-policy" } }),
        ` ${policy}`
      ])
    );
  }
  const previewLine = h("span", { className: "sdw-preview-line", dataset: { role: "preview-line" } });
  const busyNote = h("span", { className: "sdw-busy", text: "working\u2026", dataset: { role: "busy" } });
  const actions = h("div", { className: "sdw-actions", dataset: { role: "actions" } }, [loadBtn, undoBtn, bnGroup, h("span", { className: "sdw-spacer" }), busyNote, previewLine]);
  const actionsEnd = h("div", { className: "sdw-actions-end", dataset: { role: "actions-end" }, attrs: { "aria-hidden": "true" } });
  const tabsUi = buildTabs(v.model, v.on);
  const { panels, tabBar } = tabsUi;
  const topSlot = h("div", { className: "sdw-top-slot", dataset: { role: "top-slot" } });
  const resultsSlot = h("div", { className: "sdw-results-slot", dataset: { role: "results-slot" } });
  panels.results.prepend(resultsSlot);
  const statusStyle = h("style", { dataset: { role: "status-style" } });
  const treeBox = h("div", { className: "sdw-tree-box", dataset: { role: "tree-box" } }, [viewport, treeNote, emptyNote, actions]);
  root.append(statusStyle, title, messageBar, topSlot, summary, problems, toolbar, legend, treeBox, actionsEnd, details, tabBar, ...Object.values(panels));
  v.el.appendChild(root);
  return {
    ...tabsUi,
    root,
    title,
    summary,
    messageText,
    messageOffer,
    messageDetail,
    messageBar,
    problems,
    search,
    onlyProblems,
    toolbar,
    legend,
    colHeader,
    crumb,
    treeHead,
    canvas,
    viewport,
    treeNote,
    detailsBody,
    details,
    emptyNote,
    loadBtn,
    undoBtn,
    bnGroup,
    previewLine,
    busyNote,
    actions,
    actionsEnd,
    treeBox,
    topSlot,
    resultsSlot,
    statusStyle
  };
}

// sd_widgets/widget/static/rows.js
function rowSig(data, i, skipped) {
  if (data.c.t[i] === 0) return data.moduleState(i);
  const key = data.c.path[i];
  const selected = data.selected[i] === 1;
  return `${selected ? 1 : 0}${data.selectable(i) ? 1 : 0}|${data.hasAdapter(i) ? data.adapters[key] : ""}|${selected ? skipped.get(key) || "" : ""}`;
}
function loraNotes(lora) {
  const out = /* @__PURE__ */ new Map();
  for (const p of lora && lora.pairs || []) {
    const how = p.problem ? `not merged: ${p.problem}` : `+ ${p.factors}`;
    out.set(p.base, `LoRA: ${how}
factors: ${p.a_key}, ${p.b_key}`);
    out.set(p.a_key, `LoRA factor A of ${p.base}`);
    out.set(p.b_key, `LoRA factor B of ${p.base}`);
  }
  return out;
}
function countChips(data, i) {
  const counts = data.c.counts[i] || [];
  const problemKinds = counts.filter((n, s) => n && data.problem[s]).length;
  const chips = [];
  const parts = [];
  counts.forEach((n, s) => {
    if (!n) return;
    const status = data.statuses[s];
    const item = data.legendOf(status);
    chips.push({ status, n, text: countChipText(item, n, !data.problem[s] || problemKinds > 1), problem: !!data.problem[s] });
    parts.push(`${n} ${n === 1 ? item.label : item.plural}`);
  });
  return { chips, title: parts.join(", ") };
}
function moduleView(data, i) {
  const c = data.c;
  const state = data.moduleState(i);
  const type = c.module_type[i] ? ` (${c.module_type[i]})` : "";
  return {
    state,
    mark: { all: "\u2611", some: "\u25E9", none: "\u2610", na: "\u2298" }[state],
    ariaLabel: `${c.name[i]}${type}: ${countChips(data, i).title}`,
    title: `${c.path[i]}${type}: click or Space to ${state === "all" ? "deselect" : "select"} every loadable key below; shift-click selects a range`
  };
}
function leafView(data, i, skipped) {
  const c = data.c;
  const item = data.item(i);
  const selectable = data.selectable(i);
  const selected = data.selected[i] === 1;
  const skip = selected ? skipped.get(c.path[i]) : void 0;
  const hover = [c.path[i]];
  if (c.ckpt_key[i]) hover.push(`checkpoint key: ${c.ckpt_key[i]}`);
  if (item.cast) hover.push(castText(data, i));
  if (!selectable) hover.push(`not selectable: ${c.reason[i] || item.label}`);
  else if (c.adaptable[i]) hover.push(`loads through the '${data.adapters[c.path[i]]}' adapter`);
  if (skip) hover.push(`selected but not loaded: ${skip}`);
  const onAdapter = data.hasAdapter(i);
  return {
    item,
    selectable,
    selected,
    skip,
    problem: data.isProblem(i),
    // aria-disabled only when no gesture can select it (an adaptable row has an enabled button)
    disabled: !data.actionable(i),
    title: hover.join("\n"),
    ariaLabel: `${c.name[i]}: ${item.label}${selected ? ", selected" : ""}${skip ? `, not loaded (${skip})` : ""}`,
    mark: skip ? "\u2612" : selectable ? selected ? "\u2611" : "\u2610" : c.adaptable[i] ? "\u2610" : "\u2298",
    check: selectable || c.adaptable[i] ? selected ? "all" : "none" : "na",
    adapt: c.adaptable[i] ? {
      on: onAdapter,
      text: onAdapter ? `${data.adapters[c.path[i]]} \u2713` : "adapt",
      // the reason names the adapter that fits this tensor and what it would do to it
      title: onAdapter ? "Stop adapting this tensor" : `Load it with the adapter that fits (Space on the row): ${c.reason[i] || ""}`
    } : null
  };
}
function sharedRenameNote(data) {
  const c = data.c;
  const notes = /* @__PURE__ */ new Set();
  for (let i = 0; i < data.n; i++) if (c.t[i] === 1 && c.ckpt_key[i]) notes.add(relativeName(c.path[i], c.ckpt_key[i]).note);
  return notes.size === 1 ? String([...notes][0]) : "";
}
function sharedNoteLabel(note) {
  const lacks = note.startsWith("\u2212");
  return {
    text: lacks ? `keys without ${note.slice(1)}` : `keys under ${note}`,
    title: `every renamed checkpoint key ${lacks ? "lacks" : "starts with"} '${note.replace("\u2212", "")}'; hover a name for its full key`
  };
}
function rowWindow(total, { scrollTop, offsetTop, height, rowH, max, overscan }) {
  if (total <= max) return { from: 0, to: total };
  const top = Math.max(0, scrollTop - offsetTop);
  return { from: Math.max(0, Math.floor(top / rowH) - overscan), to: Math.min(total, Math.ceil((top + height) / rowH) + overscan) };
}
var LEAF_CHARS = 10;
function nameMinWidth(text) {
  const leaf = text.slice(text.lastIndexOf(".") + 1);
  const chars = Math.min(leaf.length, LEAF_CHARS) + (leaf.length < text.length ? 1 : 0);
  return `min(${Math.max(chars, 3)}ch, 100%)`;
}
function nameCell(data, i, side, sharedNote) {
  const c = data.c;
  const other = side === "ckpt" ? c.ckpt_key[i] : c.model_key[i];
  const rel = relativeName(c.path[i], other);
  const full = other || c.path[i];
  const name = h("span", { className: `sdw-name${rel.renamed ? " sdw-renamed" : ""}`, dataset: { role: "name" }, title: rel.renamed ? `${side === "ckpt" ? "checkpoint" : "model"} key ${full} (renamed)` : full }, [
    h("span", { className: "sdw-name-text", text: rel.text, attrs: { dir: "ltr" } })
  ]);
  name.style.minWidth = nameMinWidth(rel.text);
  const out = [name];
  if (rel.note && !(side === "ckpt" && sharedNote === rel.note)) out.push(h("span", { className: "sdw-rename-note", text: rel.note, title: `${side === "ckpt" ? "checkpoint" : "model"} key: ${full}`, dataset: { role: "rename-note" } }));
  return out;
}
function sideCell(data, i, side, ctx) {
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
    const isExp = ctx.expanded[i] === 1;
    const moduleName = h("span", { className: "sdw-name sdw-module-name", dataset: { role: "name" }, title: c.path[i] }, [h("span", { className: "sdw-name-text", text: c.name[i], attrs: { dir: "ltr" } })]);
    moduleName.style.minWidth = nameMinWidth(c.name[i]);
    cell.append(
      h("span", { className: "sdw-caret", text: isExp ? "\u25BE" : "\u25B8", dataset: { action: "expand" }, title: isExp ? "Collapse" : "Expand", attrs: { "aria-hidden": "true" } }),
      moduleName
    );
    if (c.module_type[i]) cell.append(h("span", { className: "sdw-meta sdw-type", text: c.module_type[i], title: c.module_type[i] }));
    if (side === "ckpt") cell.append(h("span", { className: "sdw-meta sdw-size", text: fmtBytes(c.nbytes[i] || 0), title: `${fmtBytes(c.nbytes[i] || 0)} in the checkpoint under ${c.path[i]}`, dataset: { role: "size" } }));
    return cell;
  }
  if (!present) {
    cell.classList.add("sdw-absent");
    cell.append(h("span", { className: "sdw-absent-mark", text: "\u2014", attrs: { "aria-label": "absent" } }));
    return cell;
  }
  cell.append(...nameCell(data, i, side, ctx.sharedNote));
  const shape = side === "ckpt" ? c.ckpt_shape[i] : c.model_shape[i];
  const dt = side === "ckpt" ? c.ckpt_dtype[i] : c.model_dtype[i];
  const differs = data.item(i).differs;
  cell.append(
    // titles: a narrow container may shorten these (tree.css data-fit="narrow")
    h("span", { className: `sdw-meta sdw-shape${differs === "shape" ? " sdw-diff" : ""}`, text: fmtShape(shape), title: `shape ${fmtShape(shape)}`, dataset: { role: "shape" } }),
    h("span", { className: `sdw-meta sdw-dtype${differs === "dtype" ? " sdw-diff" : ""}`, text: dtypeName(data.p, dt), title: `dtype ${dtypeName(data.p, dt)}`, dataset: { role: "dtype" } })
  );
  if (side === "ckpt") cell.append(h("span", { className: "sdw-meta sdw-size", text: fmtBytes(c.nbytes[i] || 0), title: `${fmtBytes(c.nbytes[i] || 0)} in the checkpoint`, dataset: { role: "size" } }));
  const tied = c.tied[i];
  if (tied && side === "model") cell.append(h("span", { className: "sdw-meta sdw-tied", text: "tied", title: `shares storage with ${tied.join(", ")}` }));
  return cell;
}
function treeitem(data, i, pos, ctx) {
  const c = data.c;
  const row = h("div", { className: "sdw-row", dataset: { idx: i, depth: c.depth[i] } });
  row.style.top = `${pos * ROW_H}px`;
  row.setAttribute("role", "treeitem");
  row.setAttribute("aria-level", String(c.depth[i] + 1));
  row.setAttribute("aria-posinset", String(data.posInSet[i]));
  row.setAttribute("aria-setsize", String(data.setSize[i]));
  row.setAttribute("tabindex", i === ctx.focus ? "0" : "-1");
  const checked = data.ariaChecked(i);
  if (checked !== null) row.setAttribute("aria-checked", checked);
  return row;
}
function moduleRow(data, i, pos, ctx) {
  const c = data.c;
  const row = treeitem(data, i, pos, ctx);
  const m = moduleView(data, i);
  const isExp = ctx.expanded[i] === 1;
  row.classList.add("sdw-module");
  row.dataset.role = "module";
  row.dataset.path = c.path[i];
  row.dataset.expanded = String(isExp);
  row.dataset.check = m.state;
  row.setAttribute("aria-expanded", String(isExp));
  row.setAttribute("aria-label", m.ariaLabel);
  row.title = m.title;
  const counts = countChips(data, i);
  const countsCell = h("span", { className: "sdw-cell sdw-cell-status sdw-counts", dataset: { role: "counts" }, title: counts.title }, counts.chips.map(
    (chip) => h("span", { className: `sdw-count sdw-status-${chip.status}${chip.problem ? " sdw-is-problem" : ""}`, text: chip.text, dataset: { status: chip.status, count: chip.n } })
  ));
  const valueEl = valueBadge(ctx.values, c.path[i], true);
  if (valueEl) countsCell.appendChild(valueEl);
  withCells(row, data, i, ctx, m.state, m.mark, countsCell);
  const frozen = frozenBnFlag(ctx.values, c.path[i]);
  if (frozen) row.lastElementChild.appendChild(frozen);
  return row;
}
function withCells(row, data, i, ctx, check, mark, middle) {
  row.append(
    h("span", { className: `sdw-cell sdw-cell-check sdw-check sdw-check-${check}`, text: mark, attrs: { "aria-hidden": "true" } }),
    sideCell(data, i, "ckpt", ctx),
    middle,
    sideCell(data, i, "model", ctx)
  );
  return row;
}
function leafRow(data, i, pos, ctx) {
  const c = data.c;
  const row = treeitem(data, i, pos, ctx);
  const status = data.statusName(i);
  const l = leafView(data, i, ctx.skipped);
  row.classList.add("sdw-leaf", `sdw-status-${status}`);
  if (l.problem) row.classList.add("sdw-is-problem");
  if (!l.selectable) row.classList.add("sdw-unselectable");
  if (l.selected) row.classList.add("sdw-selected");
  if (l.skip) row.classList.add("sdw-skipped");
  row.dataset.role = "leaf";
  row.dataset.key = c.path[i];
  row.dataset.status = status;
  row.dataset.selectable = String(l.selectable);
  row.dataset.selected = String(l.selected);
  row.dataset.skipped = String(!!l.skip);
  if (l.disabled) row.setAttribute("aria-disabled", "true");
  row.title = l.title;
  row.setAttribute("aria-label", l.ariaLabel);
  const statusCell = h("span", { className: "sdw-cell sdw-cell-status", dataset: { role: "status" } }, [
    h("span", { className: `sdw-badge sdw-status-${status}`, text: `${l.item.icon} ${l.item.label}`, title: `${l.item.icon} ${l.item.label}
${l.title}` })
  ]);
  if (l.skip) statusCell.appendChild(h("span", { className: "sdw-skip-note", text: "not loaded", title: l.skip, dataset: { role: "skip-note" } }));
  if (l.adapt) {
    statusCell.appendChild(
      h("button", {
        className: `sdw-adapt${l.adapt.on ? " sdw-adapt-on" : ""}`,
        text: l.adapt.text,
        title: l.adapt.title,
        dataset: { action: "adapt", key: c.path[i], on: String(l.adapt.on) },
        attrs: { type: "button", tabindex: "-1" }
      })
    );
  }
  const valueEl = valueBadge(ctx.values, c.path[i], false);
  if (valueEl) statusCell.appendChild(valueEl);
  const lora = ctx.lora && ctx.lora.get(c.path[i]);
  if (lora) {
    row.title += `
${lora}`;
    statusCell.appendChild(h("span", { className: "sdw-lora-note", text: "LoRA", title: lora, dataset: { role: "lora-note" } }));
  }
  return withCells(row, data, i, ctx, l.check, l.mark, statusCell);
}
function makeRow(data, i, pos, ctx) {
  const row = data.c.t[i] === 0 ? moduleRow(data, i, pos, ctx) : leafRow(data, i, pos, ctx);
  row._sdwSig = rowSig(data, i, ctx.skipped);
  row._sdwPos = pos;
  return row;
}

// sd_widgets/widget/static/filters.js
function expansion(s) {
  return s.matches ? s.filterExpanded : s.expanded;
}
function allStatuses(data) {
  return new Set(data.statuses.map((_, s) => s));
}
function problemStatuses(data) {
  return new Set(data.statuses.map((_, s) => s).filter((s) => data.problem[s]));
}
function onlyProblemsShown(data, statusOn) {
  const probs = problemStatuses(data);
  return statusOn.size === probs.size && [...probs].every((s) => statusOn.has(s));
}
function toggleStatus(statusOn, s) {
  const out = new Set(statusOn);
  if (out.has(s)) out.delete(s);
  else out.add(s);
  return out;
}
function filterExpansion(data) {
  const e = new Uint8Array(data.n);
  for (let i = 0; i < data.n; i++) if (data.c.t[i] === 0) e[i] = 1;
  return e;
}
function emptyText(data, nVisible) {
  return data.n === 0 ? "No keys to show." : nVisible === 0 ? "No key matches the search and status filter." : "";
}
function mountFilters(v) {
  const s = v.s;
  const { search, onlyProblems, legend, problems } = v.els;
  function applyFilter() {
    const data = s.data;
    s.matches = valueMatches(data, s.values, s.changeOn, data.computeMatches(s.query, s.statusOn));
    if (s.matches) s.filterExpanded = filterExpansion(data);
    for (const btnEl of legend.querySelectorAll("[data-role=legend-item]")) {
      btnEl.setAttribute("aria-pressed", String(s.statusOn.has(data.statuses.indexOf(btnEl.dataset.status))));
    }
    onlyProblems.checked = onlyProblemsShown(data, s.statusOn);
    v.fn.refreshTree();
  }
  function setOnlyProblems(onOff) {
    s.statusOn = onOff ? problemStatuses(s.data) : allStatuses(s.data);
    applyFilter();
  }
  let searchTimer = null;
  v.cleanups.push(() => clearTimeout(searchTimer));
  search.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      s.query = search.value.trim().toLowerCase();
      applyFilter();
    }, 120);
  });
  search.addEventListener("keydown", (ev) => {
    if (ev.key === "ArrowDown" && s.visible.length) {
      ev.preventDefault();
      clearTimeout(searchTimer);
      const q = search.value.trim().toLowerCase();
      if (q !== s.query) {
        s.query = q;
        applyFilter();
      }
      v.fn.moveFocus(s.visible[0]);
    }
  });
  onlyProblems.addEventListener("change", () => setOnlyProblems(onlyProblems.checked));
  legend.addEventListener("click", (ev) => {
    const item = ev.target.closest("[data-role=legend-item]");
    if (!item) return;
    s.statusOn = toggleStatus(s.statusOn, s.data.statuses.indexOf(item.dataset.status));
    applyFilter();
  });
  function drawLegend() {
    const data = s.data;
    legend.replaceChildren(h("span", { className: "sdw-muted", text: "Show:" }));
    data.statuses.forEach((status, k) => {
      const item = data.legendOf(status);
      const n = (data.p.counts || [])[k] || 0;
      legend.appendChild(
        h("button", { className: `sdw-legend-item sdw-status-${status}`, title: `${item.label}: ${item.description}. Click to show/hide.`, dataset: { role: "legend-item", status }, attrs: { type: "button", "aria-pressed": "true" } }, [
          h("span", { className: "sdw-swatch", attrs: { "aria-hidden": "true" } }),
          h("span", { className: "sdw-legend-icon", text: item.icon }),
          ` ${item.label} `,
          h("span", { className: "sdw-legend-count", text: `(${n})` })
        ])
      );
    });
  }
  function drawProblems() {
    const data = s.data;
    const list = data.problemEntries();
    problems.hidden = list.length === 0;
    if (!list.length) {
      problems.replaceChildren();
      return;
    }
    const chips = list.slice(0, MAX_PROBLEM_CHIPS).map((i) => {
      const item = data.item(i);
      return h("button", { className: `sdw-problem sdw-status-${data.statusName(i)}`, title: `${data.c.path[i]}: ${item.label}. Show it in the tree.`, dataset: { action: "goto-problem", key: data.c.path[i] }, attrs: { type: "button" } }, [
        h("span", { className: "sdw-legend-icon", text: item.icon, attrs: { "aria-hidden": "true" } }),
        // shortened from the left (tree.css), the key itself isolated left-to-right: a key
        // starting with "<" or holding a bidi override still reads as it is
        h("span", { className: "sdw-problem-key" }, [h("span", { className: "sdw-name-text", text: data.c.path[i], attrs: { dir: "ltr" } })])
      ]);
    });
    const more = list.length - chips.length;
    const parts = [h("span", { className: "sdw-problems-title", text: `\u26A0 ${problemPhrase(list.length)}:` }), ...chips];
    if (more > 0) parts.push(h("span", { className: "sdw-muted", text: `\u2026 and ${fmtInt(more)} more` }));
    parts.push(button("Show only problems", "show-problems", "Show only the rows with a problem"));
    problems.replaceChildren(...parts);
  }
  function reveal(i) {
    if (s.matches && !s.matches[i]) {
      s.query = "";
      search.value = "";
      s.statusOn = allStatuses(s.data);
      s.changeOn = /* @__PURE__ */ new Set();
      s.matches = null;
      v.fn.drawChangeControls();
      applyFilter();
    }
    expandTo(s.data, expansion(s), i);
    v.fn.refreshTree();
    v.fn.moveFocus(i);
  }
  Object.assign(v.fn, { applyFilter, setOnlyProblems, reveal, drawLegend, drawProblems });
}

// sd_widgets/widget/static/treeview.js
function rowContext(s) {
  return { expanded: expansion(s), focus: s.nav.focus, skipped: s.skipped, sharedNote: s.sharedNote, values: s.values, lora: s.loraNotes };
}
function mountTree(v) {
  const s = v.s;
  const { root, canvas, viewport, colHeader, crumb, emptyNote, details, detailsBody } = v.els;
  function refreshVisible() {
    s.visible = visibleRows(s, expansion(s));
    canvas.style.height = `${s.visible.length * ROW_H}px`;
    root.dataset.nVisible = String(s.visible.length);
    s.nav.focus = settleFocus(s.data, s.visible, s.nav.focus);
    if (s.nav.anchor >= 0 && s.visible.indexOf(s.nav.anchor) < 0) s.nav.anchor = -1;
  }
  function drawCkptHead() {
    s.sharedNote = sharedRenameNote(s.data);
    const head = colHeader.querySelector("[data-role=ckpt-head]");
    for (const old of head.querySelectorAll("[data-role=ckpt-prefix]")) old.remove();
    if (s.sharedNote) {
      const { text, title } = sharedNoteLabel(s.sharedNote);
      head.insertBefore(h("span", { className: "sdw-rename-note sdw-head-note", text, title, dataset: { role: "ckpt-prefix" } }), head.lastChild);
    }
  }
  const columnsWidth = () => viewport.clientWidth - CHECK_W - ROW_BORDER_W;
  function sizeColumns() {
    const vi = s.values;
    const valueText = (path, isModule) => {
      const cell = isModule ? moduleValueCell(vi, path) : valueCell(vi, path);
      return cell ? cell.text : null;
    };
    const w = columnWidths(s.data, textMeasurer(root), { sharedNote: s.sharedNote, indent: INDENT, modelIndent: MODEL_INDENT, lora: s.loraNotes, valueText: vi ? valueText : null });
    const dragged = Object.keys(s.userWidths).length > 0;
    const fitted = dragged ? { ...w, fit: "full" } : fitColumns(w, root.isConnected ? columnsWidth() : 0);
    root.dataset.fit = fitted.fit;
    s.fittedTo = viewport.clientWidth;
    const ckpt = s.userWidths.ckpt || fitted.ckpt;
    const status = s.userWidths.status || fitted.status;
    const modelW = s.userWidths.model || fitted.model;
    root.style.setProperty("--sdw-col-ckpt", `${ckpt}px`);
    root.style.setProperty("--sdw-col-status", `${status}px`);
    root.style.setProperty("--sdw-col-model", `${modelW}px`);
    root.style.setProperty("--sdw-tree-min", `${CHECK_W + ROW_BORDER_W + ckpt + status + modelW}px`);
    for (const r of colHeader.querySelectorAll("[data-role=col-resize]")) {
      r.setAttribute("aria-valuenow", String(r.dataset.col === "ckpt" ? ckpt : status));
    }
  }
  const rowFor = (i, pos) => makeRow(s.data, i, pos, rowContext(s));
  function patchRows() {
    const hadFocus = canvas.contains(focusedIn(canvas));
    for (const el of [...canvas.children]) {
      const i = Number(el.dataset.idx);
      if (el._sdwSig !== rowSig(s.data, i, s.skipped)) el.replaceWith(rowFor(i, el._sdwPos));
    }
    if (hadFocus && !canvas.contains(focusedIn(canvas))) v.fn.focusRowElement();
  }
  let drawn = { from: -1, to: -1, focus: -1 };
  function drawRows(force = false) {
    const visible = s.visible;
    const { from, to } = rowWindow(visible.length, { scrollTop: viewport.scrollTop, offsetTop: canvas.offsetTop, height: viewport.clientHeight || VIEWPORT_FALLBACK_H, rowH: ROW_H, max: FULL_RENDER_MAX, overscan: OVERSCAN });
    const fpos = s.nav.focus >= 0 ? visible.indexOf(s.nav.focus) : -1;
    const extra = fpos >= 0 && (fpos < from || fpos >= to) ? fpos : -1;
    if (!force && from === drawn.from && to === drawn.to && extra === drawn.focus) return;
    drawn = { from, to, focus: extra };
    const hadFocus = canvas.contains(focusedIn(canvas));
    const frag = document.createDocumentFragment();
    if (extra >= 0 && extra < from) frag.appendChild(rowFor(visible[extra], extra));
    for (let p = from; p < to; p++) frag.appendChild(rowFor(visible[p], p));
    if (extra >= to) frag.appendChild(rowFor(visible[extra], extra));
    canvas.replaceChildren(frag);
    if (hadFocus) v.fn.focusRowElement();
    drawCrumb();
  }
  function refreshTree() {
    refreshVisible();
    drawRows(true);
    emptyNote.textContent = emptyText(s.data, s.visible.length);
    emptyNote.style.display = emptyNote.textContent ? "" : "none";
    if (s.detailsOpen >= 0) drawDetails();
    v.fn.queueStick();
  }
  function drawCrumb() {
    const top = Math.max(0, viewport.scrollTop - 0);
    const pos = Math.min(s.visible.length - 1, Math.floor(top / ROW_H));
    const names = pos >= 0 ? breadcrumb(s.data, s.visible[pos]) : [];
    crumb.replaceChildren(h("span", { text: names.length ? `in ${names.join(" \u203A ")}` : " ", attrs: { dir: "ltr" } }));
    crumb.title = names.join(".");
    crumb.dataset.path = names.join(".");
  }
  let scrollQueued = false;
  viewport.addEventListener("scroll", () => {
    if (scrollQueued) return;
    scrollQueued = true;
    requestAnimationFrame(() => {
      scrollQueued = false;
      if (s.visible.length > FULL_RENDER_MAX) drawRows(false);
      else drawCrumb();
    });
  });
  function drawDetails() {
    const data = s.data;
    if (s.detailsOpen < 0 || s.detailsOpen >= data.n) {
      details.hidden = true;
      delete details.dataset.key;
      delete details.dataset.path;
      return;
    }
    details.hidden = false;
    const i = s.detailsOpen;
    if (data.c.t[i] === 1) {
      details.dataset.key = data.c.path[i];
      delete details.dataset.path;
    } else {
      details.dataset.path = data.c.path[i];
      delete details.dataset.key;
    }
    const items = [];
    for (const [label, value] of detailLines(data, i, { skipped: s.skipped, checkpoints: !!(s.values && s.values.checkpoints) })) {
      items.push(h("span", { className: "sdw-detail-label", text: label }), h("span", { className: "sdw-detail-value sdw-key", text: value }));
    }
    detailsBody.replaceChildren(...items);
  }
  function setWidth(col, px) {
    s.userWidths = { ...s.userWidths, [col]: Math.max(90, Math.round(px)) };
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
    if (!r || ev.key !== "ArrowLeft" && ev.key !== "ArrowRight") return;
    ev.preventDefault();
    ev.stopPropagation();
    setWidth(r.dataset.col, r.parentElement.getBoundingClientRect().width + (ev.key === "ArrowRight" ? 24 : -24));
  });
  Object.assign(v.fn, { refreshTree, drawRows, patchRows, drawCrumb, drawCkptHead, sizeColumns, drawDetails });
}

// sd_widgets/widget/static/treenav.js
function keyOutcome(effects, now) {
  const out = { messages: [], expand: [], detailsOpen: void 0, note: "", search: false };
  for (const e of effects) {
    if (e.type === "expand") out.expand.push({ index: e.index, value: e.value });
    else if (e.type === "toggle") out.messages.push({ action: "toggle", keys: e.keys || [], modules: e.modules || [] });
    else if (e.type === "range") out.messages.push({ action: "select_range", keys: e.keys, modules: e.modules, select: e.select });
    else if (e.type === "adapt") out.messages.push({ action: "adapt", key: e.key, adapter: e.adapter });
    else if (e.type === "details") out.detailsOpen = now.detailsOpen === e.index && now.detailsShown ? -1 : e.index;
    else if (e.type === "announce") out.note = e.text;
    else if (e.type === "search") out.search = true;
  }
  return out;
}
function reachesHost(ev) {
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return true;
  return ev.key === "Tab" || ev.key === "Escape" || ev.key === "Enter" && !!ev.shiftKey;
}
function pageRows(viewH, headH) {
  return Math.max(1, Math.floor((viewH - headH) / ROW_H) - 1);
}
function rowClick(data, i, target, shiftKey, anchor) {
  const c = data.c;
  if (target && target.action === "expand") return { type: "expand" };
  if (target && target.action === "adapt") return { type: "send", message: { action: "adapt", key: c.path[i], adapter: target.on === "true" ? null : "auto" } };
  if (shiftKey && anchor) return { type: "range" };
  if (c.t[i] === 0) return { type: "send", message: { action: "toggle", modules: [c.path[i]] }, anchor: { kind: "module", path: c.path[i] } };
  const next = { kind: (
    /** @type {"key"} */
    "key"
  ), path: c.path[i] };
  if (!data.selectable(i)) return { type: "none", anchor: next };
  return { type: "send", message: { action: "toggle", keys: [c.path[i]] }, anchor: next };
}
function anchorRange(data, visible, expanded, matches, anchor, i) {
  const a = anchor.kind === "module" ? data.moduleIndex.get(anchor.path) : data.keyIndex.get(anchor.path);
  if (a === void 0) return null;
  const select = anchor.kind === "module" ? data.moduleState(a) === "all" : data.selected[a] === 1;
  const g = rangeGesture(data, visible, expanded, matches, a, i, select);
  return g ? { action: "select_range", ...g } : null;
}
function mountNav(v) {
  const s = v.s;
  const { root, canvas, viewport, treeHead, actions, treeNote, details, search } = v.els;
  function rowElement(i) {
    return canvas.querySelector(`.sdw-row[data-idx="${i}"]`);
  }
  function focusRowElement() {
    const rowEl = s.nav.focus >= 0 ? rowElement(s.nav.focus) : null;
    if (rowEl) rowEl.focus({ preventScroll: true });
  }
  function scrollToPos(pos) {
    if (pos < 0) return;
    const headH = treeHead.offsetHeight;
    const rowTop = canvas.offsetTop + pos * ROW_H;
    const viewH = viewport.clientHeight || VIEWPORT_FALLBACK_H;
    if (rowTop - headH < viewport.scrollTop) viewport.scrollTop = rowTop - headH;
    else if (rowTop + ROW_H > viewport.scrollTop + viewH) viewport.scrollTop = rowTop + ROW_H - viewH;
  }
  function moveFocus(i, { focus = true } = {}) {
    s.nav.focus = i;
    scrollToPos(s.visible.indexOf(i));
    v.fn.drawRows(false);
    for (const other of canvas.querySelectorAll('.sdw-row[tabindex="0"]')) other.setAttribute("tabindex", "-1");
    const rowEl = rowElement(i);
    if (rowEl) {
      rowEl.setAttribute("tabindex", "0");
      if (focus) {
        rowEl.focus({ preventScroll: true });
        const sc = scrollerOf(root);
        if (sc) sc.scrollTop += scrollIntoNotebook(rowEl.getBoundingClientRect(), sc.getBoundingClientRect(), actions.getBoundingClientRect().top);
      }
    }
    v.fn.drawCrumb();
    if (s.detailsOpen >= 0) {
      s.detailsOpen = i;
      v.fn.drawDetails();
    }
  }
  function note(text) {
    treeNote.textContent = text || "";
    treeNote.style.display = text ? "" : "none";
  }
  canvas.addEventListener("keydown", (ev) => {
    const rowEl = ev.target.closest(".sdw-row");
    if (!rowEl || !canvas.contains(rowEl)) return;
    if (s.nav.focus !== Number(rowEl.dataset.idx)) s.nav.focus = Number(rowEl.dataset.idx);
    const r = navigate(s.nav, ev, { data: s.data, visible: s.visible, expanded: expansion(s), matches: s.matches, pageRows: pageRows(viewport.clientHeight || VIEWPORT_FALLBACK_H, treeHead.offsetHeight), checkpoints: !!(s.values && s.values.checkpoints) });
    if (!r.handled) return;
    ev.preventDefault();
    ev.stopPropagation();
    const before = s.nav.focus;
    s.nav = r.state;
    const out = keyOutcome(r.effects, { detailsOpen: s.detailsOpen, detailsShown: !details.hidden });
    note(out.note);
    for (const e of out.expand) expansion(s)[e.index] = e.value;
    for (const m of out.messages) v.send(m);
    if (out.detailsOpen !== void 0) {
      s.detailsOpen = out.detailsOpen;
      v.fn.drawDetails();
    }
    if (out.search) search.focus();
    const redraw = out.expand.length > 0;
    if (redraw) v.fn.refreshTree();
    if (s.nav.focus !== before || redraw) moveFocus(s.nav.focus);
  });
  canvas.addEventListener("focusin", (ev) => {
    const rowEl = ev.target.closest && ev.target.closest(".sdw-row");
    if (!rowEl) return;
    const i = Number(rowEl.dataset.idx);
    if (i !== s.nav.focus || rowEl.getAttribute("tabindex") !== "0") {
      for (const other of canvas.querySelectorAll('.sdw-row[tabindex="0"]')) other.setAttribute("tabindex", "-1");
      s.nav.focus = i;
      rowEl.setAttribute("tabindex", "0");
    }
  });
  root.addEventListener("keydown", (ev) => {
    if (!reachesHost(ev)) ev.stopPropagation();
  });
  canvas.addEventListener("mousedown", (ev) => {
    if (ev.shiftKey) ev.preventDefault();
  });
  canvas.addEventListener("click", (ev) => {
    const row = ev.target.closest(".sdw-row");
    if (!row || !canvas.contains(row)) return;
    const i = Number(row.dataset.idx);
    s.nav = { focus: i, anchor: i };
    const actionEl = ev.target.closest("[data-action]");
    const r = rowClick(s.data, i, actionEl ? actionEl.dataset : null, ev.shiftKey, s.clickAnchor);
    if (r.type === "expand") {
      const e = expansion(s);
      e[i] = e[i] ? 0 : 1;
      v.fn.refreshTree();
      return;
    }
    if (r.type === "range") {
      const m = s.clickAnchor && anchorRange(s.data, s.visible, expansion(s), s.matches, s.clickAnchor, i);
      if (m) v.send(m);
      return;
    }
    if (r.anchor) s.clickAnchor = r.anchor;
    if (r.type === "send") v.send(r.message);
  });
  Object.assign(v.fn, { moveFocus, focusRowElement, note });
}

// sd_widgets/widget/static/traits.js
function summaryText(data) {
  const p = data.p;
  const counts = `${fmtInt(p.n_keys || 0)} keys: ${data.countPhrases(p.counts || []).join(", ") || "none"}`;
  return p.diagnosis ? `${counts}. ${p.diagnosis}` : counts;
}
function previewTexts(pv) {
  const line = `${fmtInt(pv.n_tensors)} tensors \xB7 ${fmtInt(pv.n_params)} parameters \xB7 ${fmtBytes(pv.nbytes || 0)}`;
  const more = (pv.n_keys_total || 0) - (pv.keys || []).length;
  return {
    bar: `Selected: ${line}`,
    stats: line + (pv.bn ? ` \xB7 BatchNorm stats: ${pv.bn}` : ""),
    more: more > 0 ? `\u2026 and ${fmtInt(more)} more` : pv.n_tensors ? "" : "Nothing selected: click rows or module nodes, or \u201CSelect all loadable\u201D."
  };
}
function sameSkipped(a, b) {
  return a.size === b.size && [...a].every(([k, why]) => b.get(k) === why);
}
function actionMessage(action, dataset, ruleForm, softDisabled) {
  if ((action === "load" || action === "undo") && softDisabled) return null;
  switch (action) {
    case "select-loadable":
      return { action: "select_all_loadable" };
    case "select-none":
      return { action: "select_none" };
    case "load":
      return { action: "load" };
    case "undo":
      return { action: "undo" };
    case "dismiss-message":
      return { action: "dismiss_message" };
    case "accept-suggestion":
      return { action: "accept_suggestion", id: dataset.id };
    case "remove-rule":
      return { action: "remove_rule", index: Number(dataset.index) };
    case "add-rule":
      return { action: "add_rule", kind: ruleForm.kind, old: ruleForm.old, new: ruleForm.new };
    default:
      return null;
  }
}
function busyRefusal(action, busyText) {
  if (action !== "load" && action !== "undo") return "";
  const label = action === "load" ? "Load selected" : "Undo";
  const doing = (busyText || "").replace(/…$/, "") || "the last action";
  return `\u201C${label}\u201D was not sent: ${doing} is still running. Press it again when it is done.`;
}
function carryOver(oldData, oldExpanded, oldFocus, data) {
  const expanded = initialExpansion(data);
  if (oldData.n > 0) {
    const open = /* @__PURE__ */ new Set();
    for (let i = 0; i < oldData.n; i++) if (oldData.c.t[i] === 0 && oldExpanded[i]) open.add(oldData.c.path[i]);
    for (let i = 0; i < data.n; i++) if (data.c.t[i] === 0 && open.has(data.c.path[i])) expanded[i] = 1;
  }
  let focus = -1;
  if (oldFocus >= 0 && oldFocus < oldData.n) {
    const path = oldData.c.path[oldFocus];
    const found = oldData.c.t[oldFocus] === 1 ? data.keyIndex.get(path) : data.moduleIndex.get(path);
    if (found !== void 0) focus = found;
  }
  return { expanded, focus };
}
function mountActions(v) {
  const s = v.s;
  const { root, canvas, bnGroup, ruleKind, ruleOld, ruleNew, copyCode, busyNote } = v.els;
  root.addEventListener("click", (ev) => {
    const actionEl = ev.target.closest("[data-action]");
    if (!actionEl || canvas.contains(actionEl)) return;
    const action = actionEl.dataset.action;
    if (action === "expand-all" || action === "collapse-all") {
      const value = action === "expand-all" ? 1 : 0;
      const e = expansion(s);
      for (let i = 0; i < s.data.n; i++) if (s.data.c.t[i] === 0) e[i] = value;
      v.fn.refreshTree();
      return;
    }
    const form = { kind: ruleKind.value, old: ruleOld.value, new: ruleNew.value };
    const softDisabled = actionEl.getAttribute("aria-disabled") === "true";
    const message = actionMessage(action, actionEl.dataset, form, softDisabled);
    const refusal = softDisabled && v.model.get("busy") ? busyRefusal(action, v.model.get("busy_text") || "") : "";
    if (message) v.send(message);
    else if (refusal) {
      busyNote.textContent = refusal;
      busyNote.dataset.refused = action;
    } else if (action === "message-offer") {
      const m = v.model.get("message") || {};
      if (m.offer && m.offer.content) v.send(m.offer.content);
    } else if (action === "copy-code") copyCode();
    else if (action === "goto-problem") {
      const i = s.data.keyIndex.get(actionEl.dataset.key);
      if (i !== void 0) v.fn.reveal(i);
    } else if (action === "show-problems") v.fn.setOnlyProblems(true);
    else if (action === "close-details") {
      s.detailsOpen = -1;
      v.fn.drawDetails();
      if (s.nav.focus >= 0) v.fn.moveFocus(s.nav.focus);
    }
  });
  bnGroup.addEventListener("change", (ev) => {
    if (ev.target.dataset.role === "bn-policy" && ev.target.checked) v.send({ action: "set_bn", policy: ev.target.value });
  });
}
function mountTraits(v) {
  const s = v.s;
  const model = v.model;
  const e = v.els;
  function drawHeader() {
    const p = s.data.p;
    e.title.replaceChildren(
      h("span", { className: "sdw-title-main", text: "State dict explorer" }),
      h("span", { className: "sdw-muted", text: ` ${p.model || "model"} \u2190 ${p.source || "checkpoint"}` })
    );
    e.summary.textContent = summaryText(s.data);
    e.root.dataset.nKeys = String(p.n_keys || 0);
  }
  function drawSelection() {
    s.data.setSelection(model.get("selected_keys"), model.get("adapters"));
    v.fn.patchRows();
    if (s.detailsOpen >= 0) v.fn.drawDetails();
  }
  function drawPreview() {
    const pv = model.get("preview") || {};
    e.preview.dataset.nTensors = String(pv.n_tensors || 0);
    e.preview.dataset.nParams = String(pv.n_params || 0);
    e.preview.dataset.nbytes = String(pv.nbytes || 0);
    const t = previewTexts(pv);
    e.previewLine.textContent = t.bar;
    e.previewStats.textContent = t.stats;
    const pkeys = pv.keys || [];
    const items = e.previewKeys.children;
    for (let j = 0; j < pkeys.length; j++) {
      if (j >= items.length) e.previewKeys.appendChild(h("li", { text: pkeys[j] }));
      else if (items[j].textContent !== pkeys[j]) items[j].textContent = pkeys[j];
    }
    while (items.length > pkeys.length) e.previewKeys.lastElementChild.remove();
    e.previewMore.textContent = t.more;
    const skippedPairs = pv.skipped || [];
    const next = skippedKeys(pv);
    const changed = !sameSkipped(next, s.skipped);
    s.skipped = next;
    if (changed) {
      v.fn.patchRows();
      if (s.detailsOpen >= 0) v.fn.drawDetails();
    }
    e.skippedList.replaceChildren(...skippedPairs.length ? skippedPairs.map(([k, why]) => h("li", { title: why }, [h("span", { className: "sdw-key", text: k }), h("span", { className: "sdw-muted", text: ` \u2014 ${why}` })])) : [h("li", { className: "sdw-muted", dataset: { role: "preview-skipped-none" }, text: pv.n_tensors ? "Nothing: every selected key will be loaded." : "\u2014" })]);
  }
  function drawMessage() {
    const m = model.get("message") || {};
    e.messageBar.dataset.level = m.text ? m.level || "info" : "none";
    e.messageText.textContent = m.text || "";
    const offer = m.text && m.offer && m.offer.label && m.offer.content ? m.offer : null;
    e.messageOffer.hidden = !offer;
    e.messageOffer.textContent = offer ? offer.label : "";
    e.messageOffer.title = offer ? offer.title || "" : "";
    const detail = m.detail || "";
    e.messageDetail.querySelector("pre").textContent = detail;
    e.messageDetail.style.display = detail ? "" : "none";
  }
  function drawBusy() {
    const { loadBtn, undoBtn } = e;
    const busy = !!model.get("busy");
    const busyText = model.get("busy_text") || "";
    v.fn.drawBusyPanel(busy || !!busyText, busyText);
    v.fn.drawErrorState(model.get("error") || {});
    e.root.dataset.busy = String(busy);
    e.busyNote.style.visibility = busy || busyText ? "visible" : "hidden";
    if (!busy && e.busyNote.dataset.refused) {
      e.busyNote.textContent = "working\u2026";
      delete e.busyNote.dataset.refused;
    }
    const canUndo = !!model.get("can_undo");
    const soft = (b, off) => off ? b.setAttribute("aria-disabled", "true") : b.removeAttribute("aria-disabled");
    soft(loadBtn, busy);
    const err = model.get("error");
    loadBtn.disabled = !!(err && err.text);
    if (!canUndo && undoBtn === focusedIn(undoBtn)) {
      undoBtn.disabled = false;
      soft(undoBtn, true);
    } else {
      undoBtn.disabled = !canUndo;
      soft(undoBtn, busy && canUndo);
    }
    undoBtn.title = canUndo ? "Restore the tensors the last load replaced" : "Nothing to undo yet";
  }
  function drawBn() {
    const policy = model.get("bn_policy");
    for (const r of e.bnGroup.querySelectorAll("input")) r.checked = r.value === policy;
  }
  function onTree() {
    const data = new TreeData(decodeTree(model.get("tree")));
    const kept = carryOver(s.data, s.expanded, s.nav.focus, data);
    s.data = data;
    s.statusOn = e.onlyProblems.checked ? problemStatuses(data) : allStatuses(data);
    s.expanded = kept.expanded;
    s.nav = { focus: kept.focus, anchor: -1 };
    s.clickAnchor = null;
    if (s.detailsOpen >= 0) s.detailsOpen = kept.focus;
    data.setSelection(model.get("selected_keys"), model.get("adapters"));
    drawHeader();
    v.fn.drawStatusStyle();
    v.fn.drawCkptHead();
    v.fn.drawLegend();
    v.fn.drawProblems();
    v.fn.sizeColumns();
    v.fn.applyFilter();
    v.fn.drawDetails();
  }
  const on = v.on;
  on("change:tree", onTree);
  on("change:selected_keys", drawSelection);
  on("change:adapters", () => {
    drawSelection();
    v.fn.sizeColumns();
  });
  on("change:preview", drawPreview);
  on("change:message", drawMessage);
  on("change:busy", drawBusy);
  on("change:busy_text", drawBusy);
  on("change:can_undo", drawBusy);
  on("change:bn_policy", drawBn);
  on("change:error", drawBusy);
  onTree();
  drawPreview();
  drawMessage();
  drawBusy();
  drawBn();
}

// sd_widgets/widget/static/panels.js
var RESULTS_PAGE = 50;
function resultsOrder(table, query, sortBy, dir) {
  const d = table.data || {};
  const keys = d.key || [];
  const idx = [];
  const q = (query || "").toLowerCase();
  for (let i = 0; i < keys.length; i++) if (!q || String(keys[i]).toLowerCase().includes(q)) idx.push(i);
  const col = d[sortBy];
  if (col) {
    idx.sort((a, b) => {
      const x = col[a] === "inf" ? Infinity : col[a];
      const y = col[b] === "inf" ? Infinity : col[b];
      const xn = x === null || x === void 0;
      const yn = y === null || y === void 0;
      if (xn || yn) return xn && yn ? a - b : xn ? 1 : -1;
      if (typeof x === "number" && typeof y === "number") return x === y ? a - b : (x - y) * dir;
      const c = String(x).localeCompare(String(y));
      return c === 0 ? a - b : c * dir;
    });
  }
  return idx;
}
function fmtCell(v, type) {
  if (v === null || v === void 0) return "";
  if (type === "num") {
    if (v === "inf") return "\u221E (from 0)";
    const a = Math.abs(v);
    if (a === 0) return "0";
    return a >= 1e4 || a < 1e-3 ? v.toExponential(2) : v.toPrecision(3);
  }
  if (type === "int") return Number(v).toLocaleString("en-US");
  return String(v);
}
function mountPanels(ctx) {
  const { model, send, on, root, slots } = ctx;
  const button2 = (text, action, title, extra = "") => h("button", { className: `sdw-btn ${extra}`.trim(), text, title, dataset: { action }, attrs: { type: "button" } });
  const busyText = h("span", { className: "sdw-busy-text", dataset: { role: "busy-text" } });
  const busyPanel = h("div", { className: "sdw-busy-panel", dataset: { role: "busy-panel", busy: "false" }, attrs: { role: "status", "aria-live": "polite" } }, [
    h("span", { className: "sdw-spinner", attrs: { "aria-hidden": "true" } }),
    busyText
  ]);
  function drawBusy(busy, text) {
    busyPanel.dataset.busy = String(busy);
    busyText.textContent = busy ? text || "working\u2026" : "";
  }
  const errorTitle = h("div", { className: "sdw-error-title", dataset: { role: "error-title" } });
  const errorText = h("pre", { className: "sdw-error-text", dataset: { role: "error-text" } });
  const errorFix = h("div", { className: "sdw-error-fix", dataset: { role: "error-fix" } });
  const errorPanel = h("div", { className: "sdw-error-state", dataset: { role: "error-state" }, attrs: { role: "alert" } }, [
    errorTitle,
    errorText,
    h("div", { className: "sdw-error-fix-head", text: "How to fix it" }),
    errorFix
  ]);
  function drawError(e) {
    const isError = !!(e && e.text);
    root.dataset.state = isError ? "error" : "ok";
    errorPanel.hidden = !isError;
    errorTitle.textContent = e.title || "";
    errorText.textContent = e.text || "";
    errorFix.textContent = e.fix || "";
  }
  const staleText = h("span", { className: "sdw-stale-text", dataset: { role: "stale-text" } });
  const stalePanel = h("div", { className: "sdw-stale", dataset: { role: "stale" }, attrs: { role: "alert" } }, [
    h("span", { className: "sdw-stale-icon", text: "\u27F3", attrs: { "aria-hidden": "true" } }),
    staleText,
    button2("Refresh", "refresh", "Compare the model as it is now and clear the old statistics", "sdw-btn-primary")
  ]);
  function drawStale() {
    const s = model.get("stale") || {};
    const isStale = !!(s && s.text);
    root.dataset.stale = String(isStale);
    stalePanel.hidden = !isStale;
    staleText.textContent = s.text || "";
  }
  const bannerHead = h("span", { className: "sdw-banner-head", dataset: { role: "banner-head" } });
  const bannerText = h("span", { className: "sdw-banner-text", dataset: { role: "banner-text" } });
  const bannerPanel = h("div", { className: "sdw-banner", dataset: { role: "banner" } }, [
    h("span", { className: "sdw-banner-icon", text: "Fix", attrs: { "aria-hidden": "true" } }),
    h("span", { className: "sdw-banner-body" }, [bannerHead, bannerText]),
    button2("Apply", "apply-banner", "Add this rename rule and re-align the tree", "sdw-btn-primary"),
    button2("\xD7", "dismiss-banner", "Hide this suggestion", "sdw-btn-icon")
  ]);
  function drawBanner() {
    const b = model.get("banner") || {};
    bannerPanel.hidden = !(b && b.id);
    bannerPanel.dataset.id = b.id || "";
    bannerHead.textContent = b.head ? `${b.head}: ` : "";
    bannerText.textContent = b.text || "";
    bannerPanel.title = b.label ? `rule: ${b.label}` : "";
  }
  const loraText = h("span", { className: "sdw-lora-text", dataset: { role: "lora-text" } });
  const loraWhy = h("span", { className: "sdw-lora-why", dataset: { role: "lora-why" } });
  const loraMerge = button2("Merge into the model's weights", "merge-lora", "", "sdw-btn-primary");
  const loraList = h("ul", { className: "sdw-lora-list", dataset: { role: "lora-list" } });
  const loraCount = h("summary", { dataset: { role: "lora-count" } });
  const loraPairs = h("details", { className: "sdw-lora-pairs", dataset: { role: "lora-pairs" } }, [loraCount, loraList]);
  const loraPanel = h("div", { className: "sdw-lora", dataset: { role: "lora" }, attrs: { role: "region", "aria-label": "LoRA adapter" } }, [
    h("div", { className: "sdw-lora-head" }, [
      h("span", { className: "sdw-banner-icon", text: "LoRA", attrs: { "aria-hidden": "true" } }),
      h("span", { className: "sdw-lora-body" }, [loraText, loraWhy]),
      loraMerge
    ]),
    loraPairs
  ]);
  function drawLora() {
    const l = model.get("lora") || {};
    if (ctx.onLora) ctx.onLora(l);
    loraPanel.hidden = !(l && l.text);
    if (loraPanel.hidden) return;
    loraText.textContent = l.text;
    loraPanel.title = l.describe || "";
    loraWhy.textContent = l.why_not ? ` ${l.why_not}` : "";
    const b = (
      /** @type {HTMLButtonElement} */
      loraMerge
    );
    b.hidden = !l.can_merge;
    b.disabled = !!l.merged;
    b.textContent = l.merged ? "Merged \u2713 (Undo restores the weights)" : l.merge_label || "Merge into the model's weights";
    b.title = l.merge_title || "";
    const pairs = l.pairs || [];
    loraCount.textContent = l.pairs_label || `${pairs.length} factor pairs`;
    loraList.replaceChildren(
      ...pairs.map(
        (p) => h("li", { className: `sdw-lora-pair${p.problem ? " sdw-lora-blocked" : ""}`, dataset: { role: "lora-pair", key: p.base } }, [
          h("button", { className: "sdw-btn sdw-lora-base", text: p.base, title: `Show ${p.base} in the tree`, dataset: { action: "goto-problem", key: p.base }, attrs: { type: "button" } }),
          h("span", { className: "sdw-lora-factors", text: ` \u2190 ${p.factors}`, title: `${p.a_key}
${p.b_key}` }),
          ...p.problem ? [h("span", { className: "sdw-lora-problem", text: ` not merged: ${p.problem}` })] : []
        ])
      ),
      ...l.n_pairs > pairs.length ? [h("li", { className: "sdw-muted", text: `\u2026 and ${(l.n_pairs - pairs.length).toLocaleString("en-US")} more` })] : []
    );
  }
  const weightSelect = h("select", { dataset: { role: "weight-set" }, attrs: { "aria-label": "Weight set of the checkpoint" } });
  const weightPanel = h("div", { className: "sdw-weight-sets", dataset: { role: "weight-sets" } }, [
    h("span", { className: "sdw-muted", text: "This checkpoint holds several weight sets; showing: " }),
    weightSelect
  ]);
  function drawWeights() {
    const sets = model.get("weight_sets") || [];
    weightPanel.hidden = sets.length < 2;
    weightSelect.replaceChildren(
      ...sets.map(
        (w) => h("option", { text: `${w.key}${w.n_tensors !== null && w.n_tensors !== void 0 ? ` (${w.n_tensors} tensors)` : ""}`, attrs: { value: w.key, selected: !!w.current } })
      )
    );
    const cur = sets.find((w) => w.current);
    if (cur) weightSelect.value = cur.key;
  }
  weightSelect.addEventListener("change", () => send({ action: "switch_weights", key: (
    /** @type {HTMLSelectElement} */
    weightSelect.value
  ) }));
  const metaPanel = h("div", { className: "sdw-meta-leftovers", dataset: { role: "meta-leftovers" }, attrs: { role: "alert" } });
  function drawMeta() {
    const m = model.get("meta_leftovers") || {};
    metaPanel.hidden = !(m && m.n);
    metaPanel.replaceChildren(
      ...m && m.n ? [
        h("div", { text: m.text || "" }),
        h("details", {}, [
          h("summary", { text: `the ${m.n} keys` }),
          h("ul", { className: "sdw-keylist" }, (m.keys || []).map((k) => h("li", { text: k })))
        ])
      ] : []
    );
  }
  slots.top.append(errorPanel, stalePanel, bannerPanel, loraPanel, weightPanel, metaPanel, busyPanel);
  const nameInput = h("input", {
    className: "sdw-model-name",
    attrs: { type: "text", spellcheck: "false", "aria-label": "Model variable name used by the code", size: "14" },
    dataset: { role: "model-name" }
  });
  const nameError = h("span", { className: "sdw-code-error", dataset: { role: "code-error" } });
  const nameBar = h("div", { className: "sdw-model-name-bar", dataset: { role: "model-name-bar" } }, [
    h("label", { className: "sdw-muted" }, ["Model variable: ", nameInput]),
    nameError
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
    const v = (
      /** @type {HTMLInputElement} */
      nameInput.value.trim()
    );
    if (v !== model.get("model_name")) send({ action: "set_model_name", name: v });
  };
  nameInput.addEventListener("input", () => {
    clearTimeout(nameTimer);
    nameTimer = window.setTimeout(commitName, 300);
  });
  nameInput.addEventListener("change", commitName);
  nameInput.addEventListener("keydown", (ev) => {
    ev.stopPropagation();
    if (
      /** @type {KeyboardEvent} */
      ev.key === "Enter"
    ) commitName();
  });
  function drawName() {
    const el = (
      /** @type {HTMLInputElement} */
      nameInput
    );
    if (focusedIn(el) !== el) el.value = model.get("model_name") || "model";
    const err = model.get("code_error") || "";
    nameError.textContent = err;
    el.setAttribute("aria-invalid", String(!!err));
  }
  let sortBy = "rel_change";
  let sortDir = -1;
  let query = "";
  let page = 0;
  let order = [];
  const resState = h("div", { className: "sdw-results-state", dataset: { role: "results-state" } });
  const resSearch = h("input", {
    className: "sdw-search",
    attrs: { type: "search", placeholder: "Search loaded tensors\u2026", "aria-label": "Search loaded tensors", spellcheck: "false" },
    dataset: { role: "results-search" }
  });
  const resCount = h("span", { className: "sdw-muted", dataset: { role: "results-count" } });
  const prevBtn = button2("\u2039 Prev", "page-prev", "Previous page");
  const nextBtn = button2("Next \u203A", "page-next", "Next page");
  const pageText = h("span", { className: "sdw-muted", dataset: { role: "results-page" } });
  const thead = h("thead");
  const tbody = h("tbody");
  const table = h("table", { className: "sdw-results-table", dataset: { role: "results-table" } }, [thead, tbody]);
  const picked = h("div", { className: "sdw-picked", dataset: { role: "picked" } });
  const bnInput = h("input", {
    attrs: { type: "search", list: "", placeholder: "BatchNorm module\u2026", "aria-label": "BatchNorm module to plot", spellcheck: "false" },
    dataset: { role: "bn-picker" }
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
    bnCount
  ]);
  const resBar = h("div", { className: "sdw-results-bar" }, [resSearch, resCount, h("span", { className: "sdw-spacer" }), prevBtn, pageText, nextBtn]);
  const resultsBox = h("div", { className: "sdw-results-box", dataset: { role: "results-box" } }, [
    resState,
    resBar,
    h("div", { className: "sdw-results-scroll" }, [table]),
    picked,
    bnBar
  ]);
  slots.results.append(resultsBox);
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
    resState.textContent = state === "computing" ? `computing statistics of ${r.n} tensors\u2026` : state === "stale" ? "stale: the model changed after this load \u2014 Refresh (above) to compare it as it is now" : state === "none" ? "No results yet: load something to see per-tensor changes here." : "";
    resState.hidden = state === "ready";
    const hasRows = state === "ready" || state === "stale";
    table.hidden = !hasRows;
    resBar.hidden = !hasRows;
    thead.replaceChildren(
      h("tr", {}, cols.map(
        (c) => h("th", {
          text: c.label + (c.name === sortBy ? sortDir > 0 ? " \u25B2" : " \u25BC" : ""),
          title: `Sort by ${c.label}`,
          dataset: { sort: c.name, type: c.type },
          attrs: { "aria-sort": c.name === sortBy ? sortDir > 0 ? "ascending" : "descending" : "none", tabindex: "0", scope: "col" }
        })
      ))
    );
    const d = r.data || {};
    const start = page * RESULTS_PAGE;
    const shown = hasRows ? order.slice(start, start + RESULTS_PAGE) : [];
    const current = model.get("histogram_key") || "";
    tbody.replaceChildren(
      ...shown.map(
        (i) => h("tr", {
          className: `sdw-result-row${d.key[i] === current ? " sdw-result-picked" : ""}`,
          dataset: { role: "result-row", key: d.key[i] },
          title: "Click to plot this tensor before/after",
          attrs: { tabindex: "0" }
        }, cols.map((c) => {
          const v = (d[c.name] || [])[i];
          const cls = c.name === "nonfinite" && v ? "sdw-cell-bad" : c.type === "str" ? "" : "sdw-num";
          return h("td", { className: cls, text: fmtCell(v, c.type), dataset: { col: c.name } });
        }))
      )
    );
    const pages = Math.max(1, Math.ceil(order.length / RESULTS_PAGE));
    resCount.textContent = hasRows ? `${order.length.toLocaleString("en-US")} of ${(r.n || 0).toLocaleString("en-US")} tensors` : "";
    pageText.textContent = hasRows ? `page ${page + 1} / ${pages}` : "";
    prevBtn.disabled = !hasRows || page === 0;
    nextBtn.disabled = !hasRows || page >= pages - 1;
  }
  function onResults() {
    recomputeOrder();
    drawTable();
    ctx.tabs.setResults(results());
  }
  thead.addEventListener("click", (ev) => {
    const th = (
      /** @type {HTMLElement} */
      ev.target.closest("th[data-sort]")
    );
    if (!th) return;
    const name = (
      /** @type {HTMLElement} */
      th.dataset.sort || ""
    );
    if (name === sortBy) sortDir = -sortDir;
    else {
      sortBy = name;
      sortDir = /** @type {HTMLElement} */
      th.dataset.type === "str" ? 1 : -1;
    }
    page = 0;
    onResults();
  });
  thead.addEventListener("keydown", (ev) => {
    const k = (
      /** @type {KeyboardEvent} */
      ev.key
    );
    if (k === "Enter" || k === " ") {
      ev.preventDefault();
      ev.stopPropagation();
      ev.target.click();
    }
  });
  let searchTimer = 0;
  resSearch.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = window.setTimeout(() => {
      query = /** @type {HTMLInputElement} */
      resSearch.value.trim();
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
    const tr = (
      /** @type {HTMLElement} */
      ev.target.closest("tr[data-role=result-row]")
    );
    if (tr) pickRow(tr);
  });
  tbody.addEventListener("keydown", (ev) => {
    const k = (
      /** @type {KeyboardEvent} */
      ev.key
    );
    const tr = (
      /** @type {HTMLElement} */
      ev.target.closest("tr[data-role=result-row]")
    );
    if (!tr) return;
    if (k === "Enter" || k === " ") {
      ev.preventDefault();
      ev.stopPropagation();
      pickRow(tr);
    } else if (k === "ArrowDown" || k === "ArrowUp") {
      ev.preventDefault();
      ev.stopPropagation();
      const next = k === "ArrowDown" ? tr.nextElementSibling : tr.previousElementSibling;
      if (next) next.focus();
    }
  });
  function drawPicked() {
    const one = model.get("histogram") || {};
    picked.replaceChildren(
      ...one && one.src ? [
        h("div", { className: "sdw-subhead", text: `Before/after: ${one.key}` }),
        h("img", { attrs: { src: one.src, alt: `before/after histogram of ${one.key}` }, dataset: { role: "picked-histogram", key: one.key } })
      ] : []
    );
    for (const tr of tbody.querySelectorAll("tr[data-role=result-row]")) {
      tr.classList.toggle(
        "sdw-result-picked",
        /** @type {HTMLElement} */
        tr.dataset.key === one.key
      );
    }
    ctx.tabs.setHistogram(one);
  }
  function drawBnPicker() {
    const mods = model.get("bn_modules") || [];
    bnBar.hidden = mods.length === 0;
    bnList.replaceChildren(...mods.map((m) => h("option", { attrs: { value: m } })));
    bnCount.textContent = mods.length ? ` ${mods.length.toLocaleString("en-US")} modules changed; plotted: ${model.get("bn_module") || "\u2014"}` : "";
    const el = (
      /** @type {HTMLInputElement} */
      bnInput
    );
    if (focusedIn(el) !== el) el.value = model.get("bn_module") || "";
  }
  const commitBn = () => {
    const v = (
      /** @type {HTMLInputElement} */
      bnInput.value.trim()
    );
    const mods = model.get("bn_modules") || [];
    if (mods.includes(v) && v !== model.get("bn_module")) send({ action: "bn_module", module: v });
  };
  bnInput.addEventListener("change", commitBn);
  bnInput.addEventListener("input", () => {
    const v = (
      /** @type {HTMLInputElement} */
      bnInput.value.trim()
    );
    if ((model.get("bn_modules") || []).includes(v)) commitBn();
  });
  bnInput.addEventListener("keydown", (ev) => {
    ev.stopPropagation();
    if (
      /** @type {KeyboardEvent} */
      ev.key === "Enter"
    ) commitBn();
  });
  root.addEventListener("click", (ev) => {
    const el = (
      /** @type {HTMLElement | null} */
      /** @type {HTMLElement} */
      ev.target.closest("[data-action]")
    );
    if (!el || !root.contains(el)) return;
    const action = el.dataset.action;
    if (action === "apply-banner") {
      const b = model.get("banner") || {};
      if (b.id) send({ action: "accept_suggestion", id: b.id });
    } else if (action === "dismiss-banner") send({ action: "dismiss_banner" });
    else if (action === "merge-lora") {
      if (!/** @type {HTMLButtonElement} */
      el.disabled) send({ action: "merge_lora" });
    } else if (action === "refresh") send({ action: "refresh" });
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

// sd_widgets/widget/static/tree.js
function statusStyleRules(legend) {
  const rules = [];
  for (const item of legend || []) {
    if (!/^[a-z_]+$/.test(item.status)) continue;
    const colour = /^#[0-9a-fA-F]{3,8}$/.test(item.colour || "") ? item.colour : "#888888";
    rules.push(`.sdw-explorer .sdw-status-${item.status} { --sdw-c: var(--sdw-c-${item.status}, ${colour}); }`);
  }
  return rules.join("\n");
}
function statusColours(legend) {
  const out = [];
  for (const item of legend || []) {
    if (/^[a-z_]+$/.test(item.status) && /^#[0-9a-fA-F]{3,8}$/.test(item.colour || "")) out.push([`--sdw-c-${item.status}`, item.colour]);
  }
  return out;
}
function toneColours(legend) {
  const out = /* @__PURE__ */ new Map();
  for (const item of legend || []) {
    const tone = item.tone || "";
    const colour = item.tone_colour || "";
    if (/^[a-z]+$/.test(tone) && /^#[0-9a-fA-F]{3,8}$/.test(colour) && !out.has(tone)) out.set(tone, colour);
  }
  return [...out].map(([tone, colour]) => [`--sdw-tone-${tone}`, colour]);
}
function render({ model, el }) {
  const cleanups = [];
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
      data: new TreeData(null),
      // traits.js, the owner of `tree`, decodes it when it mounts
      readOnly: !!model.get("read_only"),
      expanded: new Uint8Array(0),
      filterExpanded: new Uint8Array(0),
      matches: null,
      visible: new Int32Array(0),
      clickAnchor: null,
      nav: { focus: -1, anchor: -1 },
      detailsOpen: -1,
      skipped: /* @__PURE__ */ new Map(),
      userWidths: {},
      query: "",
      statusOn: /* @__PURE__ */ new Set(),
      sharedNote: "",
      fittedTo: -1,
      loraNotes: /* @__PURE__ */ new Map()
    },
    els: {},
    fn: (
      /** @type {ViewFns} */
      {}
    )
  };
  v.els = buildSkeleton(v);
  const { root, viewport, crumb, topSlot, resultsSlot, codeSlot, statusStyle } = v.els;
  if (v.s.readOnly) root.dataset.readonly = "true";
  const tabs = { setResults: v.els.setResults, setHistogram: v.els.setHistogram };
  const onLora = (lora) => {
    v.s.loraNotes = loraNotes(lora);
    if (v.fn.sizeColumns) v.fn.sizeColumns();
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
  let sized = root.isConnected;
  const ro = typeof ResizeObserver === "function" ? new ResizeObserver(() => {
    v.fn.queueStick();
    crumb.style.width = `${viewport.clientWidth}px`;
    if (!sized && root.isConnected || viewport.clientWidth !== v.s.fittedTo) {
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

// sd_widgets/widget/static/report.js
function snapshotModel(state) {
  const listeners = /* @__PURE__ */ new Map();
  return {
    /** @param {string} name */
    get: (name) => state[name],
    /** @param {string} name @param {any} value */
    set(name, value) {
      state[name] = value;
      for (const fn of [...listeners.get(`change:${name}`) || []]) fn();
    },
    save_changes() {
    },
    send() {
    },
    /** @param {string} name @param {Function} fn */
    on(name, fn) {
      if (!listeners.has(name)) listeners.set(name, []);
      listeners.get(name).push(fn);
    },
    /** @param {string} name @param {Function} fn */
    off(name, fn) {
      const list = listeners.get(name) || [];
      const at = list.indexOf(fn);
      if (at >= 0) list.splice(at, 1);
    }
  };
}
function bootReport(doc, render2) {
  const state = doc ? doc.getElementById("sdw-state") : null;
  const el = doc ? doc.getElementById("sdw-report") : null;
  if (!state || !el || el.dataset.rendered) return false;
  el.dataset.rendered = "true";
  render2({ model: snapshotModel(JSON.parse(state.textContent || "{}")), el });
  return true;
}

// sd_widgets/widget/static/explorer.js
bootReport(typeof document === "undefined" ? void 0 : document, render);
var explorer_default = { render };
export {
  explorer_default as default
};
