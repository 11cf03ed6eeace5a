"""The console's own API: the setup checklist, the session config, test calls, live calls.

Behind the API token like ``web/api.py`` (same ``require_token`` hook). Routes:

- ``GET /api/setup`` — the checklist (Twilio credentials, phone numbers, public URL, webhook,
  model) and the account's numbers; see :mod:`web.setup_checks`. Twilio failures fail a check
  with a clear detail, never the request.
- ``POST /api/setup/webhook`` ``{"sid": "PN…", "replace"?, "force"?}`` — points that number's voice
  webhook at ``PUBLIC_URL/twiml`` (POST) and its status callback at ``PUBLIC_URL/twilio/status``.
  Refused (409, nothing changed) when the number's webhook points elsewhere unless ``replace`` (the
  answer names the current URL), and when Twilio cannot reach ``PUBLIC_URL`` (localhost,
  127.0.0.0/8, private ranges, plain http) unless ``force``.
- ``GET /api/session[?call_id=CA…]`` — the default session config for new calls, or the one a
  live call runs now (from its log; ``voice_locked`` once the assistant has spoken), with the
  voices and the backend tools.
- ``POST /api/session`` ``{"session": {...}, "call_id"?}`` — save the default, or change a live
  call's session: answered once the model has (``applied: true`` on ``session.updated``; 409 with
  the model's own error message, e.g. ``cannot_update_voice``; 504 when it did not answer in time).
- ``POST /api/test-call`` ``{"seconds"?, "ending"?}`` — a simulated call against this very server
  (:mod:`web.console_test_call`); ``ending``: ``transfer`` (default) or ``goodbye``.
- ``GET /api/calls/live`` — the calls in progress.

Why the session functions are public: the live feed (``WS /logs``) accepts ``session.update`` too,
and both doors must do the same thing, so both call :func:`save_default_session` and
:func:`update_call_session`. Semantics (the same as the feed's): a session object is *merged* —
over the current default when saving the default, over the call's current config for a live call
(the call merges it) — and checked (``normalize_session_config``: a msgspec decode into
``SessionConfig``) before anything changes.

No response carries a secret: the Twilio auth token, the OpenAI key and the API token stay in
``Settings`` (checks say only whether they are set), and Twilio error texts are redacted.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
import trio
from quart import Blueprint, Response, request

from callbridge.adapters.openai.session import VOICES, SessionConfigError, normalize_session_config
from callbridge.adapters.sim.caller_http import new_sid
from callbridge.adapters.twilio.rest_errors import RestErrorKind, TwilioRestError
from callbridge.engine.events import SETTINGS_STREAM, CallEnded, DefaultSessionConfigSaved
from callbridge.projections.call_commands import CommandResult
from callbridge.projections.views_db import iso
from callbridge.web.api import error_response, json_response
from callbridge.web.auth import require_token
from callbridge.web.console_session import CallSession, call_session, model_answer
from callbridge.web.console_test_call import run_test_call, test_call_request
from callbridge.web.setup_checks import (
    MAX_NUMBERS,
    number_view,
    phone_numbers_client,
    setup_report,
    status_callback_url,
    twiml_url,
    unreachable_reason,
)

if TYPE_CHECKING:
    from callbridge.server import Server

log = logging.getLogger(__name__)


class WebhookRequest(msgspec.Struct, forbid_unknown_fields=True):
    """The body of ``POST /api/setup/webhook``."""

    sid: Annotated[str, msgspec.Meta(min_length=1)]
    replace: bool = False
    """Replace a voice webhook that points elsewhere (the console asks first)."""
    force: bool = False
    """Set it even though Twilio cannot reach ``PUBLIC_URL`` (local, private or plain http)."""


class SessionRequest(msgspec.Struct, forbid_unknown_fields=True):
    """The body of ``POST /api/session``."""

    session: dict[str, Any]
    call_id: Annotated[str, msgspec.Meta(min_length=1)] | None = None


def request_error(error: msgspec.ValidationError) -> str:
    """A msgspec error about a request body, naming the parameter in the API's words."""
    text = str(error)
    problem, _, where = text.partition(" - at `$.")
    param = where.rstrip("`").split(".")[0].split("[")[0] if where else ""
    if not param and "`" in problem:  # missing or unknown field: named inside the message
        param = problem.split("`")[1]
    return f"{param!r}: {problem}" if param else problem


