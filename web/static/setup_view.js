// The setup checklist: can a real phone call reach this server? One line per check (from
// GET /api/setup), the account's numbers, and a button per number that points its voice webhook
// at PUBLIC_URL/twiml (POST /api/setup/webhook), after asking when that replaces another webhook or
// when Twilio could not reach the URL.

import { getJSON, postJSON } from "./api.js";
import { clear, h, notice } from "./dom.js";

function checkItem(check) {
  return h(
    "li",
    { class: `check ${check.ok ? "ok" : "bad"}`, dataset: { check: check.id } },
    h("span", { class: "mark", "aria-hidden": "true" }, check.ok ? "✓" : "✗"),
    h("div", {}, h("strong", {}, check.label), h("span", { class: "visually-hidden" }, check.ok ? " (done)" : " (to do)"), h("p", { class: "detail" }, check.detail)),
  );
}

function numberRow(number, twimlUrl, onSet) {
  const button = h(
    "button",
    { type: "button", class: number.webhook_ok ? "" : "primary", dataset: { sid: number.sid } },
    number.webhook_ok ? "Set again" : "Point the webhook here",
  );
  button.addEventListener("click", () => onSet(number, button));
  return h(
    "tr",
    { dataset: { sid: number.sid } },
    h("td", {}, h("strong", {}, number.phone_number), number.friendly_name && number.friendly_name !== number.phone_number ? h("div", { class: "muted" }, number.friendly_name) : null),
    h("td", { class: "url" }, number.voice_url || h("span", { class: "muted" }, "(none)")),
    h("td", { class: `webhook ${number.webhook_ok ? "ok" : "bad"}` }, number.webhook_ok ? "✓ points here" : `✗ not ${twimlUrl}`),
    h("td", {}, button),
  );
}

export function mountSetup(main) {
  const status = h("p", { class: "notice", role: "status" }, "Checking…");
  const checks = h("ul", { class: "checklist", "aria-label": "Setup checks" });
  const facts = h("dl", { class: "facts" });
  const numbers = h("div", { class: "numbers" });
  const recheck = h("button", { type: "button" }, "Check again");
  main.append(
    h(
      "section",
      { class: "setup" },
      h("div", { class: "heading-row" }, h("h1", {}, "Setup"), recheck),
      status,
      checks,
      facts,
      h("h2", {}, "Phone numbers"),
      numbers,
    ),
  );
  let alive = true;

  let lastReport = null;

  /** Ask before anything that cannot be undone in one click: replacing another webhook, or
   * pointing it at a URL Twilio cannot reach. Returns the request body, or null when declined. */
  function confirmWebhook(number) {
    const target = lastReport?.twiml_url || "this server";
    const body = { sid: number.sid };
    if (number.voice_url && number.voice_url !== target) {
      const question = `${number.phone_number} now sends its calls to\n${number.voice_url}\n\nReplace it with\n${target}?`;
      if (!window.confirm(question)) return null;
      body.replace = true;
    }
    const problem = lastReport?.public_url_problem;
    if (problem) {
      const question = `Twilio cannot reach ${target}: ${problem}.\nCalls to ${number.phone_number} would fail until PUBLIC_URL is a public https URL.\n\nSet it anyway?`;
      if (!window.confirm(question)) return null;
      body.force = true;
    }
    return body;
  }

  async function setWebhook(number, button) {
    const body = confirmWebhook(number);
    if (!body) {
      notice(status, `The webhook of ${number.phone_number} was left as it is.`);
      return;
    }
    button.disabled = true;
    notice(status, `Setting the voice webhook of ${number.phone_number}…`);
    try {
      const updated = await postJSON("/api/setup/webhook", body);
      const was = updated.previous_voice_url ? ` (it was ${updated.previous_voice_url})` : "";
      notice(status, `${updated.phone_number} now sends its calls to ${updated.voice_url}${was}.`, "ok");
      await load(false);
    } catch (error) {
      notice(status, `Could not set the webhook of ${number.phone_number}: ${error.message}`, "error");
      button.disabled = false;
    }
  }

  async function load(announce = true) {
    recheck.disabled = true;
    if (announce) notice(status, "Checking…");
    try {
      const report = await getJSON("/api/setup");
      if (!alive) return;
      lastReport = report;
      clear(checks).append(...report.checks.map(checkItem));
      clear(facts).append(
        h("dt", {}, "Public URL"),
        h("dd", {}, report.public_url),
        h("dt", {}, "Voice webhook"),
        h("dd", {}, report.twiml_url, report.public_url_problem ? h("span", { class: "warn public-url-problem" }, ` — Twilio cannot reach it: ${report.public_url_problem}`) : null),
        h("dt", {}, "Realtime model"),
        h("dd", {}, report.model === "sim" ? "simulated (no OPENAI_API_KEY)" : report.model),
      );
      if (report.numbers.length) {
        clear(numbers).append(
          h(
            "table",
            { class: "numbers-table" },
            h("thead", {}, h("tr", {}, ["Number", "Voice URL", "Webhook", ""].map((t) => h("th", { scope: "col" }, t)))),
            h("tbody", {}, report.numbers.map((n) => numberRow(n, report.twiml_url, setWebhook))),
          ),
        );
      } else {
        clear(numbers).append(h("p", { class: "muted" }, "No phone numbers to show (see the checks above)."));
      }
      const todo = report.checks.filter((c) => !c.ok).length;
      if (announce) notice(status, todo ? `${todo} of ${report.checks.length} checks need attention.` : "Everything is set up.", todo ? "warn" : "ok");
    } catch (error) {
      notice(status, `Could not run the checks: ${error.message}`, "error");
    } finally {
      recheck.disabled = false;
    }
  }

  recheck.addEventListener("click", () => load());
  load();
  return { unmount: () => (alive = false) };
}
