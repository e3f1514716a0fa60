// @ts-check
// sd_widgets Explorer: focus, keyboard and clicks on the tree. lib.js's `navigate` turns a key
// into effects; `keyOutcome` (pure) turns the effects into what the view does (messages to
// Python, expansion changes, details, a note); `rowClick` (pure) does the same for a click on a
// row. The DOM part moves the roving tab stop and keeps the focused row on screen, in the tree
// and in the notebook (out from under the sticky action bar). Sets v.fn.moveFocus /
// focusRowElement / note.

import { navigate, rangeGesture } from "./lib.js";
import { ROW_H, VIEWPORT_FALLBACK_H } from "./dom.js";
import { scrollIntoNotebook, scrollerOf } from "./actionbar.js";
import { expansion } from "./filters.js";
/** @import { KeyInput, NavEffect, TreeData } from "./lib.js" */
/** @import { View } from "./dom.js" */

/**
 * @typedef {object} KeyOutcome  what the view does after a handled key
 * @property {object[]} messages   gestures for Python, in order
 * @property {{index: number, value: 0|1}[]} expand
 * @property {number|undefined} detailsOpen  the entry whose details to show (-1 closes), or
 *   undefined when unchanged
 * @property {string} note         the tree note ("" clears it)
 * @property {boolean} search      focus the search box
 */

// ============================================================================ pure

/**
 * What the view does with the effects of `navigate`.
 * @param {NavEffect[]} effects
 * @param {{detailsOpen: number, detailsShown: boolean}} now
 * @returns {KeyOutcome}
 */
export function keyOutcome(effects, now) {
  /** @type {KeyOutcome} */
  const out = { messages: [], expand: [], detailsOpen: undefined, note: "", search: false };
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

/**
 * Whether a key pressed anywhere in the widget may reach the host page (JupyterLab's shortcuts):
 * only Tab, Escape, Shift+Enter and keys with Ctrl/Meta/Alt. Plain keys on a focused button must
 * press it (not scroll or edit the cell), and letters must not insert cells.
 * @param {KeyInput} ev
 */
export function reachesHost(ev) {
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return true;
  return ev.key === "Tab" || ev.key === "Escape" || (ev.key === "Enter" && !!ev.shiftKey);
}

/**
 * Rows per PageUp/PageDown: the rows that fit below the sticky header, less one.
 * @param {number} viewH
 * @param {number} headH
 */
export function pageRows(viewH, headH) {
  return Math.max(1, Math.floor((viewH - headH) / ROW_H) - 1);
}

/**
 * @typedef {{kind: "key"|"module", path: string}} ClickAnchor
 * @typedef {{type: "expand"}
 *   | {type: "send", message: object, anchor?: ClickAnchor}
 *   | {type: "range"}
 *   | {type: "none", anchor?: ClickAnchor}} ClickOutcome
 */

/**
 * What a click on entry `i` does: the caret expands; the adapt button switches the adapter;
 * Shift with an anchor selects a range; a plain click toggles the row (a module: its subtree;
 * a row that cannot be selected: nothing, its hover text says why) and becomes the anchor.
 * @param {TreeData} data
 * @param {number} i
 * @param {{action?: string, on?: string}|null} target  the dataset of the clicked [data-action]
 * @param {boolean} shiftKey
 * @param {ClickAnchor|null} anchor
 * @returns {ClickOutcome}
 */
export function rowClick(data, i, target, shiftKey, anchor) {
  const c = data.c;
  if (target && target.action === "expand") return { type: "expand" };
  if (target && target.action === "adapt") return { type: "send", message: { action: "adapt", key: c.path[i], adapter: target.on === "true" ? null : "auto" } };
  if (shiftKey && anchor) return { type: "range" };
  if (c.t[i] === 0) return { type: "send", message: { action: "toggle", modules: [c.path[i]] }, anchor: { kind: "module", path: c.path[i] } };
  const next = { kind: /** @type {"key"} */ ("key"), path: c.path[i] };
  if (!data.selectable(i)) return { type: "none", anchor: next };
  return { type: "send", message: { action: "toggle", keys: [c.path[i]] }, anchor: next };
}

/**
 * The `select_range` message of a shift-click on `i` with the anchor of the last plain click
 * (it selects when the anchor is selected, else deselects); null when either end is gone.
 * @param {TreeData} data
 * @param {Int32Array} visible
 * @param {Uint8Array} expanded
 * @param {Uint8Array|null} matches
 * @param {ClickAnchor} anchor
 * @param {number} i
 */
export function anchorRange(data, visible, expanded, matches, anchor, i) {
  const a = anchor.kind === "module" ? data.moduleIndex.get(anchor.path) : data.keyIndex.get(anchor.path);
  if (a === undefined) return null;
  const select = anchor.kind === "module" ? data.moduleState(a) === "all" : data.selected[a] === 1;
  const g = rangeGesture(data, visible, expanded, matches, a, i, select);
  return g ? { action: "select_range", ...g } : null;
}

// ============================================================================ DOM

/** @param {View} v */
export function mountNav(v) {
  const s = v.s;
  const { root, canvas, viewport, treeHead, actions, treeNote, details, search } = v.els;

  /** @param {number} i */
  function rowElement(i) {
    return canvas.querySelector(`.sdw-row[data-idx="${i}"]`);
  }

  function focusRowElement() {
    const rowEl = s.nav.focus >= 0 ? rowElement(s.nav.focus) : null;
    if (rowEl) rowEl.focus({ preventScroll: true });
  }

  /** Keep row `pos` inside the viewport, below the sticky column header and breadcrumb. @param {number} pos */
  function scrollToPos(pos) {
    if (pos < 0) return;
    const headH = treeHead.offsetHeight;
    const rowTop = canvas.offsetTop + pos * ROW_H;
    const viewH = viewport.clientHeight || VIEWPORT_FALLBACK_H;
    if (rowTop - headH < viewport.scrollTop) viewport.scrollTop = rowTop - headH;
    else if (rowTop + ROW_H > viewport.scrollTop + viewH) viewport.scrollTop = rowTop + ROW_H - viewH;
  }

  /**
   * Move the roving tab stop to entry `i`, scroll it into view and focus it.
   * @param {number} i
   * @param {{focus?: boolean}} [opts]
   */
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
        // keep it on screen in the notebook too, and not under the sticky action bar
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

  /** @param {string} text */
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
    if (out.detailsOpen !== undefined) {
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

  // keys typed anywhere in the widget (buttons, radios, the search box) stay in the widget
  root.addEventListener("keydown", (ev) => {
    if (!reachesHost(ev)) ev.stopPropagation();
  });

  // clicks on rows
  canvas.addEventListener("mousedown", (ev) => {
    if (ev.shiftKey) ev.preventDefault(); // no text selection on shift-click
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
