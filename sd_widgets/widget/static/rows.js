// @ts-check
// sd_widgets Explorer: the rows of the tree. The pure part decides what a row shows (its check
// mark, hover text, labels, count chips, the signature a redraw compares, which rows are drawn
// in the window); the DOM part (makeRow) turns that into one `.sdw-row` element of the DOM
// contract in tree.js. Everything about statuses comes from the legend (TreeData.item).

import { castText, countChipText, dtypeName, fmtBytes, fmtShape, relativeName } from "./lib.js";
import { INDENT, MODEL_INDENT, ROW_H, h } from "./dom.js";
import { frozenBnFlag, valueBadge } from "./values.js";
/** @import { TreeData } from "./lib.js" */
/** @import { ValueIndex } from "./values.js" */

/**
 * @typedef {object} RowContext  what a row's look depends on besides the payload
 * @property {Uint8Array} expanded     the expansion in force
 * @property {number} focus            the entry holding the roving tab stop
 * @property {Map<string, string>} skipped  selected keys the plan skips, with the reason
 * @property {string} sharedNote       the rename prefix the column header says once
 * @property {ValueIndex|null} [values] the value comparison (values.js), when there is one
 * @property {Map<string, string>} [lora] a LoRA adapter's pairing by row key (loraNotes)
 */

/**
 * @typedef {object} CountChip  one status count of a module row
 * @property {string} status
 * @property {number} n
 * @property {string} text     "≠ 2" or "≠ 2 shape mismatches"
 * @property {boolean} problem
 */

// ============================================================================ pure

/**
 * What a drawn row shows that a selection (or adapter, or skip) change can alter: a row is
 * redrawn only when this changes.
 * @param {TreeData} data
 * @param {number} i
 * @param {Map<string, string>} skipped
 */
export function rowSig(data, i, skipped) {
  if (data.c.t[i] === 0) return data.moduleState(i);
  const key = data.c.path[i];
  const selected = data.selected[i] === 1;
  return `${selected ? 1 : 0}${data.selectable(i) ? 1 : 0}|${data.hasAdapter(i) ? data.adapters[key] : ""}|${selected ? skipped.get(key) || "" : ""}`;
}

/**
 * What the rows of a LoRA adapter say about their pairing, by row key: the model weight a factor
 * pair modifies ("LoRA: + A (4, 32) · B (96, 4), × 2 ...", with both factor keys) and each
 * factor ("LoRA factor A of <weight>"). Empty without an adapter (`lora` trait `{}`).
 * @param {{pairs?: {base: string, a_key: string, b_key: string, factors: string, problem: string}[]}|null|undefined} lora
 * @returns {Map<string, string>}
 */
export function loraNotes(lora) {
  /** @type {Map<string, string>} */
  const out = new Map();
  for (const p of (lora && lora.pairs) || []) {
    const how = p.problem ? `not merged: ${p.problem}` : `+ ${p.factors}`;
    out.set(p.base, `LoRA: ${how}\nfactors: ${p.a_key}, ${p.b_key}`);
    out.set(p.a_key, `LoRA factor A of ${p.base}`);
    out.set(p.b_key, `LoRA factor B of ${p.base}`);
  }
  return out;
}

/**
 * The count chips of module entry `i` and their hover text. One kind of problem is spelled out
 * ("≠ 2 shape mismatches"); with several, icon + count chips that fit the column.
 * @param {TreeData} data
 * @param {number} i
 * @returns {{chips: CountChip[], title: string}}
 */
