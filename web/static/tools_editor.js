// The tools JSON editor: a textarea checked as you type with the same rules the server applies
// (adapters/openai/session.py `FunctionTool`), so a mistake is named before saving, and the
// backend tools from the server as one-click templates. "What the model gets" is the server's answer
// (POST /api/tools/offered, built by the code that builds a call's session.update): the server's and
// the agent's tools, the call-control built-ins, and the tools typed here.

import { clear, h } from "./dom.js";

const TOOL_KEYS = new Set(["type", "name", "description", "parameters"]);
const TOOL_NAME = /^[a-zA-Z0-9_-]{1,64}$/; // the Realtime API's rule for function names
const OFFER_DELAY_MS = 250; // ask the server once typing pauses

/** The badge of one offered tool (engine/offered_tools.py: handler and source). */
function offeredLabel(tool) {
  if (tool.handler === "builtin") return "built-in: the call itself answers it";
  const schema = tool.schema_from_session ? " (its schema from this session)" : "";
  if (tool.source === "server") return `server tool${schema}`;
  if (tool.source === "agent") return tool.handler === "human" ? `agent's tool: answered by hand in the live view${schema}` : `agent's tool (its HTTP endpoint)${schema}`;
  return "session tool: answered by hand in the live view";
}

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
   * @param {{tools: object[], templates: object[], offer: (tools: object[]) => Promise<{agent: string, version: number, tools: object[]}>}} options
   */
  constructor(root, { tools, templates, offer }) {
    this.offer = offer;
    this.asked = 0; // the latest question to the server: older answers are dropped
    this.timer = null;
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
        "What a call gets, from the server: the server's own tools and the agent's, the call-control built-ins, then the tools above (one with a name already listed replaces that schema; whoever answered it still does).",
      ),
      (this.offeredFor = h("p", { class: "muted offered-for", role: "status" })),
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

  /** The tools the model really gets with `sessionTools`, as the server builds them, once typing pauses. */
  showOffered(sessionTools) {
    clearTimeout(this.timer);
    const asked = ++this.asked;
    this.offered.setAttribute("aria-busy", "true");
    this.timer = setTimeout(async () => {
      let answer;
      try {
        answer = await this.offer(sessionTools);
      } catch (error) {
        if (asked !== this.asked) return;
        this.offered.removeAttribute("aria-busy");
        clear(this.offered).append(h("li", { class: "error-text" }, `Could not ask the server what the model gets: ${error.message}`));
        return;
      }
      if (asked !== this.asked) return;
      this.offered.removeAttribute("aria-busy");
      this.offeredFor.textContent = `A call answered by agent ${answer.agent} v${answer.version} gets:`;
      this.renderOffered(answer.tools);
    }, OFFER_DELAY_MS);
  }

  renderOffered(tools) {
    const kind = (tool) => (tool.handler === "builtin" ? "builtin" : tool.source === "server" ? "backend" : tool.source);
    clear(this.offered).append(
      ...(tools.length
        ? tools.map((tool) =>
            h(
              "li",
              { class: `offered ${kind(tool)}`, dataset: { tool: tool.name, kind: kind(tool), handler: tool.handler } },
              h("code", {}, tool.name),
              h("span", { class: `badge handler-${tool.handler}` }, offeredLabel(tool)),
              tool.description ? h("span", { class: "muted" }, ` ${tool.description}`) : null,
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
