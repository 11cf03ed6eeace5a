"""Which signing secrets a rerun's HTTP tools need, and a stand-in for those that never sign.

A tool the rerun answers itself — from the recorded call, or a test file's ``[tools.NAME]`` stub
(``tool_stubs``) — never runs: its endpoint is never called, so nothing is signed with its secret.
CI reruns recorded calls against a changed prompt where production secrets are not set, so such a
tool's unset ``secret_env`` must not stop the run. The engine still builds every tool of the agent
(the same registry, offers and schemas as in production), so the rerun's engine is given, for each
of those tools only, a stand-in value that is not a secret and that nothing sends.

A tool that does run for real (``--live-tools``, or a scenario's tool it does not stub) signs its
requests: without its secret the run stops before any call, naming the variable (exit 2).
"""

from __future__ import annotations

from collections.abc import Mapping

from callbridge.engine.agent import Agent
from callbridge.regression.tool_answers import ToolStubs

STAND_IN = "whsec_Y2FsbGJyaWRnZS10ZXN0LXN0YW5kLWluCg=="
"""What a stubbed tool is built with when its secret is unset: never sent (the stub answers)."""


def _unset_secrets(agent: Agent, environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """(tool name, variable) for each HTTP tool of ``agent`` whose secret is not in ``environ``."""
    return [(tool.name, tool.secret_env) for tool in agent.tools if tool.secret_env and tool.secret_unset(environ)]


def missing_secrets(agent: Agent, stubs: ToolStubs | None, environ: Mapping[str, str]) -> list[str]:
    """One message per tool that would run for real without its secret (empty: the rerun can start)."""
    return [
        f"tool {name!r} runs for real and signs its requests, but the environment variable {variable} "
        f"(its secret) is not set: set it, or let the test answer the tool (leave out --live-tools, or stub it "
        f"with [tools.{name}] in the test file)"
        for name, variable in _unset_secrets(agent, environ)
        if stubs is None or not stubs.stubs(name)
    ]


def tool_environ(agent: Agent, stubs: ToolStubs | None, environ: Mapping[str, str]) -> dict[str, str]:
    """``environ``, with :data:`STAND_IN` for the unset secret of each tool the rerun answers itself."""
    stand_ins = {
        variable: STAND_IN
        for name, variable in _unset_secrets(agent, environ)
        if stubs is not None and stubs.stubs(name)
    }
    return {**environ, **stand_ins}
