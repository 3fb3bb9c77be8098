// Cost per key against the budget, and a chart of sessions created over time.

import { poll } from "../api.js";
import { h, svg, fill, table, num, usd, when } from "../dom.js";
import { whenChanged } from "./common.js";

const STEPS = [1, 5, 10, 30, 60, 300, 600, 1800, 3600, 6 * 3600, 86400, 7 * 86400];
const MAX_BARS = 60;

function budgetBar(cost, budget) {
  if (budget === null || budget === undefined) return "no budget";
  const share = budget > 0 ? cost / budget : 1;
  const bar = h("span");
  bar.style.width = `${Math.min(share, 1) * 100}%`; // CSSOM, not a style attribute: CSP allows it
  return h("div", { class: "actions" },
    h("div", { class: "budget" + (share >= 1 ? " over" : ""), title: `${Math.round(share * 100)}% of ${usd(budget)}` }, bar),
    h("span", { class: "muted" }, `${Math.round(share * 100)}% of ${usd(budget)}`));
}

/** Sessions created per time bucket; the bucket is the smallest step that keeps <= 60 bars. */
function chart(sessions) {
  if (!sessions.length) return h("p", { class: "empty" }, "No session yet.");
  const times = sessions.map((s) => Date.parse(s.started_at)).sort((a, b) => a - b);
  const span = (times[times.length - 1] - times[0]) / 1000;
  const step = STEPS.find((s) => span / s < MAX_BARS) || STEPS[STEPS.length - 1];
  const start = Math.floor(times[0] / 1000 / step) * step;
  const counts = new Array(Math.floor((times[times.length - 1] / 1000 - start) / step) + 1).fill(0);
  for (const t of times) counts[Math.floor((t / 1000 - start) / step)] += 1;
  const width = 800, height = 180, left = 30, bottom = 24, top = 10;
  const peak = Math.max(...counts);
  const barWidth = Math.min((width - left - 10) / counts.length, 40);
  const bars = counts.map((count, i) => {
    const barHeight = (count / peak) * (height - top - bottom);
    const from = new Date((start + i * step) * 1000).toISOString();
    return svg("rect", { class: "bar", x: left + i * barWidth + 1, y: height - bottom - barHeight,
      width: Math.max(barWidth - 2, 1), height: barHeight },
    svg("title", {}, `${count} session(s) from ${when(from)} (${step}s buckets)`));
  });
  const label = (x, y, text, anchor = "start") => svg("text", { x, y, "text-anchor": anchor }, text);
  return svg("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": `Sessions created over time, ${step}-second buckets` },
  svg("line", { x1: left, y1: height - bottom, x2: width - 10, y2: height - bottom }),
  bars,
  label(left - 4, top + 8, String(peak), "end"), label(left - 4, height - bottom, "0", "end"),
  label(left, height - 6, when(new Date(start * 1000).toISOString())),
  label(width - 10, height - 6, `${when(new Date((start + counts.length * step) * 1000).toISOString())} · ${step}s per bar`, "end"));
}

export function usageView(root) {
  const cards = h("div", { class: "cards", id: "usage-totals" });
  const keys = h("div", { id: "usage-keys" });
  const graph = h("div", { id: "usage-chart" });
  fill(root, h("h1", {}, "Usage"), cards, h("h2", {}, "Cost per key"), keys,
    h("h2", {}, "Sessions created over time"), graph);
  const render = whenChanged((usage) => {
    const card = (label, value) => h("div", { class: "card" }, h("div", { class: "value" }, value), h("div", { class: "label" }, label));
    fill(cards, card("sessions", String(usage.total.sessions)), card("executions", String(usage.total.executions)),
      card("cost", usd(usage.total.cost_usd)), card("price per session", usd(usage.price_per_session_usd)),
      card("budget per key", usage.budget_usd === null ? "none" : usd(usage.budget_usd)));
    fill(keys, table(["Key fingerprint", "Sessions#", "Executions#", "Cost#", "Budget"],
      Object.entries(usage.by_key).map(([fp, t]) => [{ cell: fp, class: "mono" }, num(t.sessions),
        num(t.executions), num(usd(t.cost_usd)), { cell: budgetBar(t.cost_usd, usage.budget_usd) }]),
      { empty: "No key has been charged yet." }));
    fill(graph, chart(usage.sessions || []));
  });
  return { async refresh() { render(await poll("/_emulator/usage?sessions=1")); } };
}
