// One past call: what was said, the recording, a timeline of what happened, per-turn latency and
// tokens as charts, and a replay control that plays the call through the live view.

import { getJSON, recordingUrl } from "./api.js";
import { outcomeText } from "./call_control_notes.js";
import { barChart, legend, responsive, timelineSvg } from "./charts.js";
import { clear, formatOffset, formatSeconds, formatWhen, h, notice } from "./dom.js";
import { REPLAY_SPEEDS } from "./live_view.js";
import { saveAsTestButton } from "./tests_view.js";
import { buildTimeline } from "./timeline.js";

const TOKEN_SERIES = [
  ["input_text", "input text"],
  ["input_cached_text", "cached text"],
  ["input_audio", "input audio"],
  ["input_cached_audio", "cached audio"],
  ["output_text", "output text"],
  ["output_audio", "output audio"],
];

function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.filter(([, v]) => v !== null && v !== undefined && v !== "").flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function transcriptItems(items) {
  if (!items.length) return h("p", { class: "muted" }, "Nothing was said.");
  const outputs = new Map(items.filter((i) => i.type === "function_call_output").map((i) => [i.tool_call_id, i.output]));
  return h(
    "ol",
    { class: "transcript static" },
    items
      .filter((item) => item.type !== "function_call_output" || !items.some((i) => i.type === "function_call" && i.tool_call_id === item.tool_call_id))
      .map((item) => {
        if (item.type === "message") {
          const role = item.role === "user" ? "caller" : item.role === "assistant" ? "assistant" : "note";
          const who = role === "caller" ? "Caller" : role === "assistant" ? "Assistant" : item.role;
          const interrupted = item.truncated_at_ms !== null && item.truncated_at_ms !== undefined;
          return h(
            "li",
            { class: `bubble ${role} ${interrupted ? "status-interrupted" : ""}` },
            h("span", { class: "who" }, who, interrupted ? h("span", { class: "state" }, ` interrupted at ${item.truncated_at_ms} ms`) : null),
            h("p", { class: "body" }, item.text || "(no transcript)"),
          );
        }
        const output = item.type === "function_call" ? outputs.get(item.tool_call_id) : item.output;
        return h(
          "li",
          { class: "bubble tool" },
          h("span", { class: "who" }, "Function call"),
          h(
            "p",
            { class: "body" },
            h("code", { class: "call" }, item.type === "function_call" ? `${item.name}(${item.arguments || ""})` : "output"),
            output !== undefined && output !== null ? [h("span", { class: "arrow" }, " → "), h("code", { class: "output" }, output)] : null,
          ),
        );
      }),
  );
}

/** Which agent profile (and version) answered, and why: a link to exactly that version. */
function agentFact(events) {
  const started = events.find((e) => e.type === "CallStarted")?.data || {};
  const routed = events.filter((e) => e.type === "AgentRouted").at(-1)?.data;
  const name = started.agent_name || routed?.agent;
  if (!name) return null; // recorded before agent profiles existed
  const version = started.agent_version || routed?.version || 0;
  const link = h("a", { href: `#/agents/${encodeURIComponent(name)}?version=${version}`, id: "call-agent" }, `${name} v${version}`);
  return [link, routed ? ` — ${routed.reason}` : null];
}

/** What went wrong with the model on this call, from its events: shown above everything else. */
function modelProblems(conversation, events) {
  const failures = events.filter((e) => e.type === "ModelConnectionFailed").map((e) => e.data || {});
  const errors = events.filter((e) => e.type === "ModelErrorReported").map((e) => e.data || {});
  const unavailable = conversation.end_reason === "model_unavailable";
  if (!failures.length && !errors.length && !unavailable) return null;
  const lines = [
    ...failures.map((f) => `Could not reach the realtime model (attempt ${(f.attempt ?? 0) + 1}${f.retry_in_s == null ? ", gave up" : ""}): ${f.error}`),
    ...errors.map((e) => `The model reported an error${e.code ? ` (${e.code})` : ""}: ${e.message}`),
  ];
  return h(
    "section",
    { class: "panel problems", role: "alert", "aria-labelledby": "problems-heading" },
    h("h2", { id: "problems-heading" }, unavailable ? "The realtime model was unavailable" : "Model problems"),
    unavailable ? h("p", {}, "The call ended because the realtime model could not be reached: the caller heard no assistant. Check OPENAI_API_KEY and OPENAI_REALTIME_URL on the Setup page.") : null,
    h("ul", {}, lines.map((line) => h("li", {}, line))),
  );
}