class CallNotLive(LookupError):
    """No live call with that id on this server."""


class CallNotTakingCommands(RuntimeError):
    """The call is ending, or its inbox is full: the session update was not delivered."""


# --- the session config: shared with the live feed ---------------------------------------------


def save_default_session(server: Server, session: dict[str, Any]) -> dict[str, Any]:
    """Merge ``session`` over the server's default for new calls, check it, record
    ``DefaultSessionConfigSaved`` (so it survives restarts) and make it the default.

    Returns the saved config. Raises ``SessionConfigError`` (nothing changed) when it is invalid.
    """
    if not isinstance(session, dict):
        raise SessionConfigError("'session' must be an object of session settings")
    config = normalize_session_config({**server.default_session, **session})
    saved = DefaultSessionConfigSaved(call_id=SETTINGS_STREAM, at=server.now(), session_config=config, source="console")
    try:
        server.writer.record(saved)
    except ValueError as exc:  # the event cannot be encoded: nothing was queued
        raise SessionConfigError(f"cannot save this session config: {exc}") from None
    server.default_session = config
    return config


async def update_call_session(server: Server, call_id: str, session: dict[str, Any]) -> dict[str, Any]:
    """Check ``session`` and hand it to live call ``call_id`` (on whichever engine carries it), which
    merges it into its config, sends ``session.update`` to its model and records
    ``CallSessionConfigChanged``.

    Returns ``session``. Raises ``SessionConfigError`` when it is invalid, :class:`CallNotLive`
    when no engine carries such a call, :class:`CallNotTakingCommands` when the call is ending.
    """
    if not isinstance(session, dict):
        raise SessionConfigError("'session' must be an object of session settings")
    normalize_session_config(session)
    raise_unless_delivered(await server.commands.send(call_id, "update_session", {"session": session}), call_id)
    return session


def raise_unless_delivered(result: CommandResult, call_id: str) -> None:
    """:class:`CallNotLive` when no engine carries the call, :class:`CallNotTakingCommands` when it
    is ending; nothing when the command was delivered."""
    if result.ok:
        return
    if not result.engine_id:
        raise CallNotLive(f"no live call {call_id!r} on any engine ({result.detail})")
    raise CallNotTakingCommands(f"call {call_id!r} is ending or not taking commands now; try again")


# --- the blueprint -----------------------------------------------------------------------------


async def json_object() -> dict[str, Any] | None:
    """The request's JSON body when it is an object (an empty body counts as ``{}``), else None."""
    if not await request.get_data():
        return {}
    body = await request.get_json(force=True, silent=True)
    return body if isinstance(body, dict) else None


