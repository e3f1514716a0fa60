// @ts-check
// sd_widgets Explorer: drawing the tree — the visible rows (all up to FULL_RENDER_MAX, a window
// of them above), redraws of only the rows whose state changed, the breadcrumb, the column
// header (shared rename prefix, column widths, resizing) and the details panel. Sets
// v.fn.refreshTree / drawRows / patchRows / drawCrumb / drawCkptHead / sizeColumns / drawDetails.

import { breadcrumb, columnWidths, detailLines, fitColumns, settleFocus } from "./lib.js";
import { CHECK_W, FULL_RENDER_MAX, INDENT, MODEL_INDENT, OVERSCAN, ROW_BORDER_W, ROW_H, VIEWPORT_FALLBACK_H, focusedIn, h, textMeasurer } from "./dom.js";
import { makeRow, rowSig, rowWindow, sharedNoteLabel, sharedRenameNote } from "./rows.js";
import { emptyText, expansion } from "./filters.js";
import { moduleValueCell, valueCell, visibleRows } from "./values.js";
/** @import { View, ViewState } from "./dom.js" */
/** @import { RowContext } from "./rows.js" */

/**
 * A drawn row: its element remembers what it shows (rows.js rowSig) and where it is.
 * @typedef {HTMLElement & {_sdwSig?: string, _sdwPos?: number}} RowElement
 */

/**
 * The row context of a view (what rows.js needs besides the payload).
 * @param {ViewState} s
 * @returns {RowContext}
 */
function rowContext(s) {
  return { expanded: expansion(s), focus: s.nav.focus, skipped: s.skipped, sharedNote: s.sharedNote, values: s.values, lora: s.loraNotes };
}

/** @param {View} v */
export function mountTree(v) {
  const s = v.s;
  const { root, canvas, viewport, colHeader, crumb, emptyNote, details, detailsBody } = v.els;

  function refreshVisible() {
    s.visible = visibleRows(s, expansion(s)); // tree order, or by change (values.js)
    canvas.style.height = `${s.visible.length * ROW_H}px`;
    root.dataset.nVisible = String(s.visible.length);
    s.nav.focus = settleFocus(s.data, s.visible, s.nav.focus);
    if (s.nav.anchor >= 0 && s.visible.indexOf(s.nav.anchor) < 0) s.nav.anchor = -1;
  }

  /** The prefix every renamed checkpoint key shares, said once in the column header. */
  function drawCkptHead() {
    s.sharedNote = sharedRenameNote(s.data);
    const head = colHeader.querySelector("[data-role=ckpt-head]");
    for (const old of head.querySelectorAll("[data-role=ckpt-prefix]")) old.remove();
    if (s.sharedNote) {
      const { text, title } = sharedNoteLabel(s.sharedNote);
      head.insertBefore(h("span", { className: "sdw-rename-note sdw-head-note", text, title, dataset: { role: "ckpt-prefix" } }), head.lastChild);
    }
  }

  /** The width the three columns share: the viewport less the check column and the row's border. */
  const columnsWidth = () => viewport.clientWidth - CHECK_W - ROW_BORDER_W;

  /**
   * The columns sized from the data, fitted to the container (lib.js fitColumns): narrower
   * columns shorten names (full text on hover); below the minimums the tree scrolls sideways.
   * Widths the user dragged are kept as they are.
   */
  function sizeColumns() {
    const vi = s.values;
    /** @param {string} path @param {boolean} isModule */
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

  /** @param {number} i @param {number} pos */
  const rowFor = (i, pos) => makeRow(s.data, i, pos, rowContext(s));

  /**
   * After a selection change: redraw only the drawn rows whose state changed (a click changes
   * a few), not every row. Rebuilding all ~600 rows made the browser lay the tree out again
   * on every click (most of a click's round trip at 10k keys).
   */
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
    // the focused row (the tree's one tab stop) is always drawn, even when scrolled away
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

  /** The module path of the first row in view, above the rows. */
  function drawCrumb() {
    const top = Math.max(0, viewport.scrollTop - 0);
    const pos = Math.min(s.visible.length - 1, Math.floor(top / ROW_H));
    const names = pos >= 0 ? breadcrumb(s.data, s.visible[pos]) : [];
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

  // column resizing: drag the separators, or focus one and press Left/Right
  /** @param {string} col @param {number} px */
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
    if (!r || (ev.key !== "ArrowLeft" && ev.key !== "ArrowRight")) return;
    ev.preventDefault();
    ev.stopPropagation();
    setWidth(r.dataset.col, r.parentElement.getBoundingClientRect().width + (ev.key === "ArrowRight" ? 24 : -24));
  });

  Object.assign(v.fn, { refreshTree, drawRows, patchRows, drawCrumb, drawCkptHead, sizeColumns, drawDetails });
}
