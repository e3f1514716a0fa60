// @ts-check
// sd_widgets Explorer: the DOM helpers every view module uses (element factory, buttons, text
// measuring), the layout constants, and the typedefs of one rendered view (View, ViewState):
// tree.js's render() builds the View; skeleton.js, treeview.js, treenav.js, filters.js,
// actionbar.js and traits.js each mount one part of it. Text only ever goes in through
// textContent / title / value, never as HTML.

/** @import { NavState, TreeData } from "./lib.js" */
/** @import { ValueIndex } from "./values.js" */

export const ROW_H = 24;
export const INDENT = 12; // px per tree level (lib.js columnWidths uses the same)
export const MODEL_INDENT = 6; // the model column repeats the structure: a lighter indent saves width
export const CHECK_W = 26; // the check-mark column (tree.css .sdw-row grid)
export const ROW_BORDER_W = 3; // a row's left border (tree.css .sdw-canvas > .sdw-row)
export const FULL_RENDER_MAX = 600; // draw every visible row up to this many; window above it
export const OVERSCAN = 30;
export const VIEWPORT_FALLBACK_H = 440;
export const MAX_PROBLEM_CHIPS = 6;

/**
 * An id for one view's element ids and radio-group names that no other view on the page has.
 * Not a module-level counter: each widget may load its own copy of this module, and every copy's
 * counter would start at 1 (two Explorers then shared one BatchNorm radio group).
 * @param {string} prefix
 * @returns {string}
 */
export function uniqueId(prefix) {
  const bytes = new Uint8Array(8);
  globalThis.crypto.getRandomValues(bytes);
  return `${prefix}-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/**
 * What one rendered view remembers; replaced fields are reassigned on `v.s` by the modules.
 * @typedef {object} ViewState
 * @property {TreeData} data             the decoded tree payload
 * @property {Uint8Array} expanded       modules open in the unfiltered view
 * @property {Uint8Array} filterExpanded modules open while a filter is active
 * @property {Uint8Array|null} matches   the filter's per-entry flags, null when unfiltered
 * @property {Int32Array} visible        entries drawn, in order
 * @property {{kind: "key"|"module", path: string}|null} clickAnchor  the last plain click
 * @property {NavState} nav              roving tab stop and Shift+Arrow anchor
 * @property {number} detailsOpen        entry whose details are shown, -1 when closed
 * @property {Map<string, string>} skipped  selected keys the plan skips, with the reason
 * @property {Record<string, number>} userWidths  column widths the user dragged
 * @property {string} query              lower-case search text in force
 * @property {Set<number>} statusOn      status indices shown
 * @property {string} sharedNote         the rename prefix every renamed checkpoint key shares
 * @property {number} fittedTo           the viewport width the columns were last fitted to
 * @property {boolean} readOnly          the standalone report (its model's `read_only`): no kernel
 * @property {ValueIndex|null} [values]  the value comparison (values.js), null before one
 * @property {Map<string, string>} [loraNotes]  a LoRA adapter's pairing by row key (rows.js)
 * @property {Set<string>} [changeOn]    values.js: changes the tree shows (empty: every row)
 * @property {boolean} [sortByChange]    values.js: each module's rows most changed first
 */

/**
 * The functions the parts of a view call on each other (each is set by the module named).
 * @typedef {object} ViewFns
 * @property {() => void} refreshTree            treeview: visible rows, rows, empty note, details
 * @property {(force?: boolean) => void} drawRows treeview: (re)draw the rows in the window
 * @property {() => void} patchRows              treeview: redraw only rows whose state changed
 * @property {() => void} drawCrumb              treeview
 * @property {() => void} drawCkptHead           treeview: the shared rename prefix in the header
 * @property {() => void} sizeColumns            treeview
 * @property {() => void} drawDetails            treeview
 * @property {(i: number, opts?: {focus?: boolean}) => void} moveFocus  treenav
 * @property {() => void} focusRowElement        treenav
 * @property {(text: string) => void} note       treenav: the tree note line
 * @property {() => void} applyFilter            filters
 * @property {(on: boolean) => void} setOnlyProblems  filters
 * @property {(i: number) => void} reveal        filters: show entry i (open, unfilter) and focus it
 * @property {() => void} drawLegend             filters
 * @property {() => void} drawProblems           filters
 * @property {() => void} queueStick             actionbar: refit the tree's height next frame
 * @property {() => void} drawStatusStyle        tree.js: status colour rules and tone colours
 * @property {(busy: boolean, text: string) => void} drawBusyPanel  panels.js: the busy sign
 * @property {(error: {title?: string, text?: string, fix?: string}) => void} drawErrorState  panels.js
 * @property {() => void} drawChangeControls     values.js: the tree's change filter and sort
 */

/**
 * One rendered view of the Explorer.
 * @typedef {object} View
 * @property {any} model                         the anywidget model
 * @property {HTMLElement} el                    the element anywidget renders into
 * @property {string} uid                        unique per view (radio group names)
 * @property {(content: object) => void} send    a gesture to Python (`{action: ...}`)
 * @property {(name: string, fn: Function) => void} on  model.on, undone at cleanup
 * @property {(() => void)[]} cleanups
 * @property {ViewState} s
 * @property {Record<string, any>} els           the skeleton's elements (skeleton.js)
 * @property {ViewFns} fn
 */

// ============================================================================ element helper

/**
 * Create an element. `props`: className, text, title, dataset, attrs, on (events). Text only
 * ever goes in through textContent.
 * @param {string} tag
 * @param {{className?: string, text?: any, title?: any, dataset?: Record<string, any>, attrs?: Record<string, any>, on?: Record<string, EventListener>}} [props]
 * @param {(Node|string|null|undefined|false)[]} [children]
 * @returns {any}
 */
export function h(tag, props = {}, children = []) {
  const el = document.createElement(tag);
  if (props.className) el.className = props.className;
  if (props.text !== undefined && props.text !== null) el.textContent = String(props.text);
  if (props.title) el.title = String(props.title);
  if (props.dataset) {
    for (const [k, v] of Object.entries(props.dataset)) {
      if (v !== undefined && v !== null) el.dataset[k] = String(v);
    }
  }
  if (props.attrs) {
    for (const [k, v] of Object.entries(props.attrs)) {
      if (v !== undefined && v !== null && v !== false) el.setAttribute(k, v === true ? "" : String(v));
    }
  }
  if (props.on) for (const [ev, fn] of Object.entries(props.on)) el.addEventListener(ev, fn);
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
  }
  return el;
}

/**
 * The focused element where `el` lives: its shadow root's (marimo renders widgets in one, where
 * document.activeElement is only the shadow host) or its document's.
 * @param {Node} el
 * @returns {Element|null}
 */
export function focusedIn(el) {
  const root = /** @type {Document|ShadowRoot} */ (el.getRootNode());
  return "activeElement" in root ? root.activeElement : document.activeElement;
}

/** A text-width function for columnWidths(): canvas measureText with the widget's fonts. */
export function textMeasurer(root) {
  const fallback = { name: 7.3, meta: 6.7, ui: 7.0 };
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

// ============================================================================ buttons

/** A toolbar button sending `data-action` (handled by render()'s click handler). */
export function button(text, action, titleText, extra = {}) {
  return h("button", { className: `sdw-btn ${extra.className || ""}`.trim(), text, title: titleText, dataset: { action }, attrs: { type: "button" } });
}
