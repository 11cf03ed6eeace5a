// Session configuration: instructions, voice, turn detection, input transcription, tools.
// Saved as the default for new calls, or applied to one live call. Keys the form does not edit
// (model, tool_choice, …) are kept as loaded, so saving never drops them.

import { ApiError, getJSON, postJSON } from "./api.js";
import { clear, h, notice } from "./dom.js";
import { ToolsEditor } from "./tools_editor.js";

const TRANSCRIPTION_MODELS = ["gpt-4o-mini-transcribe", "gpt-4o-transcribe", "whisper-1"];
const EAGERNESS = ["auto", "low", "medium", "high"];

function field(id, label, control, hint) {
  return h(
    "div",
    { class: "field" },
    h("label", { for: id }, label),
    control,
    hint ? h("p", { class: "hint", id: `${id}-hint` }, hint) : null,
  );
}

function numberInput(id, value, attrs) {
  return h("input", { id, type: "number", inputmode: "decimal", value: value ?? "", ...attrs });
}

function checkbox(id, label, checked) {
  return h("div", { class: "field checkbox" }, h("input", { id, type: "checkbox", checked: Boolean(checked) }), h("label", { for: id }, label));
}

function turnDetectionFields(current) {
  const td = current || {};
  const server = h(
    "fieldset",
    { class: "vad server_vad" },
    h("legend", {}, "Server VAD"),
    field("vad-threshold", "Threshold (0–1)", numberInput("vad-threshold", td.threshold, { min: 0, max: 1, step: 0.05 })),
    field("vad-prefix", "Prefix padding (ms)", numberInput("vad-prefix", td.prefix_padding_ms, { min: 0, step: 50 })),
    field("vad-silence", "Silence duration (ms)", numberInput("vad-silence", td.silence_duration_ms, { min: 0, step: 50 })),
    field("vad-idle", "Idle timeout (ms, empty for none)", numberInput("vad-idle", td.idle_timeout_ms, { min: 0, step: 500 })),
  );
  const eagerness = h("select", { id: "vad-eagerness" }, EAGERNESS.map((e) => h("option", { value: e }, e)));
  eagerness.value = td.eagerness || "auto";
  const semantic = h("fieldset", { class: "vad semantic_vad" }, h("legend", {}, "Semantic VAD"), field("vad-eagerness", "Eagerness", eagerness));
  const common = h(
    "div",
    { class: "vad-common" },
    checkbox("vad-create", "Answer automatically when the caller stops", td.create_response ?? true),
    checkbox("vad-interrupt", "Let the caller interrupt the assistant", td.interrupt_response ?? true),
  );
  return { server, semantic, common };
}

function readNumber(form, id, key, target, integer = true) {
  const text = form.querySelector(`#${id}`).value.trim();
  if (text === "") return;
  const value = Number(text);
  if (!Number.isFinite(value)) throw new Error(`${key} must be a number`);
  target[key] = integer ? Math.round(value) : value;
}

function readTurnDetection(form) {
  const type = form.querySelector("#td-type").value;
  if (type === "none") return null;
  const td = { type };
  if (type === "server_vad") {
    readNumber(form, "vad-threshold", "threshold", td, false);
    readNumber(form, "vad-prefix", "prefix_padding_ms", td);
    readNumber(form, "vad-silence", "silence_duration_ms", td);
    readNumber(form, "vad-idle", "idle_timeout_ms", td);
  } else {
    td.eagerness = form.querySelector("#vad-eagerness").value;
  }
  td.create_response = form.querySelector("#vad-create").checked;
  td.interrupt_response = form.querySelector("#vad-interrupt").checked;
  return td;
}

export function mountSession(main, params) {
  const status = h("p", { class: "notice", role: "status" }, "Loading…");
  const target = h("select", { id: "target" }, h("option", { value: "" }, "Default for new calls"));
  const formHost = h("div", { class: "session-host" });
  const root = h(
    "section",
    { class: "session" },
    h("h1", {}, "Session configuration"),
    h("div", { class: "field target-field" }, h("label", { for: "target" }, "Edit"), target),
    status,
    formHost,
  );
  main.append(root);
  let alive = true;
  let dirty = false;
  const beforeUnload = (event) => {
    if (dirty) event.preventDefault();
  };
  window.addEventListener("beforeunload", beforeUnload);

  async function load(callId) {
    notice(status, callId ? `Loading the session live call ${callId} runs now…` : "Loading…");
    try {
      const config = await getJSON("/api/session", callId ? { call_id: callId } : {});
      if (!alive) return;
      clear(status);
      status.className = "notice";
      dirty = false;
      clear(formHost);
      render(formHost, config, callId, (value) => (dirty = value));
    } catch (error) {
      notice(status, callId && error.status === 404 ? `Call ${callId} is no longer live.` : `Could not load the session: ${error.message}`, "error");
    }
  }

  target.addEventListener("change", () => {
    if (dirty && !window.confirm("Discard your unsaved changes?")) {
      target.value = target.dataset.current || "";
      return;
    }
    target.dataset.current = target.value;
    load(target.value || null);
  });

  getJSON("/api/calls/live")
    .catch(() => [])
    .then((live) => {
      if (!alive) return;
      const wanted = params.get("call_id");
      for (const call of live) target.append(h("option", { value: call.call_id }, `Live call ${call.call_id} (${call.from || "unknown"})`));
      if (wanted && live.some((c) => c.call_id === wanted)) target.value = wanted;
      target.dataset.current = target.value;
      if (wanted && !target.value) notice(status, `Call ${wanted} is no longer live: showing the default for new calls.`, "warn");
      load(target.value || null);
    });
  return {
    unmount: () => {
      alive = false;
      window.removeEventListener("beforeunload", beforeUnload);
    },
  };
}

