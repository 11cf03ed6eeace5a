// A call's transcript as bubbles, redrawn incrementally: entries only ever get appended, and each
// bubble is rewritten only when its `rev` changed, so a stream of deltas costs one text update each.

import { clear, h } from "./dom.js";

const WHO = { caller: "Caller", assistant: "Assistant", tool: "Function call", note: "" };
const STATUS_LABEL = {
  streaming: "…",
  interrupted: "interrupted",
  failed: "failed",
  calling: "…",
  pending: "waiting",
  answering: "answer sent",
};

function bubbleBody(entry) {
  if (entry.role === "tool") {
    const parts = [h("code", { class: "call" }, entry.text)];
    if (entry.output !== null && entry.output !== undefined) {
      parts.push(h("span", { class: "arrow", "aria-hidden": "true" }, " → "));
      parts.push(h("code", { class: "output" }, entry.output));
    }
    if (entry.handler === "human") parts.push(h("span", { class: "badge" }, "answered by a person"));
    return parts;
  }
  if (entry.role === "note") return [h("span", {}, entry.text)];
  const text = entry.text || (entry.status === "streaming" ? "" : "(no transcript)");
  const parts = [h("span", { class: "text" }, text)];
  if (entry.error) parts.push(h("span", { class: "error-text" }, ` ${entry.error}`));
  return parts;
}

function renderBubble(el, entry) {
  const role = entry.role;
  el.className = `bubble ${role} status-${entry.status}`;
  const label = STATUS_LABEL[entry.status];
  clear(el).append(
    ...[
      WHO[role] ? h("span", { class: "who" }, WHO[role], label ? h("span", { class: "state" }, ` ${label}`) : null) : null,
      h("p", { class: "body" }, bubbleBody(entry)),
    ].filter(Boolean),
  );
  el.dataset.rev = String(entry.rev);
}

export class TranscriptView {
  constructor(list) {
    this.list = list;
    this.elements = new Map();
    this.callId = null;
  }

  /** Draw `call` (or an empty state when null). */
  show(call, emptyText = "No call selected.") {
    clear(this.list);
    this.elements.clear();
    this.callId = call ? call.callId : null;
    if (!call) {
      this.list.append(h("li", { class: "empty" }, emptyText));
      return;
    }
    this.update(call);
  }

  update(call) {
    if (!call || call.callId !== this.callId) return;
    const scroller = this.list.closest(".scroll") || this.list;
    const atBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 40;
    const empty = this.list.querySelector(".empty");
    if (call.entries.length && empty) empty.remove();
    if (!call.entries.length && !empty) this.list.append(h("li", { class: "empty" }, "Waiting for someone to speak…"));
    for (const entry of call.entries) {
      let el = this.elements.get(entry.key);
      if (!el) {
        el = h("li", { dataset: { key: entry.key } });
        this.elements.set(entry.key, el);
        this.list.append(el);
      }
      if (el.dataset.rev !== String(entry.rev)) renderBubble(el, entry);
    }
    if (atBottom) scroller.scrollTop = scroller.scrollHeight;
  }
}
