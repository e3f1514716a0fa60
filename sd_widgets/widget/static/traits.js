// @ts-check
// sd_widgets Explorer: traits → DOM (header, selection, preview, message, busy state, BatchNorm
// policy, a new tree payload) and the buttons outside the tree (toolbar, action bar, tabs). The
// pure part builds texts and messages and carries the view's state across a new payload; the
// DOM part draws and wires `model.on("change:...")`. The one owner of the traits `tree`,
// `selected_keys`, `adapters`, `preview`, `message`, `busy`, `busy_text`, `can_undo`, `error`
// and `bn_policy` (docs/widget-protocol.md): other modules get them from the view (v.s.data)
// or through the v.fn functions these call.

import { TreeData, decodeTree, fmtBytes, fmtInt, initialExpansion, skippedKeys } from "./lib.js";
import { focusedIn, h } from "./dom.js";
import { allStatuses, expansion, problemStatuses } from "./filters.js";
/** @import { View } from "./dom.js" */

/**
 * @typedef {object} Preview  the `preview` trait (explorer.py)
 * @property {number} [n_tensors]
 * @property {number} [n_params]
 * @property {number} [nbytes]
 * @property {string} [bn]
 * @property {string[]} [keys]
 * @property {number} [n_keys_total]
 * @property {[string, string][]} [skipped]
 * @property {string[]} [skipped_keys]
 */

// ============================================================================ pure

/**
 * "38 keys: 36 matches, 2 shape mismatches", then the payload's diagnosis when it has one
 * (every shape mismatch shares one size ratio: "… built with a different config?").
 * @param {TreeData} data
 */
export function summaryText(data) {
  const p = data.p;
  const counts = `${fmtInt(p.n_keys || 0)} keys: ${data.countPhrases(p.counts || []).join(", ") || "none"}`;
  return p.diagnosis ? `${counts}. ${p.diagnosis}` : counts;
}

/**
 * The texts of the selection preview: the action bar's line, the Selection tab's line, and the
 * note under its key list.
 * @param {Preview} pv
 */
export function previewTexts(pv) {
  const line = `${fmtInt(pv.n_tensors)} tensors · ${fmtInt(pv.n_params)} parameters · ${fmtBytes(pv.nbytes || 0)}`;
  const more = (pv.n_keys_total || 0) - (pv.keys || []).length;
  return {
    bar: `Selected: ${line}`,
    stats: line + (pv.bn ? ` · BatchNorm stats: ${pv.bn}` : ""),
    more: more > 0 ? `… and ${fmtInt(more)} more` : pv.n_tensors ? "" : "Nothing selected: click rows or module nodes, or “Select all loadable”.",
  };
}

/** Whether two key → reason maps are equal. @param {Map<string, string>} a @param {Map<string, string>} b */
export function sameSkipped(a, b) {
  return a.size === b.size && [...a].every(([k, why]) => b.get(k) === why);
}

/**
 * The message a button outside the tree sends (by its `data-action`), or null when it is not a
 * plain message (or a soft-disabled Load/Undo).
 * @param {string} action
 * @param {DOMStringMap|Record<string, string>} dataset
 * @param {{kind: string, old: string, new: string}} ruleForm  the Renames tab's rule inputs
 * @param {boolean} softDisabled  the button says aria-disabled (busy)
 * @returns {object|null}
 */
