// Agent profiles: the list (#/agents), one profile (#/agents/{name}[?version=N]) with its form, its
// versions, what changed between two of them, and rolling back to one. Every save is a new version in
// the log (GET/POST /api/agents, GET/PUT/DELETE /api/agents/{name}, …/versions, …/diff, …/rollback);
// a call's page links to the exact version that answered it.

import { ApiError, getJSON, postJSON, sendJSON } from "./api.js";
import { agentForm, clearFieldErrors, readAgentForm, showFieldError } from "./agent_form.js";
import { append, clear, formatWhen, h, notice } from "./dom.js";

const path = (name, tail = "") => `/api/agents/${encodeURIComponent(name)}${tail}`;

function snippet(text, limit = 90) {
  if (!text) return "—";
  return text.length > limit ? `${text.slice(0, limit)}…` : text;
}

/** Where a save failed: at the field the server named, and in `status`. */
function refused(form, status, error, what) {
  const key = error instanceof ApiError ? error.body?.key : error.key;
  if (form && key) showFieldError(form, key, error.message);
  notice(status, `${what}: ${error.message}`, "error");
}

// --- the list ----------------------------------------------------------------------------------

export function mountAgents(main, params) {
  const status = h("p", { class: "notice", role: "status" }, "Loading…");
  const list = h("div", { class: "results" });
  const creating = h("div", { class: "new-agent" });
  const newButton = h("button", { type: "button", class: "primary", id: "new-agent" }, "New agent");
  main.append(
    h(
      "section",
      { class: "agents" },
      h("div", { class: "heading-row" }, h("h1", {}, "Agents"), h("div", { class: "toolbar" }, newButton, h("a", { href: "#/routing" }, "Routing: which agent answers"))),
      h("p", { class: "hint" }, "Each agent is a prompt, a voice, tools and call handling. The routing decides which one answers a call; 'default' answers the rest."),
      status,
      creating,
      list,
    ),
  );

  const openNew = () => {
    clear(creating);
    const form = agentForm({}, { isNew: true });
    const saveStatus = h("span", { class: "notice", role: "status", id: "new-agent-status" });
    const save = h("button", { type: "submit", class: "primary" }, "Create");
    form.form.append(h("div", { class: "save-row" }, save, h("button", { type: "button", onclick: () => clear(creating) }, "Cancel"), saveStatus));
    form.form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearFieldErrors(form);
      try {
        const body = { name: form.controls.name.value.trim(), ...readAgentForm(form) };
        save.disabled = true;
        const created = await postJSON("/api/agents", body);
        window.location.hash = `#/agents/${encodeURIComponent(created.name)}`;
      } catch (error) {
        refused(form, saveStatus, error, "Not created");
      } finally {
        save.disabled = false;
      }
    });
    creating.append(h("section", { class: "panel" }, h("h2", {}, "New agent"), form.form));
    form.controls.name.focus();
  };
  newButton.addEventListener("click", openNew);
  if (params.get("new")) openNew();

  getJSON("/api/agents")
    .then((agents) => {
      clear(status);
      list.append(
        h(
          "table",
          { class: "agents-table" },
          h("thead", {}, h("tr", {}, ["Agent", "Version", "Saved", "Instructions", "Greeting"].map((t) => h("th", { scope: "col" }, t)))),
          h(
            "tbody",
            {},
            agents.map((a) =>
              h(
                "tr",
                { dataset: { agent: a.name } },
                h("td", {}, h("a", { href: `#/agents/${encodeURIComponent(a.name)}` }, a.name)),
                h("td", { class: "num" }, `v${a.version}`),
                h("td", {}, formatWhen(a.saved_at), h("span", { class: "muted" }, ` by ${a.saved_by}`)),
                h("td", {}, snippet(a.instructions)),
                h("td", {}, snippet(a.greeting, 60)),
              ),
            ),
          ),
        ),
      );
    })
    .catch((error) => notice(status, `Could not load the agents: ${error.message}`, "error"));
  return {};
}

// --- one profile -------------------------------------------------------------------------------

function diffView(diff) {
  if (!diff.changes.length) return h("p", { class: "muted" }, `Versions ${diff.from} and ${diff.to} are the same.`);
  return h(
    "div",
    { class: "diff" },
    diff.changes.map((change) =>
      h(
        "div",
        { class: "diff-key", dataset: { key: change.key } },
        h("h3", {}, change.key),
        h(
          "pre",
          { class: "diff-lines" },
          change.diff
            .filter((line) => !line.startsWith("---") && !line.startsWith("+++"))
            .map((line) => h("span", { class: line.startsWith("+") ? "add" : line.startsWith("-") ? "del" : line.startsWith("@@") ? "hunk" : "ctx" }, `${line}\n`)),
        ),
      ),
    ),
  );
}

