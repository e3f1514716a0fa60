// @ts-check
// sd_widgets Explorer: the skeleton of one view — every element of the DOM contract (tree.js)
// created once, empty; the other modules fill and update them. Returns them by name (v.els).

import { button, h } from "./dom.js";
import { buildTabs } from "./tabs.js";
/** @import { View } from "./dom.js" */

/**
 * The view's elements by name: the tabs' (TabsUi) and, among others, root, title, summary,
 * messageBar, messageOffer, problems, search, onlyProblems, legend, colHeader, crumb, treeHead, canvas,
 * viewport, treeNote, details, emptyNote, loadBtn, undoBtn, bnGroup, actions, actionsEnd,
 * treeBox, topSlot, resultsSlot, statusStyle.
 * @typedef {Record<string, any>} Elements
 */

/**
 * Build the view's elements and append them to `v.el`.
 * @param {View} v
 * @returns {Elements}
 */
export function buildSkeleton(v) {
  const root = h("div", { className: "sdw-explorer", dataset: { role: "explorer", ready: "false" } });
  const title = h("div", { className: "sdw-title", dataset: { role: "title" } });
  const summary = h("div", { className: "sdw-summary", dataset: { role: "summary" } });
  const messageText = h("span", { className: "sdw-message-text", dataset: { role: "message-text" } });
  const messageDetail = h("details", { className: "sdw-message-detail" }, [
    h("summary", { text: "details" }),
    h("pre", { dataset: { role: "message-detail" } }),
  ]);
  // what the message offers to do next ("Undo anyway"): Python names the label and the action
  const messageOffer = h("button", { className: "sdw-btn sdw-btn-primary", dataset: { action: "message-offer", role: "message-offer" }, attrs: { type: "button" } });
  messageOffer.hidden = true;
  const messageBar = h("div", { className: "sdw-message", dataset: { role: "message", level: "none" }, attrs: { role: "status", "aria-live": "polite" } }, [
    messageText,
    messageOffer,
    messageDetail,
    h("button", { className: "sdw-btn sdw-btn-icon", text: "×", title: "Dismiss", dataset: { action: "dismiss-message" }, attrs: { type: "button", "aria-label": "Dismiss message" } }),
  ]);
  const problems = h("div", { className: "sdw-problems", dataset: { role: "problems" }, attrs: { role: "region", "aria-label": "Problems" } });

  const search = h("input", {
    className: "sdw-search",
    attrs: { type: "search", placeholder: "Search keys…", "aria-label": "Search keys", spellcheck: "false" },
    dataset: { role: "search" },
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
    btn("Clear selection", "select-none", "Deselect everything"),
  ]);
  const legend = h("div", { className: "sdw-legend", dataset: { role: "legend" }, attrs: { "aria-label": "Legend: status colours, icons and filters" } });
  const resizer = (col, label) =>
    h("span", { className: "sdw-col-resize", title: `Drag (or focus and press ←/→) to resize the ${label} column`, dataset: { role: "col-resize", col }, attrs: { role: "separator", "aria-orientation": "vertical", "aria-label": `Resize the ${label} column`, tabindex: "0" } });
  const colHeader = h("div", { className: "sdw-row sdw-colheader", dataset: { role: "column-header" }, attrs: { "aria-hidden": "false" } }, [
    h("span", { className: "sdw-cell sdw-cell-check" }),
    h("span", { className: "sdw-cell sdw-cell-side sdw-head-cell", dataset: { role: "ckpt-head" } }, ["Checkpoint", resizer("ckpt", "checkpoint")]),
    h("span", { className: "sdw-cell sdw-cell-status sdw-head-cell", text: "Status" }, [resizer("status", "status")]),
    h("span", { className: "sdw-cell sdw-cell-side", text: "Model", dataset: { role: "model-head" } }),
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
      h("button", { className: "sdw-btn sdw-btn-icon", text: "×", title: "Close the details", dataset: { action: "close-details" }, attrs: { type: "button", "aria-label": "Close the details" } }),
    ]),
    detailsBody,
  ]);
  details.hidden = true;
  const emptyNote = h("div", { className: "sdw-empty", dataset: { role: "empty" } });

  // actions bar: load / undo / BN policy / preview summary
  const loadBtn = btn("Load selected", "load", "Run partial_load on the live model with this selection", { className: "sdw-btn-primary" });
  const undoBtn = btn("Undo", "undo", "Restore the tensors the last load replaced");
  const bnGroup = h("span", { className: "sdw-bn", dataset: { role: "bn-group" }, attrs: { role: "radiogroup", "aria-label": "BatchNorm running statistics" } }, [
    h("span", { className: "sdw-muted", text: "BatchNorm stats:" }),
  ]);
  const bnTitles = {
    load: "load running_mean / running_var / num_batches_tracked from the checkpoint",
    keep: "keep the model's current running statistics",
    reset: "reset running statistics (0 / 1 / 0) of the BatchNorm modules touched",
  };
  for (const policy of ["load", "keep", "reset"]) {
    bnGroup.appendChild(
      h("label", { className: "sdw-radio", title: bnTitles[policy] }, [
        h("input", { attrs: { type: "radio", name: `${v.uid}-bn`, value: policy }, dataset: { role: "bn-policy" } }),
        ` ${policy}`,
      ]),
    );
  }
  const previewLine = h("span", { className: "sdw-preview-line", dataset: { role: "preview-line" } });
  const busyNote = h("span", { className: "sdw-busy", text: "working…", dataset: { role: "busy" } });
  const actions = h("div", { className: "sdw-actions", dataset: { role: "actions" } }, [loadBtn, undoBtn, bnGroup, h("span", { className: "sdw-spacer" }), busyNote, previewLine]);
  const actionsEnd = h("div", { className: "sdw-actions-end", dataset: { role: "actions-end" }, attrs: { "aria-hidden": "true" } });

  // tabs under the tree
  const tabsUi = buildTabs(v.model, v.on);
  const { panels, tabBar } = tabsUi;

  const topSlot = h("div", { className: "sdw-top-slot", dataset: { role: "top-slot" } });
  const resultsSlot = h("div", { className: "sdw-results-slot", dataset: { role: "results-slot" } });
  panels.results.prepend(resultsSlot);
  const statusStyle = h("style", { dataset: { role: "status-style" } });
  // the bar sticks only while the tree is on screen: its containing block is the tree's box
  const treeBox = h("div", { className: "sdw-tree-box", dataset: { role: "tree-box" } }, [viewport, treeNote, emptyNote, actions]);
  root.append(statusStyle, title, messageBar, topSlot, summary, problems, toolbar, legend, treeBox, actionsEnd, details, tabBar, ...Object.values(panels));
  v.el.appendChild(root);
  return {
    ...tabsUi,
    root, title, summary, messageText, messageOffer, messageDetail, messageBar, problems, search, onlyProblems, toolbar, legend,
    colHeader, crumb, treeHead, canvas, viewport, treeNote, detailsBody, details, emptyNote,
    loadBtn, undoBtn, bnGroup, previewLine, busyNote, actions, actionsEnd, treeBox, topSlot, resultsSlot, statusStyle,
  };
}