def console_api_blueprint(server: Server) -> Blueprint:
    """The console routes over ``server`` (settings, registry, live calls, writer, nursery)."""
    api = Blueprint("console_api", __name__)
    api.before_request(require_token(lambda: server.settings.api_token))

    def not_an_object() -> Response:
        return error_response(400, "the request body must be a JSON object")

    @api.get("/api/setup")
    async def setup() -> Response:
        return json_response(await setup_report(server.settings, server.model_url))

    @api.post("/api/setup/webhook")
    async def set_webhook() -> Response:
        body = await json_object()
        if body is None:
            return not_an_object()
        try:
            wanted = msgspec.convert(body, WebhookRequest)
        except msgspec.ValidationError as error:
            return error_response(400, f"{request_error(error)} ('sid': the SID of one of the account's numbers, PN…)")
        settings = server.settings
        numbers = phone_numbers_client(settings)
        if numbers is None:
            return error_response(409, "set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN first")
        target = twiml_url(settings.public_url)
        problem = unreachable_reason(settings.public_url)
        if problem and not wanted.force:
            message = (
                f"Twilio cannot reach {target}: {problem}. Set PUBLIC_URL to a public https URL (e.g. an "
                "ngrok tunnel) and restart, or send force: true to set it anyway"
            )
            return error_response(409, message, code="unreachable_url", url=target)
        try:
            listed = await numbers.alist_numbers(limit=MAX_NUMBERS)
            number = next((n for n in listed if n.sid == wanted.sid), None)
            if number is None:
                return error_response(404, f"number {wanted.sid} not found in this Twilio account")
            current = number.voice_url
            if current and current != target and not wanted.replace:
                message = (
                    f"{number.phone_number} already sends its calls to {current}; "
                    "send replace: true to point it here instead"
                )
                return error_response(409, message, code="webhook_in_use", current_voice_url=current)
            updated = await numbers.aset_voice_webhook(
                wanted.sid, voice_url=target, status_callback=status_callback_url(settings.public_url)
            )
        except TwilioRestError as error:
            status = {RestErrorKind.NOT_FOUND: 404}.get(error.kind, 502)
            return error_response(status, str(error), kind=str(error.kind))
        log.info(
            "voice webhook of %s (%s) set to %s (was %s)",
            updated.phone_number,
            wanted.sid,
            updated.voice_url,
            current or "unset",
        )
        return json_response({**number_view(updated, settings.public_url), "previous_voice_url": current})

    async def live_session(call_id: str) -> CallSession | None:
        """The session call ``call_id`` runs now (from its log, whichever engine carries it), or None
        when it is not live (never started, or ended)."""
        await server.fresh.events()
        events = await trio.to_thread.run_sync(server.store.read_call, call_id, limiter=server.db_threads)
        if not events or any(isinstance(recorded.event, CallEnded) for recorded in events):
            return None
        return call_session(events)

    def session_answer(session: dict[str, Any], call_id: str | None, **extra: Any) -> dict[str, Any]:
        return {
            "session": session,
            "call_id": call_id,
            "voices": list(VOICES),
            "backend_tools": server.agent_registry.schemas(),
            **extra,
        }

    @api.get("/api/session")
    async def get_session() -> Response:
        call_id = request.args.get("call_id")
        if call_id is None:
            return json_response(session_answer(server.default_session, None, voice_locked=False))
        if not call_id:
            return error_response(400, "'call_id' must be the id of a live call, or absent")
        found = await live_session(call_id)
        if found is None:
            return error_response(404, f"no live call {call_id!r} on this server")
        return json_response(session_answer(found.config, call_id, voice_locked=found.voice_locked))

    @api.post("/api/session")
    async def post_session() -> Response:
        body = await json_object()
        if body is None:
            return not_an_object()
        try:
            wanted = msgspec.convert(body, SessionRequest)
        except msgspec.ValidationError as error:
            return error_response(400, request_error(error))
        try:
            if wanted.call_id is None:
                saved = save_default_session(server, wanted.session)
                with trio.move_on_after(5):
                    await server.writer.flush()  # saved means stored, when the store answers
                return json_response({"session": saved, "call_id": None, "applied": True})
            # Over what the model runs now, not the call's own merge: a change the model refused
            # (a new voice after the assistant spoke) must not ride along with the next one.
            current = await live_session(wanted.call_id)
            change = {**current.config, **wanted.session} if current is not None else wanted.session
            with server.feed.subscribe(wanted.call_id) as answers:  # before the call sends it
                await update_call_session(server, wanted.call_id, change)
                outcome = await model_answer(answers)
        except SessionConfigError as error:
            return error_response(400, str(error))
        except CallNotLive as error:
            return error_response(404, str(error))
        except CallNotTakingCommands as error:
            return error_response(409, str(error))
        answer = {"session": wanted.session, "call_id": wanted.call_id, "applied": outcome.applied}
        if outcome.applied:
            return json_response({**answer, "message": outcome.message})
        status = 504 if outcome.code == "timeout" else 409
        return error_response(status, outcome.message, code=outcome.code, call_id=wanted.call_id, applied=False)

    @api.post("/api/test-call")
    async def test_call() -> Response:
        body = await json_object()
        if body is None:
            return not_an_object()
        try:
            seconds, ending = test_call_request(body)
        except ValueError as error:
            return error_response(400, str(error))
        if not server.accepting or server.port is None:
            return error_response(503, "the server is not taking calls now")
        call_sid = new_sid("CA")
        try:
            server.start_background(partial(run_test_call, server, call_sid, seconds, ending))
        except RuntimeError as error:
            return error_response(503, str(error))
        return json_response({"call_sid": call_sid}, 202)

    @api.get("/api/calls/live")
    async def live_calls() -> Response:
        calls = sorted(server.live.calls.values(), key=lambda call: call.started_at)
        return json_response(
            [
                {
                    "call_id": call.call_id,
                    "stream_sid": call.stream_sid,
                    "from": call.from_number,
                    "to": call.to_number,
                    "started_at": iso(call.started_at),
                }
                for call in calls
            ]
        )

    return api
