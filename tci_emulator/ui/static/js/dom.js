// Building the page without ever parsing HTML: every element is created by name and every piece
// of data goes in as a text node or an attribute value, so nothing a session prints can become
// markup. (The one exception, text/html outputs, goes through sanitise.js.)

const SVG_NS = "http://www.w3.org/2000/svg";

function build(el, props, children) {
  for (const [name, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") el.textContent = String(value);
    else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** An HTML element: h("td", {class: "num"}, "text", otherNode). */
export function h(tag, props = {}, ...children) {
  return build(document.createElement(tag), props, children);
}

/** An SVG element, for the charts. */
export function svg(tag, props = {}, ...children) {
  return build(document.createElementNS(SVG_NS, tag), props, children);
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  return build(el, {}, children);
}

/** A table with a header row; rows are arrays of cells (nodes, text, or {cell, class}). */
export function table(headers, rows, { empty = "Nothing yet.", rowClass = null } = {}) {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  const head = h("tr", {}, headers.map((x) => h("th", { class: x.endsWith("#") ? "num" : null },
    x.replace(/#$/, ""))));
  const body = rows.map((row, i) => h("tr", { class: rowClass ? rowClass(i) : null },
    row.map((cell) => (cell && cell.cell !== undefined
      ? h("td", { class: cell.class || null, title: cell.title || null }, cell.cell)
      : h("td", {}, cell)))));
  return h("table", { class: "grid" }, h("thead", {}, head), h("tbody", {}, body));
}

export const num = (value, cls = "num") => ({ cell: value === null || value === undefined ? "–" : String(value), class: cls });

/** Dollars as the ledger keeps them (micro-dollar exact), without trailing zeros past cents. */
export function usd(value) {
  if (value === null || value === undefined) return "–";
  const text = Number(value).toFixed(6).replace(/0{1,4}$/, "");
  return "$" + text;
}

/** Seconds as "1h 02m", "4m 05s", "12.3s". */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "–";
  const sign = seconds < 0 ? "-" : "";
  let s = Math.abs(seconds);
  if (s < 60) return sign + (s < 10 ? s.toFixed(1) : Math.floor(s)) + "s";
  const d = Math.floor(s / 86400); s -= d * 86400;
  const hh = Math.floor(s / 3600); s -= hh * 3600;
  const mm = Math.floor(s / 60); const ss = Math.floor(s - mm * 60);
  const pad = (n) => String(n).padStart(2, "0");
  if (d) return `${sign}${d}d ${pad(hh)}h`;
  if (hh) return `${sign}${hh}h ${pad(mm)}m`;
  return `${sign}${mm}m ${pad(ss)}s`;
}

/** Seconds from RFC 3339 a to b. */
export function between(a, b) {
  if (!a || !b) return null;
  return (Date.parse(b) - Date.parse(a)) / 1000;
}

/** An RFC 3339 time as "2026-12-03 14:05:09" (UTC, as the emulator keeps it). */
export function when(stamp) {
  if (!stamp) return "–";
  return String(stamp).replace("T", " ").replace(/\.\d+/, "").replace(/(\+00:00|Z)$/, "");
}

/** A link to another view of the page. */
export function link(path, text, props = {}) {
  return h("a", { href: "/_emulator/ui/" + path, "data-nav": true, ...props }, text);
}

/** The session's view, by id (ids are shown and linked as text, never trusted as markup). */
export function sessionLink(id) {
  return id ? link("sessions/" + encodeURIComponent(id), id, { class: "mono" }) : "–";
}
