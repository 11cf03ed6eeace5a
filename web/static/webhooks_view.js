// Webhooks out: register an endpoint for event kinds (the generated secret is shown once), see each
// endpoint's delivery log — every attempt with its status, latency and error — and send a delivered
// or dead-lettered message again. Everything goes through /api/webhooks (web/webhooks_api.py).

import { deleteJSON, getJSON, postJSON } from "./api.js";
import { clear, formatWhen, h, notice } from "./dom.js";

const KINDS = [
  ["call.started", "a call started"],
  ["call.ended", "a call ended (transcript, metrics, outcome)"],
  ["tool.called", "a tool was called"],
  ["call.transferred", "a call was transferred"],
  ["voicemail.left", "a voicemail was left"],
  ["agent.failed", "the agent failed (model unavailable, task crashed)"],
];
const STATES = ["", "queued", "retrying", "delivered", "dead_lettered"];

function attemptLine(attempt) {
  const outcome = attempt.ok ? `HTTP ${attempt.status}` : attempt.error || `HTTP ${attempt.status}`;
  return h(
    "li",
    { class: attempt.ok ? "ok" : "bad" },
    `#${attempt.attempt} ${formatWhen(attempt.at)} — ${outcome} in ${Math.round(attempt.latency_ms)} ms`,
    attempt.engine_id ? h("span", { class: "muted" }, ` (engine ${attempt.engine_id})`) : null,
  );
}

function deliveryRow(delivery, onRedeliver) {
  const last = delivery.attempts[delivery.attempts.length - 1];
  const redeliver = h("button", { type: "button", dataset: { delivery: delivery.delivery_id } }, "Redeliver");
  redeliver.addEventListener("click", () => onRedeliver(delivery, redeliver));
  return h(
    "tr",
    { dataset: { delivery: delivery.delivery_id, state: delivery.state } },
    h("td", {}, h("code", {}, delivery.kind), delivery.redelivery_of ? h("div", { class: "muted" }, `again: ${delivery.redelivery_of}`) : null),
    h("td", {}, h("a", { href: `#/calls/${encodeURIComponent(delivery.call_id)}` }, delivery.call_id)),
    h("td", {}, h("span", { class: `pill ${delivery.state === "dead_lettered" ? "failed" : ""}` }, delivery.state.replace("_", " "))),
    h(
      "td",
      {},
      last ? `${delivery.attempt_count} — last ${last.ok ? `HTTP ${last.status}` : last.error || `HTTP ${last.status}`}` : "not tried yet",
      delivery.attempts.length ? h("details", {}, h("summary", {}, "attempts"), h("ol", { class: "attempts" }, delivery.attempts.map(attemptLine))) : null,
    ),
    h("td", {}, delivery.state === "delivered" || delivery.state === "dead_lettered" ? redeliver : null),
  );
}

