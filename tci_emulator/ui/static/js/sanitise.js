// text/html outputs, made safe to show. The HTML is never handed to the browser's parser (the
// page's Trusted Types policy forbids every such sink, and test_ui.py names them). A small
// tokenizer reads tags, attributes and text, and the page is built from them element by element
// out of an allow-list of presentational tags and attributes, the way JupyterLab treats the HTML
// of an untrusted notebook. Script, style, forms, frames, SVG, event handlers and every URL but
// inline raster images are dropped; unknown elements are unwrapped (their text stays). A tokenizer
// mistake can only misplace text: it can never create an element outside the allow-list.

const KEEP = new Set(["abbr", "b", "blockquote", "br", "caption", "code", "col", "colgroup",
  "dd", "del", "div", "dl", "dt", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img",
  "ins", "kbd", "li", "mark", "ol", "p", "pre", "q", "s", "samp", "small", "span", "strong",
  "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "u", "ul", "var"]);
// Dropped with everything inside them.
const DROP = new Set(["template", "iframe", "frame", "frameset", "object", "embed", "svg",
  "math", "head", "select", "button", "form", "audio", "video", "canvas", "applet", "dialog"]);
// Their content is raw text up to the matching end tag, as the HTML parser reads it: dropped.
const RAW = new Set(["script", "style", "textarea", "title", "xmp", "noembed", "noframes",
  "noscript", "plaintext"]);
const VOID = new Set(["area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
  "source", "track", "wbr", "param", "keygen"]);
const NUMBER = /^\d{1,4}$/;
const ALIGN = /^(left|right|center)$/i;
const ATTRIBUTES = {
  "*": { title: null },
  td: { colspan: NUMBER, rowspan: NUMBER, align: ALIGN },
  th: { colspan: NUMBER, rowspan: NUMBER, align: ALIGN, scope: /^(row|col|rowgroup|colgroup)$/i },
  col: { span: NUMBER }, colgroup: { span: NUMBER }, ol: { start: NUMBER },
  img: { alt: null, width: NUMBER, height: NUMBER },
};
const IMAGE_SRC = /^data:image\/(png|jpeg|gif);base64,[A-Za-z0-9+/=\s]+$/;
const MAX_DEPTH = 100;
const ENTITIES = { amp: "&", lt: "<", gt: ">", quot: "\"", apos: "'", nbsp: "\u00a0" };
const TAG = /<(\/?)([A-Za-z][^\s/>]*)/y;
const ATTRIBUTE = /[\s/]*([^\s"'>/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]*)))?/y;

/** Character references in text (&amp; &#60; &#x3c;); unknown ones stay as written. */
function decode(text) {
  return text.replace(/&(#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z]{2,8});?/g, (whole, ref) => {
    if (ref[0] !== "#") return ENTITIES[ref.toLowerCase()] ?? whole;
    const code = ref[1] === "x" || ref[1] === "X" ? parseInt(ref.slice(2), 16) : parseInt(ref.slice(1), 10);
    return code > 0 && code <= 0x10ffff && !(code >= 0xd800 && code <= 0xdfff) ? String.fromCodePoint(code) : "\ufffd";
  });
}

function element(tag, attributes) {
  if (tag === "img" && !IMAGE_SRC.test(attributes.get("src") || "")) return null;
  const el = document.createElement(tag);
  for (const rules of [ATTRIBUTES["*"], ATTRIBUTES[tag] || {}]) {
    for (const [name, pattern] of Object.entries(rules)) {
      const value = attributes.get(name);
      if (value !== undefined && (pattern === null || pattern.test(value))) el.setAttribute(name, value);
    }
  }
  if (tag === "img") el.setAttribute("src", attributes.get("src").replace(/\s+/g, ""));
  return el;
}

/** A fragment of safe elements with the presentational content of `html`. */
export function sanitise(html) {
  const out = document.createDocumentFragment();
  // Open elements: {tag, node} where node is null for an unwrapped or dropped element.
  const stack = [{ tag: null, node: out, drop: false }];
  const top = () => stack[stack.length - 1];
  const parent = () => { for (let i = stack.length - 1; ; i--) if (stack[i].node) return stack[i].node; };
  const dropping = () => stack.some((e) => e.drop);
  let at = 0;
  const text = (value) => { if (value && !dropping()) parent().append(document.createTextNode(decode(value))); };
  while (at < html.length) {
    const lt = html.indexOf("<", at);
    if (lt < 0) { text(html.slice(at)); break; }
    text(html.slice(at, lt));
    at = lt;
    if (html.startsWith("<!--", at)) { const end = html.indexOf("-->", at + 4); at = end < 0 ? html.length : end + 3; continue; }
    if (html[at + 1] === "!" || html[at + 1] === "?") { const end = html.indexOf(">", at); at = end < 0 ? html.length : end + 1; continue; }
    TAG.lastIndex = at;
    const tag = TAG.exec(html);
    if (!tag) { text("<"); at += 1; continue; }
    const closing = tag[1] === "/";
    const name = tag[2].toLowerCase();
    at = TAG.lastIndex;
    const attributes = new Map();
    for (;;) {
      ATTRIBUTE.lastIndex = at;
      const attr = ATTRIBUTE.exec(html);
      if (!attr || attr[0] === "") break;
      at = ATTRIBUTE.lastIndex;
      const key = attr[1].toLowerCase();
      if (!attributes.has(key)) attributes.set(key, decode(attr[2] ?? attr[3] ?? attr[4] ?? ""));
    }
    const gt = html.indexOf(">", at);
    const selfClosing = gt > 0 && html[gt - 1] === "/";
    at = gt < 0 ? html.length : gt + 1;
    if (closing) {
      const index = stack.map((e) => e.tag).lastIndexOf(name);
      if (index > 0) stack.length = index;
      continue;
    }
    if (RAW.has(name)) { // skip to the end tag: nothing in there is shown
      const end = html.toLowerCase().indexOf("</" + name, at);
      at = end < 0 ? html.length : html.indexOf(">", end) + 1 || html.length;
      continue;
    }
    if (dropping() && !VOID.has(name) && !selfClosing) { stack.push({ tag: name, node: null, drop: false }); continue; }
    if (dropping()) continue;
    const keep = KEEP.has(name) && stack.length <= MAX_DEPTH ? element(name, attributes) : null;
    if (keep) parent().append(keep);
    if (!VOID.has(name) && !selfClosing) stack.push({ tag: name, node: keep, drop: DROP.has(name) });
  }
  return out;
}
