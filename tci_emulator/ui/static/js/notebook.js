// A session's transcript (nbformat v4, as GET /_emulator/sessions/<id>/notebook serves it)
// rendered as a notebook: code, stream text, images, sanitised HTML tables, errors. Everything a
// session produced is data: it goes in as text, as a data: image, or through sanitise().

import { h, duration, when } from "./dom.js";
import { sanitise } from "./sanitise.js";

const text = (value) => (Array.isArray(value) ? value.join("") : String(value ?? ""));
const BASE64 = /^[A-Za-z0-9+/=\s]+$/;
const RASTER = ["image/png", "image/jpeg", "image/gif"];

function image(mime, data) {
  const payload = text(data).replace(/\s+/g, "");
  if (!BASE64.test(payload)) return null;
  return h("img", { class: "output-image", src: `data:${mime};base64,${payload}`, alt: mime });
}

/** The richest representation of a MIME bundle that the page can show safely. */
function bundle(data) {
  for (const mime of RASTER) if (data[mime]) {
    const img = image(mime, data[mime]);
    if (img) return img;
  }
  if (data["image/svg+xml"]) { // as an image: no script of an SVG runs in an <img>
    return h("img", { class: "output-image", alt: "image/svg+xml",
      src: "data:image/svg+xml;charset=utf-8," + encodeURIComponent(text(data["image/svg+xml"])) });
  }
  if (data["text/html"]) return h("div", { class: "html-output" }, sanitise(text(data["text/html"])));
  for (const mime of ["text/markdown", "text/latex"]) {
    if (data[mime]) return h("pre", { class: "plain", "data-mime": mime }, text(data[mime]));
  }
  for (const [mime, value] of Object.entries(data)) {
    if (mime.endsWith("json")) return h("pre", { class: "plain", "data-mime": mime }, JSON.stringify(value, null, 2));
  }
  if (data["text/plain"]) return h("pre", { class: "plain" }, text(data["text/plain"]));
  const kinds = Object.keys(data).join(", ");
  return h("pre", { class: "plain muted" }, `(output of type ${kinds || "none"}: not shown)`);
}

function output(out) {
  switch (out.output_type) {
    case "stream":
      return h("pre", { class: "stream " + (out.name === "stderr" ? "stderr" : "stdout") }, text(out.text));
    case "error":
      return h("pre", { class: "error-output" },
        (out.traceback || []).length ? out.traceback.join("\n") : `${out.ename}: ${out.evalue}`);
    case "display_data":
    case "execute_result":
      return h("div", { class: "rich " + out.output_type }, bundle(out.data || {}));
    default:
      return h("pre", { class: "plain muted" }, `(unknown output ${String(out.output_type)})`);
  }
}

function markdown(source) {
  // Shown as text: headings become headings, the rest paragraphs; no markup is interpreted.
  return h("div", { class: "cell markdown" }, text(source).split(/\n{2,}/).map((block) => {
    const heading = /^(#{1,6})\s+(.*)$/s.exec(block);
    return heading ? h("h" + Math.min(heading[1].length + 1, 6), {}, heading[2]) : h("p", {}, block);
  }));
}

function codeCell(cell) {
  const meta = (cell.metadata && cell.metadata.tci_emulator) || {};
  const files = (meta.files || []).map((f) => `${f.name} (${f.size} bytes)`).join(", ");
  return h("section", { class: "cell code" },
    h("div", { class: "cell-head" },
      h("span", { class: "mono" }, `In [${cell.execution_count ?? " "}]`),
      meta.started_at ? h("span", {}, when(meta.started_at)) : null,
      meta.duration_ms !== undefined ? h("span", {}, duration(meta.duration_ms / 1000)) : null,
      meta.state_lost ? h("span", { class: "error" }, "kernel state lost") : null,
      meta.output_truncated ? h("span", { class: "error" }, "output truncated") : null),
    h("pre", { class: "source" }, text(cell.source)),
    files ? h("div", { class: "files" }, "Files uploaded: " + files) : null,
    h("div", { class: "outputs" }, (cell.outputs || []).map(output)));
}

/** The notebook as an element. */
export function renderNotebook(nb) {
  return h("div", { class: "notebook" }, (nb.cells || []).map((cell) =>
    (cell.cell_type === "code" ? codeCell(cell) : markdown(cell.source))));
}
