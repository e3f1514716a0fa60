// @ts-check
// sd_widgets Explorer: pure functions (no DOM), shared by tree.js and panels.js and unit-tested
// with `node --test tests/js`. Nothing here touches `document` or the widget model.
//
// Sections: payload typedefs · formatting · TreeData (columnar payload access, selection
// counts, filtering) · visible rows and expansion · names and details · range selection ·
// keyboard navigation (a pure reducer) · column widths.

// ============================================================================ payload typedefs

/**
 * The tree payload built by `sd_widgets/widgets/payload.py:payload_from_comparison`: the module
 * tree flattened in pre-order, one entry per module node or tensor row, each column a list
 * indexed by entry. A subtree is the contiguous range `[i + 1, end[i])`. The columns are the
 * payload's own (`payload.py` documents each); this typedef names those the view reads.
 *
 * @typedef {object} TreeColumns
 * @property {number[]} t            0 = module node, 1 = tensor row
 * @property {number[]} depth        0 for children of the root
 * @property {number[]} end          one past the entry's subtree (i + 1 for a tensor)
 * @property {number[]} parent       parent module entry, -1 for children of the root
 * @property {string[]} name         last path segment
 * @property {string[]} path         module path, or row key (model key when the model has it)
 * @property {(string|null)[]} module_type
 * @property {(number[]|null)[]} counts   modules: one count per status of `statuses`
 * @property {number[]} sides        1 checkpoint only, 2 model only, 3 both
 * @property {(number|null)[]} status     tensors: index into `statuses`
 * @property {(string|null)[]} kind       "param" | "buffer" | null
 * @property {(string|null)[]} ckpt_key   checkpoint key when it differs from `path` (a rename)
 * @property {(string|null)[]} model_key  model key when it differs from `path`
 * @property {(number[]|null)[]} ckpt_shape
 * @property {(number[]|null)[]} model_shape
 * @property {(number|null)[]} ckpt_dtype  index into `dtypes`
 * @property {(number|null)[]} model_dtype
 * @property {number[]} nbytes
 * @property {number[]} numel
 * @property {(number|null)[]} loadable   1 when selectable as is (Python decides)
 * @property {(number|null)[]} adaptable  1 for a shape mismatch an adapter can load
 * @property {(string|null)[]} reason     why the row cannot be loaded as is
 * @property {(string[]|null)[]} tied     other keys sharing the storage
 * @property {(string|null)[]} tied_to    a model key absent from the checkpoint: the key it is tied to
 */

/**
 * One status as `sd_widgets/statuses.py:legend()` ships it. The front end decides by the flags
 * (`problem`, `loadable`, `cast`, `differs`, `tone`), never by a status name.
 * @typedef {object} LegendItem
 * @property {string} status
 * @property {string} icon
 * @property {string} label
 * @property {string} plural
 * @property {string} [colour]
 * @property {string} description
 * @property {"ok"|"warn"|"error"|"info"} [tone]  how serious: colours messages and warnings
 * @property {string} [tone_colour]  the tone's colour (CSS variable --sdw-tone-<tone>)
 * @property {boolean} [problem]   anything but a match
 * @property {boolean} [loadable]  loads as it is
 * @property {boolean} [cast]      loads, cast to the model's dtype
 * @property {""|"shape"|"dtype"} [differs]  the column that differs between the two sides
 */

/**
 * @typedef {object} TreePayload
 * @property {number} [version]
 * @property {string[]} statuses
 * @property {LegendItem[]} legend
 * @property {string[]} dtypes
 * @property {number[]} counts
 * @property {number} n_keys
 * @property {number} n_entries
 * @property {string} [source]
 * @property {string} [model]
 * @property {string} [diagnosis]  one sentence about every shape mismatch at once, or ""
 * @property {TreeColumns} columns
 */

/** @typedef {Record<string, string>} Adapters  row key -> adapter name */

// ============================================================================ formatting

/**
 * Python's `format(v, ".Nf")`: the double's exact value rounded, an exact tie to the even digit
 * (toFixed rounds a tie away from zero: 1.25 → "1.3" where Python prints "1.2"; 1.05 is no tie,
 * its double is 1.05000000000000004…).
 * @param {number} v
 * @param {number} digits
 */
