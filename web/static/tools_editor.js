// The tools JSON editor: a textarea checked as you type with the same rules the server applies
// (adapters/openai/session.py `FunctionTool`), so a mistake is named before saving, and the
// backend tools from the server as one-click templates.

import { clear, h } from "./dom.js";

const TOOL_KEYS = new Set(["type", "name", "description", "parameters"]);
const TOOL_NAME = /^[a-zA-Z0-9_-]{1,64}$/; // the Realtime API's rule for function names

const HUMAN_TOOL_TEMPLATE = {
  type: "function",
  name: "ask_a_person",
  description: "Ask a human operator; they answer from the console.",
  parameters: {
    type: "object",
    properties: { question: { type: "string", description: "What to ask" } },
    required: ["question"],
  },
};

/** `{tools}` when `text` is a valid tool list, else `{error}` naming where it is wrong. */
export function validateTools(text) {
  let tools;
  try {
    tools = JSON.parse(text.trim() || "[]");
  } catch (error) {
    return { error: `not valid JSON: ${error.message}` };
  }
  if (!Array.isArray(tools)) return { error: "must be a JSON array of function tools: [ {…}, … ]" };
  const names = new Set();
  for (const [index, tool] of tools.entries()) {
    const where = `tools[${index}]`;
    if (!tool || typeof tool !== "object" || Array.isArray(tool)) return { error: `${where} must be an object` };
    if (tool.type !== "function") return { error: `${where}.type must be "function"` };
    const extra = Object.keys(tool).filter((key) => !TOOL_KEYS.has(key));
    if (extra.length) return { error: `${where} has unknown keys ${extra.join(", ")} (allowed: ${[...TOOL_KEYS].join(", ")})` };
    if (typeof tool.name !== "string" || !TOOL_NAME.test(tool.name)) return { error: `${where}.name must be 1-64 letters, digits, _ or -` };
    if (names.has(tool.name)) return { error: `${where}.name "${tool.name}" is defined twice` };
    names.add(tool.name);
    if ("description" in tool && typeof tool.description !== "string") return { error: `${where}.description must be a string` };
    if ("parameters" in tool && (typeof tool.parameters !== "object" || tool.parameters === null || Array.isArray(tool.parameters))) {
      return { error: `${where}.parameters must be a JSON Schema object` };
    }
  }
  return { tools };
}

export class ToolsEditor {
  /**
   * @param {HTMLElement} root
   * @param {{tools: object[], templates: object[]}} options
   */
  constructor(root, { tools, templates }) {
    this.textarea = h("textarea", {
      id: "tools-json",
      class: "code",
      rows: 12,
      spellcheck: "false",
      "aria-describedby": "tools-status",
    });
    this.status = h("p", { id: "tools-status", class: "field-status", role: "status" });
    this.backend = templates;
    this.offered = h("ul", { class: "offered-tools", "aria-label": "Tools the model gets" });
    const buttons = [...templates, HUMAN_TOOL_TEMPLATE].map((template) =>
      h(
        "button",
        { type: "button", class: "template", onclick: () => this.add(template) },
        `+ ${template.name}${template === HUMAN_TOOL_TEMPLATE ? " (answered by hand)" : ""}`,
      ),
    );
    clear(root).append(
      h("label", { for: "tools-json" }, "Tools (JSON)"),
      h("div", { class: "templates", role: "group", "aria-label": "Add a tool from a template" }, h("span", { class: "muted" }, "Templates:"), buttons),
      this.textarea,
      this.status,
      h("h3", { class: "offered-heading" }, "What the model gets"),
      h(
        "p",
        { class: "hint" },
        "The server's own tools are always offered; the tools above are added (a session tool with a server tool's name replaces that tool's schema; the server still runs it).",
      ),
      this.offered,
    );
    this.textarea.value = JSON.stringify(tools || [], null, 2);
    this.textarea.addEventListener("input", () => this.check());
    this.check();
  }

  check() {
    const result = validateTools(this.textarea.value);
    this.textarea.setAttribute("aria-invalid", result.error ? "true" : "false");
    this.status.className = `field-status ${result.error ? "error" : "ok"}`;
    this.status.textContent = result.error
      ? result.error
      : `${result.tools.length} tool${result.tools.length === 1 ? "" : "s"}: ${result.tools.map((t) => t.name).join(", ") || "none"}`;
    if (!result.error) this.showOffered(result.tools);
    return result;
  }

  /** The tools the model really gets: the server's (registry) tools, then this session's, marked. */
  showOffered(sessionTools) {
    const backendNames = new Set(this.backend.map((tool) => tool.name));
    const sessionByName = new Map(sessionTools.map((tool) => [tool.name, tool]));
    const rows = this.backend.map((tool) => ({
      name: tool.name,
      description: sessionByName.has(tool.name) ? sessionByName.get(tool.name).description : tool.description,
      kind: "backend",
      label: sessionByName.has(tool.name) ? "server tool (its schema from this session)" : "server tool",
    }));
    for (const tool of sessionTools) {
      if (backendNames.has(tool.name)) continue;
      rows.push({ name: tool.name, description: tool.description, kind: "session", label: "session tool: answered by hand in the live view" });
    }
    clear(this.offered).append(
      ...(rows.length
        ? rows.map((row) =>
            h(
              "li",
              { class: `offered ${row.kind}`, dataset: { tool: row.name, kind: row.kind } },
              h("code", {}, row.name),
              h("span", { class: `badge handler-${row.kind === "session" ? "human" : "backend"}` }, row.label),
              row.description ? h("span", { class: "muted" }, ` ${row.description}`) : null,
            ),
          )
        : [h("li", { class: "empty" }, "No tools: the model can only talk.")]),
    );
  }

  add(template) {
    const current = validateTools(this.textarea.value);
    if (current.error) {
      this.status.textContent = `Fix the JSON before adding a template: ${current.error}`;
      this.textarea.focus();
      return;
    }
    const tools = current.tools.filter((tool) => tool.name !== template.name);
    tools.push(structuredClone(template));
    this.textarea.value = JSON.stringify(tools, null, 2);
    this.check();
  }
}
