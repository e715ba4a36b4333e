// Small DOM helpers. Text always goes in as text (textContent / text nodes): nothing anyone
// wrote is ever parsed as HTML.

/**
 * h("button", {class: "x", type: "button", onclick: fn}, "label", child, ...)
 * Attributes: `class`, `text` (textContent), `on<event>` (listeners), boolean attributes
 * (true/false), anything else by setAttribute. Children: nodes, strings (as text), null/false
 * (skipped), arrays of those.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
}

export function byId(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing from the page`);
  return el;
}
