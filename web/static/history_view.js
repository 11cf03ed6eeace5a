// Past calls: search and filter (words, called number, caller, dates) over /api/conversations.
// The filter lives in the address (#/history?q=…), so a search can be bookmarked and Back works.

import { getJSON } from "./api.js";
import { outcomeText } from "./call_control_notes.js";
import { clear, formatSeconds, formatWhen, h, notice } from "./dom.js";

const FILTERS = ["q", "phone_number", "caller_number", "since", "until"];

function nextDay(date) {
  const day = new Date(`${date}T00:00:00Z`);
  day.setUTCDate(day.getUTCDate() + 1);
  return day.toISOString().slice(0, 10);
}

/** The API query for the form's filter: the "to" date is inclusive for people, exclusive for the API. */
export function apiQuery(filter) {
  const query = { limit: 100 };
  for (const key of FILTERS) if (filter[key]) query[key] = filter[key];
  if (query.until && /^\d{4}-\d{2}-\d{2}$/.test(query.until)) query.until = nextDay(query.until);
  return query;
}

/** An FTS snippet ("…the **plumber** is…") as text with the matched words in <mark>. */
function highlighted(snippet) {
  return String(snippet)
    .split("**")
    .map((part, index) => (index % 2 ? h("mark", {}, part) : part));
}

function why(call) {
  if (!Array.isArray(call.matches) || !call.matches.length) return null;
  return h(
    "ul",
    { class: "why", "aria-label": "Why this call matched" },
    call.matches.slice(0, 2).map((m) =>
      h("li", {}, h("span", { class: "who" }, m.role === "user" ? "Caller: " : m.role === "assistant" ? "Assistant: " : `${m.role}: `), highlighted(m.snippet)),
    ),
  );
}

function row(call) {
  const link = `#/calls/${encodeURIComponent(call.call_id)}`;
  return h(
    "tr",
    { dataset: { callId: call.call_id } },
    h("td", { class: "when" }, h("a", { href: link }, formatWhen(call.started_at)), why(call)),
    h("td", {}, call.caller_number || "—"),
    h("td", { class: "opt" }, call.phone_number || "—"),
    h("td", { class: "num opt" }, formatSeconds(call.duration_seconds)),
    h("td", { class: "num opt" }, String(call.message_count ?? 0)),
    h(
      "td",
      {},
      h("span", { class: `pill ${call.status}` }, call.status || "—"),
      call.outcome || call.end_reason ? h("span", { class: "muted" }, ` ${call.outcome ? outcomeText(call.outcome, call.transfer_target) : call.end_reason}`) : null,
      call.direction === "outbound" ? h("span", { class: "badge" }, "outbound") : null,
    ),
  );
}

export function mountHistory(main, params) {
  const filter = Object.fromEntries(FILTERS.map((key) => [key, params.get(key) || ""]));
  const input = (key, label, attrs = {}) =>
    h("div", { class: "field" }, h("label", { for: `f-${key}` }, label), h("input", { id: `f-${key}`, name: key, value: filter[key], ...attrs }));
  const form = h(
    "form",
    { class: "filters", role: "search" },
    input("q", "Words said", { type: "search", placeholder: "e.g. plumber" }),
    input("phone_number", "Called number", { type: "tel", placeholder: "+1555…" }),
    input("caller_number", "Caller", { type: "tel", placeholder: "+1555…" }),
    input("since", "From (UTC date)", { type: "date" }),
    input("until", "To (UTC date, inclusive)", { type: "date" }),
    h("div", { class: "field buttons" }, h("button", { type: "submit", class: "primary" }, "Search"), h("button", { type: "reset" }, "Clear")),
  );
  const status = h("p", { class: "notice", role: "status" }, "Loading…");
  const results = h("div", { class: "results" });
  main.append(h("section", { class: "history" }, h("h1", {}, "Call history"), form, status, results));

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const query = new URLSearchParams();
    for (const key of FILTERS) {
      const value = form.elements[key].value.trim();
      if (value) query.set(key, value);
    }
    const target = `#/history${query.toString() ? `?${query}` : ""}`;
    if (window.location.hash === target) load();
    else window.location.hash = target;
  });
  form.addEventListener("reset", () => setTimeout(() => (window.location.hash = "#/history")));

  let alive = true;
  async function load() {
    notice(status, "Searching…");
    try {
      const calls = await getJSON("/api/conversations", apiQuery(filter));
      if (!alive) return;
      const filtered = FILTERS.some((key) => filter[key]);
      notice(status, calls.length ? `${calls.length} call${calls.length === 1 ? "" : "s"}${filtered ? (calls.length === 1 ? " matches" : " match") : ""}.` : filtered ? "No call matches." : "No calls yet.");
      clear(results);
      if (!calls.length) return;
      results.append(
        h(
          "table",
          { class: "calls-table" },
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              [
                ["Started", ""],
                ["Caller", ""],
                ["Called", "opt"],
                ["Length", "opt"],
                ["Messages", "opt"],
                ["Status", ""],
              ].map(([t, cls]) => h("th", { scope: "col", class: cls || null }, t)),
            ),
          ),
          h("tbody", {}, calls.map(row)),
        ),
      );
    } catch (error) {
      notice(status, `Could not search: ${error.message}`, "error");
    }
  }
  load();
  return { unmount: () => (alive = false) };
}
