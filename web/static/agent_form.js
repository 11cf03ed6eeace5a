// The form of one agent profile: the agent file's keys as fields (transfer targets and tools as JSON),
// read back into the body PUT /api/agents/{name} takes, and the server's error shown at the field it
// names ({"error", "key": "transfer_targets[0].to"}). The server checks everything; the form only
// says which field to fix.

import { h } from "./dom.js";

const TEXT = [
  ["instructions", "Instructions", 8, "What the model is told. Leave empty to use the console's default session."],
  ["greeting", "Greeting", 2, "Said word for word when the call connects. Empty: the caller speaks first."],
  ["voicemail_message", "Voicemail message", 2, "Left on an answering machine (outbound calls)."],
];
const NUMBERS = [
  ["silence_reprompt_s", "Silence re-prompt (s)", "Caller silent this long after hearing us: “are you still there?” Empty: never."],
  ["silence_hangup_s", "Silence hang-up (s)", "Still silent this long after that: goodbye. Empty: never."],
  ["max_duration_s", "Longest call (s)", "Empty: no limit."],
  ["max_duration_warning_s", "Wrap-up warning (s before the limit)", null],
  ["dtmf_collect_timeout_s", "Key entry pause (s)", "dtmf = collect: a pause this long ends the entry."],
  ["session_recycle_s", "Renew the model session after (s)", null],
  ["dtmf_tone_ms", "Key tone (ms)", null],
  ["dtmf_gap_ms", "Gap between keys (ms)", null],
];
const JSON_KEYS = [
  ["transfer_targets", "Transfer targets (JSON)", 'e.g. [{"label": "sales", "to": "+15551234567", "mode": "cold", "timeout_s": 30}]'],
  ["tools", "Tools (JSON)", 'e.g. [{"name": "lookup_order", "url": "https://…", "secret_env": "ACME_SECRET"}]; without url a person answers'],
];
const OPTIONAL = new Set(["silence_reprompt_s", "silence_hangup_s", "max_duration_s"]);
// The model's options for this agent's calls (engine/agent.py); empty: the console's default session's.
const NOISE = [["", "the default session's"], ["near_field", "near field (handset)"], ["far_field", "far field (speakerphone)"], ["none", "none"]];
const NULLABLE_JSON = [
  ["turn_detection", "Turn detection (JSON)", 'e.g. {"type": "semantic_vad", "eagerness": "low"} or {"type": "server_vad", "silence_duration_ms": 600}. Empty: the default session\'s.'],
  ["server_tools", "Server tools offered (JSON)", 'e.g. ["get_weather_from_coords"]; [] for none. Empty: all of the server\'s tools.'],
];

function field(id, label, control, hint, extra = "") {
  return h(
    "div",
    { class: `field ${extra}`.trim(), dataset: { key: id } },
    h("label", { for: `agent-${id}` }, label),
    control,
    hint ? h("p", { class: "hint", id: `agent-${id}-hint` }, hint) : null,
    h("p", { class: "field-error error-text", id: `agent-${id}-error`, role: "alert", hidden: true }),
  );
}

