"""Agent profiles and routing over HTTP, behind the API token (bearer header or console cookie).

- ``GET /api/agents`` — every profile (``default`` first): the agent file's keys plus ``name``,
  ``version``, ``saved_at``, ``saved_by``, ``source``, ``rolled_back_from``;
- ``POST /api/agents`` ``{"name", …keys}`` → 201 with the profile at version 1 (409 when it exists);
- ``GET /api/agents/{name}[?version=N]`` — the current version, or any version ever saved;
- ``PUT /api/agents/{name}`` ``{…keys, "version"?}`` → a new version (201 when it created the profile,
  200 otherwise; ``unchanged: true`` and no new version when the body equals the current one). With
  ``version`` (the one the client edited), 409 when another save came first;
- ``DELETE /api/agents/{name}`` → 200; 409 for ``default`` and for a profile the routing names;
- ``GET /api/agents/{name}/versions``, ``GET /api/agents/{name}/diff?from=A&to=B``,
  ``POST /api/agents/{name}/rollback {"version": N}`` — history, what changed, and a new version with
  an old one's content;
- ``GET /api/routing``, ``PUT /api/routing`` (``engine/routing.py``'s document, ``version`` as above),
  ``POST /api/routing/test {"to", "from"?, "direction"?, "at"?}`` — which agent the rules would choose.

A bad value answers 400 ``{"error", "key"}`` naming the key (``transfer_targets[0].to``). Saves are in
the log when the answer comes (``engine/agent_directory.py``), so every engine routes with them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import trio
from quart import Blueprint, Response, request

from callbridge.engine.agent_directory import Saved
from callbridge.engine.agent_profiles import ProfileError, ProfileVersion, check_name, diff_versions
from callbridge.engine.routing import CallFacts, choose
from callbridge.projections.views_db import iso
from callbridge.web.api import error_response, json_response
from callbridge.web.auth import Credential, credential_of, require_token
from callbridge.web.console_api import json_object

if TYPE_CHECKING:
    from callbridge.server import Server

T = TypeVar("T")


def profile_answer(version: ProfileVersion) -> dict[str, Any]:
    """A profile as the API answers it: ``name``, where the version came from, then the agent's keys."""
    return {
        "name": version.name,
        "version": version.version,
        "saved_at": iso(version.at),
        "saved_by": version.by,
        "source": version.source,
        "rolled_back_from": version.rolled_back_from,
        **version.agent,
    }


