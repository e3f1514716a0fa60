// @ts-check
// sd_widgets Explorer: filters (search, "only problems", the legend's status toggles) and the
// problems strip. The pure part works on status index sets (which statuses are problems comes
// from the legend); the DOM part draws the legend and the strip and reacts to their gestures.
// Sets v.fn.applyFilter / setOnlyProblems / reveal / drawLegend / drawProblems.

import { expandTo, fmtInt, problemPhrase } from "./lib.js";
import { MAX_PROBLEM_CHIPS, button, h } from "./dom.js";
import { valueMatches } from "./values.js";
/** @import { TreeData } from "./lib.js" */
/** @import { View, ViewState } from "./dom.js" */

/** @typedef {Set<number>} StatusSet  status indices (into the payload's `statuses`) */

// ============================================================================ pure

/**
 * The expansion in force: the filter's while filtering (everything open), else the user's.
 * @param {ViewState} s
 */
export function expansion(s) {
  return s.matches ? s.filterExpanded : s.expanded;
}

/** Every status index. @param {TreeData} data @returns {Set<number>} */
export function allStatuses(data) {
  return new Set(data.statuses.map((_, s) => s));
}

/** The status indices the legend calls problems. @param {TreeData} data @returns {Set<number>} */
export function problemStatuses(data) {
  return new Set(data.statuses.map((_, s) => s).filter((s) => data.problem[s]));
}

/**
 * Whether exactly the problem statuses are shown (the "only problems" box is then ticked).
 * @param {TreeData} data
 * @param {Set<number>} statusOn
 */
export function onlyProblemsShown(data, statusOn) {
  const probs = problemStatuses(data);
  return statusOn.size === probs.size && [...probs].every((s) => statusOn.has(s));
}

/**
 * `statusOn` with status `s` shown or hidden the other way (a click on its legend entry).
 * @param {Set<number>} statusOn
 * @param {number} s
 */
export function toggleStatus(statusOn, s) {
  const out = new Set(statusOn);
  if (out.has(s)) out.delete(s);
  else out.add(s);
  return out;
}

/** The expansion while a filter is active: every module open. @param {TreeData} data */
export function filterExpansion(data) {
  const e = new Uint8Array(data.n);
  for (let i = 0; i < data.n; i++) if (data.c.t[i] === 0) e[i] = 1;
  return e;
}

/**
 * The note under the tree when nothing shows ("" when rows show).
 * @param {TreeData} data
 * @param {number} nVisible
 */
export function emptyText(data, nVisible) {
  return data.n === 0 ? "No keys to show." : nVisible === 0 ? "No key matches the search and status filter." : "";
}

// ============================================================================ DOM

/** @param {View} v */
export function mountFilters(v) {
  const s = v.s;
  const { search, onlyProblems, legend, problems } = v.els;

  function applyFilter() {
    const data = s.data;
    // values.js: the change filter narrows the search and status filter's rows further
    s.matches = valueMatches(data, s.values, s.changeOn, data.computeMatches(s.query, s.statusOn));
    if (s.matches) s.filterExpanded = filterExpansion(data);
    for (const btnEl of legend.querySelectorAll("[data-role=legend-item]")) {
      btnEl.setAttribute("aria-pressed", String(s.statusOn.has(data.statuses.indexOf(btnEl.dataset.status))));
    }
    onlyProblems.checked = onlyProblemsShown(data, s.statusOn);
    v.fn.refreshTree();
  }

  /** @param {boolean} onOff */
  function setOnlyProblems(onOff) {
    s.statusOn = onOff ? problemStatuses(s.data) : allStatuses(s.data);
    applyFilter();
  }

  /** @type {any} */
  let searchTimer = null;
  v.cleanups.push(() => clearTimeout(searchTimer));
  search.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      s.query = search.value.trim().toLowerCase();
      applyFilter();
    }, 120);
  });
  search.addEventListener("keydown", (ev) => {
    // Down from the search box goes into the tree (the first row that matches)
    if (ev.key === "ArrowDown" && s.visible.length) {
      ev.preventDefault();
      clearTimeout(searchTimer);
      const q = search.value.trim().toLowerCase();
      if (q !== s.query) {
        s.query = q;
        applyFilter();
      }
      v.fn.moveFocus(s.visible[0]);
    }
  });
  onlyProblems.addEventListener("change", () => setOnlyProblems(onlyProblems.checked));
  legend.addEventListener("click", (ev) => {
    const item = ev.target.closest("[data-role=legend-item]");
    if (!item) return;
    s.statusOn = toggleStatus(s.statusOn, s.data.statuses.indexOf(item.dataset.status));
    applyFilter();
  });

  function drawLegend() {
    const data = s.data;
    legend.replaceChildren(h("span", { className: "sdw-muted", text: "Show:" }));
    data.statuses.forEach((status, k) => {
      const item = data.legendOf(status);
      const n = (data.p.counts || [])[k] || 0;
      legend.appendChild(
        h("button", { className: `sdw-legend-item sdw-status-${status}`, title: `${item.label}: ${item.description}. Click to show/hide.`, dataset: { role: "legend-item", status }, attrs: { type: "button", "aria-pressed": "true" } }, [
          h("span", { className: "sdw-swatch", attrs: { "aria-hidden": "true" } }),
          h("span", { className: "sdw-legend-icon", text: item.icon }),
          ` ${item.label} `,
          h("span", { className: "sdw-legend-count", text: `(${n})` }),
        ]),
      );
    });
  }

  function drawProblems() {
    const data = s.data;
    const list = data.problemEntries();
    problems.hidden = list.length === 0;
    if (!list.length) {
      problems.replaceChildren();
      return;
    }
    const chips = list.slice(0, MAX_PROBLEM_CHIPS).map((i) => {
      const item = data.item(i);
      return h("button", { className: `sdw-problem sdw-status-${data.statusName(i)}`, title: `${data.c.path[i]}: ${item.label}. Show it in the tree.`, dataset: { action: "goto-problem", key: data.c.path[i] }, attrs: { type: "button" } }, [
        h("span", { className: "sdw-legend-icon", text: item.icon, attrs: { "aria-hidden": "true" } }),
        // shortened from the left (tree.css), the key itself isolated left-to-right: a key
        // starting with "<" or holding a bidi override still reads as it is
        h("span", { className: "sdw-problem-key" }, [h("span", { className: "sdw-name-text", text: data.c.path[i], attrs: { dir: "ltr" } })]),
      ]);
    });
    const more = list.length - chips.length;
    const parts = [h("span", { className: "sdw-problems-title", text: `⚠ ${problemPhrase(list.length)}:` }), ...chips];
    if (more > 0) parts.push(h("span", { className: "sdw-muted", text: `… and ${fmtInt(more)} more` }));
    parts.push(button("Show only problems", "show-problems", "Show only the rows with a problem"));
    problems.replaceChildren(...parts);
  }

  /** Make entry `i` visible (open its modules; drop a filter that hides it) and focus it. @param {number} i */
  function reveal(i) {
    if (s.matches && !s.matches[i]) {
      s.query = "";
      search.value = "";
      s.statusOn = allStatuses(s.data);
      s.changeOn = new Set();
      s.matches = null;
      v.fn.drawChangeControls();
      applyFilter();
    }
    expandTo(s.data, expansion(s), i);
    v.fn.refreshTree();
    v.fn.moveFocus(i);
  }

  Object.assign(v.fn, { applyFilter, setOnlyProblems, reveal, drawLegend, drawProblems });
}
