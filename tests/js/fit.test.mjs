// fitColumns (lib.js): the tree's three columns in a narrow container (marimo's ~700 px column,
// JupyterLab with the file browser open). Run: node --test tests/js/
import { test } from "node:test";
import assert from "node:assert/strict";

import { fitColumns } from "../../sd_widgets/widget/static/lib.js";

const want = { ckpt: 400, status: 190, model: 380 };
const sum = (w) => w.ckpt + w.status + w.model;

test("wide enough: the widths the data wants", () => {
  assert.deepEqual(fitColumns(want, 1200), { ...want, fit: "full" });
  assert.deepEqual(fitColumns(want, 970), { ...want, fit: "full" });
});

test("narrow: the columns fill exactly the width, none below its minimum, none above its want", () => {
  for (const available of [969, 900, 740, 600, 553, 410]) {
    const w = fitColumns(want, available, { minSide: 150, minStatus: 110 });
    assert.equal(w.fit, "narrow", `${available}`);
    assert.equal(sum(w), available, `${available}: ${JSON.stringify(w)}`);
    assert.ok(w.ckpt >= 150 && w.model >= 150 && w.status >= 110, JSON.stringify(w));
    assert.ok(w.ckpt <= want.ckpt && w.model <= want.model && w.status <= want.status, JSON.stringify(w));
  }
});

test("narrow: the status column keeps its width while the sides can keep their minimum", () => {
  const w = fitColumns({ ckpt: 600, status: 300, model: 200 }, 800);
  assert.equal(w.status, 300);
  assert.ok(w.ckpt > w.model, JSON.stringify(w));
  assert.equal(sum(w), 800);
  const tight = fitColumns({ ckpt: 600, status: 300, model: 400 }, 500, { minSide: 150, minStatus: 110 });
  assert.deepEqual(tight, { ckpt: 150, status: 200, model: 150, fit: "narrow" });
});

test("a column that wants less than the minimum keeps what it wants", () => {
  const w = fitColumns({ ckpt: 900, status: 90, model: 120 }, 700);
  assert.equal(w.fit, "narrow");
  assert.equal(w.model, 120);
  assert.equal(w.status, 90);
  assert.equal(sum(w), 700);
});

test("below the minimums: the minimums, and the tree scrolls sideways", () => {
  assert.deepEqual(fitColumns(want, 400, { minSide: 150, minStatus: 110 }), { ckpt: 150, status: 110, model: 150, fit: "scroll" });
});

test("no width known yet (not in the document): the widths the data wants", () => {
  assert.deepEqual(fitColumns(want, 0), { ...want, fit: "full" });
  assert.deepEqual(fitColumns(want, NaN), { ...want, fit: "full" });
});
