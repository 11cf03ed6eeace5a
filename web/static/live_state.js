// What the live feed says about each call, folded into plain state the views draw: a transcript
// (caller, assistant, tool and note bubbles, in conversation order, growing as deltas arrive) and
// the call's tool calls. No DOM here: each change bumps a `rev` so a view redraws only what changed.
//
// Order: a bubble is placed when its item is first heard of (the caller's when speech starts, the
// assistant's when its output item is added), and filled in as transcripts arrive later, so a slow
// caller transcription never lands below the reply to it.

import { CALL_CONTROL_HANDLERS } from "./call_control_notes.js";

let revCounter = 0;
const nextRev = () => ++revCounter;

/** Mark `target` (an entry or a tool) changed so views redraw it. */
export function bump(target) {
  target.rev = nextRev();
}

export class CallState {
  constructor(callId) {
    this.callId = callId;
    this.streamSid = null;
    this.from = "";
    this.to = "";
    this.startedAt = null;
    this.ended = false;
    this.endReason = "";
    this.outcome = ""; // how call control ended it: "hung up by the agent", "transferred to sales", …
    this.modelFailure = ""; // the last model connection error, until the model connects
    this.entries = []; // {key, role: caller|assistant|tool|note, text, status, rev, error?}
    this.byKey = new Map();
    this.tools = new Map(); // tool_call_id → {id, name, arguments, handler, status, output, error, rev}
    this.rev = nextRev();
  }

  touch() {
    this.rev = nextRev();
  }

  entry(key, role, init = {}) {
    let found = this.byKey.get(key);
    if (!found) {
      found = { key, role, text: "", status: "streaming", rev: 0, ...init };
      this.entries.push(found);
      this.byKey.set(key, found);
    }
    found.rev = nextRev();
    this.touch();
    return found;
  }

  note(text, kind = "note") {
    return this.entry(`note:${nextRev()}`, "note", { text, status: kind });
  }

  tool(id, init = {}) {
    let found = this.tools.get(id);
    if (!found) {
      // "calling": the model is still producing the call; the engine makes it "pending" when it asks
      found = { id, name: "", arguments: "", handler: "", status: "calling", output: null, error: "", rev: 0, ...init };
      this.tools.set(id, found);
    }
    found.rev = nextRev();
    this.touch();
    return found;
  }

  /** The tool's bubble in the transcript mirrors its record. */
  syncToolEntry(tool) {
    const bubble = this.entry(`tool:${tool.id}`, "tool");
    const args = tool.arguments ? `(${tool.arguments})` : "()";
    bubble.text = `${tool.name || "function"}${args}`;
    bubble.output = tool.output;
    bubble.status = tool.status;
    bubble.handler = tool.handler;
  }

  get pendingTools() {
    return [...this.tools.values()].filter((t) => ["calling", "pending", "answering"].includes(t.status));
  }
}

/** The call is over: nothing is streaming any more. A caller bubble waiting for its transcript
 * is done (with what it has), an assistant reply still streaming was cut off by the hang-up. */
export function finishStreaming(call) {
  for (const entry of call.entries) {
    if (entry.status !== "streaming") continue;
    entry.status = entry.role === "assistant" ? "interrupted" : "done";
    entry.rev = nextRev();
  }
  call.touch();
}

function itemText(item) {
  const parts = Array.isArray(item?.content) ? item.content : [];
  return parts
    .map((part) => part?.transcript ?? part?.text ?? "")
    .filter(Boolean)
    .join(" ");
}

export class LiveState {
  constructor() {
    this.calls = new Map();
    this.listeners = new Set();
  }

