// A call's timeline on one time axis, folded from its raw events (GET /api/calls/{id}/events):
// who spoke when, tool calls from request to answer, and the moments that explain a bad call —
// truncations, reconnects, errors. Pure data; charts.js draws it. Times are ms since CallStarted,
// the same origin as the recording, so the audio player's position maps straight onto it.

const BYTES_PER_MS = 8; // μ-law at 8 kHz

/** ISO 8601 with up to microseconds ("…:00.123456Z") → ms since the epoch, keeping the fraction. */
export function parseAt(iso) {
  const match = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/.exec(String(iso));
  if (!match) return Date.parse(iso);
  return Date.parse(match[1] + match[3]) + Number(`0.${match[2] || "0"}`) * 1000;
}

/** Decoded size of a base64 string. */
export function base64Bytes(text) {
  if (typeof text !== "string" || !text) return 0;
  const padding = text.endsWith("==") ? 2 : text.endsWith("=") ? 1 : 0;
  return Math.floor((text.length * 3) / 4) - padding;
}

function raw(event) {
  try {
    const value = JSON.parse(event.data.raw);
    return value && typeof value === "object" ? value : {};
  } catch {
    return {};
  }
}

const NEVER_CONNECTED = new Set(["busy", "no-answer", "failed", "canceled"]);
const BY = { model: "the agent", operator: "an operator", silence: "silence", max_duration: "the duration limit", voicemail: "voicemail" };
const VIA = { rest: "Twilio's REST API", stream: "the stream's <Connect action>" };
const failedText = (d) => (d.ok === false ? ` FAILED: ${clip(d.error)}` : "");

/** Call-control events: one mark each, in the words of the server's own timeline. */
const CALL_CONTROL = {
  OutboundCallPlaced: (d) => `outbound call placed to ${d.to_number} from ${d.from_number}${d.greeting ? `, greeting “${clip(d.greeting, 60)}”` : ""}${d.agent ? `, for agent ${d.agent}` : ""}`,
  GreetingAudioStarted: (d) => `greeting starts playing (${d.latency_ms} ms after the call began)`,
  CallEndRequested: (d) => `hang-up requested by ${BY[d.by] || d.by}${d.reason ? ` (${clip(d.reason)})` : ""}`,
  GoodbyeHeard: (d) => `${d.capped ? "the wait for the goodbye hit its cap" : "the goodbye was heard"} after ${d.waited_ms} ms`,
  PhoneHangUpSent: (d) => `phone hung up through ${VIA[d.method] || d.method}${failedText(d)}`,
  TransferRequested: (d) => `transfer to ${d.label} (${d.to}, ${d.mode}) requested by ${BY[d.by] || d.by}${d.reason ? `: ${clip(d.reason)}` : ""}`,
  TransferRefused: (d) => `transfer to “${d.label}” refused: ${clip(d.reason)}`,
  CallHeld: (d) => `caller on hold: transferring to ${d.label} (${d.to}), who hears a summary first`,
  TransferBriefed: (d) => `${d.label} (${d.to}) heard the summary: putting them through to the caller`,
  TransferNotAnswered: (d) => `nobody took the transfer to ${d.label} (${d.to}): ${d.status}${d.reason ? ` — ${d.reason}` : ""}`,
  CallResumed: (d) => `caller back with the agent on a new stream (${d.stream_sid})`,
  TransferDialed: (d) => `caller transferred to ${d.label} (${d.to}) through ${VIA[d.method] || d.method}${failedText(d)}`,
  DtmfForwarded: (d) => `keys ${d.digits} given to the model (${d.mode})`,
  DtmfSent: (d) => `agent pressed ${d.digits} (${d.audio_ms} ms of tones)`,
  SilenceReprompted: (d) => `caller silent for ${d.silent_ms} ms: asked if they are still there`,
  DurationWarningGiven: (d) => `duration limit near: ${d.remaining_s} s left, told to wrap up`,
  MachineDetected: (d) => `answered by ${d.answered_by}${d.detection_ms != null ? ` (detected in ${d.detection_ms} ms)` : ""}`,
  ModelSessionRecycled: (d) => `session ${d.to_session} took over from ${d.from_session} (${d.seeded_items} items re-seeded)`,
};

