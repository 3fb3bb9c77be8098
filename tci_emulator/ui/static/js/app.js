// The dashboard's entry point: the router (one view per address under /_emulator/ui/), the
// polling loop that keeps the view and the header live (once a second), the token prompt.

import { onTokenNeeded, poll } from "./api.js";
import { h, fill, when } from "./dom.js";
import { sessionsView, sessionView } from "./views/sessions.js";
import { usageView } from "./views/usage.js";
import { requestsView } from "./views/requests.js";
import { faultsView } from "./views/faults.js";
import { clockView, healthView } from "./views/system.js";

const BASE = "/_emulator/ui/";
const INTERVAL_MS = 1000;
const VIEWS = {
  "": ["sessions", sessionsView], sessions: ["sessions", sessionsView], usage: ["usage", usageView],
  requests: ["requests", requestsView], faults: ["faults", faultsView], clock: ["clock", clockView],
  health: ["health", healthView],
};

const root = document.getElementById("view");
const banner = document.getElementById("banner");
let current = null; // {refresh}
let generation = 0; // bumped on every navigation: a stale view's late answer is dropped

function route() {
  const path = location.pathname.startsWith(BASE) ? location.pathname.slice(BASE.length) : "";
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  let name, view;
  if (parts[0] === "sessions" && parts.length === 2) {
    name = "sessions"; view = sessionView(root, { id: parts[1] });
    document.title = `${parts[1]} · tci-emulator`;
  } else if (parts.length <= 1 && VIEWS[parts[0] || ""]) {
    let make; [name, make] = VIEWS[parts[0] || ""];
    view = make(root, {});
    document.title = `${root.querySelector("h1").textContent} · tci-emulator`;
  } else {
    name = null; view = { async refresh() {} };
    fill(root, h("h1", {}, "Not found"), h("p", {}, "No view at ", h("code", {}, location.pathname), "."));
  }
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.view === name);
  current = view;
  generation += 1;
  tick();
}

function problem(text) {
  banner.hidden = !text;
  banner.textContent = text || "";
}

const header = {
  now: document.getElementById("emulator-now"),
  frozen: document.getElementById("emulator-frozen"),
  health: document.getElementById("emulator-health"),
};

async function refreshHeader() {
  // Each shown as it comes: one slow answer does not hold the other back.
  await Promise.all([
    poll("/_emulator/health").then((health) => {
      const status = String(health.status || "unknown");
      header.health.className = "dot " + (status === "ok" || status === "ready" ? "ok" : status);
      header.health.title = `Health: ${status}`;
    }),
    poll("/_emulator/clock").then((clock) => {
      header.now.textContent = when(clock.now) + " UTC";
      header.frozen.hidden = !clock.frozen;
    }),
  ]);
}

let timer = null;
let running = false;
async function tick() {
  clearTimeout(timer);
  if (running) { timer = setTimeout(tick, 50); return; } // one refresh at a time
  running = true;
  const mine = generation;
  try {
    await Promise.all([refreshHeader(), current.refresh()]);
    if (mine === generation) problem(null);
  } catch (error) {
    if (mine === generation) {
      problem(error.status ? `The emulator refused: ${error.message}`
        : `Cannot reach the emulator (${error.message}); retrying.`);
    }
  } finally {
    running = false;
    timer = setTimeout(tick, INTERVAL_MS);
  }
}

document.addEventListener("click", (event) => {
  const a = event.target.closest("a[data-nav]");
  if (!a || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  event.preventDefault();
  if (a.pathname !== location.pathname) history.pushState(null, "", a.pathname);
  route();
});
window.addEventListener("popstate", route);

// The token prompt: shown when the control plane answers 401, with the refusal if a token was
// sent; resolves with what the user enters.
const dialog = document.getElementById("token-dialog");
const tokenForm = document.getElementById("token-form");
const tokenInput = document.getElementById("token-input");
const tokenError = document.getElementById("token-error");
dialog.addEventListener("cancel", (event) => event.preventDefault()); // no way round it
onTokenNeeded((refused) => new Promise((resolve) => {
  tokenError.hidden = !refused;
  tokenError.textContent = refused ? `Refused: ${refused}` : "";
  tokenInput.value = "";
  tokenForm.onsubmit = (event) => {
    event.preventDefault();
    const token = tokenInput.value.trim();
    if (!token) return;
    dialog.close();
    resolve(token);
  };
  if (!dialog.open) dialog.showModal();
  tokenInput.focus();
}));

route();