/** A form for `profile` (a GET /api/agents answer, or {} for a new one); `editable` false shows it read-only. */
export function agentForm(profile, { isNew = false, editable = true } = {}) {
  const p = profile || {};
  const controls = {};
  const text = (key, rows) => (controls[key] = h("textarea", { id: `agent-${key}`, rows, value: p[key] ?? "", readonly: !editable }));
  const number = (key) =>
    (controls[key] = h("input", { id: `agent-${key}`, type: "number", inputmode: "decimal", step: "any", value: p[key] ?? "", readonly: !editable }));
  const dtmf = (controls.dtmf = h("select", { id: "agent-dtmf", disabled: !editable }, ["model", "collect", "ignore"].map((m) => h("option", { value: m }, m))));
  dtmf.value = p.dtmf || "model";
  const endCall = (controls.end_call = h("input", { id: "agent-end_call", type: "checkbox", checked: p.end_call ?? true, disabled: !editable }));
  controls.voice = h("input", { id: "agent-voice", value: p.voice ?? "", placeholder: "e.g. marin", spellcheck: "false", readonly: !editable });
  for (const [key] of JSON_KEYS) {
    controls[key] = h("textarea", { id: `agent-${key}`, class: "code", rows: 4, spellcheck: "false", readonly: !editable, value: JSON.stringify(p[key] || [], null, 2) });
  }
  controls.model = h("input", { id: "agent-model", value: p.model ?? "", placeholder: "e.g. gpt-realtime", spellcheck: "false", readonly: !editable });
  controls.max_output_tokens = h("input", { id: "agent-max_output_tokens", value: p.max_output_tokens ?? "", placeholder: "1-4096 or inf", spellcheck: "false", readonly: !editable });
  controls.speed = h("input", { id: "agent-speed", type: "number", inputmode: "decimal", step: "any", min: 0.25, max: 1.5, value: p.speed ?? "", readonly: !editable });
  const noise = (controls.noise_reduction = h("select", { id: "agent-noise_reduction", disabled: !editable }, NOISE.map(([value, label]) => h("option", { value }, label))));
  noise.value = p.noise_reduction ?? "";
  for (const [key] of NULLABLE_JSON) {
    const value = p[key] === null || p[key] === undefined ? "" : JSON.stringify(p[key], null, 2);
    controls[key] = h("textarea", { id: `agent-${key}`, class: "code", rows: 4, spellcheck: "false", readonly: !editable, value });
  }
  const name = h("input", { id: "agent-name", value: p.name || "", required: true, pattern: "[a-z0-9][a-z0-9_-]{0,39}", readonly: !isNew, spellcheck: "false" });
  controls.name = name;
  const form = h(
    "form",
    { class: "agent-form", novalidate: true },
    isNew ? field("name", "Name", name, "1–40 of a-z, 0-9, '-', '_' (it is in URLs and in every call's log)") : null,
    TEXT.map(([key, label, rows, hint]) => field(key, label, text(key, rows), hint)),
    h("div", { class: "row-fields" }, field("voice", "Voice", controls.voice, "Empty: the console's default."), field("dtmf", "Keys the caller presses go to", dtmf)),
    h("div", { class: "field checkbox", dataset: { key: "end_call" } }, endCall, h("label", { for: "agent-end_call" }, "The model may hang up (end_call) once its goodbye is heard")),
    h("fieldset", {}, h("legend", {}, "Limits and timing"), NUMBERS.map(([key, label, hint]) => field(key, label, number(key), hint))),
    h(
      "fieldset",
      { class: "model-options" },
      h("legend", {}, "Model options (empty: the console's default session's)"),
      field("model", "Realtime model", controls.model, null),
      field("max_output_tokens", "Max output tokens", controls.max_output_tokens, null),
      field("speed", "Speed", controls.speed, "0.25–1.5; 1 is the voice's own pace."),
      field("noise_reduction", "Noise reduction", noise, null),
      NULLABLE_JSON.slice(0, 1).map(([key, label, hint]) => field(key, label, controls[key], hint, "wide")),
    ),
    JSON_KEYS.map(([key, label, hint]) => field(key, label, controls[key], hint)),
    NULLABLE_JSON.slice(1).map(([key, label, hint]) => field(key, label, controls[key], hint)),
  );
  return { form, controls };
}

/** The body for PUT/POST from the form; throws Error("key: why") for JSON that does not parse. */
export function readAgentForm({ controls }, base = {}) {
  const body = {};
  for (const [key] of TEXT) {
    const value = controls[key].value;
    body[key] = value.trim() ? value : null;
  }
  body.voice = controls.voice.value.trim() || null;
  body.dtmf = controls.dtmf.value;
  body.end_call = controls.end_call.checked;
  for (const [key] of NUMBERS) {
    const value = controls[key].value.trim();
    if (value === "") {
      if (OPTIONAL.has(key)) body[key] = null; // else: the default
      continue;
    }
    const number = Number(value);
    if (!Number.isFinite(number)) throw Object.assign(new Error(`${key}: not a number`), { key });
    body[key] = number;
  }
  body.model = controls.model.value.trim() || null;
  const tokens = controls.max_output_tokens.value.trim();
  body.max_output_tokens = tokens === "" ? null : tokens === "inf" ? "inf" : Number.isInteger(Number(tokens)) ? Number(tokens) : tokens; // the server names a bad value
  const speed = controls.speed.value.trim();
  body.speed = speed === "" ? null : Number(speed);
  if (body.speed !== null && !Number.isFinite(body.speed)) throw Object.assign(new Error("speed: not a number"), { key: "speed" });
  body.noise_reduction = controls.noise_reduction.value || null;
  for (const [key] of NULLABLE_JSON) {
    const value = controls[key].value.trim();
    try {
      body[key] = value ? JSON.parse(value) : null;
    } catch (error) {
      throw Object.assign(new Error(`${key}: not valid JSON (${error.message})`), { key });
    }
  }
  for (const [key] of JSON_KEYS) {
    try {
      body[key] = JSON.parse(controls[key].value || "[]");
    } catch (error) {
      throw Object.assign(new Error(`${key}: not valid JSON (${error.message})`), { key });
    }
  }
  if (base.version) body.version = base.version; // the version edited: a save after someone else's is refused
  return body;
}

/** Show `message` at the field `key` names (its first part: transfer_targets[0].to → transfer_targets). */
export function showFieldError(form, key, message) {
  clearFieldErrors(form);
  const root = String(key || "").split(/[.[]/)[0];
  const holder = root && form.form.querySelector(`[data-key="${CSS.escape(root)}"]`);
  if (!holder) return false;
  const control = form.controls[root];
  control?.setAttribute("aria-invalid", "true");
  control?.setAttribute("aria-errormessage", `agent-${root}-error`);
  const slot = holder.querySelector(".field-error");
  if (slot) {
    slot.textContent = message;
    slot.hidden = false;
  }
  control?.focus();
  return true;
}

export function clearFieldErrors(form) {
  for (const slot of form.form.querySelectorAll(".field-error")) {
    slot.hidden = true;
    slot.textContent = "";
  }
  for (const control of form.form.querySelectorAll("[aria-invalid]")) control.removeAttribute("aria-invalid");
}