  subscribe(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  emit(callId, message) {
    for (const listener of this.listeners) listener(callId, message);
  }

  call(callId) {
    let found = this.calls.get(callId);
    if (!found) {
      found = new CallState(callId);
      this.calls.set(callId, found);
    }
    return found;
  }

  /** A call known from `GET /api/calls/live` or the hello (from/to/started_at/pending tools). */
  addLiveCall(info) {
    const call = this.call(info.call_id);
    call.streamSid = info.stream_sid ?? call.streamSid;
    call.from = info.from ?? info.from_number ?? call.from;
    call.to = info.to ?? info.to_number ?? call.to;
    call.startedAt = info.started_at ?? call.startedAt;
    call.ended = false;
    for (const pending of info.pending_tool_calls || []) {
      const tool = call.tool(pending.tool_call_id, {});
      Object.assign(tool, { name: pending.name, arguments: pending.arguments, handler: pending.handler });
      if (tool.status !== "answering") tool.status = "pending";
      call.syncToolEntry(tool);
    }
    call.touch();
    return call;
  }

  /** The server says exactly these calls are live now (after a reconnect): others are over. */
  setLiveCalls(infos) {
    const live = new Set(infos.map((info) => info.call_id));
    for (const call of this.calls.values()) {
      if (!live.has(call.callId) && !call.ended) {
        call.ended = true;
        call.endReason = call.endReason || "ended while the console was disconnected";
        for (const tool of call.pendingTools) tool.status = "failed";
        finishStreaming(call);
      }
    }
    for (const info of infos) this.addLiveCall(info);
    this.emit(null, { type: "calls.changed" });
  }

  /** Transcript of a call already in progress when the console opened (GET /api/conversations/{id}). */
  seed(callId, items) {
    const call = this.call(callId);
    for (const item of items || []) {
      if (item.type === "message" && (item.role === "user" || item.role === "assistant")) {
        const key = item.item_id;
        if (call.byKey.has(key)) continue;
        const bubble = call.entry(key, item.role === "user" ? "caller" : "assistant");
        bubble.text = item.text || "";
        bubble.status = item.truncated_at_ms != null ? "interrupted" : "done";
      } else if (item.type === "function_call" && item.tool_call_id) {
        const tool = call.tool(item.tool_call_id, { name: item.name, arguments: item.arguments || "" });
        call.syncToolEntry(tool);
      } else if (item.type === "function_call_output" && item.tool_call_id) {
        const tool = call.tool(item.tool_call_id);
        tool.output = item.output;
        tool.status = "done";
        call.syncToolEntry(tool);
      }
    }
    this.emit(callId, { type: "seeded" });
  }

  /** Fold one feed message in; listeners hear which call changed. */
  apply(message) {
    const kind = message.type;
    if (kind === "feed.hello") {
      const calls = message.live_calls || message.calls;
      if (Array.isArray(calls)) this.setLiveCalls(calls);
      this.emit(null, message);
      return;
    }
    const callId = message.call_id;
    if (kind === "feed.gap") {
      // messages were lost, for any call: say so where it matters, in every live transcript
      for (const call of this.calls.values()) if (!call.ended) HANDLERS["feed.gap"](call, message);
    }
    if (!callId) {
      this.emit(null, message);
      return;
    }
    if (message.direction === "client") return; // what the bridge sent; the results show up anyway
    const call = this.call(callId);
    if (message.stream_sid) call.streamSid = message.stream_sid;
    const handler = HANDLERS[kind];
    if (handler) handler(call, message);
    this.emit(callId, message);
  }
}

function callerBubble(call, itemId) {
  return call.entry(itemId || `caller:${call.entries.length}`, "caller");
}

function assistantBubble(call, itemId) {
  return call.entry(itemId || `assistant:${call.entries.length}`, "assistant");
}

function toolFromItem(call, item) {
  const id = item.call_id;
  if (!id) return;
  const tool = call.tool(id, {});
  tool.name = item.name || tool.name;
  tool.arguments = item.arguments || tool.arguments;
  call.syncToolEntry(tool);
}

/** A new model session is told the conversation so far (`callbridge.model.reconnected`'s
 * `seeded_items`) and adds each item again under a new id: those are not new bubbles. */
function retold(call, message) {
  const id = message.item?.id;
  if (!id) return false;
  if (call.retoldIds?.has(id)) return true;
  if ((call.retelling ?? 0) > 0 && message.type === "conversation.item.added" && !call.byKey.has(id)) {
    call.retelling -= 1;
    (call.retoldIds ??= new Set()).add(id);
    return true;
  }
  return false;
}

function itemAdded(call, message) {
  const item = message.item || {};
  if (item.type === "message" && item.role === "user") {
    const bubble = callerBubble(call, item.id);
    const text = itemText(item);
    if (text && !bubble.text) bubble.text = text;
  } else if (item.type === "message" && item.role === "assistant") {
    const bubble = assistantBubble(call, item.id);
    const text = itemText(item);
    if (text && !bubble.text) bubble.text = text;
  } else if (item.type === "function_call") {
    toolFromItem(call, item);
  } else if (item.type === "function_call_output" && item.call_id) {
    const tool = call.tool(item.call_id);
    tool.output = item.output ?? tool.output;
    if (tool.status !== "failed") tool.status = "done";
    call.syncToolEntry(tool);
  }
}

function toolFinished(status) {
  return (call, message) => {
    const tool = call.tool(message.tool_call_id, {});
    tool.name = message.name || tool.name;
    tool.output = message.output ?? tool.output;
    tool.handler = message.handler || tool.handler;
    tool.source = message.source || "";
    tool.error = message.error || "";
    tool.durationMs = message.duration_ms;
    tool.status = status;
    call.syncToolEntry(tool);
  };
}

const HANDLERS = {
  "call.started"(call, m) {
    call.from = m.from ?? "";
    call.to = m.to ?? "";
    call.startedAt = m.started_at ?? null;
    call.ended = false;
    call.touch();
  },
  "call.ended"(call, m) {
    call.ended = true;
    call.endReason = m.reason || "";
    if (m.reason === "transferred" && m.detail) call.outcome = `transferred to ${m.detail}`; // a warm transfer taken
    finishStreaming(call);
    for (const tool of call.pendingTools) {
      tool.status = "failed";
      call.syncToolEntry(tool);
    }
    if (m.reason === "model_unavailable") {
      call.note(`call ended: the realtime model was unavailable, so the caller heard no assistant${call.modelFailure ? ` (${call.modelFailure})` : ""}`, "error");
    } else {
      call.note(`call ended${m.reason ? `: ${m.reason}` : ""}`);
    }
  },
  "feed.gap"(call, m) {
    const count = m.missed ?? m.skipped ?? m.count;
    call.note(count ? `${count} events were missed here` : "some events were missed here", "gap");
  },
  "input_audio_buffer.speech_started"(call, m) {
    callerBubble(call, m.item_id);
  },
  "conversation.item.input_audio_transcription.delta"(call, m) {
    const bubble = callerBubble(call, m.item_id);
    bubble.text += m.delta || "";
  },
  "conversation.item.input_audio_transcription.completed"(call, m) {
    const bubble = callerBubble(call, m.item_id);
    bubble.text = m.transcript ?? bubble.text;
    bubble.status = "done";
  },
  "conversation.item.input_audio_transcription.failed"(call, m) {
    const bubble = callerBubble(call, m.item_id);
    bubble.status = "failed";
    bubble.error = m.error?.message || "transcription failed";
  },
  "conversation.item.added": (call, m) => retold(call, m) || itemAdded(call, m),
  "conversation.item.created": itemAdded,
  "conversation.item.done": (call, m) => retold(call, m) || itemAdded(call, m),
  "response.output_item.added": itemAdded,
  "response.output_item.done": itemAdded,
  "response.output_audio_transcript.delta"(call, m) {
    const bubble = assistantBubble(call, m.item_id);
    bubble.text += m.delta || "";
  },
  "response.output_audio_transcript.done"(call, m) {
    const bubble = assistantBubble(call, m.item_id);
    bubble.text = m.transcript ?? bubble.text;
    if (bubble.status === "streaming") bubble.status = "done";
  },
  "response.output_text.delta"(call, m) {
    assistantBubble(call, m.item_id).text += m.delta || "";
  },
  "response.output_text.done"(call, m) {
    const bubble = assistantBubble(call, m.item_id);
    bubble.text = m.text ?? bubble.text;
    if (bubble.status === "streaming") bubble.status = "done";
  },
  "response.function_call_arguments.delta"(call, m) {
    if (!m.tool_call_id) return;
    const tool = call.tool(m.tool_call_id);
    tool.arguments += m.delta || "";
    call.syncToolEntry(tool);
  },
  "response.function_call_arguments.done"(call, m) {
    if (!m.tool_call_id) return;
    const tool = call.tool(m.tool_call_id);
    tool.arguments = m.arguments ?? tool.arguments;
    tool.name = m.name || tool.name;
    call.syncToolEntry(tool);
  },
  "conversation.item.truncated"(call, m) {
    const bubble = call.byKey.get(m.item_id);
    if (bubble) {
      bubble.status = "interrupted";
      bubble.rev = nextRev();
      call.touch();
    }
  },
  "response.done"(call, m) {
    const response = m.response || {};
    if (response.status === "failed") {
      const error = response.status_details?.error?.message || "the response failed";
      call.note(error, "error");
    }
    if (response.status === "cancelled") {
      for (const item of response.output || []) {
        const bubble = call.byKey.get(item.id);
        if (bubble && bubble.status !== "interrupted") {
          bubble.status = "interrupted";
          bubble.rev = nextRev();
        }
      }
      call.touch();
    }
  },
  "callbridge.tool_call.requested"(call, m) {
    const tool = call.tool(m.tool_call_id, {});
    tool.name = m.name || tool.name;
    tool.arguments = m.arguments ?? tool.arguments;
    tool.handler = m.handler || "backend";
    if (tool.status !== "answering") tool.status = "pending";
    call.syncToolEntry(tool);
  },
  "callbridge.tool_call.completed": toolFinished("done"),
  "callbridge.tool_call.failed": toolFinished("failed"),
  "callbridge.model.reconnected"(call, m) {
    call.retelling = m.seeded_items ?? 0;
    call.note(`model reconnected (attempt ${m.attempt})`);
  },
  "callbridge.model.connection_failed"(call, m) {
    const next = m.retry_in_s == null ? "gave up" : `retrying in ${Number(m.retry_in_s).toFixed(1)} s`;
    call.modelFailure = m.error || "the realtime model could not be reached";
    call.note(`the realtime model could not be reached (attempt ${(m.attempt ?? 0) + 1}, ${next}): ${m.error || "no detail"}`, "error");
  },
  "callbridge.model.connected"(call) {
    call.modelFailure = "";
    call.touch();
  },
  "callbridge.model.disconnected"(call, m) {
    call.note(`model disconnected${m.error ? `: ${m.error}` : ""}`, "error");
  },
  "callbridge.barge_in"(call, m) {
    if (m.action === "truncated") call.note(`caller interrupted: heard ${m.played_ms} ms of the reply`);
  },
  "callbridge.task_crashed"(call, m) {
    call.note(`task ${m.task} crashed (${m.action}): ${m.error}`, "error");
  },
  ...CALL_CONTROL_HANDLERS,
  error(call, m) {
    const error = m.error || {};
    if (error.type === "feed_error") return; // a refused console command: the form that sent it says so
    call.note(`model error${error.code ? ` ${error.code}` : ""}: ${error.message || "unknown"}`, "error");
  },
};