export function pyFixed(v, digits) {
  const out = v.toFixed(digits);
  const exact = Math.abs(v).toFixed(Math.min(100, digits + 60)); // every digit of the double
  const point = exact.indexOf(".");
  const kept = digits ? exact.slice(0, point + 1 + digits) : exact.slice(0, point);
  if (!/^50*$/.test(exact.slice(point + 1 + digits))) return out;
  return Number(kept.at(-1)) % 2 === 0 ? (v < 0 ? "-" : "") + kept : out;
}

/**
 * A byte count as `sd_widgets.units.human_bytes` writes it ("999 B", "1.7 KB", "1.0 MB"):
 * powers of 1000, whole bytes, one decimal above, a value that rounds to 1000 in the next unit.
 * tests/js checks it against Python's output (fixtures/formats.json).
 * @param {number} n
 */
export function fmtBytes(n) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let v = Number(n) || 0;
  for (let i = 0; ; i++) {
    const text = pyFixed(v, i === 0 ? 0 : 1);
    if (Math.abs(Number(text)) < 1000 || i === units.length - 1) return `${text} ${units[i]}`;
    v /= 1000;
  }
}

/** Integer with thousands separators ("12,001"), as Python's `f"{n:,}"`. @param {number|null|undefined} n */
export function fmtInt(n) {
  return Number(n || 0).toLocaleString("en-US");
}

/** A shape as "[10, 32]"; "" when absent; "[]" for a scalar. @param {number[]|null|undefined} s */
export function fmtShape(s) {
  return s === null || s === undefined ? "" : `[${s.join(", ")}]`;
}

/**
 * Name of dtype index `d` of the payload ("float32"), "" when absent.
 * @param {TreePayload} p
 * @param {number|null|undefined} d
 */
export function dtypeName(p, d) {
  return d === null || d === undefined ? "" : String((p.dtypes || [])[d] ?? "");
}

/** @param {string} s @param {number} n */
function plural(s, n) {
  return n === 1 ? s : `${s}s`;
}

// ============================================================================ TreeData

/**
 * No tree (no payload yet): no entries, so no column is ever read. Python always sends a payload,
 * with every column (an unreadable checkpoint's is empty); the view keeps no column list.
 * @returns {TreePayload}
 */
function noTree() {
  return { statuses: [], legend: [], dtypes: [], counts: [], n_keys: 0, n_entries: 0, columns: /** @type {any} */ ({}) };
}

/** Everything derived from one tree payload; rebuilt when the payload changes. */
export class TreeData {
  /** @param {TreePayload|null|undefined} p */
  constructor(p) {
    /** @type {TreePayload} */
    this.p = p && p.columns ? p : noTree();
    /** @type {TreeColumns} */
    const c = (this.c = this.p.columns);
    const n = (this.n = this.p.n_entries || (c.t ? c.t.length : 0));
    /** @type {string[]} */
    this.statuses = this.p.statuses || [];
    /** @type {Record<string, LegendItem>} */
    this.legend = {};
    for (const item of this.p.legend || []) this.legend[item.status] = item;
    /** @type {boolean[]} per status index: whether it is a problem (the legend says) */
    this.problem = this.statuses.map((s) => !!(this.legend[s] && this.legend[s].problem));
    /** @type {Map<string, number>} */
    this.keyIndex = new Map();
    /** @type {Map<string, number>} */
    this.moduleIndex = new Map();
    for (let i = 0; i < n; i++) {
      if (c.t[i] === 1) this.keyIndex.set(c.path[i], i);
      else this.moduleIndex.set(c.path[i], i);
    }
    // aria-posinset / aria-setsize: position among the siblings
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
    this.selCount = new Int32Array(n); // modules: selected leaves in subtree
    this.selectableCount = new Int32Array(n); // modules: selectable leaves in subtree
    /** @type {Adapters} */
    this.adapters = {};
    /** @type {string[]|null} */
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
    return this.statuses[/** @type {number} */ (this.c.status[i])];
  }

