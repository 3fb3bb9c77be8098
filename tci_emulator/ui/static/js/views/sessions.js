// Sessions, live and ended, and one session as a notebook.

import { poll, get } from "../api.js";
import { h, fill, table, num, usd, duration, between, when, sessionLink, link } from "../dom.js";
import { renderNotebook } from "../notebook.js";
import { whenChanged } from "./common.js";

const MAX_ENDED_SHOWN = 200; // a persistent ledger can hold thousands: the newest are shown

function sessionRows(rows, now, live) {
  return rows.map((s) => [
    { cell: sessionLink(s.id) },
    { cell: s.key_fingerprint, class: "mono" },
    when(s.started_at),
    live ? duration(between(s.started_at, now)) : duration(between(s.started_at, s.ended_at)),
    live ? duration(between(now, s.expires_at)) : when(s.ended_at),
    num(s.executions),
    num(usd(s.cost_usd)),
    live ? { cell: h("span", { class: "badge live" }, "live") } : { cell: s.end_reason || "–" },
  ]);
}

export function sessionsView(root) {
  const live = h("div", { id: "live-sessions" });
  const ended = h("div", { id: "ended-sessions" });
  fill(root, h("h1", {}, "Sessions"), h("h2", {}, "Live"), live, h("h2", {}, "Ended"), ended);
  const render = whenChanged(({ sessions, now }) => {
    const alive = sessions.filter((s) => s.live).reverse();
    const gone = sessions.filter((s) => !s.live).reverse();
    fill(live, table(["Session", "Key", "Started", "Age", "Expires in", "Executions#", "Cost#", "State"],
      sessionRows(alive, now, true), { empty: "No live session." }));
    fill(ended, table(["Session", "Key", "Started", "Lived", "Ended", "Executions#", "Cost#", "End reason"],
      sessionRows(gone.slice(0, MAX_ENDED_SHOWN), now, false), { empty: "No ended session." }),
    gone.length > MAX_ENDED_SHOWN
      ? h("p", { class: "muted" }, `… and ${gone.length - MAX_ENDED_SHOWN} older (GET /_emulator/sessions lists them all).`)
      : null);
  });
  return {
    async refresh() {
      const [{ sessions }, clock] = await Promise.all([poll("/_emulator/sessions"), poll("/_emulator/clock")]);
      render({ sessions, now: clock.now });
    },
  };
}

export function sessionView(root, { id }) {
  const summary = h("div", { class: "panel", id: "session-summary" });
  const notebook = h("div", { id: "session-notebook" }, h("p", { class: "empty" }, "Loading…"));
  const download = h("button", { id: "download-ipynb", type: "button" }, "Download .ipynb");
  const message = h("span", { class: "error", role: "alert" });
  download.addEventListener("click", async () => {
    message.textContent = "";
    try {
      const response = await get(`/_emulator/sessions/${encodeURIComponent(id)}/notebook`, { raw: true });
      const url = URL.createObjectURL(await response.blob());
      const a = h("a", { href: url, download: `${id}.ipynb` });
      document.body.append(a); a.click(); a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (error) { message.textContent = error.message; }
  });
  fill(root, h("p", {}, link("", "← Sessions")), h("h1", { class: "mono" }, id), summary,
    h("div", { class: "actions" }, download, message), h("h2", {}, "Transcript"), notebook);
  const showSummary = whenChanged(({ row, now }) => {
    if (!row) { fill(summary, h("p", { class: "muted" }, "Not in the ledger (unknown, or cleared by a reset).")); return; }
    const pairs = [
      ["State", row.live ? h("span", { class: "badge live" }, "live") : h("span", { class: "badge ended" }, "ended")],
      ["Key fingerprint", h("span", { class: "mono" }, row.key_fingerprint)],
      ["Started", when(row.started_at)],
      row.live ? ["Expires in", duration(between(now, row.expires_at))] : ["Ended", when(row.ended_at)],
      row.live ? null : ["End reason", row.end_reason || "–"],
      ["Executions", String(row.executions)],
      ["Cost", usd(row.cost_usd)],
    ].filter(Boolean);
    fill(summary, h("dl", { class: "kv" }, pairs.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])));
  });
  const showNotebook = whenChanged((nb) => {
    fill(notebook, nb ? renderNotebook(nb) : h("p", { class: "empty" }, "No transcript of this session is kept (unknown, or dropped: --state-dir keeps every one)."));
  });
  let seen = null; // (executions, live) last fetched: the transcript changes only with them
  return {
    async refresh() {
      const [{ sessions }, clock] = await Promise.all([poll("/_emulator/sessions"), poll("/_emulator/clock")]);
      const row = sessions.find((s) => s.id === id) || null;
      showSummary({ row, now: clock.now });
      const version = row ? `${row.executions}/${row.live}/${row.notebook}` : "none";
      if (version === seen) return;
      let nb = null;
      if (row && row.notebook) nb = await poll(`/_emulator/sessions/${encodeURIComponent(id)}/notebook`);
      seen = version;
      showNotebook(nb);
    },
  };
}
