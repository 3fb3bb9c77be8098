// Fault rules with their matched/fired counts, a form to add one (validated by the emulator's
// own API, whose error is shown as it answers it), delete, and the journal of firings.

import { poll, post, del } from "../api.js";
import { h, fill, table, num, when, sessionLink } from "../dom.js";
import { whenChanged } from "./common.js";

const ACTIONS = ["http_error", "latency", "hang", "reset_connection", "malformed_body", "kernel_crash", "expire_session"];
const COUNTS = new Set(["id", "action", "operation", "matched", "fired", "retired"]);

function field(name, label, input) {
  input.name = name; input.id = "fault-" + name.replace(/_/g, "-");
  return h("label", {}, label, input);
}

/** A form value as the API should see it: numbers as numbers, "0.2, 1.5" as a range, JSON
 * objects as objects; anything else is sent as typed, for the API to refuse by name. */
function valueOf(name, raw) {
  const text = raw.trim();
  if (name === "headers") { try { return JSON.parse(text); } catch { return text; } }
  if (["session_id", "method", "key", "code", "message", "mode", "operation", "action"].includes(name)) return text;
  if (name === "seconds" && text.includes(",")) return text.split(",").map((x) => Number(x.trim()));
  return text !== "" && !Number.isNaN(Number(text)) ? Number(text) : text;
}

function describe(rule) {
  return Object.entries(rule).filter(([k]) => !COUNTS.has(k) && !(k === "after" && rule[k] === 0)
    && !(k === "probability" && rule[k] === 1) && !(k === "seed" && rule[k] === null))
    .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(" ");
}

export function faultsView(root) {
  const form = h("form", { id: "fault-form", class: "inline panel", novalidate: true },
    field("action", "Action", h("select", {}, ACTIONS.map((a) => h("option", { value: a }, a)))),
    field("operation", "Operation", h("select", {}, ["any", "execute", "sessions"].map((o) => h("option", { value: o }, o)))),
    field("status", "Status", h("input", { placeholder: "503", size: 5 })),
    field("seconds", "Seconds", h("input", { placeholder: "0.5 or 0.2, 1.5", size: 10 })),
    field("times", "Times", h("input", { placeholder: "unlimited", size: 8 })),
    field("after", "After", h("input", { placeholder: "0", size: 5 })),
    field("probability", "Probability", h("input", { placeholder: "1", size: 6 })),
    field("seed", "Seed", h("input", { size: 6 })),
    field("session_id", "Session", h("input", { placeholder: "ses_…", size: 24 })),
    field("method", "Method", h("input", { placeholder: "POST", size: 6 })),
    field("mode", "Mode", h("input", { placeholder: "truncated", size: 9 })),
    field("headers", "Headers (JSON)", h("input", { placeholder: "{\"Retry-After\": \"1\"}", size: 18 })),
    h("button", { type: "submit", class: "primary", id: "fault-add" }, "Add rule"));
  const result = h("p", { id: "fault-result", role: "alert" });
  const rules = h("div", { id: "fault-rules" });
  const firings = h("div", { id: "fault-firings" });
  const clear = h("button", { type: "button", id: "fault-clear" }, "Delete all");
  fill(root, h("h1", {}, "Faults"), h("h2", {}, "Add a rule"), form, result,
    h("div", { class: "actions" }, h("h2", {}, "Rules"), clear), rules, h("h2", {}, "Firings"), firings);
  let refresh = async () => {};

  const report = (ok, text) => { result.className = ok ? "muted" : "error"; result.textContent = text; };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const rule = {};
    for (const input of form.querySelectorAll("input, select")) {
      if (input.value.trim() !== "") rule[input.name] = valueOf(input.name, input.value);
    }
    try {
      const { rules: added } = await post("/_emulator/faults", rule);
      report(true, `Added ${added.map((r) => r.id).join(", ")}.`);
      for (const input of form.querySelectorAll("input")) input.value = "";
    } catch (error) {
      report(false, `Refused (HTTP ${error.status}${error.param ? ", " + error.param : ""}): ${error.message}`);
    }
    await refresh();
  });
  clear.addEventListener("click", async () => {
    try { const { deleted } = await del("/_emulator/faults"); report(true, `Deleted ${deleted} rule(s).`); }
    catch (error) { report(false, error.message); }
    await refresh();
  });
  const remove = async (id) => {
    try { await del("/_emulator/faults/" + encodeURIComponent(id)); report(true, `Deleted ${id}.`); }
    catch (error) { report(false, error.message); }
    await refresh();
  };

  const render = whenChanged((listing) => {
    fill(rules, table(["Rule", "Action", "Operation", "Settings", "Matched#", "Fired#", ""],
      listing.rules.map((r) => [{ cell: r.id, class: "mono" }, r.action, r.operation, { cell: describe(r), class: "mono" },
        num(r.matched), num(r.fired),
        { cell: h("button", { type: "button", class: "delete-rule", "data-rule": r.id, onclick: () => remove(r.id) }, r.retired ? "Delete (retired)" : "Delete") }]),
      { empty: "No rule: every request is served normally.", rowClass: (i) => (listing.rules[i].retired ? "retired" : null) }));
    fill(firings, table(["Time", "Rule", "Action", "Method", "Path", "Session"],
      listing.journal.slice().reverse().map((f) => [when(f.time), { cell: f.rule_id, class: "mono" }, f.action,
        f.method, { cell: f.path, class: "mono" }, { cell: sessionLink(f.session_id) }]),
      { empty: "No fault has fired." }));
  });
  refresh = async () => render(await poll("/_emulator/faults"));
  return { refresh: () => refresh() };
}