function render(host, config, callId, setDirty) {
  const session = config.session || {};
  const voices = [...(config.voices || [])];
  const voice = h("select", { id: "voice", "aria-describedby": "voice-hint" });
  const customVoice = typeof session.voice === "object" && session.voice ? session.voice.id : null;
  if (typeof session.voice === "string" && !voices.includes(session.voice)) voices.push(session.voice);
  voice.append(...voices.map((v) => h("option", { value: v }, v)));
  if (customVoice) voice.append(h("option", { value: `custom:${customVoice}` }, `custom voice ${customVoice}`));
  voice.value = customVoice ? `custom:${customVoice}` : session.voice;
  voice.disabled = Boolean(config.voice_locked);
  const voiceHint = config.voice_locked
    ? "The assistant has already spoken on this call: its voice can't change any more (the model refuses it). Change the default for new calls instead."
    : callId
      ? "The voice can change only until the assistant first speaks."
      : null;

  const tdType = h(
    "select",
    { id: "td-type" },
    h("option", { value: "server_vad" }, "Server VAD (silence based)"),
    h("option", { value: "semantic_vad" }, "Semantic VAD (meaning based)"),
    h("option", { value: "none" }, "None (manual turns)"),
  );
  tdType.value = session.turn_detection?.type || "none";
  const vad = turnDetectionFields(session.turn_detection);
  const showVad = () => {
    vad.server.hidden = tdType.value !== "server_vad";
    vad.semantic.hidden = tdType.value !== "semantic_vad";
    vad.common.hidden = tdType.value === "none";
  };
  tdType.addEventListener("change", showVad);
  showVad();

  const transcription = h("input", { id: "transcription", list: "transcription-models", value: session.input_transcription_model || "", spellcheck: "false" });
  const toolsRoot = h("div", { class: "field tools-field" });
  const offer = (tools) => postJSON("/api/tools/offered", callId ? { tools, call_id: callId } : { tools });
  const editor = new ToolsEditor(toolsRoot, { tools: session.tools, templates: config.backend_tools || [], offer });

  const save = h("button", { type: "submit", class: "primary" }, callId ? "Apply to this call" : "Save");
  const unsaved = h("span", { class: "unsaved", hidden: true }, "● Unsaved changes");
  const saveStatus = h("span", { id: "save-status", class: "notice", role: "status", "aria-live": "polite" });
  const form = h(
    "form",
    { class: "session-form", novalidate: true, dataset: { callId: callId || "" } },
    field(
      "instructions",
      "Instructions",
      h("textarea", { id: "instructions", rows: 6, value: session.instructions || "" }),
      callId ? null : "An agent profile that sets its own instructions or voice (Agents) wins over these on the calls it answers.",
    ),
    h("div", { class: "row-fields" }, field("voice", "Voice", voice, voiceHint), field("td-type", "Turn detection", tdType)),
    vad.server,
    vad.semantic,
    vad.common,
    field("transcription", "Input transcription model", transcription, "Empty: no caller transcripts."),
    h("datalist", { id: "transcription-models" }, TRANSCRIPTION_MODELS.map((m) => h("option", { value: m }))),
    toolsRoot,
    h("div", { class: "save-row" }, save, unsaved, saveStatus),
  );

  const markDirty = (value) => {
    setDirty(value);
    unsaved.hidden = !value;
    form.classList.toggle("dirty", value);
  };
  form.addEventListener("input", () => markDirty(true));
  form.addEventListener("change", () => markDirty(true));
  // template buttons change the tools without an input event
  toolsRoot.addEventListener("click", (event) => {
    if (event.target.closest("button.template")) markDirty(true);
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const checked = editor.check();
    if (checked.error) {
      notice(saveStatus, `Tools: ${checked.error}`, "error");
      editor.textarea.focus();
      return;
    }
    let next;
    try {
      next = {
        ...session,
        instructions: form.querySelector("#instructions").value,
        voice: voice.value.startsWith("custom:") ? { id: voice.value.slice(7) } : voice.value,
        turn_detection: readTurnDetection(form),
        input_transcription_model: transcription.value.trim() || null,
        tools: checked.tools,
      };
    } catch (error) {
      notice(saveStatus, error.message, "error");
      return;
    }
    save.disabled = true;
    notice(saveStatus, callId ? "Applying… waiting for the model's answer." : "Saving…");
    try {
      const saved = await postJSON("/api/session", callId ? { session: next, call_id: callId } : { session: next });
      Object.assign(session, callId ? next : saved.session);
      markDirty(false);
      notice(saveStatus, callId ? `Applied to live call ${callId}: the model confirmed it.` : "Saved: new calls use this configuration.", "ok");
    } catch (error) {
      const reason = error instanceof ApiError ? error.message : String(error);
      notice(saveStatus, callId ? `Not applied: ${reason}` : `Not saved: ${reason}`, "error");
    } finally {
      save.disabled = false;
    }
  });

  host.append(form);
}