export function countChips(data, i) {
  const counts = data.c.counts[i] || [];
  const problemKinds = counts.filter((n, s) => n && data.problem[s]).length;
  /** @type {CountChip[]} */
  const chips = [];
  /** @type {string[]} */
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

/**
 * Label, title and check mark of module entry `i`.
 * @param {TreeData} data
 * @param {number} i
 */
export function moduleView(data, i) {
  const c = data.c;
  const state = data.moduleState(i);
  const type = c.module_type[i] ? ` (${c.module_type[i]})` : "";
  return {
    state,
    mark: { all: "☑", some: "◩", none: "☐", na: "⊘" }[state],
    ariaLabel: `${c.name[i]}${type}: ${countChips(data, i).title}`,
    title: `${c.path[i]}${type}: click or Space to ${state === "all" ? "deselect" : "select"} every loadable key below; shift-click selects a range`,
  };
}

/**
 * Everything a tensor row shows that depends on its state: check mark and class, hover text,
 * aria label, the "not loaded" note, the adapter button.
 * @param {TreeData} data
 * @param {number} i
 * @param {Map<string, string>} skipped
 */
export function leafView(data, i, skipped) {
  const c = data.c;
  const item = data.item(i);
  const selectable = data.selectable(i);
  const selected = data.selected[i] === 1;
  const skip = selected ? skipped.get(c.path[i]) : undefined;
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
    mark: skip ? "☒" : selectable ? (selected ? "☑" : "☐") : c.adaptable[i] ? "☐" : "⊘",
    check: selectable || c.adaptable[i] ? (selected ? "all" : "none") : "na",
    adapt: c.adaptable[i]
      ? {
          on: onAdapter,
          text: onAdapter ? `${data.adapters[c.path[i]]} ✓` : "adapt",
          // the reason names the adapter that fits this tensor and what it would do to it
          title: onAdapter ? "Stop adapting this tensor" : `Load it with the adapter that fits (Space on the row): ${c.reason[i] || ""}`,
        }
      : null,
  };
}

/**
 * The wrapper prefix shared by every renamed checkpoint key ("module."; "−model." when they all
 * lack one), or "" — the column header says it once instead of every row.
 * @param {TreeData} data
 */
export function sharedRenameNote(data) {
  const c = data.c;
  const notes = new Set();
  for (let i = 0; i < data.n; i++) if (c.t[i] === 1 && c.ckpt_key[i]) notes.add(relativeName(c.path[i], c.ckpt_key[i]).note);
  return notes.size === 1 ? String([...notes][0]) : "";
}

/**
 * The column header's text and hover text for a shared rename note.
 * @param {string} note
 */
export function sharedNoteLabel(note) {
  const lacks = note.startsWith("−");
  return {
    text: lacks ? `keys without ${note.slice(1)}` : `keys under ${note}`,
    title: `every renamed checkpoint key ${lacks ? "lacks" : "starts with"} '${note.replace("−", "")}'; hover a name for its full key`,
  };
}

/**
 * Which rows to draw: all up to `max`, else the window around the scroll position (with
 * `overscan` rows each side).
 * @param {number} total  visible rows
 * @param {{scrollTop: number, offsetTop: number, height: number, rowH: number, max: number, overscan: number}} m
 * @returns {{from: number, to: number}}
 */
export function rowWindow(total, { scrollTop, offsetTop, height, rowH, max, overscan }) {
  if (total <= max) return { from: 0, to: total };
  const top = Math.max(0, scrollTop - offsetTop);
  return { from: Math.max(0, Math.floor(top / rowH) - overscan), to: Math.min(total, Math.ceil((top + height) / rowH) + overscan) };
}

/** Longest leaf name (characters) a name cell keeps whole however narrow the tree is: 10ch of
 * the 12px monospace font is the 6em a narrowed column leaves a name (tree.css data-fit=narrow),
 * so the shapes and dtypes beside it are never cut. */
export const LEAF_CHARS = 10;

/**
 * The least width of a name cell showing `text`: its leaf (after the last dot) whole, with the
 * ellipsis when a module part goes before it. The cell shortens from the left (tree.css), so a
 * narrow tree shows "…weight" (the full key on hover), never "…ght"; the shape and dtype next
 * to it give way first. In `ch` of the cell's monospace font, at most the cell's width (a deep
 * row's indent can leave less: then it shortens too, never clipped by the cell); leaves past
 * LEAF_CHARS are shortened.
 * @param {string} text
 * @returns {string} a CSS length
 */
