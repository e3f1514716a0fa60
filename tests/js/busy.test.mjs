// A press on Load or Undo while the kernel runs a load or an undo is refused with a visible
// sentence (traits.js busyRefusal), never dropped silently; other buttons say nothing.
import { test } from "node:test";
import assert from "node:assert/strict";

import { actionMessage, busyRefusal } from "../../sd_widgets/widget/static/traits.js";

const FORM = { kind: "prefix", old: "", new: "" };

test("a soft-disabled Load or Undo sends nothing and says why, naming what runs", () => {
  for (const [action, label] of [["undo", "“Undo”"], ["load", "“Load selected”"]]) {
    assert.equal(actionMessage(action, {}, FORM, true), null);
    const text = busyRefusal(action, "Loading…");
    assert.ok(text.startsWith(`${label} was not sent: Loading is still running.`), text);
    assert.match(text, /Press it again when it is done\.$/);
  }
  assert.match(busyRefusal("undo", ""), /the last action is still running/);
});

test("enabled Load and Undo send their action; other buttons are never refused", () => {
  assert.deepEqual(actionMessage("undo", {}, FORM, false), { action: "undo" });
  assert.deepEqual(actionMessage("load", {}, FORM, false), { action: "load" });
  for (const other of ["select-loadable", "dismiss-message", "copy-code", "expand-all"]) {
    assert.equal(busyRefusal(other, "Loading…"), "");
  }
});
