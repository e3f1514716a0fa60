// @ts-check
// sd_widgets Explorer: the action bar (Load selected) stays reachable.
//
// The bar is `position: sticky; bottom: 0` (tree.css): while any part of the widget above it is
// on screen, it sits at the bottom edge of the notebook's scroller. Sticky sticks to the nearest
// scroll container, and JupyterLab's output area is one only because of `overflow-x: auto`
// (`.jp-OutputArea`, `.jp-OutputArea-child`, `.jp-OutputArea-output`; Voilà's widget wrapper
// has `overflow: hidden`): those boxes never scroll vertically, so the bar would stick to them
// and go off screen with them. `unclipHosts` gives them `overflow: clip visible` (clip does not
// make a scroll container; the widget is never wider than its output, and its tree and tables
// scroll sideways by themselves) and `min-width: 0` (a flex item that is no scroll container
// would otherwise be as wide as its content), and undoes both when the view is removed. A cell whose outputs are
// "scrolled" (`.jp-mod-outputsScrolled`) keeps its own scroller: the bar sticks to it.
//
// The tree's height is still capped (`treeMaxHeight`) so that the tree and the bar fit the
// notebook's visible height: the tree is a virtualised scroller of its own, and with the tree in
// view the bar then covers no row. When the bar is stuck over the tree (`data-stuck="true"`,
// found by an IntersectionObserver on a sentinel just below the bar) it has a shadow.

import { ROW_H, VIEWPORT_FALLBACK_H } from "./dom.js";
/** @import { View } from "./dom.js" */

/**
 * @typedef {object} HostBox  one ancestor of the widget, innermost first
 * @property {string} className
 * @property {string} overflowX  computed
 * @property {string} overflowY  computed
 * @property {boolean} [isHost]  the element anywidget rendered the view into
 * @property {boolean} [inScrolledOutput]  inside a cell whose outputs scroll (keep that scroller)
 * @property {boolean} [held]  already unclipped for another view (two widgets in one output)
 */

/** Output-area boxes of JupyterLab / Notebook 7 / Voilà that clip only because of overflow-x. */
const OUTPUT_BOX = /(^|\s)jp-OutputArea(-output|-child)?(\s|$)/;

/**
 * Whether a computed overflow pair makes an element a scroll container (sticky sticks to it).
 * @param {string} overflowX
 * @param {string} overflowY
 */
export function isScrollContainer(overflowX, overflowY) {
  const clips = (/** @type {string} */ v) => v !== "visible" && v !== "clip";
  return clips(overflowX) || clips(overflowY);
}

/**
 * Which ancestors (indices into `chain`, innermost first) to give `overflow: clip visible` so
 * that the sticky bar sticks to the notebook's scroller: scroll containers that are the view's
 * host element or an output-area box, up to the first other scroll container (the real
 * scroller), which is left alone, as is everything above it.
 * @param {HostBox[]} chain
 * @returns {number[]}
 */
export function hostsToUnclip(chain) {
  /** @type {number[]} */
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

/**
 * Height cap (px) of the tree so that it and the action bar fit `avail` px of notebook, never
 * below six rows plus the header nor above `fallback`.
 * @param {{avail: number, bar: number, head: number, rowH: number, fallback: number, margin?: number}} m
 */
export function treeMaxHeight({ avail, bar, head, rowH, fallback, margin = 24 }) {
  return Math.floor(Math.max(6 * rowH + head, Math.min(fallback, avail - bar - margin)));
}

/**
 * How far (px, positive = down) to scroll the notebook so that a row is on screen and not under
 * the action bar: `row` and `scroller` are client rects; `barTop` is the bar's top (when the bar
 * is stuck over the tree it hides what is below it).
 * @param {{top: number, bottom: number}} row
 * @param {{top: number, bottom: number}} scroller
 * @param {number} barTop
 */
export function scrollIntoNotebook(row, scroller, barTop) {
  const bottom = Math.min(scroller.bottom, barTop);
  if (row.top < scroller.top) return row.top - scroller.top;
  if (row.bottom > bottom) return Math.min(row.bottom - bottom, row.top - scroller.top);
  return 0;
}

// ------------------------------------------------------------------------------- DOM

/**
 * The nearest ancestor that scrolls vertically now (the notebook's scroller), or null.
 * @param {Element} node
 * @returns {HTMLElement|null}
 */
export function scrollerOf(node) {
  for (let e = node.parentElement; e; e = e.parentElement) {
    const oy = getComputedStyle(e).overflowY;
    if ((oy === "auto" || oy === "scroll") && e.scrollHeight > e.clientHeight + 1) return e;
  }
  return null;
}

/**
 * Give the ancestors `hostsToUnclip` picks `overflow: clip visible` (inline); returns a function
 * that puts their inline styles back once no view holds them (`data-sdw-unclip` counts views).
 * @param {HTMLElement} root  the widget's root element
 * @param {HTMLElement|null} host  the element anywidget rendered into
 * @returns {() => void}
 */
export function unclipHosts(root, host) {
  /** @type {HTMLElement[]} */
  const els = [];
  /** @type {HostBox[]} */
  const chain = [];
  for (let e = root.parentElement; e && e !== document.body && e !== document.documentElement; e = e.parentElement) {
    const cs = getComputedStyle(e);
    els.push(e);
    chain.push({ className: String(e.className), overflowX: cs.overflowX, overflowY: cs.overflowY, isHost: e === host, inScrolledOutput: !!e.closest(".jp-mod-outputsScrolled"), held: e.dataset.sdwUnclip !== undefined });
  }
  // how many views hold a box, and its inline styles before, live on the box itself: every
  // widget instance may load its own copy of this module
  const undo = hostsToUnclip(chain).map((k) => {
    const e = els[k];
    if (e.dataset.sdwUnclip === undefined) {
      e.dataset.sdwUnclipBefore = JSON.stringify([e.style.overflowX, e.style.overflowY, e.style.minWidth]);
      e.style.overflowX = "clip";
      e.style.overflowY = "visible";
      // a flex item that is no scroll container gets its content's width as its minimum (the
      // output area is one): without this the widget grows wider than the notebook's column
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

/**
 * Mark the bar `data-stuck="true"` while it is lifted off its place (above the sentinel that
 * marks where it would be): checked whenever the bar or the sentinel enters or leaves the
 * screen, which is when that can change. Returns a disconnect function.
 * @param {HTMLElement} bar
 * @param {HTMLElement} sentinel
 * @returns {() => void}
 */
export function watchStuck(bar, sentinel) {
  if (typeof IntersectionObserver !== "function") return () => {};
  const io = new IntersectionObserver(() => {
    bar.dataset.stuck = String(sentinel.getBoundingClientRect().top > bar.getBoundingClientRect().bottom + 1);
  });
  io.observe(sentinel);
  io.observe(bar);
  return () => io.disconnect();
}

/**
 * Keep the action bar reachable in one view: unclip the host boxes once the view is in the
 * document, cap the tree's height to fit with the bar, and mark the bar stuck. Sets
 * v.fn.queueStick.
 * @param {View} v
 */
export function mountActionBar(v) {
  const { root, viewport, treeHead, actions, actionsEnd } = v.els;
  let fitQueued = false;
  /** @type {(() => void)|null} */
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