function clip(text, limit = 90) {
  const value = String(text ?? "").trim();
  return value.length <= limit ? value : `${value.slice(0, limit - 1)}…`;
}

export function buildTimeline(events) {
  if (!events.length) return { durationMs: 0, spans: [], marks: [], entries: [] };
  const started = events.find((e) => e.type === "CallStarted") || events[0];
  const t0 = parseAt(started.at);
  const rel = (event) => parseAt(event.at) - t0;
  const spans = [];
  const marks = [];
  const callerSpeech = new Map(); // item_id → span
  const callerText = new Map();
  const assistant = new Map(); // item_id → {start, bytes, cutMs, clearedAt}
  const assistantText = new Map();
  const assistantDeltas = new Map();
  const tools = new Map();
  let endMs = rel(events[events.length - 1]);
  let ended = false;
  let neverConnected = null; // an outbound call nobody answered: {t, status}
  let heldBy = null; // the label a warm transfer holds the caller for, until the caller is back

  for (const event of events) {
    const t = rel(event);
    const d = event.data || {};
    switch (event.type) {
      case "ModelEventReceived": {
        const r = raw(event);
        if (d.type === "input_audio_buffer.speech_started") {
          // nobody starts speaking twice without stopping: a span left open ends here
          for (const open of callerSpeech.values()) if (open.end === null) open.end = t;
          callerSpeech.set(r.item_id, { lane: "caller", start: t, end: null, itemId: r.item_id });
        } else if (d.type === "input_audio_buffer.speech_stopped") {
          const span = callerSpeech.get(r.item_id);
          if (span) span.end = t;
        } else if (d.type === "conversation.item.input_audio_transcription.completed") {
          callerText.set(r.item_id, r.transcript || "");
        } else if (d.type === "conversation.item.input_audio_transcription.failed") {
          marks.push({ t, kind: "error", label: `caller transcription failed: ${clip(r.error?.message)}` });
        } else if (d.type === "response.output_audio_transcript.done") {
          assistantText.set(r.item_id, r.transcript || "");
        } else if (d.type === "response.output_audio_transcript.delta") {
          assistantDeltas.set(r.item_id, (assistantDeltas.get(r.item_id) || "") + (r.delta || ""));
        } else if (d.type === "response.done" && r.response?.status === "failed") {
          const message = r.response.status_details?.error?.message || "response failed";
          marks.push({ t, kind: "error", label: `response failed: ${clip(message)}` });
        }
        break;
      }
      case "AssistantAudioSent": {
        let reply = assistant.get(d.item_id);
        if (!reply) {
          reply = { start: t, bytes: 0, cutMs: null, clearedAt: null };
          assistant.set(d.item_id, reply);
        }
        reply.bytes += base64Bytes(d.payload);
        break;
      }
      case "BargeInDecided":
        if (d.action === "truncated") {
          const reply = assistant.get(d.item_id);
          if (reply) reply.cutMs = d.audio_end_ms ?? d.played_ms;
          marks.push({ t, kind: "truncation", label: `caller interrupted: heard ${d.played_ms} ms of ${d.received_ms} ms` });
        }
        break;
      case "PlaybackCleared": {
        const reply = assistant.get(d.item_id);
        if (reply) reply.clearedAt = t;
        break;
      }
      case "ToolCallRequested":
        tools.set(d.tool_call_id, {
          lane: "tool",
          start: t,
          end: null,
          label: `${d.name}(${clip(d.arguments, 60)})`,
          status: "pending",
          handler: d.handler,
        });
        break;
      case "ToolCallCompleted":
      case "ToolCallFailed": {
        const tool = tools.get(d.tool_call_id);
        if (tool) {
          tool.end = t;
          tool.status = event.type === "ToolCallCompleted" ? "done" : "failed";
          tool.detail = event.type === "ToolCallCompleted" ? `→ ${clip(d.output)}` : `${d.timed_out ? "timed out" : "failed"}: ${clip(d.error)}`;
        }
        break;
      }
      case "ModelConnected":
        if (d.attempt > 0) marks.push({ t, kind: "reconnect", label: `model reconnected (attempt ${d.attempt}, ${d.seeded_items} items re-seeded)` });
        break;
      case "ModelDisconnected":
        marks.push({ t, kind: "error", label: `model disconnected (code ${d.code ?? "?"})${d.error ? `: ${clip(d.error)}` : ""}` });
        break;
      case "ModelConnectionFailed":
        marks.push({ t, kind: "error", label: `model connection attempt ${d.attempt} failed: ${clip(d.error)}` });
        break;
      case "ModelErrorReported":
        marks.push({ t, kind: "error", label: `model error ${d.code || ""}: ${clip(d.message)}` });
        break;
      case "TaskCrashed":
        marks.push({ t, kind: "error", label: `task ${d.task} crashed (${d.action}): ${clip(d.error)}` });
        break;
      case "TwilioFrameRejected":
        marks.push({ t, kind: "error", label: `Twilio frame rejected: ${clip(d.error)}` });
        break;
      case "DtmfReceived":
        marks.push({ t, kind: "dtmf", label: `caller pressed ${d.digit}` });
        break;
      case "CallEnded":
        ended = true;
        endMs = t;
        marks.push({ t, kind: "end", label: `call ended: ${d.reason}` });
        break;
      case "CallStatusReported":
        if (NEVER_CONNECTED.has(d.status)) neverConnected = { t, status: d.status };
        break;
      default: {
        const control = CALL_CONTROL[event.type];
        if (event.type === "CallHeld") heldBy = d.label;
        if (event.type === "CallResumed") heldBy = null;
        if (control) {
          const failed = event.type === "TransferRefused" || d.ok === false;
          marks.push({ t, kind: failed ? "error" : "control", label: control(d) });
        }
        break;
      }
    }
  }

  for (const span of callerSpeech.values()) {
    span.end = span.end ?? endMs;
    const text = callerText.get(span.itemId);
    span.label = text ? `“${clip(text)}”` : "caller speaks";
    spans.push(span);
  }
  let playedUntil = -Infinity; // the caller hears replies one after another
  for (const [itemId, reply] of [...assistant.entries()].sort((a, b) => a[1].start - b[1].start)) {
    const start = Math.max(reply.start, playedUntil);
    let end = start + reply.bytes / BYTES_PER_MS;
    if (reply.cutMs !== null) end = Math.min(end, start + reply.cutMs);
    if (reply.clearedAt !== null) end = Math.min(end, Math.max(start, reply.clearedAt));
    playedUntil = end;
    const text = assistantText.get(itemId) ?? assistantDeltas.get(itemId);
    spans.push({
      lane: "assistant",
      start,
      end,
      label: text ? `“${clip(text)}”` : "assistant speaks",
      status: reply.cutMs !== null || reply.clearedAt !== null ? "interrupted" : "done",
    });
  }
  for (const tool of tools.values()) {
    tool.end = tool.end ?? endMs;
    spans.push(tool);
  }
  if (neverConnected && !events.some((e) => e.type === "CallStarted")) {
    marks.push({ t: neverConnected.t, kind: "end", label: `the call never connected: ${neverConnected.status}` });
  } else if (!ended && heldBy) marks.push({ t: endMs, kind: "control", label: `on hold — transferring to ${heldBy}` });
  else if (!ended) marks.push({ t: endMs, kind: "error", label: "no CallEnded: the call was cut off" });
  const durationMs = Math.max(endMs, ...spans.map((s) => s.end), 1);
  const entries = [
    ...spans.map((s) => ({ t: s.start, kind: s.lane, text: [s.label, s.detail, s.status === "interrupted" ? "(interrupted)" : ""].filter(Boolean).join(" ") })),
    ...marks.map((m) => ({ t: m.t, kind: m.kind, text: m.label })),
  ].sort((a, b) => a.t - b.t);
  return { durationMs, spans, marks, entries };
}
