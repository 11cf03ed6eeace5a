// Routing (#/routing): which agent answers a call. Rules checked top to bottom (the first that matches
// wins: called number, caller, direction, days and hours in a time zone), the agent for the rest, and
// the operator's assistant-request endpoint asked first (GET/PUT /api/routing). "Try a call" asks the
// server which agent the rules would choose (POST /api/routing/test).

import { ApiError, getJSON, postJSON, sendJSON } from "./api.js";
import { clear, h, notice } from "./dom.js";

const DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const COLUMNS = [
  ["to", "Called number", "+1555…"],
  ["from", "Caller", "+44*"],
  ["hours", "Hours", "09:00-17:00"],
  ["timezone", "Time zone", "UTC"],
  ["note", "Note", ""],
];

function agentSelect(agents, value, attrs) {
  const select = h("select", attrs, agents.map((a) => h("option", { value: a }, a)));
  if (value && !agents.includes(value)) select.append(h("option", { value }, `${value} (missing)`));
  select.value = value || agents[0];
  return select;
}

function ruleRow(rule, agents, index, rows) {
  const cells = {};
  const tr = h("tr", { class: "rule", dataset: { index: String(index) } });
  const number = h("th", { scope: "row", class: "num" }, `#${index + 1}`);
  tr.append(number);
  for (const [key, label, placeholder] of COLUMNS) {
    cells[key] = h("input", { value: rule[key] ?? "", placeholder, "aria-label": `Rule ${index + 1} ${label}`, dataset: { key }, spellcheck: "false" });
    tr.append(h("td", {}, cells[key]));
  }
  cells.direction = h(
    "select",
    { "aria-label": `Rule ${index + 1} direction`, dataset: { key: "direction" } },
    h("option", { value: "" }, "any"),
    h("option", { value: "inbound" }, "inbound"),
    h("option", { value: "outbound" }, "outbound"),
  );
  cells.direction.value = rule.direction || "";
  const days = h(
    "span",
    { class: "days", dataset: { key: "days" } },
    DAYS.map((day) => h("label", {}, h("input", { type: "checkbox", value: day, checked: (rule.days || []).includes(day) }), day)),
  );
  cells.days = days;
  cells.agent = agentSelect(agents, rule.agent, { "aria-label": `Rule ${index + 1} agent`, dataset: { key: "agent" } });
  const move = (delta) => {
    const target = index + delta;
    if (target < 0 || target >= rows.length) return;
    rows.sync(); // what was typed is kept, then the rules change places
    [rows[index], rows[target]] = [rows[target], rows[index]];
    rows.render();
  };
  const remove = () => {
    rows.sync();
    rows.splice(index, 1);
    rows.render();
  };
  tr.append(
    h("td", {}, cells.direction),
    h("td", {}, days),
    h("td", {}, cells.agent),
    h(
      "td",
      { class: "rule-actions" },
      h("button", { type: "button", "aria-label": `Move rule ${index + 1} up`, onclick: () => move(-1) }, "↑"),
      h("button", { type: "button", "aria-label": `Move rule ${index + 1} down`, onclick: () => move(1) }, "↓"),
      h("button", { type: "button", class: "danger", "aria-label": `Remove rule ${index + 1}`, onclick: remove }, "✕"),
    ),
  );
  tr.read = () => {
    const out = { agent: cells.agent.value };
    for (const [key] of COLUMNS) {
      const value = cells[key].value.trim();
      if (value && !(key === "timezone" && value === "UTC")) out[key] = value;
    }
    if (cells.direction.value) out.direction = cells.direction.value;
    const chosen = [...days.querySelectorAll("input:checked")].map((box) => box.value);
    if (chosen.length) out.days = chosen;
    return out;
  };
  tr.cells_ = cells;
  return tr;
}

