// @ts-check
// sd_widgets Explorer front end: the module anywidget loads (`export default { render }`). Each
// static/*.js is an ES module that imports what it uses; `npm run build` (build.mjs, a pinned
// esbuild) bundles this entry and everything it imports into the one file the widget ships,
// static/bundle/explorer.js, which the offline HTML report inlines too (report.js boots it there).
//   tree.js      render(): the composition of the view's parts (its header lists them)
//   report.js    the standalone report page: render over a snapshot of the traits

import { render } from "./tree.js";
import { bootReport } from "./report.js";

bootReport(typeof document === "undefined" ? undefined : document, render);

export default { render };
