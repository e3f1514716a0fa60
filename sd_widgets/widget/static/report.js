// @ts-check
// sd_widgets Explorer: the offline HTML report (sd_widgets/widget/_html.py). That page inlines
// this same bundle and holds a snapshot of the Explorer's traits as JSON in
// <script type="application/json" id="sdw-state">; there the view renders once, read-only, over
// a model that answers from the snapshot and sends nothing (no kernel). In a notebook host the
// page has no such element and nothing happens.

/**
 * A stand-in for the anywidget model over a snapshot of the traits: get / set / on / off work
 * on the snapshot; send and save_changes go nowhere.
 * @param {Record<string, any>} state
 */
export function snapshotModel(state) {
  /** @type {Map<string, Function[]>} */
  const listeners = new Map();
  return {
    /** @param {string} name */
    get: (name) => state[name],
    /** @param {string} name @param {any} value */
    set(name, value) {
      state[name] = value;
      for (const fn of [...(listeners.get(`change:${name}`) || [])]) fn();
    },
    save_changes() {},
    send() {},
    /** @param {string} name @param {Function} fn */
    on(name, fn) {
      if (!listeners.has(name)) listeners.set(name, []);
      /** @type {Function[]} */ (listeners.get(name)).push(fn);
    },
    /** @param {string} name @param {Function} fn */
    off(name, fn) {
      const list = listeners.get(name) || [];
      const at = list.indexOf(fn);
      if (at >= 0) list.splice(at, 1);
    },
  };
}

/**
 * Render the report if `doc` is the report page (the state element and the mount point
 * `#sdw-report`), once per page.
 * @param {Document|undefined} doc
 * @param {(args: {model: any, el: HTMLElement}) => unknown} render
 * @returns {boolean} whether it rendered
 */
export function bootReport(doc, render) {
  const state = doc ? doc.getElementById("sdw-state") : null;
  const el = doc ? doc.getElementById("sdw-report") : null;
  if (!state || !el || el.dataset.rendered) return false;
  el.dataset.rendered = "true";
  render({ model: snapshotModel(JSON.parse(state.textContent || "{}")), el });
  return true;
}