  /** Whether tensor entry `i` is a problem (its status is, as the legend says). @param {number} i */
  isProblem(i) {
    return this.c.t[i] === 1 && this.problem[/** @type {number} */ (this.c.status[i])] === true;
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
    /** @type {string[]} */
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
    return this.selectable(i) || (this.c.t[i] === 1 && this.c.adaptable[i] === 1);
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
    const allStatuses = statusOn.size >= this.statuses.length;
    if (!query && allStatuses) return null;
    const c = this.c;
    if (query && !this.haystack) {
      const hay = new Array(this.n);
      for (let i = 0; i < this.n; i++) {
        if (c.t[i] !== 1) continue;
        let s = c.path[i];
        if (c.ckpt_key[i]) s += "\n" + c.ckpt_key[i];
        if (c.model_key[i]) s += "\n" + c.model_key[i];
        hay[i] = s.toLowerCase();
      }
      this.haystack = hay;
    }
    const hay = this.haystack;
    const m = new Uint8Array(this.n);
    for (let i = this.n - 1; i >= 0; i--) {
      if (c.t[i] === 1) {
        const okStatus = allStatuses || statusOn.has(/** @type {number} */ (c.status[i]));
        const okQuery = !query || (hay !== null && hay[i].includes(query));
        if (okStatus && okQuery) m[i] = 1;
      }
      if (m[i] && c.parent[i] >= 0) m[c.parent[i]] = 1;
    }
    return m;
  }
}

// ============================================================================ visible rows

/**
 * Entries shown, in order: pre-order, skipping the subtrees of collapsed modules and entries the
 * filter hides.
 * @param {TreeData} data
 * @param {Uint8Array} expanded  per-entry expansion flags (modules)
 * @param {Uint8Array|null} matches
 * @returns {Int32Array}
 */
