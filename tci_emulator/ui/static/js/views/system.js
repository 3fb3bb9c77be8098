// The clock (now, frozen, advance), the reset, and the emulator's health.

import { poll, post } from "../api.js";
import { h, fill, when } from "../dom.js";
import { whenChanged } from "./common.js";

const UNITS = [["1", "seconds"], ["60", "minutes"], ["3600", "hours"], ["86400", "days"]];

export function clockView(root) {
  const now = h("span", { id: "clock-now", class: "mono" }, "…");
  const state = h("span", { id: "clock-state", class: "badge" });
  const amount = h("input", { id: "advance-amount", type: "number", min: "0", step: "any", value: "60", size: 8 });
  const unit = h("select", { id: "advance-unit" }, UNITS.map(([v, t]) => h("option", { value: v }, t)));
  unit.value = "60";
  const advance = h("button", { type: "submit", class: "primary", id: "advance" }, "Advance");
  const freeze = h("button", { type: "button", id: "freeze" }, "Freeze");
  const result = h("p", { id: "clock-result", role: "alert" });
  const resetButton = h("button", { type: "button", class: "danger", id: "reset" }, "Reset the emulator…");
  const confirm = h("div", { class: "confirm", id: "reset-confirm", hidden: true },
    h("p", {}, "End every session (their kernels stop), clear usage (unless kept in a state directory), " +
      "fault rules, the request journal and transcripts held in memory, and bring the clock back to real time?"),
    h("div", { class: "actions" },
      h("button", { type: "button", class: "danger", id: "reset-yes" }, "Yes, reset everything"),
      h("button", { type: "button", id: "reset-no" }, "Cancel")));
  const form = h("form", { class: "inline", id: "advance-form" },
    h("label", {}, "Advance by", amount), h("label", {}, "Unit", unit), advance);
  fill(root, h("h1", {}, "Clock & reset"),
    h("div", { class: "panel" }, h("dl", { class: "kv" }, h("dt", {}, "Emulator time (UTC)"), h("dd", {}, now, " ", state))),
    h("h2", {}, "Move the clock"),
    h("p", { class: "muted" }, "Time only moves forward; sessions past their lifespan end as expired at once."),
    form, h("div", { class: "actions" }, freeze), result,
    h("h2", {}, "Reset"), resetButton, confirm);
  let frozen = false;
  const report = (ok, text) => { result.className = ok ? "muted" : "error"; result.textContent = text; };
  const show = (clock) => {
    frozen = clock.frozen;
    now.textContent = when(clock.now);
    state.textContent = clock.frozen ? "frozen" : "running";
    state.className = "badge" + (clock.frozen ? " frozen" : "");
    freeze.textContent = clock.frozen ? "Unfreeze" : "Freeze";
  };
  const change = async (body, done) => {
    try { const clock = await post("/_emulator/clock", body); show(clock); report(true, done(clock)); }
    catch (error) { report(false, `Refused: ${error.message}`); }
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const seconds = Number(amount.value) * Number(unit.value);
    change({ advance_seconds: seconds }, (c) => `Advanced ${seconds} s: now ${when(c.now)}.`);
  });
  freeze.addEventListener("click", () => change({ frozen: !frozen }, (c) => (c.frozen ? "Frozen." : "Running.")));
  resetButton.addEventListener("click", () => { confirm.hidden = false; });
  confirm.querySelector("#reset-no").addEventListener("click", () => { confirm.hidden = true; });
  confirm.querySelector("#reset-yes").addEventListener("click", async () => {
    confirm.hidden = true;
    try {
      const done = await post("/_emulator/reset");
      report(true, `Reset: ${done.sessions_ended} session(s) ended.`);
    } catch (error) { report(false, `Reset refused: ${error.message}`); }
  });
  return { async refresh() { show(await poll("/_emulator/clock")); } };
}

function describe(value) {
  if (value !== null && typeof value === "object") {
    return h("dl", { class: "kv" }, Object.entries(value).map(([k, v]) => [h("dt", {}, k), h("dd", {}, describe(v))]));
  }
  return h("span", { class: "mono" }, value === null ? "–" : String(value));
}

export function healthView(root) {
  const body = h("div", { class: "panel", id: "health" });
  fill(root, h("h1", {}, "Health"), body);
  const render = whenChanged((health) => fill(body, describe(health)));
  return {
    async refresh() {
      const { now, ...rest } = await poll("/_emulator/health"); // a ticking clock needs no redraw
      render(rest);
    },
  };
}