export function nameMinWidth(text) {
  const leaf = text.slice(text.lastIndexOf(".") + 1);
  const chars = Math.min(leaf.length, LEAF_CHARS) + (leaf.length < text.length ? 1 : 0);
  return `min(${Math.max(chars, 3)}ch, 100%)`; // 100%: never past its cell (a deep row's indent)
}

// ============================================================================ DOM

/**
 * The name cell contents of tensor entry `i` on one side: the tree-relative name (the full key
 * on hover) and, unless the header says it, the rename note.
 * @param {TreeData} data
 * @param {number} i
 * @param {"ckpt"|"model"} side
 * @param {string} sharedNote
 */
function nameCell(data, i, side, sharedNote) {
  const c = data.c;
  const other = side === "ckpt" ? c.ckpt_key[i] : c.model_key[i];
  const rel = relativeName(c.path[i], other);
  const full = other || c.path[i];
  const name = h("span", { className: `sdw-name${rel.renamed ? " sdw-renamed" : ""}`, dataset: { role: "name" }, title: rel.renamed ? `${side === "ckpt" ? "checkpoint" : "model"} key ${full} (renamed)` : full }, [
    h("span", { className: "sdw-name-text", text: rel.text, attrs: { dir: "ltr" } }),
  ]);
  name.style.minWidth = nameMinWidth(rel.text);
  const out = [name];
  // a prefix every renamed key shares is said once, in the column header
  if (rel.note && !(side === "ckpt" && sharedNote === rel.note)) out.push(h("span", { className: "sdw-rename-note", text: rel.note, title: `${side === "ckpt" ? "checkpoint" : "model"} key: ${full}`, dataset: { role: "rename-note" } }));
  return out;
}

/**
 * One side's cell (checkpoint or model) of entry `i`.
 * @param {TreeData} data
 * @param {number} i
 * @param {"ckpt"|"model"} side
 * @param {RowContext} ctx
 */
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
      h("span", { className: "sdw-caret", text: isExp ? "▾" : "▸", dataset: { action: "expand" }, title: isExp ? "Collapse" : "Expand", attrs: { "aria-hidden": "true" } }),
      moduleName,
    );
    if (c.module_type[i]) cell.append(h("span", { className: "sdw-meta sdw-type", text: c.module_type[i], title: c.module_type[i] }));
    if (side === "ckpt") cell.append(h("span", { className: "sdw-meta sdw-size", text: fmtBytes(c.nbytes[i] || 0), title: `${fmtBytes(c.nbytes[i] || 0)} in the checkpoint under ${c.path[i]}`, dataset: { role: "size" } }));
    return cell;
  }
  if (!present) {
    cell.classList.add("sdw-absent");
    cell.append(h("span", { className: "sdw-absent-mark", text: "—", attrs: { "aria-label": "absent" } }));
    return cell;
  }
  cell.append(...nameCell(data, i, side, ctx.sharedNote));
  const shape = side === "ckpt" ? c.ckpt_shape[i] : c.model_shape[i];
  const dt = side === "ckpt" ? c.ckpt_dtype[i] : c.model_dtype[i];
  const differs = data.item(i).differs;
  cell.append(
    // titles: a narrow container may shorten these (tree.css data-fit="narrow")
    h("span", { className: `sdw-meta sdw-shape${differs === "shape" ? " sdw-diff" : ""}`, text: fmtShape(shape), title: `shape ${fmtShape(shape)}`, dataset: { role: "shape" } }),
    h("span", { className: `sdw-meta sdw-dtype${differs === "dtype" ? " sdw-diff" : ""}`, text: dtypeName(data.p, dt), title: `dtype ${dtypeName(data.p, dt)}`, dataset: { role: "dtype" } }),
  );
  if (side === "ckpt") cell.append(h("span", { className: "sdw-meta sdw-size", text: fmtBytes(c.nbytes[i] || 0), title: `${fmtBytes(c.nbytes[i] || 0)} in the checkpoint`, dataset: { role: "size" } }));
  const tied = c.tied[i];
  if (tied && side === "model") cell.append(h("span", { className: "sdw-meta sdw-tied", text: "tied", title: `shares storage with ${tied.join(", ")}` }));
  return cell;
}

