// @ts-check
// sd_widgets Explorer: the panels around the tree (rule banner, results table, error and stale
// states). Mounted by tree.js's render() through mountPanels(ctx).

/**
 * @typedef {object} PanelContext
 * @property {any} model   the anywidget model (get/on/send)
 * @property {(content: object) => void} send
 * @property {(name: string, fn: Function) => void} on   model.on with automatic cleanup
 * @property {Function} h   element factory of tree.js (text only via textContent)
 * @property {HTMLElement} root
 * @property {{top: HTMLElement, results: HTMLElement}} slots
 */

/** @param {PanelContext} ctx */
export function mountPanels(ctx) {
  void ctx;
}