export function actionMessage(action, dataset, ruleForm, softDisabled) {
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

/**
 * What a press on a soft-disabled Load or Undo says (next to the buttons) instead of being
 * dropped: while a load or an undo runs (`busy`), a second one would run after it (a second
 * Undo would undo the load before too), so the press is not sent. Drawing statistics and plots
 * after a load is not `busy`: Undo is usable then.
 * @param {string} action  the button's data-action
 * @param {string} busyText  what the kernel is doing (`busy_text`)
 * @returns {string} "" for any other button
 */
export function busyRefusal(action, busyText) {
  if (action !== "load" && action !== "undo") return "";
  const label = action === "load" ? "Load selected" : "Undo";
  const doing = (busyText || "").replace(/…$/, "") || "the last action";
  return `“${label}” was not sent: ${doing} is still running. Press it again when it is done.`;
}

/**
 * What a view keeps across a new tree payload (a re-alignment): the modules the user had open
 * (by path, on top of the new payload's initial expansion) and the tab stop's row (by path).
 * @param {TreeData} oldData
 * @param {Uint8Array} oldExpanded
 * @param {number} oldFocus
 * @param {TreeData} data  the new payload
 * @returns {{expanded: Uint8Array, focus: number}}
 */
export function carryOver(oldData, oldExpanded, oldFocus, data) {
  const expanded = initialExpansion(data);
  if (oldData.n > 0) {
    const open = new Set();
    for (let i = 0; i < oldData.n; i++) if (oldData.c.t[i] === 0 && oldExpanded[i]) open.add(oldData.c.path[i]);
    for (let i = 0; i < data.n; i++) if (data.c.t[i] === 0 && open.has(data.c.path[i])) expanded[i] = 1;
  }
  let focus = -1;
  if (oldFocus >= 0 && oldFocus < oldData.n) {
    const path = oldData.c.path[oldFocus];
    const found = oldData.c.t[oldFocus] === 1 ? data.keyIndex.get(path) : data.moduleIndex.get(path);
    if (found !== undefined) focus = found;
  }
  return { expanded, focus };
}

// ============================================================================ DOM

/** The toolbar, action-bar and tab buttons (outside the tree). @param {View} v */
export function mountActions(v) {
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
      busyNote.textContent = refusal; // until the busy sign goes (drawBusy)
      busyNote.dataset.refused = action;
    }
    else if (action === "message-offer") {
      const m = v.model.get("message") || {};
      if (m.offer && m.offer.content) v.send(m.offer.content); // what Python offered, as it is
    } else if (action === "copy-code") copyCode();
    else if (action === "goto-problem") {
      const i = s.data.keyIndex.get(actionEl.dataset.key);
      if (i !== undefined) v.fn.reveal(i);
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

/** Draw every trait and follow its changes. @param {View} v */
export function mountTraits(v) {
  const s = v.s;
  const model = v.model;
  const e = v.els;

  function drawHeader() {
    const p = s.data.p;
    e.title.replaceChildren(
      h("span", { className: "sdw-title-main", text: "State dict explorer" }),
      h("span", { className: "sdw-muted", text: ` ${p.model || "model"} ← ${p.source || "checkpoint"}` }),
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
    /** @type {Preview} */
    const pv = model.get("preview") || {};
    e.preview.dataset.nTensors = String(pv.n_tensors || 0);
    e.preview.dataset.nParams = String(pv.n_params || 0);
    e.preview.dataset.nbytes = String(pv.nbytes || 0);
    const t = previewTexts(pv);
    e.previewLine.textContent = t.bar;
    e.previewStats.textContent = t.stats;
    // up to 500 keys: the items already there are reused (their text changed only where a
    // click shifted the list), fewer elements to create and lay out per click
    const pkeys = pv.keys || [];
    const items = e.previewKeys.children;
    for (let j = 0; j < pkeys.length; j++) {
      if (j >= items.length) e.previewKeys.appendChild(h("li", { text: pkeys[j] }));
      else if (items[j].textContent !== pkeys[j]) items[j].textContent = pkeys[j];
    }
    while (items.length > pkeys.length) e.previewKeys.lastElementChild.remove();
    e.previewMore.textContent = t.more;
    const skippedPairs = pv.skipped || [];
    // the tree marks the selected keys the plan skips ("not loaded", e.g. bn='keep')
    const next = skippedKeys(pv);
    const changed = !sameSkipped(next, s.skipped);
    s.skipped = next;
    if (changed) {
      v.fn.patchRows();
      if (s.detailsOpen >= 0) v.fn.drawDetails();
    }
    e.skippedList.replaceChildren(...(skippedPairs.length
      ? skippedPairs.map(([k, why]) => h("li", { title: why }, [h("span", { className: "sdw-key", text: k }), h("span", { className: "sdw-muted", text: ` — ${why}` })]))
      : [h("li", { className: "sdw-muted", dataset: { role: "preview-skipped-none" }, text: pv.n_tensors ? "Nothing: every selected key will be loaded." : "—" })]));
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

  /** The action bar, the busy sign and the error state (panels.js draws those two). */
  function drawBusy() {
    const { loadBtn, undoBtn } = e;
    // busy: a load, an undo or another action runs (Load and Undo wait); busy_text without
    // busy: statistics and plots are drawn (the sign shows, Load and Undo are usable)
    const busy = !!model.get("busy");
    const busyText = model.get("busy_text") || "";
    v.fn.drawBusyPanel(busy || !!busyText, busyText);
    v.fn.drawErrorState(model.get("error") || {});
    e.root.dataset.busy = String(busy);
    e.busyNote.style.visibility = busy || busyText ? "visible" : "hidden";
    if (!busy && e.busyNote.dataset.refused) {
      e.busyNote.textContent = "working…"; // the refused press can be made now
      delete e.busyNote.dataset.refused;
    }
    // while busy the buttons say so with aria-disabled instead of `disabled`: a disabled button
    // drops keyboard focus to the page body, so the user pressing Load would lose their place
    const canUndo = !!model.get("can_undo");
    const soft = (b, off) => (off ? b.setAttribute("aria-disabled", "true") : b.removeAttribute("aria-disabled"));
    soft(loadBtn, busy);
    const err = model.get("error");
    loadBtn.disabled = !!(err && err.text); // nothing to load from: a real disabled button
    if (!canUndo && undoBtn === focusedIn(undoBtn)) {
      undoBtn.disabled = false; // it has the focus: keep it (announced as unavailable)
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
    v.fn.sizeColumns(); // the adapter buttons now say which adapter
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
