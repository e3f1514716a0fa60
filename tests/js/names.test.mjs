// A narrow tree keeps each row's own name readable: the name cell is never narrower than its
// leaf (after the last dot), plus the ellipsis when a module part goes before it (rows.js).
import { test } from "node:test";
import assert from "node:assert/strict";

import { LEAF_CHARS, nameMinWidth } from "../../sd_widgets/widget/static/rows.js";

test("the least width of a name is its leaf, plus one for the ellipsis before a module part", () => {
  assert.equal(nameMinWidth("weight"), "min(6ch, 100%)");
  assert.equal(nameMinWidth("embeddings"), "min(10ch, 100%)");
  assert.equal(nameMinWidth("word_embeddings"), `min(${LEAF_CHARS}ch, 100%)`); // "…mbeddings"
  assert.equal(nameMinWidth("attention.self.query"), "min(6ch, 100%)"); // "…query"
  assert.equal(nameMinWidth("bias"), "min(4ch, 100%)");
  assert.equal(nameMinWidth("0"), "min(3ch, 100%)"); // the old floor (3em) for short names
});

test("a leaf longer than LEAF_CHARS is cut at that width", () => {
  const long = "x".repeat(LEAF_CHARS + 10);
  assert.equal(nameMinWidth(long), `min(${LEAF_CHARS}ch, 100%)`);
  assert.equal(nameMinWidth(`a.${long}`), `min(${LEAF_CHARS + 1}ch, 100%)`);
  assert.equal(nameMinWidth("num_batches_tracked"), `min(${LEAF_CHARS}ch, 100%)`); // "…_tracked"
});
