// Regression tests: the runs of `callbridge test` (newest first, pass/fail), each test's checks and
// its diff against the original call, turn by turn; and "Save as test" for a call page, which writes
// the call's test file with assertions suggested by what happened. Everything goes through
// /api/tests and /api/calls/{id}/test (web/tests_api.py).

import { getJSON, postJSON } from "./api.js";
import { append, clear, formatWhen, h, notice } from "./dom.js";

function when(unix) {
  return unix ? formatWhen(new Date(unix * 1000).toISOString()) : "—";
}

// stubbed[i]: tools[i] was answered by a stub in the rerun (the recorded answer or the test file's), not run.
function saidList(lines, tools, stubbed = []) {
  const tool = (t, i) =>
    stubbed[i]
      ? h("li", { class: "tool stubbed", title: "answered by a stub: the tool did not run" }, h("code", {}, t), " ", h("span", { class: "pill stub" }, "stubbed"))
      : h("li", { class: "tool" }, h("code", {}, t));
  return h("ul", { class: "said" }, [...lines.map((l) => h("li", {}, l)), ...tools.map(tool)]);
}

function diffTable(diff) {
  const compared = diff.compared;
  const head = compared ? ["Turn", "Caller said", "Agent then", "Agent now"] : ["Turn", "Caller said", "Agent"];
  const rows = diff.turns.map((turn) =>
    h(
      "tr",
      { class: turn.changed.length ? "changed" : "", dataset: { turn: String(turn.index), changed: turn.changed.join(" ") } },
      h("td", {}, turn.changed.length ? `! ${turn.index}` : String(turn.index), turn.changed.length ? h("div", { class: "muted" }, turn.changed.join(", ")) : null),
      h("td", {}, turn.caller || h("span", { class: "muted" }, "(before the caller spoke)")),
      compared ? h("td", {}, saidList(turn.agent_then, turn.tools_then)) : null,
      h("td", {}, saidList(turn.agent_now, turn.tools_now, turn.tools_now_stubbed || [])),
    ),
  );
  const ending = h(
    "tr",
    { class: compared && diff.outcome_then !== diff.outcome_now ? "changed" : "", dataset: { turn: "end" } },
    h("td", {}, "end"),
    h("td", {}, ""),
    compared ? h("td", {}, diff.outcome_then) : null,
    h("td", {}, diff.outcome_now),
  );
  return h("table", { class: "test-diff" }, h("thead", {}, h("tr", {}, head.map((t) => h("th", { scope: "col" }, t)))), h("tbody", {}, rows, ending));
}

function resultPanel(result) {
  const failed = !result.passed;
  return h(
    "details",
    { class: `panel test-result ${failed ? "bad" : "ok"}`, open: failed, dataset: { test: result.name, passed: String(result.passed) } },
    h("summary", {}, h("span", { class: `pill ${failed ? "failed" : ""}` }, failed ? (result.error ? "error" : "fail") : "pass"), " ", result.name, h("span", { class: "muted" }, ` ${result.source} · ${result.seconds.toFixed(1)} s`)),
    result.original_call ? h("p", {}, "Original ", h("a", { href: `#/calls/${encodeURIComponent(result.original_call)}` }, result.original_call), ` → rerun ${result.new_call}`) : null,
    result.error ? h("p", { class: "error-text" }, result.error) : null,
    result.erased ? h("p", { class: "muted erased" }, "The call was erased: its checks and diff are gone.") : null,
    (result.notes || []).map((note) => h("p", { class: "notice warn" }, `Note: ${note}`)),
    h("ul", { class: "checks" }, result.checks.map((c) => h("li", { class: `check ${c.ok ? "ok" : "bad"}` }, h("span", { class: "mark" }, c.ok ? "✓ " : "✗ "), c.name, h("span", { class: "muted" }, ` — ${c.detail}`)))),
    result.diff ? [h("h3", {}, result.diff.compared ? "Then and now" : "The call"), diffTable(result.diff)] : null,
  );
}

function mountRun(host, runId) {
  clear(host);
  host.append(h("p", { class: "notice" }, "Loading…"));
  getJSON(`/api/tests/runs/${encodeURIComponent(runId)}`)
    .then((run) => {
      clear(host);
      append(host, [h("h2", {}, `Run ${run.run_id}: ${run.passed} passed, ${run.failed} failed (${run.model} model)`), run.results.map(resultPanel)]);
    })
    .catch((error) => {
      clear(host);
      host.append(h("p", { class: "notice error" }, `Could not load the run: ${error.message}`));
    });
}

export function mountTests(main, params) {
  const status = h("p", { class: "notice", role: "status", "aria-live": "polite" }, "Loading…");
  const runsBody = h("tbody");
  const detail = h("div", { id: "test-run" });
  main.append(
    h(
      "section",
      { class: "tests-page" },
      h("h1", {}, "Tests"),
      h("p", { class: "hint" }, "Runs of ", h("code", {}, "callbridge test"), ": recorded calls replayed and scenario files played against today's agent. Save a call as a test from its page."),
      status,
      h("table", { class: "test-runs" }, h("thead", {}, h("tr", {}, ["Run", "Started", "Model", "Passed", "Failed", "Tests"].map((t) => h("th", { scope: "col" }, t)))), runsBody),
      detail,
    ),
  );
  getJSON("/api/tests")
    .then((answer) => {
      clear(status);
      if (!answer.runs.length) notice(status, `No runs yet. Saved tests: ${answer.saved.length} (in ${answer.tests_folder}).`);
      else notice(status, `${answer.runs.length} run(s); ${answer.saved.length} saved test(s) in ${answer.tests_folder}.`);
      for (const run of answer.runs) {
        runsBody.append(
          h(
            "tr",
            { class: run.failed ? "bad" : "ok", dataset: { run: run.run_id } },
            h("td", {}, h("a", { href: `#/tests?run=${encodeURIComponent(run.run_id)}` }, run.run_id)),
            h("td", {}, when(run.started_at)),
            h("td", {}, run.model),
            h("td", { class: "num" }, String(run.passed)),
            h("td", { class: "num" }, h("span", { class: run.failed ? "pill failed" : "" }, String(run.failed))),
            h("td", {}, run.tests.map((t) => t.name).join(", ")),
          ),
        );
      }
      const wanted = params.get("run") || answer.runs[0]?.run_id;
      if (wanted) mountRun(detail, wanted);
    })
    .catch((error) => notice(status, `Could not load the tests: ${error.message}`, "error"));
  return {};
}

/** "Save as test" for a call page: writes the call's test file and shows it with the command to run it. */
export function saveAsTestButton(callId) {
  const out = h("div", { class: "saved-test" });
  const button = h("button", { type: "button", id: "save-as-test" }, "Save as test");
  button.addEventListener("click", () => {
    button.disabled = true;
    postJSON(`/api/calls/${encodeURIComponent(callId)}/test`, {})
      .then((saved) => {
        clear(out);
        out.append(
          h("p", { class: "notice ok", role: "status" }, `Saved ${saved.path}. Run it with `, h("code", {}, saved.command), " — results appear under ", h("a", { href: "#/tests" }, "Tests"), "."),
          h("pre", { class: "test-toml" }, saved.toml),
        );
      })
      .catch((error) => {
        clear(out);
        out.append(h("p", { class: "notice error", role: "alert" }, `Could not save the test: ${error.message}`));
      })
      .finally(() => (button.disabled = false));
  });
  return [button, out];
}