function metricsSection(metrics, cleanups) {
  const section = h("section", { class: "panel metrics" }, h("h2", {}, "Latency, tokens and cost"));
  const latency = metrics.response_latency_ms || {};
  const tokens = metrics.tokens || {};
  const totalTokens = Object.values(tokens).reduce((a, b) => a + b, 0);
  section.append(
    h(
      "div",
      { class: "figures" },
      [
        ["Turns", String(metrics.turns.length)],
        ["Latency p50", latency.p50 != null ? `${latency.p50} ms` : "—"],
        ["Latency p95", latency.p95 != null ? `${latency.p95} ms` : "—"],
        ["Barge-ins", String(metrics.barge_ins ?? 0), "Times the caller interrupted a reply that was playing (the reply was cut)."],
        ["Tool calls", String(metrics.tool_calls ?? 0)],
        ["Reconnects", String(metrics.reconnects ?? 0)],
        ["Tokens", String(totalTokens)],
        ["Cost", `$${Number(metrics.cost_usd || 0).toFixed(4)}`],
      ].map(([label, value, title]) => h("div", { class: "figure", title, dataset: { figure: label } }, h("span", { class: "value" }, value), h("span", { class: "label" }, label))),
    ),
  );
  const turns = metrics.turns;
  if (!turns.length) {
    section.append(h("p", { class: "muted" }, "No assistant turns to chart."));
    return section;
  }
  const categories = turns.map((t) => `#${t.turn}`);
  const latencySeries = [
    { name: "end of caller speech → first audio", cls: "latency", values: turns.map((t) => t.response_latency_ms) },
    { name: "response created → first audio", cls: "first-audio", values: turns.map((t) => t.first_audio_ms) },
  ];
  const tokenSeries = TOKEN_SERIES.map(([kind, name]) => ({ name, cls: `tok-${kind}`, values: turns.map((t) => t.tokens?.[kind] || 0) })).filter((series) =>
    series.values.some((v) => v > 0),
  );
  const latencyHost = h("div", { class: "chart-host" });
  const tokensHost = h("div", { class: "chart-host" });
  section.append(
    h("h3", {}, "Latency per turn"),
    latencyHost,
    legend(latencySeries),
    h("h3", {}, "Tokens per turn"),
    tokensHost,
    legend(tokenSeries),
    h(
      "details",
      {},
      h("summary", {}, "Per-turn numbers"),
      h(
        "table",
        { class: "turns-table" },
        h("thead", {}, h("tr", {}, ["Turn", "Status", "Latency (ms)", "First audio (ms)", "Heard / generated (ms)", "Tokens"].map((t) => h("th", { scope: "col" }, t)))),
        h(
          "tbody",
          {},
          turns.map((t) =>
            h(
              "tr",
              {},
              h("td", {}, String(t.turn)),
              h("td", {}, t.truncated ? `${t.status} (truncated)` : t.status || ""),
              h("td", { class: "num" }, t.response_latency_ms ?? "—"),
              h("td", { class: "num" }, t.first_audio_ms ?? "—"),
              h("td", { class: "num" }, `${t.played_ms ?? "—"} / ${t.generated_ms ?? "—"}`),
              h("td", { class: "num" }, String(Object.values(t.tokens || {}).reduce((a, b) => a + b, 0))),
            ),
          ),
        ),
      ),
    ),
  );
  requestAnimationFrame(() => {
    cleanups.push(
      responsive(latencyHost, (w) => barChart({ categories, series: latencySeries, unit: "ms", label: "Response latency per turn in milliseconds" }, w)),
      responsive(tokensHost, (w) => barChart({ categories, series: tokenSeries, unit: "tokens", stacked: true, label: "Tokens per turn by kind" }, w)),
    );
  });
  return section;
}

