// Call-control messages on the live feed (docs/live-feed.md): each becomes a note in the call's
// transcript with the server's own line (`summary`), and hang-ups and transfers set the call's outcome
// (a warm transfer: "on hold — transferring to …" while the caller is held, cleared when nobody answered).

const CALL_CONTROL = [
  "callbridge.outbound.placed",
  "callbridge.greeting.started",
  "callbridge.hangup.requested",
  "callbridge.goodbye.heard",
  "callbridge.phone.hung_up",
  "callbridge.transfer.requested",
  "callbridge.transfer.refused",
  "callbridge.transfer.dialed",
  "callbridge.dtmf.forwarded",
  "callbridge.dtmf.sent",
  "callbridge.silence.reprompted",
  "callbridge.duration.warning",
  "callbridge.machine.detected",
  "callbridge.model.recycled",
  "callbridge.call.held",
  "callbridge.transfer.briefed",
  "callbridge.transfer.not_answered",
  "callbridge.call.resumed",
];
const OUTCOME = { model: "hung up by the agent", operator: "hung up by an operator", silence: "hung up after silence", max_duration: "hung up at the time limit", voicemail: "voicemail left" };

function callControl(call, m) {
  const failed = m.type === "callbridge.transfer.refused" || m.ok === false;
  call.note(m.summary || m.type, failed ? "error" : "control");
  if (m.type === "callbridge.hangup.requested") call.outcome = OUTCOME[m.by] || `hung up (${m.by})`;
  if (m.type === "callbridge.transfer.dialed" && m.ok !== false) call.outcome = `transferred to ${m.label}`;
  if (m.type === "callbridge.call.held") call.outcome = outcomeText("on_hold", m.label);
  if (m.type === "callbridge.transfer.not_answered") call.outcome = "";
}

/** A conversation's `outcome` (and `transfer_target`) in words: "on hold — transferring to support",
 * "transferred to sales", "caller_hangup". */
export function outcomeText(outcome, target) {
  if (!outcome) return "";
  if (outcome === "on_hold") return `on hold — transferring to ${target || "?"}`;
  return `${outcome}${target ? ` to ${target}` : ""}`;
}

/** The live state's handlers for these messages, by type. */
export const CALL_CONTROL_HANDLERS = Object.fromEntries(CALL_CONTROL.map((type) => [type, callControl]));