export function mountWebhooks(main) {
  const status = h("p", { class: "notice", role: "status", "aria-live": "polite" });
  const url = h("input", { id: "wh-url", name: "url", type: "url", required: true, placeholder: "https://example.com/callbridge", spellcheck: "false" });
  const secret = h("input", { id: "wh-secret", name: "secret", placeholder: "leave empty to generate one", spellcheck: "false", autocomplete: "off" });
  const boxes = KINDS.map(([kind, label]) =>
    h("label", { class: "kind" }, h("input", { type: "checkbox", name: "events", value: kind, checked: kind === "call.ended" }), ` ${kind} `, h("span", { class: "muted" }, label)),
  );
  const form = h(
    "form",
    { class: "webhook-form", "aria-label": "Add a webhook" },
    h("div", { class: "field" }, h("label", { for: "wh-url" }, "Endpoint URL"), url),
    h("fieldset", {}, h("legend", {}, "Send"), boxes),
    h("div", { class: "field" }, h("label", { for: "wh-secret" }, "Signing secret (whsec_…, optional)"), secret),
    h("button", { type: "submit", class: "primary" }, "Add webhook"),
  );
  const list = h("div", { class: "webhooks" });
  const log = h("section", { class: "delivery-log", "aria-label": "Delivery log" });
  main.append(
    h(
      "section",
      { class: "webhooks-view" },
      h("h1", {}, "Webhooks"),
      h("p", { class: "muted" }, "Each message is POSTed as JSON and signed the Standard Webhooks way (webhook-id, webhook-timestamp, webhook-signature), retried for 24 hours until the endpoint answers 2xx, in order per call."),
      status,
      form,
      h("h2", {}, "Endpoints"),
      list,
      log,
    ),
  );
  let alive = true;
  let shown = null;

  async function add(event) {
    event.preventDefault();
    const events = boxes.map((box) => box.querySelector("input")).filter((box) => box.checked).map((box) => box.value);
    const body = { url: url.value.trim(), events };
    if (secret.value.trim()) body.secret = secret.value.trim();
    try {
      const made = await postJSON("/api/webhooks", body);
      url.value = "";
      secret.value = "";
      if (made.secret) {
        clear(status).append(
          h("span", {}, `Webhook ${made.id} added. Its signing secret — copy it now, it is not shown again: `),
          h("code", { class: "secret", "data-secret": "" }, made.secret),
        );
        status.className = "notice ok";
      } else {
        notice(status, `Webhook ${made.id} added; it signs with the secret you gave.`, "ok");
      }
      await load();
    } catch (error) {
      notice(status, `Could not add the webhook: ${error.message}`, "error");
    }
  }

  async function remove(endpoint) {
    if (!window.confirm(`Stop sending to ${endpoint.url}? Its secret is destroyed.`)) return;
    try {
      await deleteJSON(`/api/webhooks/${encodeURIComponent(endpoint.id)}`);
      notice(status, `Webhook ${endpoint.id} removed.`, "ok");
      if (shown === endpoint.id) clear(log);
      await load();
    } catch (error) {
      notice(status, `Could not remove it: ${error.message}`, "error");
    }
  }

  async function redeliver(endpointId, delivery, button) {
    button.disabled = true;
    try {
      const queued = await postJSON(`/api/webhooks/${encodeURIComponent(endpointId)}/deliveries/${encodeURIComponent(delivery.delivery_id)}/redeliver`, {});
      notice(status, `${delivery.kind} of ${delivery.call_id} queued again as ${queued.delivery_id}.`, "ok");
      await showLog(endpointId);
    } catch (error) {
      notice(status, `Could not redeliver: ${error.message}`, "error");
      button.disabled = false;
    }
  }

  async function showLog(endpointId, state = "") {
    shown = endpointId;
    const filter = h("select", { id: "wh-state", "aria-label": "Show deliveries" }, STATES.map((s) => h("option", { value: s, selected: s === state }, s ? s.replace("_", " ") : "all")));
    filter.addEventListener("change", () => showLog(endpointId, filter.value));
    const deliveries = await getJSON(`/api/webhooks/${encodeURIComponent(endpointId)}/deliveries`, { limit: 100, state });
    if (!alive) return;
    clear(log).append(
      h("div", { class: "heading-row" }, h("h2", {}, `Deliveries to ${endpointId}`), filter),
      deliveries.length
        ? h(
            "table",
            { class: "deliveries-table" },
            h("thead", {}, h("tr", {}, ["Kind", "Call", "State", "Attempts", ""].map((t) => h("th", { scope: "col" }, t)))),
            h("tbody", {}, deliveries.map((d) => deliveryRow(d, (delivery, button) => redeliver(endpointId, delivery, button)))),
          )
        : h("p", { class: "muted" }, "Nothing delivered yet."),
    );
  }

  async function load() {
    try {
      const endpoints = await getJSON("/api/webhooks");
      if (!alive) return;
      if (!endpoints.length) {
        clear(list).append(h("p", { class: "muted" }, "No webhooks yet."));
        return;
      }
      clear(list).append(
        h(
          "table",
          { class: "webhooks-table" },
          h("thead", {}, h("tr", {}, ["Endpoint", "Sends", "Delivered", "Retrying", "Dead letters", ""].map((t) => h("th", { scope: "col" }, t)))),
          h(
            "tbody",
            {},
            endpoints.map((endpoint) => {
              const open = h("button", { type: "button" }, "Deliveries");
              open.addEventListener("click", () =>
                Promise.all([showLog(endpoint.id), load()]).catch((error) => notice(status, error.message, "error")),
              );
              const drop = h("button", { type: "button" }, "Remove");
              drop.addEventListener("click", () => remove(endpoint));
              return h(
                "tr",
                { dataset: { webhook: endpoint.id } },
                h("td", {}, h("strong", {}, endpoint.url), h("div", { class: "muted" }, `${endpoint.id}, since ${formatWhen(endpoint.created_at)}`)),
                h("td", {}, endpoint.events.join(", ")),
                h("td", { class: "num" }, String(endpoint.deliveries.delivered)),
                h("td", { class: "num" }, String(endpoint.deliveries.retrying + endpoint.deliveries.queued)),
                h("td", { class: "num" }, String(endpoint.deliveries.dead_lettered)),
                h("td", {}, open, " ", drop),
              );
            }),
          ),
        ),
      );
    } catch (error) {
      notice(status, `Could not list the webhooks: ${error.message}`, "error");
    }
  }

  form.addEventListener("submit", add);
  load();
  return { unmount: () => (alive = false) };
}
