// UI strings, translated server-side into a hidden <div id="i18n"> of [data-key] elements.

const strings = new Map();

export function loadStrings(root = document.getElementById("i18n")) {
  if (!root) return;
  for (const node of root.querySelectorAll("[data-key]")) strings.set(node.dataset.key, node.textContent.trim());
}

// t("voiceSwitched", {name: "Ada"}) fills "{name}" placeholders.
export function t(key, vars = {}) {
  const text = strings.get(key) ?? key;
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in vars ? String(vars[name]) : whole));
}

// A readable message for an API error: the translated text for its code, else the server's own.
export function errorMessage(error) {
  if (error && strings.has(`error.${error.code}`)) return strings.get(`error.${error.code}`);
  if (error && error.code === "network") return t("network");
  return (error && error.message) || t("network");
}