def _version_param(value: Any, key: str) -> int | None:
    """An optional version number (body or query), or :class:`ProfileError` naming ``key``."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.isdigit() and len(value) < 10:
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**9:
        return value
    raise ProfileError(f"{key}: {str(value)[:40]!r} is not a version number", key=key)


def agents_blueprint(server: Server) -> Blueprint:
    api = Blueprint("agents_api", __name__)
    api.before_request(require_token(lambda: server.settings.api_token))
    directory = server.agents

    async def in_thread(fn: Callable[[], T]) -> T:
        return await trio.to_thread.run_sync(fn, limiter=server.db_threads)

    def by() -> str:
        credential = credential_of(server.settings.api_token, request)
        return "api" if credential is Credential.BEARER else "console"

    def refused(error: ProfileError) -> Response:
        extra = {"key": error.key} if error.key else {}
        return error_response(error.status, str(error), **extra)

    async def body_object() -> dict[str, Any]:
        body = await json_object()
        if body is None:
            raise ProfileError("the request body must be a JSON object")
        return body

    def saved_answer(saved: Saved) -> Response:
        answer = profile_answer(saved.version)
        if saved.unchanged:
            answer["unchanged"] = True
        return json_response(answer, 201 if saved.created else 200)

    @api.errorhandler(ProfileError)
    async def profile_error(error: ProfileError) -> Response:
        return refused(error)

    # --- profiles ---------------------------------------------------------------------------------

    @api.get("/api/agents")
    async def list_agents() -> Response:
        await in_thread(directory.refresh)
        book = directory.book
        return json_response([profile_answer(v) for name in book.names() if (v := book.current(name)) is not None])

    @api.post("/api/agents")
    async def create_agent() -> Response:
        body = await body_object()
        name = body.get("name")
        if not isinstance(name, str):
            raise ProfileError("name: the new agent's name is required (1-40 of a-z, 0-9, '-', '_')", key="name")
        saved = await in_thread(lambda: directory.save_profile(name, body, by=by(), create=True))
        return saved_answer(saved)

    async def found(name: str, version: int | None = None) -> ProfileVersion:
        check_name(name)
        await in_thread(directory.refresh)
        book = directory.book
        if version is not None:
            old = book.version_of(name, version)
            if old is None:
                raise ProfileError(f"agent {name!r} has no version {version}", status=404, key="version")
            return old
        current = book.current(name)
        if current is None:
            deleted = name in book.profiles
            why = " (it was deleted; ?version=N still reads its versions)" if deleted else ""
            raise ProfileError(f"there is no agent {name!r}{why}", status=404)
        return current

    @api.get("/api/agents/<name>")
    async def get_agent(name: str) -> Response:
        return json_response(profile_answer(await found(name, _version_param(request.args.get("version"), "version"))))

    @api.put("/api/agents/<name>")
    async def put_agent(name: str) -> Response:
        body = await body_object()
        given = body.get("name", name)
        if given != name:
            raise ProfileError(f"name: {str(given)[:40]!r} differs from the URL's {name!r}", key="name")
        expected = _version_param(body.get("version"), "version")
        saved = await in_thread(lambda: directory.save_profile(name, body, by=by(), expected_version=expected))
        return saved_answer(saved)

    @api.delete("/api/agents/<name>")
    async def delete_agent(name: str) -> Response:
        check_name(name)
        version = await in_thread(lambda: directory.delete_profile(name, by=by()))
        return json_response({"name": name, "deleted": True, "version": version})

    @api.get("/api/agents/<name>/versions")
    async def versions(name: str) -> Response:
        check_name(name)
        await in_thread(directory.refresh)
        history = directory.book.profiles.get(name)
        if history is None:
            raise ProfileError(f"there is no agent {name!r}", status=404)
        answer = [
            {"version": v.version, "saved_at": iso(v.at), "saved_by": v.by, "source": v.source}
            | ({"rolled_back_from": v.rolled_back_from} if v.rolled_back_from is not None else {})
            for v in reversed(history.versions)
        ]
        return json_response(
            {
                "name": name,
                "current": None if history.deleted else history.versions[-1].version,
                "deleted": [{"version": d[0], "at": iso(d[1]), "by": d[2]} for d in history.deletions],
                "versions": answer,
            }
        )

    @api.get("/api/agents/<name>/diff")
    async def diff(name: str) -> Response:
        to_version = _version_param(request.args.get("to"), "to")
        after = await found(name, to_version)
        from_version = _version_param(request.args.get("from"), "from")
        if from_version is None:
            from_version = max(after.version - 1, 1)
        before = await found(name, from_version)
        return json_response(
            {
                "name": name,
                "from": before.version,
                "to": after.version,
                "changes": diff_versions(before, after),
            }
        )

    @api.post("/api/agents/<name>/rollback")
    async def rollback(name: str) -> Response:
        check_name(name)
        body = await body_object()
        version = _version_param(body.get("version"), "version")
        if version is None:
            raise ProfileError('version: which version to roll back to, e.g. {"version": 2}', key="version")
        saved = await in_thread(lambda: directory.rollback(name, version, by=by()))
        return saved_answer(saved)

    # --- routing ----------------------------------------------------------------------------------

    def routing_answer() -> dict[str, Any]:
        book = directory.book
        saved = book.routing
        return {
            "version": book.routing_version(),
            "saved_at": iso(saved.at) if saved else None,
            "saved_by": saved.by if saved else None,
            **book.current_routing().to_dict(),
            "agents": book.names(),
        }

    @api.get("/api/routing")
    async def get_routing() -> Response:
        await in_thread(directory.refresh)
        return json_response(routing_answer())

    @api.put("/api/routing")
    async def put_routing() -> Response:
        body = await body_object()
        expected = _version_param(body.get("version"), "version")
        document = {k: v for k, v in body.items() if k != "agents"}  # what GET answers can be PUT back
        changed = await in_thread(lambda: directory.save_routing(document, by=by(), expected_version=expected))
        return json_response({**routing_answer(), **({} if changed else {"unchanged": True})})

    @api.post("/api/routing/test")
    async def test_routing() -> Response:
        """Which agent the rules choose for a call like this (the assistant request is not asked)."""
        body = await body_object()
        text = {key: body.get(key, "") for key in ("to", "from")}
        direction = body.get("direction") or "inbound"
        at = body.get("at", server.routing.clock())
        for key, value in (*text.items(), ("direction", direction)):
            if not isinstance(value, str) or len(value) > 100:
                raise ProfileError(f"{key}: a string of at most 100 characters", key=key)
        if isinstance(at, bool) or not isinstance(at, int | float):
            raise ProfileError("at: Unix seconds (the moment to route at; default: now)", key="at")
        await in_thread(directory.refresh)
        book = directory.book
        choice = choose(book.current_routing(), CallFacts("test", text["from"], text["to"], direction), float(at))
        current = book.current(choice.agent)
        return json_response(
            {
                "agent": choice.agent,
                "version": current.version if current else 0,
                "rule": choice.rule,
                "reason": choice.reason,
            }
        )

    return api
