// The room page's two DOM helpers: an element by id, and a new element.

export const $ = (id) => document.getElementById(id);

export function el(tag, attributes, text) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}
