// The one file the widget ships is what the modules build: `npm run build` (build.mjs, the
// pinned esbuild of package-lock.json) must have been run and its output committed. And the
// standalone report's boot (report.js), which rides in that file.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";

import { ROOT, bundle } from "../../build.mjs";
import { bootReport, snapshotModel } from "../../sd_widgets/widget/static/report.js";

test("the committed bundle is what the sources build (run 'npm run build' and commit it)", async () => {
  const { files } = await bundle();
  assert.deepEqual([...files.keys()].sort(), ["sd_widgets/widget/static/bundle/explorer.css", "sd_widgets/widget/static/bundle/explorer.js"]);
  for (const [name, text] of files) {
    assert.ok(readFileSync(join(ROOT, name), "utf8") === text, `${name} is stale: run 'npm run build' and commit it`);
  }
  // deterministic: a second build gives the same bytes, with no absolute path of this machine
  const again = await bundle();
  for (const [name, text] of files) {
    assert.equal(again.files.get(name), text);
    assert.ok(!text.includes(ROOT), `${name} names ${ROOT}`);
  }
});

/** A document with the given elements by id (dataset only). */
function fakeDocument(ids) {
  const els = Object.fromEntries(Object.entries(ids).map(([id, text]) => [id, { id, textContent: text, dataset: {} }]));
  return { getElementById: (id) => els[id] ?? null, els };
}

test("the report boots only on the report page, once, over the snapshot of the traits", () => {
  const calls = [];
  const render = (args) => calls.push(args);
  assert.equal(bootReport(undefined, render), false); // no DOM (node, a worker)
  assert.equal(bootReport(fakeDocument({}), render), false); // a notebook page
  assert.equal(bootReport(fakeDocument({ "sdw-report": "" }), render), false); // no state
  const doc = fakeDocument({ "sdw-state": '{"tab": "preview", "read_only": true}', "sdw-report": "" });
  assert.equal(bootReport(doc, render), true);
  assert.equal(bootReport(doc, render), false); // the same page again: already rendered
  assert.equal(calls.length, 1);
  const { model, el } = calls[0];
  assert.equal(el, doc.els["sdw-report"]);
  assert.equal(model.get("tab"), "preview");
  assert.equal(model.get("read_only"), true);
});

test("the report's model: set notifies the listeners of that trait, off removes one, send goes nowhere", () => {
  const model = snapshotModel({ tab: "preview" });
  const seen = [];
  const fn = () => seen.push(model.get("tab"));
  model.on("change:tab", fn);
  model.on("change:other", () => seen.push("other"));
  model.set("tab", "code");
  model.save_changes();
  model.send({ action: "load" });
  model.off("change:tab", fn);
  model.set("tab", "renames");
  assert.deepEqual(seen, ["code"]);
  assert.equal(model.get("tab"), "renames");
});
