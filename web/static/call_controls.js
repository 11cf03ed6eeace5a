// Call control in the live view: "Call a number" (POST /api/calls, optionally with the saved agent
// profile that answers it, from GET /api/agents) and, for the live call shown,
// "Hang up" and "Transfer to …" (POST /api/calls/{id}/hangup|transfer). The transfer targets are
// those of the agent that answers the call shown (GET /api/agent?call_id=…); a call that ended or a replay shows no buttons. What happened comes
// back on the feed (callbridge.phone.hung_up, callbridge.transfer.dialed, …) as transcript notes.

import { getJSON, postJSON } from "./api.js";
import { h, notice } from "./dom.js";

const E164 = "\\+[1-9][0-9]{6,14}";

/** The "Call a number" form; `onPlaced(callId)` selects the new call once it connects. */
export function callForm(onPlaced) {
  const status = h("span", { class: "notice", role: "status", id: "place-call-status" });
  const to = h("input", { id: "place-call-to", name: "to", type: "tel", required: true, pattern: E164, placeholder: "+15551234567", autocomplete: "off" });
  const from = h("input", { id: "place-call-from", name: "from", type: "tel", pattern: E164, placeholder: "default caller ID", autocomplete: "off" });
  const greeting = h("input", { id: "place-call-greeting", name: "greeting", type: "text", maxlength: "1000", placeholder: "the agent's greeting" });
  const agent = h("select", { id: "place-call-agent", name: "agent" }, h("option", { value: "" }, "by the routing rules"));
  getJSON("/api/agents")
    .then((profiles) => {
      for (const profile of profiles) agent.append(h("option", { value: profile.name }, profile.name));
    })
    .catch(() => {}); // the routing rules still choose; the agents page says what is wrong
  const button = h("button", { type: "submit", class: "primary" }, "Call");
  const form = h(
    "form",
    { class: "place-call", "aria-labelledby": "place-call-heading" },
    h("h2", { id: "place-call-heading" }, "Call a number"),
    h("div", { class: "fields" },
      h("label", { for: "place-call-to" }, "To"), to,
      h("label", { for: "place-call-from" }, "From (optional)"), from,
      h("label", { for: "place-call-greeting" }, "Greeting (optional)"), greeting,
      h("label", { for: "place-call-agent" }, "Agent"), agent,
      button),
    status,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { to: to.value.trim() };
    if (from.value.trim()) body.from = from.value.trim();
    if (greeting.value.trim()) body.greeting = greeting.value.trim();
    if (agent.value) body.agent = agent.value;
    button.disabled = true;
    notice(status, `Calling ${body.to}…`);
    try {
      const placed = await postJSON("/api/calls", body);
      notice(status, `Calling ${placed.to} from ${placed.from}: call ${placed.call_id} ${placed.status}. It shows up here once answered.`, "ok");
      onPlaced(placed.call_id);
    } catch (error) {
      notice(status, `Could not place the call: ${error.message}`, "error");
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

/** Hang-up and transfer buttons for the call shown (hidden when it is not live). */
export class CallControls {
  constructor() {
    this.callId = null;
    this.status = h("span", { class: "notice", role: "status", id: "call-control-status" });
    this.hangUp = h("button", { type: "button", id: "hang-up", class: "danger" }, "Hang up");
    this.target = h("select", { id: "transfer-target", "aria-label": "Transfer target" });
    this.transfer = h("button", { type: "button", id: "transfer" }, "Transfer");
    this.transferPart = h("span", { class: "transfer", hidden: true }, this.target, this.transfer);
    this.root = h("div", { class: "call-controls", hidden: true }, this.hangUp, this.transferPart, this.status);
    this.hangUp.addEventListener("click", () => this.send("hangup", { reason: "hung up from the console" }, "Hanging up…"));
    this.transfer.addEventListener("click", () =>
      this.send("transfer", { target: this.target.value, reason: "transferred from the console" }, `Transferring to ${this.target.value}…`),
    );
    this.targetsFor = null;
  }

  /** The transfer targets of the agent that answers `callId` (each call may have its own agent). */
  loadTargets(callId) {
    this.targetsFor = callId;
    this.transferPart.hidden = true;
    getJSON("/api/agent", { call_id: callId })
      .then((agent) => {
        if (callId !== this.callId) return; // another call was chosen meanwhile
        const targets = agent.transfer_targets || [];
        this.target.replaceChildren(...targets.map((t) => h("option", { value: t.label }, `${t.label} (${t.to})`)));
        this.transferPart.hidden = !targets.length;
      })
      .catch(() => {});
  }

  /** Show the buttons for `call` when it is live (never for a replay). */
  show(call, { replay = false } = {}) {
    const live = Boolean(call && !call.ended && !replay);
    if (!call || call.callId !== this.callId) notice(this.status, "");
    this.callId = call ? call.callId : null;
    this.root.hidden = !live;
    if (live && this.targetsFor !== this.callId) this.loadTargets(this.callId);
  }

  async send(action, body, doing) {
    if (!this.callId) return;
    const callId = this.callId;
    notice(this.status, doing);
    try {
      await postJSON(`/api/calls/${encodeURIComponent(callId)}/${action}`, body);
      notice(this.status, action === "hangup" ? "Hang-up sent: the call ends now." : "Transfer asked: the caller hears it announced, then is put through.", "ok");
    } catch (error) {
      notice(this.status, `Refused: ${error.message}`, "error");
    }
  }
}