function timelineSection(events, audio, cleanups) {
  const timeline = buildTimeline(events);
  const host = h("div", { class: "chart-host timeline-host" });
  const section = h(
    "section",
    { class: "panel timeline-panel" },
    h("h2", {}, "Timeline"),
    h("p", { class: "hint" }, "Hover a bar for details; click to play the recording from there."),
    host,
    legend([
      { name: "caller speech", cls: "caller" },
      { name: "assistant speech", cls: "assistant" },
      { name: "tool call", cls: "tool" },
      { name: "interrupted", cls: "truncation" },
      { name: "reconnect", cls: "reconnect" },
      { name: "error", cls: "error" },
    ]),
    h(
      "details",
      {},
      h("summary", {}, `Timeline as a list (${timeline.entries.length} entries)`),
      h(
        "ol",
        { class: "timeline-list" },
        timeline.entries.map((e) => h("li", { class: `entry ${e.kind}` }, h("code", {}, formatOffset(e.t)), " ", h("span", { class: "kind" }, e.kind), " ", e.text)),
      ),
    ),
  );
  const seek = (ms) => {
    audio.currentTime = ms / 1000;
    audio.play().catch(() => {});
  };
  requestAnimationFrame(() => cleanups.push(responsive(host, (w) => timelineSvg(timeline, w, { onSeek: seek }))));
  audio.addEventListener("timeupdate", () => host.querySelector("svg")?.setPlayhead?.(audio.currentTime * 1000));
  return section;
}

export function mountCall(main, callId) {
  const status = h("p", { class: "notice", role: "status" }, "Loading…");
  const root = h("section", { class: "call-page" }, h("p", {}, h("a", { href: "#/history" }, "← History")), h("h1", {}, `Call ${callId}`), status);
  main.append(root);
  const cleanups = [];
  let alive = true;
  const id = encodeURIComponent(callId);

  Promise.all([
    getJSON(`/api/conversations/${id}`),
    getJSON(`/api/calls/${id}/events`).catch(() => []),
    getJSON(`/api/calls/${id}/metrics`).catch(() => null),
  ])
    .then(([conversation, events, metrics]) => {
      if (!alive) return;
      clear(status);
      status.className = "notice";
      root.querySelector("h1").textContent = `Call from ${conversation.caller_number || "unknown"} to ${conversation.phone_number || "?"}`;
      const speed = h("select", { id: "replay-speed", "aria-label": "Replay speed" }, REPLAY_SPEEDS.map((v) => h("option", { value: String(v) }, `${v}×`)));
      speed.value = "4";
      const replay = h("button", { type: "button", class: "primary", id: "replay" }, "Replay in the live view");
      replay.addEventListener("click", () => (window.location.hash = `#/replay/${id}?speed=${speed.value}`));
      const erased = conversation.erased_at; // callbridge erase: its audio, words and numbers are gone
      const audio = h("audio", { controls: true, preload: "metadata", src: erased ? null : recordingUrl(callId), id: "recording" }, "Your browser cannot play WAV audio.");
      audio.addEventListener("error", () => notice(status, "The recording could not be loaded.", "error"));
      if (erased) notice(status, `This call was erased (${formatWhen(erased)}): its audio, transcripts, tool payloads and numbers are gone.`, "warn");
      root.append(
        facts([
          ["Call id", conversation.call_id],
          ["Started", formatWhen(conversation.started_at)],
          ["Ended", formatWhen(conversation.ended_at)],
          ["Length", formatSeconds(conversation.duration_seconds)],
          ["Status", `${conversation.status}${conversation.end_reason ? ` (${conversation.end_reason})` : ""}`],
          ["Direction", conversation.direction || "inbound"],
          ["Outcome", outcomeText(conversation.outcome, conversation.transfer_target) || "—"],
          ["Model", conversation.model],
          ["Agent", agentFact(events)],
        ]),
        h(
          "div",
          { class: "toolbar" },
          h("label", { for: "replay-speed" }, "Replay speed"),
          speed,
          replay,
          h("a", { href: `/api/calls/${id}/events`, download: `${callId}-events.json` }, "events (JSON)"),
          h("a", { href: recordingUrl(callId), download: `${callId}.wav` }, "recording (WAV)"),
          erased ? null : saveAsTestButton(callId),
        ),
        modelProblems(conversation, events),
        h("section", { class: "panel transcript-panel" }, h("h2", {}, "Transcript"), transcriptItems(conversation.items || [])),
        erased
          ? h("section", { class: "panel recording" }, h("h2", {}, "Recording"), h("p", { class: "muted erased" }, "Erased."))
          : h("section", { class: "panel recording" }, h("h2", {}, "Recording"), h("p", { class: "hint" }, "Caller on the left channel, assistant on the right."), audio),
        timelineSection(events, audio, cleanups),
        metrics ? metricsSection(metrics, cleanups) : h("p", { class: "muted" }, "No metrics for this call."),
      );
    })
    .catch((error) => notice(status, error.status === 404 ? `There is no call ${callId}.` : `Could not load the call: ${error.message}`, "error"));

  return {
    unmount: () => {
      alive = false;
      for (const cleanup of cleanups) cleanup();
    },
  };
}
