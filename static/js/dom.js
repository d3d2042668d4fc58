// Tiny DOM helpers. Text always goes in through textContent: never parsed as HTML.

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children.flat().filter((child) => child !== null && child !== undefined && child !== false));
  return node;
}

// A status line (role="status"): polite announcements, with a tone for styling.
export function statusLine(node) {
  let timer = null;
  return function show(text, { tone = "info", clearAfter = 0 } = {}) {
    clearTimeout(timer);
    node.textContent = text || "";
    node.dataset.tone = text ? tone : "";
    if (text && clearAfter) timer = setTimeout(() => show(""), clearAfter);
  };
}
