// The live view: a call selector, the streaming transcript and the function-calls panel.
// The same view plays a recorded call back (`#/replay/CALL?speed=N`) from its own replay feed,
// read-only: a replay cannot answer anything.

import { getJSON, postJSON } from "./api.js";
import { outcomeText } from "./call_control_notes.js";
import { CallControls, callForm } from "./call_controls.js";
import { append, clear, formatWhen, h, notice } from "./dom.js";
import { Feed, statusText } from "./feed.js";
import { LiveState } from "./live_state.js";
import { ToolsPanel } from "./tools_panel.js";
import { TranscriptView } from "./transcript_view.js";

export const REPLAY_SPEEDS = [0.5, 1, 2, 4, 8, 16];
const ENDED_IN_SELECTOR = 20;

function layout(toolbar, extra = null) {
  const recent = h("section", { class: "panel recent-calls", "aria-labelledby": "recent-heading", hidden: true });
  const transcript = h("ol", { class: "transcript", role: "log", "aria-label": "Transcript" });
  const tools = h("section", { class: "panel tools-panel", "aria-labelledby": "tools-heading" });
  const meta = h("p", { class: "call-meta" });
  const root = h(
    "section",
    { class: "live" },
    h("div", { class: "toolbar" }, toolbar),
    meta,
    extra,
    recent,
    h(
      "div",
      { class: "live-grid" },
      h("section", { class: "panel transcript-panel" }, h("h2", {}, "Transcript"), h("div", { class: "scroll" }, transcript)),
      tools,
    ),
  );
  return { root, transcript, tools, meta, recent };
}

/** Redraw on the next frame at most once, however many messages arrive meanwhile. */
function batcher(draw) {
  let pending = false;
  return () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      draw();
    });
  };
}

function describeCall(call) {
  const who = `${call.from || "unknown caller"} → ${call.to || "?"}`;
  const when = call.startedAt ? new Date(call.startedAt).toLocaleTimeString() : "";
  return `${who}${when ? ` · ${when}` : ""} · ${call.ended ? "ended" : "live"}`;
}

function writeMeta(meta, call, { replay = false } = {}) {
  clear(meta);
  if (!call) return;
  append(meta, [
    h("span", { class: `pill ${call.ended ? "ended" : "live"}` }, call.ended ? "ended" : replay ? "replaying" : "live"),
    " ",
    h("span", {}, `${call.from || "unknown caller"} → ${call.to || "?"}`),
    call.startedAt ? h("span", { class: "muted" }, ` · started ${formatWhen(call.startedAt)}`) : null,
    call.endReason ? h("span", { class: "muted" }, ` · ${call.endReason}`) : null,
    call.outcome ? h("span", { class: "outcome" }, ` · ${call.outcome}`) : null,
    call.modelFailure ? h("span", { class: "model-failure error", role: "alert" }, ` · realtime model unavailable: ${call.modelFailure}`) : null,
    " ",
    h("a", { href: `#/calls/${encodeURIComponent(call.callId)}` }, "call page"),
    replay || call.ended ? null : [" · ", h("a", { href: `#/session?call_id=${encodeURIComponent(call.callId)}` }, "change this call's session")],
  ]);
}

/**
 * The live calls view over the console's feed.
 * @param {HTMLElement} main
 * @param {{state: LiveState, feed: Feed, selection: {callId: string|null, wanted: string|null}}} ctx
 */