export function mountRouting(main) {
  const status = h("p", { class: "notice", role: "status" }, "Loading…");
  const host = h("div", {});
  main.append(
    h(
      "section",
      { class: "routing" },
      h("p", {}, h("a", { href: "#/agents" }, "← Agents")),
      h("h1", {}, "Routing"),
      h("p", { class: "hint" }, "Rules are checked top to bottom; the first that matches picks the agent. Numbers take * (any run) and ? (one character). Hours run from the start up to the end, in the rule's time zone (22:00-06:00 wraps midnight)."),
      status,
      host,
    ),
  );
  let alive = true;

  function render(routing) {
    clear(host);
    const agents = routing.agents;
    const rows = routing.rules.map((rule) => ({ ...rule }));
    const body = h("tbody", {});
    let trs = [];
    rows.sync = () => trs.forEach((tr, i) => (rows[i] = tr.read()));
    rows.render = () => {
      trs = rows.map((rule, index) => ruleRow(rule, agents, index, rows));
      body.replaceChildren(...trs);
      if (!trs.length) body.append(h("tr", {}, h("td", { colspan: 10, class: "muted" }, "No rules: the default agent answers every call.")));
    };
    rows.render();
    const addRule = () => {
      rows.sync();
      rows.push({ agent: agents[0] });
      rows.render();
      trs.at(-1)?.cells_.to.focus();
    };
    const add = h("button", { type: "button", id: "add-rule", onclick: addRule }, "Add a rule");
    const fallback = agentSelect(agents, routing.default_agent, { id: "default-agent" });
    const ar = routing.assistant_request || {};
    const arUrl = h("input", { id: "ar-url", type: "url", value: ar.url || "", placeholder: "https://…", spellcheck: "false" });
    const arSecret = h("input", { id: "ar-secret", value: ar.secret_env || "", placeholder: "ROUTE_SECRET", spellcheck: "false" });
    const arTimeout = h("input", { id: "ar-timeout", type: "number", step: "0.1", min: "0.1", max: "1.5", value: ar.timeout_s ?? 1.5 });
    const saveStatus = h("span", { class: "notice", role: "status", id: "routing-status", "aria-live": "polite" });
    const save = h("button", { type: "submit", class: "primary" }, "Save the routing");
    const form = h(
      "form",
      { class: "routing-form", novalidate: true },
      h(
        "div",
        { class: "results" },
        h(
          "table",
          { class: "rules-table" },
          h("thead", {}, h("tr", {}, ["#", "Called number", "Caller", "Hours", "Time zone", "Note", "Direction", "Days", "Agent", ""].map((t) => h("th", { scope: "col" }, t)))),
          body,
        ),
      ),
      h("div", { class: "toolbar" }, add),
      h("div", { class: "field" }, h("label", { for: "default-agent" }, "When no rule matches"), fallback),
      h(
        "fieldset",
        {},
        h("legend", {}, "Assistant request (optional): your endpoint picks the agent first"),
        h("div", { class: "field" }, h("label", { for: "ar-url" }, "Endpoint URL"), arUrl),
        h("div", { class: "field" }, h("label", { for: "ar-secret" }, "Environment variable holding its whsec_ secret"), arSecret),
        h("div", { class: "field" }, h("label", { for: "ar-timeout" }, "Give up after (s, at most 1.5)"), arTimeout),
      ),
      h("div", { class: "save-row" }, save, saveStatus),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
      const document_ = {
        version: routing.version,
        rules: trs.map((tr) => tr.read()),
        default_agent: fallback.value,
        assistant_request: arUrl.value.trim() ? { url: arUrl.value.trim(), secret_env: arSecret.value.trim(), timeout_s: Number(arTimeout.value || 1.5) } : null,
      };
      save.disabled = true;
      try {
        const saved = await sendJSON("PUT", "/api/routing", document_);
        render(saved);
        notice(document.getElementById("routing-status"), saved.unchanged ? "Nothing changed." : `Saved: version ${saved.version} routes new calls.`, "ok");
      } catch (error) {
        const key = error instanceof ApiError ? error.body?.key || "" : "";
        const rule = /^rules\[(\d+)\]\.?(\w*)/.exec(key);
        const target = rule ? trs[Number(rule[1])]?.cells_[rule[2] || "agent"] : { default_agent: fallback, "assistant_request.url": arUrl, "assistant_request.secret_env": arSecret, "assistant_request.timeout_s": arTimeout }[key];
        target?.setAttribute?.("aria-invalid", "true");
        target?.focus?.();
        notice(saveStatus, `Not saved: ${error.message}`, "error");
      } finally {
        save.disabled = false;
      }
    });

    const tryTo = h("input", { id: "try-to", type: "tel", placeholder: "+1555…" });
    const tryFrom = h("input", { id: "try-from", type: "tel", placeholder: "+1555…" });
    const tryResult = h("p", { class: "notice", role: "status", id: "try-result" });
    const tryForm = h(
      "form",
      { class: "panel try-route" },
      h("h2", {}, "Try a call"),
      h("div", { class: "row-fields" }, h("div", { class: "field" }, h("label", { for: "try-to" }, "Called number"), tryTo), h("div", { class: "field" }, h("label", { for: "try-from" }, "Caller"), tryFrom)),
      h("button", { type: "submit" }, "Which agent answers?"),
      tryResult,
    );
    tryForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        const found = await postJSON("/api/routing/test", { to: tryTo.value.trim(), from: tryFrom.value.trim() });
        notice(tryResult, `${found.agent} v${found.version}: ${found.reason} (by the saved rules, now)`, "ok");
      } catch (error) {
        notice(tryResult, error.message, "error");
      }
    });
    host.append(
      h("p", { class: "muted" }, routing.version ? `Version ${routing.version}, saved by ${routing.saved_by}.` : "Not saved yet."),
      form,
      tryForm,
    );
  }

  getJSON("/api/routing")
    .then((routing) => {
      if (!alive) return;
      clear(status);
      render(routing);
    })
    .catch((error) => notice(status, `Could not load the routing: ${error.message}`, "error"));
  return { unmount: () => (alive = false) };
}
