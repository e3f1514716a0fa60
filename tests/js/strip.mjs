// Source text without comments, for the tests that grep the front end's code.

/**
 * Source without comments: JS `//` and `/* *\/` comments outside string, template and regex
 * literals; CSS `/* *\/` comments.
 */
export function stripComments(src, kind) {
  let out = "";
  let i = 0;
  const n = src.length;
  let prev = ""; // last significant character outside literals (regex vs division)
  while (i < n) {
    const ch = src[i];
    const next = src[i + 1];
    if (ch === "/" && next === "*") {
      const end = src.indexOf("*/", i + 2);
      i = end < 0 ? n : end + 2;
      out += " ";
      continue;
    }
    if (kind === "js" && ch === "/" && next === "/") {
      while (i < n && src[i] !== "\n") i++;
      continue;
    }
    if (kind === "js" && (ch === '"' || ch === "'" || ch === "`")) {
      let j = i + 1;
      while (j < n && src[j] !== ch) j += src[j] === "\\" ? 2 : 1;
      out += src.slice(i, j + 1);
      i = j + 1;
      prev = ch;
      continue;
    }
    if (kind === "js" && ch === "/" && /[(,=:[!&|?{};+\-*%<>~^]|^$/.test(prev)) {
      // a regex literal: copy it through its closing slash (classes may hold a slash)
      let j = i + 1;
      let cls = false;
      while (j < n && (src[j] !== "/" || cls) && src[j] !== "\n") {
        if (src[j] === "\\") j++;
        else if (src[j] === "[") cls = true;
        else if (src[j] === "]") cls = false;
        j++;
      }
      out += src.slice(i, j + 1);
      i = j + 1;
      prev = "/";
      continue;
    }
    out += ch;
    if (!/\s/.test(ch)) prev = ch;
    i++;
  }
  return out;
}
