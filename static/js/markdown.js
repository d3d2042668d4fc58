// A tiny, safe Markdown subset for replies: **bold**, *italic*, `code`; line breaks are kept by CSS.
// The text is HTML-escaped first, so nothing the model writes can become markup of its own.

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

export function renderMarkdown(text) {
  const parts = escapeHtml(text).split(/(`[^`\n]+`)/g); // code spans are left alone inside
  return parts
    .map((part, i) => {
      if (i % 2 === 1) return `<code>${part.slice(1, -1)}</code>`;
      return part
        .replace(/\*\*(?=\S)([^*\n]*?\S)\*\*/g, "<strong>$1</strong>")
        .replace(/(^|[^*\w])\*(?=\S)([^*\n]*?\S)\*(?![*\w])/g, "$1<em>$2</em>");
    })
    .join("");
}

// Show `text` in `node` as rendered Markdown.
export function setMarkdown(node, text) {
  node.innerHTML = renderMarkdown(text);
}
