// @ts-check
// sd_widgets Explorer: pure functions (no DOM), shared by tree.js and panels.js and unit-tested
// with `node --test tests/js`. Nothing here touches `document` or the widget model.