/**
 * The row element shared by modules and tensors (position, ARIA tree item, tab stop).
 * @param {TreeData} data
 * @param {number} i
 * @param {number} pos
 * @param {RowContext} ctx
 */
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

/** @param {TreeData} data @param {number} i @param {number} pos @param {RowContext} ctx */
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
  const countsCell = h("span", { className: "sdw-cell sdw-cell-status sdw-counts", dataset: { role: "counts" }, title: counts.title }, counts.chips.map((chip) =>
    h("span", { className: `sdw-count sdw-status-${chip.status}${chip.problem ? " sdw-is-problem" : ""}`, text: chip.text, dataset: { status: chip.status, count: chip.n } }),
  ));
  const valueEl = valueBadge(ctx.values, c.path[i], true);
  if (valueEl) countsCell.appendChild(valueEl);
  withCells(row, data, i, ctx, m.state, m.mark, countsCell);
  const frozen = frozenBnFlag(ctx.values, c.path[i]); // values.js: a frozen-looking module
  if (frozen) /** @type {HTMLElement} */ (row.lastElementChild).appendChild(frozen);
  return row;
}

/**
 * Fill a row with the four cells every row has, in the columns' order: check mark, checkpoint
 * side, `middle` (the status cell or a module's count chips), model side.
 * @template {HTMLElement} T
 * @param {T} row @param {TreeData} data @param {number} i @param {RowContext} ctx
 * @param {string} check the check state (its class `sdw-check-<check>`) @param {string} mark
 * @param {HTMLElement} middle
 * @returns {T}
 */
function withCells(row, data, i, ctx, check, mark, middle) {
  row.append(
    h("span", { className: `sdw-cell sdw-cell-check sdw-check sdw-check-${check}`, text: mark, attrs: { "aria-hidden": "true" } }),
    sideCell(data, i, "ckpt", ctx),
    middle,
    sideCell(data, i, "model", ctx),
  );
  return row;
}

/** @param {TreeData} data @param {number} i @param {number} pos @param {RowContext} ctx */
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
    h("span", { className: `sdw-badge sdw-status-${status}`, text: `${l.item.icon} ${l.item.label}`, title: `${l.item.icon} ${l.item.label}\n${l.title}` }),
  ]);
  if (l.skip) statusCell.appendChild(h("span", { className: "sdw-skip-note", text: "not loaded", title: l.skip, dataset: { role: "skip-note" } }));
  if (l.adapt) {
    statusCell.appendChild(
      h("button", {
        className: `sdw-adapt${l.adapt.on ? " sdw-adapt-on" : ""}`,
        text: l.adapt.text,
        title: l.adapt.title,
        dataset: { action: "adapt", key: c.path[i], on: String(l.adapt.on) },
        attrs: { type: "button", tabindex: "-1" },
      }),
    );
  }
  const valueEl = valueBadge(ctx.values, c.path[i], false);
  if (valueEl) statusCell.appendChild(valueEl);
  const lora = ctx.lora && ctx.lora.get(c.path[i]); // a LoRA adapter: what this row pairs with
  if (lora) {
    row.title += `\n${lora}`;
    statusCell.appendChild(h("span", { className: "sdw-lora-note", text: "LoRA", title: lora, dataset: { role: "lora-note" } }));
  }
  return withCells(row, data, i, ctx, l.check, l.mark, statusCell);
}

/**
 * The row element of entry `i` at visible position `pos`, remembering its signature and position
 * (patchRows compares them).
 * @param {TreeData} data
 * @param {number} i
 * @param {number} pos
 * @param {RowContext} ctx
 * @returns {HTMLElement & {_sdwSig?: string, _sdwPos?: number}}
 */
export function makeRow(data, i, pos, ctx) {
  const row = data.c.t[i] === 0 ? moduleRow(data, i, pos, ctx) : leafRow(data, i, pos, ctx);
  row._sdwSig = rowSig(data, i, ctx.skipped);
  row._sdwPos = pos;
  return row;
}
