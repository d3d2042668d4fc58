import assert from "node:assert/strict";
import { test } from "node:test";

import { escapeHtml, renderMarkdown, setMarkdown } from "../markdown.js";

test("escapeHtml escapes the five HTML-significant characters", () => {
  assert.equal(escapeHtml(`<a href="x" title='y'>&</a>`), "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;");
});

test("escapeHtml turns anything into a string", () => {
  assert.equal(escapeHtml(42), "42");
  assert.equal(escapeHtml(null), "null");
});

test("plain text is left as it is (line breaks included)", () => {
  assert.equal(renderMarkdown("Hello,\nworld."), "Hello,\nworld.");
  assert.equal(renderMarkdown(""), "");
});

test("bold, italic and code", () => {
  assert.equal(renderMarkdown("a **bold** word"), "a <strong>bold</strong> word");
  assert.equal(renderMarkdown("an *italic* word"), "an <em>italic</em> word");
  assert.equal(renderMarkdown("run `ls -l` now"), "run <code>ls -l</code> now");
  assert.equal(renderMarkdown("**bold** and *italic*"), "<strong>bold</strong> and <em>italic</em>");
});

test("markup written by the model is escaped, never rendered", () => {
  assert.equal(renderMarkdown("<script>alert(1)</script>"), "&lt;script&gt;alert(1)&lt;/script&gt;");
  assert.equal(renderMarkdown("**<img src=x onerror=alert(1)>**"), "<strong>&lt;img src=x onerror=alert(1)&gt;</strong>");
  assert.equal(renderMarkdown("`<b>`"), "<code>&lt;b&gt;</code>");
});

test("nothing is formatted inside code spans", () => {
  assert.equal(renderMarkdown("`**not bold**` and **bold**"), "<code>**not bold**</code> and <strong>bold</strong>");
  assert.equal(renderMarkdown("`a*b*c`"), "<code>a*b*c</code>");
});

test("unbalanced or spaced markers stay literal", () => {
  assert.equal(renderMarkdown("**not closed"), "**not closed");
  assert.equal(renderMarkdown("a * b * c"), "a * b * c");
  assert.equal(renderMarkdown("** spaced **"), "** spaced **");
  assert.equal(renderMarkdown("`unclosed code"), "`unclosed code");
  assert.equal(renderMarkdown("``"), "``");
});

test("stars between word characters are not italics (arithmetic, file globs)", () => {
  assert.equal(renderMarkdown("2*3*4 = 24"), "2*3*4 = 24");
  assert.equal(renderMarkdown("file_*name*_x"), "file_*name*_x");
});

test("formatting does not run across lines", () => {
  assert.equal(renderMarkdown("**one\ntwo**"), "**one\ntwo**");
  assert.equal(renderMarkdown("*one\ntwo*"), "*one\ntwo*");
  assert.equal(renderMarkdown("`one\ntwo`"), "`one\ntwo`");
});

test("setMarkdown puts the rendered HTML into the node", () => {
  const node = { innerHTML: "old" };
  setMarkdown(node, "**hi** <there>");
  assert.equal(node.innerHTML, "<strong>hi</strong> &lt;there&gt;");
});