export function computeVisible(data, expanded, matches) {
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

/**
 * The expansion a tree opens with: everything for small trees; otherwise level by level while
 * at most `maxRows` rows show. When that hides every problem row, the ancestors of the first
 * `revealProblems` problems are opened too, so the first screen shows problems.
 * @param {TreeData} data
 * @param {{smallTree?: number, maxRows?: number, revealProblems?: number}} [opts]
 * @returns {Uint8Array}
 */
export function initialExpansion(data, opts = {}) {
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

/**
 * Open every ancestor of entry `i` (in place) so that it becomes visible.
 * @param {TreeData} data
 * @param {Uint8Array} expanded
 * @param {number} i
 */
export function expandTo(data, expanded, i) {
  for (let p = data.c.parent[i]; p >= 0; p = data.c.parent[p]) expanded[p] = 1;
}

/**
 * Ancestor module entries of `i`, outermost first.
 * @param {TreeData} data
 * @param {number} i
 * @returns {number[]}
 */
export function ancestors(data, i) {
  const out = [];
  for (let p = i >= 0 && i < data.n ? data.c.parent[i] : -1; p >= 0; p = data.c.parent[p]) out.push(p);
  return out.reverse();
}

/**
 * The module path to show above the tree when entry `top` is the first row in view: the names of
 * its ancestors (and of `top` itself when it is a module whose children follow).
 * @param {TreeData} data
 * @param {number} top
 * @returns {string[]}
 */
export function breadcrumb(data, top) {
  if (top < 0 || top >= data.n) return [];
  return ancestors(data, top).map((p) => data.c.name[p]);
}

// ============================================================================ names and details

/**
 * How the other side's key of a row is shown in its column, relative to the tree: the row sits
 * at `path` (tree position), `other` is that side's key when it differs (after a rename).
 * - other = P + "." + path (a wrapper prefix such as DDP's "module."): the leaf name, note "P."
 * - path = P + "." + other (a prefix the other side lacks): the leaf name, note "−P."
 * - else: `other` without the dotted prefix it shares with `path` ("fc.weight" for
 *   "classifier.weight"), so the part that differs stays and the leaf is kept.
 * @param {string} path
 * @param {string|null|undefined} other
 * @returns {{text: string, note: string, renamed: boolean}}
 */
export function relativeName(path, other) {
  const leaf = path.slice(path.lastIndexOf(".") + 1);
  if (!other || other === path) return { text: leaf, note: "", renamed: false };
  if (other.endsWith("." + path)) return { text: leaf, note: other.slice(0, other.length - path.length), renamed: true };
  if (path.endsWith("." + other)) return { text: leaf, note: `−${path.slice(0, path.length - other.length)}`, renamed: true };
  const a = path.split(".");
  const b = other.split(".");
  let k = 0;
  while (k < a.length - 1 && k < b.length - 1 && a[k] === b[k]) k++;
  return { text: b.slice(k).join("."), note: "", renamed: true };
}

/**
 * The label/value lines of the details panel for entry `i` (what Enter opens).
 * @param {TreeData} data
 * @param {number} i
 * @param {{skipped?: Map<string, string>, checkpoints?: boolean}} [extra]  keys the plan skips,
 *   with the reason; `checkpoints`: both sides are checkpoints (values of b (after) against
 *   a (before)): the sides are named so, and nothing is said about loading or selecting
 * @returns {[string, string][]}
 */
export function detailLines(data, i, extra = {}) {
  const c = data.c;
  const p = data.p;
  /** @type {[string, string][]} */
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
  out.push([two ? "b key" : "Checkpoint key", hasCkpt ? c.ckpt_key[i] || key : "— (absent)"]);
  out.push([two ? "a key" : "Model key", hasModel ? c.model_key[i] || key : "— (absent)"]);
  // the legend's descriptions speak of loading into a model: not said of two checkpoints
  out.push(["Status", `${item.icon} ${item.label}${item.description && !two ? ` — ${item.description}` : ""}`]);
  if (hasCkpt) out.push([ckptSide, `${fmtShape(c.ckpt_shape[i])} ${dtypeName(p, c.ckpt_dtype[i])} · ${fmtBytes(c.nbytes[i] || 0)}`]);
  if (hasModel) out.push([modelSide, `${fmtShape(c.model_shape[i])} ${dtypeName(p, c.model_dtype[i])}${c.kind[i] ? ` · ${c.kind[i]}` : ""}`]);
  // what a load would do (cast, skip, adapt): nothing is loaded between two checkpoints
  if (item.cast && !two) out.push(["Cast", castText(data, i)]);
  if (c.reason[i] && !two) out.push(["Why not as is", String(c.reason[i])]);
  if (c.adaptable[i] && !two) out.push(["Adapter", data.hasAdapter(i) ? `loads through '${data.adapters[key]}'` : "an adapter can load it; the reason says which and what it does (Space or the adapt button)"]);
  const tied = c.tied[i];
  if (tied && tied.length) out.push(["Tied with", tied.join(", ")]);
  const skip = extra.skipped && extra.skipped.get(key);
  if (!two) out.push(["Selected", data.selected[i] ? (skip ? `yes, but not loaded: ${skip}` : "yes") : data.actionable(i) ? "no" : "cannot be selected"]);
  return out;
}

// ============================================================================ range selection

/**
 * The `select_range` gesture for the visible rows between entries `from` and `to` (inclusive):
 * tensor rows by key; collapsed modules stand for their subtree (only the keys the filter shows
 * while a filter is active). Null when either end is not visible.
 * @param {TreeData} data
 * @param {Int32Array} visible
 * @param {Uint8Array} expanded
 * @param {Uint8Array|null} matches
 * @param {number} from
 * @param {number} to
 * @param {boolean} select
 * @returns {{keys: string[], modules: string[], select: boolean}|null}
 */
export function rangeGesture(data, visible, expanded, matches, from, to, select) {
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

// ============================================================================ keyboard

/**
 * @typedef {object} NavState
 * @property {number} focus   entry index of the focused row (the roving tab stop), -1 for none
 * @property {number} anchor  entry index a Shift+Arrow range starts from, -1 for none
 */

/**
 * @typedef {object} NavContext
 * @property {TreeData} data
 * @property {Int32Array} visible
 * @property {Uint8Array} expanded  the expansion in force (the filter's while filtering)
 * @property {Uint8Array|null} matches
 * @property {number} [pageRows]    rows per PageUp/PageDown (default 10)
 * @property {boolean} [checkpoints] both sides are checkpoints: nothing to select or load
 */

/**
 * @typedef {{key: string, shiftKey?: boolean, ctrlKey?: boolean, metaKey?: boolean, altKey?: boolean}} KeyInput
 */

/**
 * @typedef {{type: "expand", index: number, value: 0|1}
 *   | {type: "toggle", keys?: string[], modules?: string[]}
 *   | {type: "range", keys: string[], modules: string[], select: boolean}
 *   | {type: "adapt", key: string, adapter: string|null}
 *   | {type: "details", index: number}
 *   | {type: "announce", text: string}
 *   | {type: "search"}} NavEffect
 */

/**
 * The first visible entry at or after position `pos` (wrapping) whose name starts with `ch`.
 * @param {NavContext} ctx
 * @param {number} pos
 * @param {string} ch
 */
function typeahead(ctx, pos, ch) {
  const { data, visible } = ctx;
  const want = ch.toLowerCase();
  for (let k = 1; k <= visible.length; k++) {
    const j = visible[(pos + k) % visible.length];
    if (data.c.name[j].toLowerCase().startsWith(want)) return j;
  }
  return -1;
}

/**
 * Keyboard navigation of the tree (WAI-ARIA tree view pattern) as a pure reducer:
 * (state, key) -> (state, effects). `handled` says whether the view must call preventDefault +
 * stopPropagation (so JupyterLab's shortcuts never see the key).
 *
 * Up/Down move; Home/End; PageUp/PageDown; Right expands a collapsed module or goes to its first
 * child; Left collapses an expanded module or goes to the parent; Space toggles the row's
 * selection (a module: its whole subtree; an adaptable shape mismatch: switches its adapter on,
 * which selects it); Shift+Up/Down move and select every row from the anchor (the last row
 * moved to or toggled without Shift) to the new one; Enter opens the details of the row; a
 * letter jumps to the next row whose name starts with it; "/" goes to the search box.
 * Keys with Ctrl/Meta/Alt, Tab and Escape are not handled.
 * @param {NavState} state
 * @param {KeyInput} ev
 * @param {NavContext} ctx
 * @returns {{state: NavState, effects: NavEffect[], handled: boolean}}
 */
export function navigate(state, ev, ctx) {
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
  /** @param {number} target @returns {{state: NavState, effects: NavEffect[], handled: boolean}} */
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
      if (next !== undefined && c.parent[next] === cur) return { state: { focus: next, anchor: next }, effects: [], handled: true };
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
      // any other printable key (with Shift too) would reach JupyterLab's command-mode
      // shortcuts (a, b, dd, Shift+M...): swallow it while the tree has focus
      return { state, effects: [], handled: ev.key.length === 1 };
  }
}

/**
 * Where focus goes when the focused entry is no longer visible (collapsed above it, filtered
 * out, or a new payload): the entry itself if visible, else its nearest visible ancestor, else
 * the first visible row; -1 for an empty view.
 * @param {TreeData} data
 * @param {Int32Array} visible
 * @param {number} focus
 */
export function settleFocus(data, visible, focus) {
  if (visible.length === 0) return -1;
  if (focus >= 0 && focus < data.n) {
    if (visible.indexOf(focus) >= 0) return focus;
    for (let p = data.c.parent[focus]; p >= 0; p = data.c.parent[p]) if (visible.indexOf(p) >= 0) return p;
  }
  return visible[0];
}

// ============================================================================ column widths

/**
 * Column widths (px) so that shapes, dtypes, sizes, the status text and the adapter label are
 * never cut on any row; names get at least `minName` px (longer ones are shortened from the
 * left, keeping the leaf). `measure(text, kind)` returns a text width; kind is "name" (monospace
 * 12px), "meta" (monospace 11px) or "ui" (12px UI font); monospace kinds are measured once.
 * @param {TreeData} data
 * @param {(text: string, kind: "name"|"meta"|"ui") => number} measure
 * @param {{indent?: number, gap?: number, minName?: number, maxName?: number, minSide?: number, minStatus?: number, maxType?: number, noteW?: number, sharedNote?: string, modelIndent?: number, lora?: Map<string, string>, valueText?: ((path: string, isModule: boolean) => string|null)|null}} [opts]  sharedNote: a rename
 *   note the column header shows once instead of on every row; lora: the rows that carry a
 *   "LoRA" tag in their status cell (rows.js loraNotes); valueText: the change badge a row's
 *   status cell shows after a value comparison (values.js), null when it has none
 * @returns {{ckpt: number, status: number, model: number}}
 */
export function columnWidths(data, measure, opts = {}) {
  const { indent = 12, modelIndent = indent, gap = 6, minName = 48, maxName = 220, minSide = 220, minStatus = 150, maxType = 72, noteW = 28, sharedNote = "", lora = null, valueText = null } = opts;
  const c = data.c;
  const p = data.p;
  let ckpt = minSide;
  let model = minSide;
  let status = minStatus;
  // names and meta are monospace: one measured character width per kind, times the length
  // (30,000 rows in a few ms); the UI-font labels are few and measured once each
  const cw = { name: measure("0000000000", "name") / 10, meta: measure("0000000000", "meta") / 10 };
  /** @type {Map<string, number>} */
  const cache = new Map();
  /** @param {string} s @param {"name"|"meta"|"ui"} kind */
  const m = (s, kind) => {
    if (!s) return 0;
    if (kind !== "ui") return s.length * cw[kind];
    let w = cache.get(s);
    if (w === undefined) cache.set(s, (w = measure(s, kind)));
    return w;
  };
  /** @type {Map<number, number>} */
  const bytesW = new Map();
  /** @param {number} n */
  const wBytes = (n) => {
    let w = bytesW.get(n);
    if (w === undefined) bytesW.set(n, (w = m(fmtBytes(n), "meta")));
    return w;
  };
  /** "[a, b, c]" without building it. @param {number[]|null} sh */
  const wShape = (sh) => {
    if (!sh) return 0;
    let len = 2 + Math.max(0, sh.length - 1) * 2;
    for (const d of sh) len += String(d).length;
    return len * cw.meta;
  };
  const dtypeW = (p.dtypes || []).map((d) => m(String(d), "meta"));
  /** @param {number|null} d */
  const wDtype = (d) => (d === null || d === undefined ? 0 : dtypeW[d] || 0);
  // per status: the leaf's status cell (swatch, icon + label; the adapter and "not loaded" tags)
  const statusW = data.statuses.map((st) => {
    const item = data.legendOf(st);
    return 6 + 11 + m(`${item.icon} ${item.label}`, "ui") + gap;
  });
  // a selected row the plan skips says "not loaded"; after a value comparison a row shows its
  // change badge there instead of room for both (a row showing both shortens the badge, its
  // full text on hover: values.css)
  const skipW = data.statuses.map((st) => (data.legendOf(st).loadable ? m("not loaded", "meta") + 8 + gap : 0));
  // the adapter button says "adapt", or the adapter chosen for the row ("interpolate ✓"): measure
  // what it says (sized again when the adapters change), not the longest name there is
  /** @param {number} i */
  const adaptW = (i) => m(data.hasAdapter(i) ? `${data.adapters[c.path[i]]} ✓` : "adapt", "meta") + 12 + gap;
  // a change badge (values.css .sdw-value: 0.85em of the UI font, 0.5em margin, 0.35em padding
  // each side, a 1px border): the UI font's width of its text bounds it, plus 14 px and a gap
  /** @param {number} i @param {boolean} isModule */
  const valueW = (i, isModule) => {
    const text = valueText ? valueText(c.path[i], isModule) : null;
    return text ? m(text, "ui") + 14 + gap : 0;
  };
  for (let i = 0; i < data.n; i++) {
    const pad = 6 + c.depth[i] * indent + 4;
    const mpad = 6 + c.depth[i] * modelIndent + 4;
    if (c.t[i] === 0) {
      const nameW = Math.min(maxName, Math.max(minName, m(c.name[i], "name"))) + 14 + gap;
      // a module's class name may be shortened (its full name is on hover): count at most maxType
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
    const st = /** @type {number} */ (c.status[i]);
    const sw = statusW[st] + Math.max(skipW[st], valueW(i, false)) + (c.adaptable[i] ? adaptW(i) : 0) + (lora && lora.has(c.path[i]) ? m("LoRA", "meta") + 8 + gap : 0);
    if (sw > status) status = sw;
    const sides = c.sides[i];
    if (sides & 1) {
      const rel = c.ckpt_key[i] ? relativeName(c.path[i], c.ckpt_key[i]) : null;
      let w = pad + Math.min(maxName, Math.max(minName, m(rel ? rel.text : c.name[i], "name"))) + gap;
      if (rel && rel.note && rel.note !== sharedNote) w += Math.min(noteW, m(rel.note, "meta") + 8) + gap; // shrinks
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

/**
 * The column widths that fit `available` px (the tree's width less the check column): the
 * widths columnWidths() wants when they fit ("full"); else the status column keeps what it
 * wants while the two side columns can keep `minSide` (else it gives way, not below
 * `minStatus`), and the side columns share the rest in proportion to what they want, not below
 * `minSide` ("narrow": names, then shapes and dtypes, are shortened with their full text on
 * hover); when even the minimums do not fit, the minimums ("scroll": the tree scrolls
 * sideways, with its scrollbar shown).
 * @param {{ckpt: number, status: number, model: number}} want
 * @param {number} available
 * @param {{minSide?: number, minStatus?: number}} [opts]
 * @returns {{ckpt: number, status: number, model: number, fit: "full"|"narrow"|"scroll"}}
 */
export function fitColumns(want, available, opts = {}) {
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
  let ckpt = Math.floor((rest * want.ckpt) / (want.ckpt + want.model));
  ckpt = Math.max(lowSide, Math.min(ckpt, rest - lowSide, want.ckpt));
  const model = Math.min(want.model, rest - ckpt);
  return { ckpt, status, model, fit: "narrow" };
}

/**
 * The text of a module's count chip: "≠ 2" when `short` (a match count, or one of several kinds
 * of problem: the legend names the icons), else spelled out ("≠ 2 shape mismatches").
 * @param {LegendItem} item
 * @param {number} n
 * @param {boolean} short
 */
export function countChipText(item, n, short) {
  return short ? `${item.icon} ${n}` : `${item.icon} ${n} ${n === 1 ? item.label : item.plural}`;
}

/** "loads, cast from float16 to float32" for tensor entry `i`. @param {TreeData} data @param {number} i */
export function castText(data, i) {
  const c = data.c;
  return `loads, cast from ${dtypeName(data.p, c.ckpt_dtype[i])} to ${dtypeName(data.p, c.model_dtype[i])}`;
}

/** Sentence for a count of problems ("3 problems"). @param {number} n */
export function problemPhrase(n) {
  return `${fmtInt(n)} ${plural("problem", n)}`;
}

/**
 * The selected keys the plan skips (they stay selected but do not load, e.g. BatchNorm running
 * statistics under bn='keep'), with the reason, from the `preview` trait: its `skipped`
 * [key, reason] pairs (capped at 500), completed by `skipped_keys` (every key) when sent.
 * @param {{skipped?: [string, string][], skipped_keys?: string[]}|null|undefined} pv
 * @returns {Map<string, string>}
 */
export function skippedKeys(pv) {
  /** @type {Map<string, string>} */
  const out = new Map();
  if (!pv) return out;
  for (const [k, why] of pv.skipped || []) out.set(k, String(why));
  for (const k of pv.skipped_keys || []) if (!out.has(k)) out.set(k, "skipped by the plan (see the Selection tab)");
  return out;
}

/** Parsed tree payloads, by the buffer they came in (each is parsed once). */
const decodedTrees = new WeakMap();

/**
 * The `tree` trait as an object. Python sends it as one binary buffer of UTF-8 JSON (a
 * DataView in the browser), so ipywidgets never walks its thousands of list items; a plain
 * object (older kernels, tests) is returned as it is.
 * @param {unknown} value  what `model.get("tree")` returned
 * @returns {any}
 */
export function decodeTree(value) {
  if (value && typeof value === "object" && (ArrayBuffer.isView(value) || value instanceof ArrayBuffer)) {
    const key = /** @type {object} */ (value);
    let out = decodedTrees.get(key);
    if (out === undefined) {
      const bytes = value instanceof ArrayBuffer ? new Uint8Array(value) : new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
      out = JSON.parse(new TextDecoder().decode(bytes));
      decodedTrees.set(key, out);
    }
    return out;
  }
  return value || {};
}