export function mountAgent(main, name, params) {
  let wanted = params.get("version") ? Number(params.get("version")) : null;
  const status = h("p", { class: "notice", role: "status" }, "Loading…");
  const formHost = h("section", { class: "panel agent-edit" });
  const versionsHost = h("section", { class: "panel agent-versions", "aria-labelledby": "versions-heading" });
  const diffHost = h("section", { class: "panel agent-diff", "aria-labelledby": "diff-heading", hidden: true });
  const title = h("h1", {}, `Agent ${name}`);
  main.append(
    h(
      "section",
      { class: "agent-page" },
      h("p", {}, h("a", { href: "#/agents" }, "← Agents")),
      title,
      status,
      h("div", { class: "agent-grid" }, formHost, h("div", {}, versionsHost, diffHost)),
    ),
  );
  let alive = true;

  async function showDiff(from, to) {
    diffHost.hidden = false;
    clear(diffHost);
    diffHost.append(h("h2", { id: "diff-heading" }, `Changes from version ${from} to ${to}`), h("p", { class: "muted" }, "Loading…"));
    try {
      const diff = await getJSON(path(name, "/diff"), { from, to });
      clear(diffHost);
      diffHost.append(h("h2", { id: "diff-heading" }, `Changes from version ${diff.from} to ${diff.to}`), diffView(diff));
      diffHost.scrollIntoView({ block: "nearest" });
    } catch (error) {
      notice(status, `Could not compare: ${error.message}`, "error");
    }
  }

  async function rollBack(version) {
    if (!window.confirm(`Save version ${version}'s content as the new version of ${name}? New calls use it at once.`)) return;
    try {
      const saved = await postJSON(path(name, "/rollback"), { version });
      showCurrent();
      await load();
      notice(status, saved.unchanged ? `Version ${version} is already what answers.` : `Rolled back: version ${saved.version} has version ${version}'s content.`, "ok");
    } catch (error) {
      notice(status, `Not rolled back: ${error.message}`, "error");
    }
  }

  function renderVersions(history, shown) {
    clear(versionsHost);
    versionsHost.append(
      h("h2", { id: "versions-heading" }, "Versions"),
      h(
        "ol",
        { class: "versions", reversed: true },
        history.versions.map((v) =>
          h(
            "li",
            { dataset: { version: String(v.version) }, class: v.version === shown ? "shown" : "" },
            h("a", { href: `#/agents/${encodeURIComponent(name)}?version=${v.version}` }, `v${v.version}`),
            v.version === history.current ? h("span", { class: "badge" }, "current") : null,
            h("span", { class: "muted" }, ` ${formatWhen(v.saved_at)} by ${v.saved_by}`),
            v.rolled_back_from ? h("span", { class: "muted" }, ` (rolled back from v${v.rolled_back_from})`) : null,
            v.source ? h("span", { class: "muted" }, ` (${v.source})`) : null,
            h(
              "span",
              { class: "version-actions" },
              v.version > 1 ? h("button", { type: "button", class: "changes", onclick: () => showDiff(v.version - 1, v.version) }, "Changes") : null,
              history.current && v.version !== history.current ? h("button", { type: "button", class: "rollback", onclick: () => rollBack(v.version) }, "Roll back to this") : null,
            ),
          ),
        ),
      ),
    );
  }

  function renderForm(profile, current) {
    clear(formHost);
    const old = profile.version !== current;
    const form = agentForm(profile, { editable: !old });
    const saveStatus = h("span", { class: "notice", role: "status", id: "agent-save-status", "aria-live": "polite" });
    append(formHost, [
      h("h2", {}, old ? `Version ${profile.version} (read-only)` : `Version ${profile.version}`),
      old && current ? h("p", { class: "notice warn" }, `This is an old version; v${current} answers calls now.`) : null,
      form.form,
    ]);
    if (old && !current) {
      form.form.append(h("p", { class: "muted" }, `Agent ${name} was deleted. Creating it again numbers on from its last version.`));
      return;
    }
    if (old) {
      form.form.append(
        h(
          "div",
          { class: "save-row" },
          h("button", { type: "button", class: "primary", onclick: () => rollBack(profile.version) }, `Roll back to version ${profile.version}`),
          h("button", { type: "button", onclick: () => showDiff(profile.version, current) }, `Compare with v${current}`),
        ),
      );
      return;
    }
    const save = h("button", { type: "submit", class: "primary" }, "Save as a new version");
    const remove = name === "default" ? null : h("button", { type: "button", class: "danger", id: "delete-agent" }, "Delete");
    form.form.append(h("div", { class: "save-row" }, save, remove, saveStatus));
    form.form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearFieldErrors(form);
      save.disabled = true;
      notice(saveStatus, "Saving…");
      try {
        const saved = await sendJSON("PUT", path(name), readAgentForm(form, profile));
        if (saved.unchanged) {
          notice(saveStatus, "Nothing changed: no new version.", "ok");
          return;
        }
        await load();
        notice(document.getElementById("agent-save-status"), `Saved: version ${saved.version} answers new calls.`, "ok");
      } catch (error) {
        refused(form, saveStatus, error, "Not saved");
      } finally {
        save.disabled = false;
      }
    });
    remove?.addEventListener("click", async () => {
      if (!window.confirm(`Delete agent ${name}? Its versions stay readable from past calls.`)) return;
      try {
        await sendJSON("DELETE", path(name));
        window.location.hash = "#/agents";
      } catch (error) {
        notice(saveStatus, `Not deleted: ${error.message}`, "error");
      }
    });
  }

  /** Show the current version from now on (the address too, without remounting the page). */
  function showCurrent() {
    wanted = null;
    window.history.replaceState(null, "", `#/agents/${encodeURIComponent(name)}`);
  }

  async function load() {
    try {
      const history = await getJSON(path(name, "/versions"));
      const current = history.current;
      const shown = wanted || current;
      if (!shown) throw new ApiError(404, `agent ${name} was deleted; open one of its versions`, null);
      const profile = await getJSON(path(name), { version: shown });
      if (!alive) return;
      clear(status);
      status.className = "notice";
      title.textContent = `Agent ${name}`;
      renderForm(profile, current);
      renderVersions(history, shown);
    } catch (error) {
      if (error.status === 404 && !String(error.message).includes("deleted")) notice(status, `There is no agent ${name}.`, "error");
      else notice(status, `Could not load the agent: ${error.message}`, "error");
    }
  }

  load();
  return { unmount: () => (alive = false) };
}