export function mountLive(main, ctx) {
  const { state, feed, selection } = ctx;
  const select = h("select", { id: "call-select", "aria-label": "Call" });
  const message = h("span", { class: "notice", role: "status" });
  const testButton = h("button", { type: "button", id: "test-call", class: "primary" }, "Place a test call");
  const testEnding = h(
    "select",
    { id: "test-call-ending", "aria-label": "The test call ends with" },
    h("option", { value: "transfer" }, "ending in a transfer to sales"),
    h("option", { value: "goodbye" }, "ending in the agent's goodbye"),
  );
  const controls = new CallControls();
  const placeForm = callForm((callId) => {
    selection.wanted = callId;
    selection.pinned = false;
    redraw();
  });
  const view = layout([h("label", { for: "call-select" }, "Call"), select, testButton, testEnding, message], controls.root);
  main.append(h("h1", { class: "visually-hidden" }, "Live calls"), view.root, h("section", { class: "panel" }, placeForm));

  const transcript = new TranscriptView(view.transcript);
  const tools = new ToolsPanel(view.tools, { send: (m) => feed.send(m) });
  const seeded = new Set();
  let shown = undefined;

  function ordered() {
    const calls = [...state.calls.values()].filter((c) => c.startedAt || !c.ended);
    const newest = (a, b) => String(b.startedAt || "").localeCompare(String(a.startedAt || ""));
    const live = calls.filter((c) => !c.ended).sort(newest);
    const ended = calls.filter((c) => c.ended).sort(newest).slice(0, ENDED_IN_SELECTOR);
    return [...live, ...ended];
  }

  function chooseSelection() {
    const calls = ordered();
    if (selection.wanted && state.calls.has(selection.wanted)) {
      selection.callId = selection.wanted;
      selection.wanted = null;
    }
    const current = selection.callId ? state.calls.get(selection.callId) : null;
    const newestLive = calls.find((c) => !c.ended);
    if ((!current || current.ended) && newestLive && !selection.pinned) selection.callId = newestLive.callId;
    if (!selection.callId && calls.length) selection.callId = calls[0].callId;
  }

  let recentCalls = null; // from the history, for a console opened with no call in sight
  function drawRecent() {
    const none = !ordered().length;
    view.recent.hidden = !none || !recentCalls;
    if (view.recent.hidden) return;
    clear(view.recent).append(
      h("h2", { id: "recent-heading" }, "No live calls now · recent calls"),
      recentCalls.length
        ? h(
            "ul",
            { class: "recent-list" },
            recentCalls.map((c) =>
              h(
                "li",
                {},
                h("a", { href: `#/calls/${encodeURIComponent(c.call_id)}` }, formatWhen(c.started_at)),
                ` ${c.caller_number || "unknown caller"} → ${c.phone_number || "?"} `,
                h("span", { class: `pill ${c.status}` }, c.status || "—"),
                c.outcome && c.outcome !== c.status ? h("span", { class: "muted" }, ` ${outcomeText(c.outcome, c.transfer_target)}`) : null,
              ),
            ),
          )
        : h("p", { class: "muted" }, "No calls have been recorded yet. Place a test call to see one live."),
    );
  }
  getJSON("/api/conversations", { limit: 10 })
    .then((calls) => {
      recentCalls = calls;
      redraw();
    })
    .catch(() => {});

  function drawSelector() {
    const calls = ordered();
    const options = calls.map((call) => h("option", { value: call.callId }, describeCall(call)));
    if (!options.length) options.push(h("option", { value: "" }, "No live calls"));
    clear(select).append(...options);
    select.value = selection.callId || "";
    select.disabled = !calls.length;
  }

  function seedIfNeeded(call) {
    if (!call || seeded.has(call.callId) || call.entries.length) return;
    seeded.add(call.callId);
    getJSON(`/api/conversations/${encodeURIComponent(call.callId)}`)
      .then((conversation) => state.seed(call.callId, conversation.items))
      .catch(() => {}); // a call this young may not be in the views yet: the feed fills it in
  }

  function draw() {
    chooseSelection();
    drawSelector();
    const call = selection.callId ? state.calls.get(selection.callId) : null;
    if (call !== shown) {
      shown = call;
      transcript.show(call, "No call selected. Place a test call to see one.");
      tools.show(call);
      seedIfNeeded(call);
    } else if (call) {
      transcript.update(call);
      tools.update(call);
    }
    writeMeta(view.meta, call);
    controls.show(call);
    drawRecent();
  }
  const redraw = batcher(draw);

  select.addEventListener("change", () => {
    selection.callId = select.value || null;
    selection.pinned = true;
    redraw();
  });
  testButton.addEventListener("click", async () => {
    testButton.disabled = true;
    notice(message, "Placing a test call…");
    try {
      const placed = await postJSON("/api/test-call", { ending: testEnding.value });
      selection.wanted = placed.call_sid;
      selection.pinned = false;
      notice(message, `Test call ${placed.call_sid} placed: it shows up here as soon as it connects.`, "ok");
      redraw();
    } catch (error) {
      notice(message, `Could not place a test call: ${error.message}`, "error");
    } finally {
      testButton.disabled = false;
    }
  });

  const unsubscribe = state.subscribe((callId, m) => {
    if (m.type === "error" && m.error?.type === "feed_error" && callId === selection.callId) tools.refused(m.error.message);
    if (callId === null || callId === selection.callId || m.type === "call.started" || m.type === "call.ended") redraw();
  });
  draw();
  return { unmount: unsubscribe };
}

/** A recorded call played through the live view at `speed`. */
export function mountReplay(main, { callId, speed }) {
  const status = h("span", { class: "notice", role: "status" }, "connecting…");
  const speedSelect = h(
    "select",
    { id: "replay-speed", "aria-label": "Replay speed" },
    REPLAY_SPEEDS.map((value) => h("option", { value: String(value) }, `${value}×`)),
  );
  speedSelect.value = String(REPLAY_SPEEDS.includes(speed) ? speed : 1);
  const restart = h("button", { type: "button", class: "primary" }, "Restart");
  const view = layout([
    h("strong", {}, "Replay"),
    h("label", { for: "replay-speed" }, "Speed"),
    speedSelect,
    restart,
    status,
  ]);
  main.append(h("h1", { class: "visually-hidden" }, `Replay of ${callId}`), view.root);

  let feed = null;
  let state = null;
  const transcript = new TranscriptView(view.transcript);
  const tools = new ToolsPanel(view.tools, { send: () => false, readOnly: true });

  function start() {
    feed?.stop();
    state = new LiveState();
    const call = state.call(callId);
    transcript.show(call, "Waiting for the first event…");
    tools.show(call);
    const redraw = batcher(() => {
      transcript.update(call);
      tools.update(call);
      writeMeta(view.meta, call, { replay: true });
    });
    state.subscribe((id, m) => {
      if (m.type === "error" && m.error?.message) notice(status, m.error.message, "error");
      if (id === callId) redraw();
    });
    feed = new Feed({
      params: { replay: callId, speed: speedSelect.value },
      finishOnNormalClose: true,
      onMessage: (m) => state.apply(m),
      onStatus: (s) => {
        if (s.state === "refused") return; // the error message before the close says why
        notice(status, s.state === "open" ? `replaying at ${speedSelect.value}×…` : statusText(s), s.state === "reconnecting" ? "warn" : "info");
      },
    }).start();
  }

  restart.addEventListener("click", start);
  speedSelect.addEventListener("change", () => {
    window.history.replaceState(null, "", `#/replay/${encodeURIComponent(callId)}?speed=${speedSelect.value}`);
    start();
  });
  start();
  return { unmount: () => feed?.stop() };
}
