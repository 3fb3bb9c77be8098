// The request journal, newest first, with filters by status, session, SDK and retry.

import { poll } from "../api.js";
import { h, fill, table, num, when, sessionLink } from "../dom.js";
import { whenChanged } from "./common.js";

/** Who sent a request, in a few words: "python 2.42.0", "js 0.52.0", or the User-Agent. */
export function sdkLabel(sdk) {
  if (!sdk) return "–";
  if (sdk.package_version) return `${sdk.language || "?"} ${sdk.package_version}`;
  return (sdk.user_agent || "–").split(" ")[0];
}

const STATUS = { all: () => true, ok: (s) => s < 400, failed: (s) => s >= 400,
  "4xx": (s) => s >= 400 && s < 500, "5xx": (s) => s >= 500 };
const RETRY = { all: () => true, retries: (n) => n > 0, first: (n) => !n };

function select(id, label, options) {
  return h("label", {}, label, h("select", { id }, options.map(([value, text]) => h("option", { value }, text))));
}

export function requestsView(root) {
  const status = select("filter-status", "Status", [["all", "all"], ["ok", "< 400"], ["failed", ">= 400"], ["4xx", "4xx"], ["5xx", "5xx"]]);
  const session = h("label", {}, "Session", h("input", { id: "filter-session", type: "search", placeholder: "ses_…" }));
  const sdk = select("filter-sdk", "SDK", [["", "all"]]);
  const retry = select("filter-retry", "Retry", [["all", "all"], ["retries", "retries only"], ["first", "first tries only"]]);
  const list = h("div", { id: "requests" });
  const count = h("p", { class: "muted" });
  fill(root, h("h1", {}, "Requests"), h("div", { class: "filters" }, status, session, sdk, retry), count, list);
  let entries = [];
  const sdkSelect = sdk.querySelector("select");

  const render = () => {
    const byStatus = STATUS[status.querySelector("select").value];
    const wanted = session.querySelector("input").value.trim();
    const bySdk = sdkSelect.value;
    const byRetry = RETRY[retry.querySelector("select").value];
    const shown = entries.filter((e) => byStatus(e.status) && (!wanted || (e.session_id || "").includes(wanted))
      && (!bySdk || sdkLabel(e.sdk) === bySdk) && byRetry(e.sdk ? e.sdk.retry_count : null)).reverse();
    count.textContent = `${shown.length} of ${entries.length} recorded requests (the dashboard's own reads are not recorded).`;
    fill(list, table(["#", "Time", "Method", "Path", "Status#", "Session", "Key", "SDK", "Retry#", "ms#", "Fault"],
      shown.map((e) => [num(e.seq), when(e.time), e.method, { cell: e.path, class: "mono" },
        num(e.status, "num status-" + String(e.status)[0]), { cell: sessionLink(e.session_id) },
        { cell: e.key_fingerprint || "–", class: "mono" }, { cell: sdkLabel(e.sdk), title: (e.sdk && e.sdk.user_agent) || null },
        num(e.sdk ? e.sdk.retry_count : null), num(e.duration_ms), e.fault || ""]),
      { empty: entries.length ? "No request matches the filters." : "No request yet." }));
  };
  const refreshSdks = whenChanged((labels) => {
    const current = sdkSelect.value;
    fill(sdkSelect, h("option", { value: "" }, "all"), labels.map((l) => h("option", { value: l }, l)));
    sdkSelect.value = labels.includes(current) ? current : "";
  });
  const show = whenChanged((data) => {
    entries = data;
    refreshSdks([...new Set(entries.map((e) => sdkLabel(e.sdk)))].sort());
    render();
  });
  for (const control of root.querySelectorAll(".filters select, .filters input")) {
    control.addEventListener("input", render);
  }
  return { async refresh() { show((await poll("/_emulator/requests?limit=500")).requests); } };
}
