// The function-calls panel: pending calls (with a form to answer by hand) and finished ones.
//
// Cards are keyed by tool call id and kept across redraws, so text typed into an answer box is
// never lost when other messages arrive. An answer goes over the feed as the function output
// followed by `response.create` (the bridge's response gate makes the second one safe), and it is
// addressed to one call: the feed refuses it for any call but the one that asked.

import { clear, h, prettyJson } from "./dom.js";
import { bump } from "./live_state.js";

const STATUS_TEXT = {
  calling: "the model is calling it…",
  pending: "waiting for an answer",
  answering: "answer sent…",
  done: "done",
  failed: "failed",
};

function handlerBadge(tool) {
  const who = tool.handler === "human" ? "answered by a person" : "server";
  return h("span", { class: `badge handler-${tool.handler || "backend"}` }, who);
}

export class ToolsPanel {
  /**
   * @param {HTMLElement} root
   * @param {{send: (message: object) => boolean, readOnly: boolean}} options
   */
  constructor(root, { send, readOnly = false }) {
    this.send = send;
    this.readOnly = readOnly;
    this.cards = new Map();
    this.call = null;
    this.lastAnswered = null;
    clear(root).append(
      h("h2", { id: "tools-heading" }, "Function calls"),
      h("h3", {}, "Pending"),
      (this.pending = h("ul", { class: "tool-list pending", "aria-live": "polite" })),
      h("h3", {}, "Finished"),
      (this.finished = h("ul", { class: "tool-list finished" })),
    );
  }

  show(call) {
    clear(this.pending);
    clear(this.finished);
    this.cards.clear();
    this.call = call;
    this.update(call);
  }

  update(call) {
    if (!call) this.placeholders();
    if (!call || call !== this.call) return;
    for (const tool of call.tools.values()) {
      let card = this.cards.get(tool.id);
      if (!card) {
        card = this.createCard(tool);
        this.cards.set(tool.id, card);
      }
      if (card.rev !== tool.rev) this.renderCard(card, tool);
    }
    this.placeholders();
  }

  placeholders() {
    for (const [list, text] of [
      [this.pending, "Nothing is waiting."],
      [this.finished, "None yet."],
    ]) {
      const cards = list.querySelectorAll(".tool-card").length;
      const empty = list.querySelector(".empty");
      if (cards && empty) empty.remove();
      if (!cards && !empty) list.append(h("li", { class: "empty" }, text));
    }
  }

  createCard(tool) {
    const card = {
      rev: -1,
      el: h("li", { class: "tool-card", dataset: { toolCallId: tool.id } }),
      head: h("div", { class: "tool-head" }),
      args: h("pre", { class: "args" }),
      result: h("div", { class: "result" }),
      form: null,
    };
    card.el.append(card.head, card.args, card.result);
    return card;
  }

  renderCard(card, tool) {
    card.rev = tool.rev;
    const open = ["calling", "pending", "answering"].includes(tool.status);
    clear(card.head).append(
      h("strong", { class: "tool-name" }, tool.name || "function"),
      " ",
      handlerBadge(tool),
      " ",
      h("span", { class: `tool-status status-${tool.status}` }, STATUS_TEXT[tool.status] || tool.status),
    );
    card.args.textContent = prettyJson(tool.arguments || "{}");
    clear(card.result);
    if (!open) {
      if (tool.output !== null && tool.output !== undefined) {
        card.result.append(h("span", { class: "label" }, "Output"), h("pre", { class: "output" }, prettyJson(tool.output)));
      }
      const details = [];
      if (tool.source === "human") details.push("answered from the console");
      if (typeof tool.durationMs === "number") details.push(`${Math.round(tool.durationMs)} ms`);
      if (tool.error) details.push(tool.error);
      if (details.length) card.result.append(h("p", { class: "muted" }, details.join(" · ")));
      if (card.form) {
        card.form.remove();
        card.form = null;
      }
      if (card.el.parentElement !== this.finished) this.finished.prepend(card.el);
      return;
    }
    if (card.el.parentElement !== this.pending) this.pending.append(card.el);
    const answerable = !this.readOnly && tool.status !== "calling";
    if (card.form && (!answerable || card.formHandler !== tool.handler)) {
      card.form.remove(); // who answers decides the form: a person's, or "answer instead of the server"
      card.form = null;
    }
    if (answerable && !card.form) {
      card.form = this.answerForm(tool);
      card.formHandler = tool.handler;
      card.el.append(card.form);
    }
    if (card.form) card.form.querySelector("button").disabled = tool.status === "answering";
  }

  answerForm(tool) {
    const id = `answer-${tool.id}`;
    const textarea = h("textarea", {
      id,
      name: "output",
      rows: 3,
      required: true,
      placeholder: '{"result": "…"} or plain text',
      spellcheck: "false",
    });
    const status = h("p", { class: "form-status", role: "status" });
    const label =
      tool.handler === "human"
        ? "Your answer (sent to the model as the function's output)"
        : "Answer instead of the server (the first answer wins)";
    const form = h(
      "form",
      { class: "answer", "aria-label": `Answer ${tool.name}` },
      h("label", { for: id }, label),
      textarea,
      h("div", { class: "row" }, h("button", { type: "submit", class: "primary" }, "Send answer"), status),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit(tool, textarea, status);
    });
    textarea.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
    });
    if (tool.handler !== "human") {
      return h("details", { class: "answer-instead" }, h("summary", {}, "Answer by hand"), form);
    }
    return form;
  }

  submit(tool, textarea, status) {
    const output = textarea.value.trim();
    if (!output) {
      status.textContent = "Type an answer first.";
      textarea.focus();
      return;
    }
    const callId = this.call.callId;
    const sent =
      this.send({
        type: "conversation.item.create",
        call_id: callId,
        item: { type: "function_call_output", call_id: tool.id, output },
      }) && this.send({ type: "response.create", call_id: callId });
    if (!sent) {
      status.textContent = "Not sent: the live feed is not connected. Try again when it says live.";
      return;
    }
    this.lastAnswered = tool;
    tool.status = "answering";
    bump(tool);
    status.textContent = "Sent. Waiting for the call to take it…";
    this.update(this.call);
  }

  /** The feed refused a command of ours: say so on the card that sent it. */
  refused(message) {
    const tool = this.lastAnswered;
    if (!tool || tool.status !== "answering") return;
    tool.status = "pending";
    bump(tool);
    this.update(this.call);
    const card = this.cards.get(tool.id);
    const status = card?.el.querySelector(".form-status");
    if (status) status.textContent = `Refused: ${message}`;
  }
}
