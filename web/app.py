"""The Quart app: Twilio's webhooks, the small endpoints, and the hooks every request passes.

- Every HTTP request and WebSocket handshake first passes :mod:`web.request_guard` (cross-origin
  state changes refused with 403, non-JSON bodies under ``/api/`` with 415), so each blueprint —
  the API, the console's API, the live feed — is covered without a check of its own.
- Twilio-facing routes are authenticated by ``X-Twilio-Signature`` whenever a Twilio auth token is
  configured (a missing or wrong signature gets 403 and starts nothing). The URL signed is the
  public one Twilio called (``PUBLIC_URL`` + path + query), never the one hypercorn sees behind a
  proxy.
- ``GET /tools`` and ``GET /public-url`` need the API token like the rest of the console and API
  (bearer header or console cookie); only ``/healthz`` and Twilio's routes are open.

Twilio's routes (all signed when ``TWILIO_AUTH_TOKEN`` is set):

- ``/twiml`` answers ``<Connect action="PUBLIC_URL/twilio/stream-ended"><Stream>`` with the call's
  ``From``, ``To``, ``CallSid`` and ``Direction`` (``inbound``, ``outbound-api``) as parameters, once
  it has decided which agent answers (``engine/agent_router.py``: the assistant request, the rules)
  and that decision is in the call's log;
- ``/twilio/stream-ended`` is that ``action``: when our side ended the stream, it answers what the
  call decided, from the call's log (the last ``TransferDialed``'s ``<Dial>`` or, after a
  ``PhoneHangUpSent`` or nothing at all, ``<Hangup/>``). Without Twilio credentials this is how
  hang-ups and transfers reach the phone; with them it is the fallback when the REST update failed;
- ``/twilio/status`` records the call's progress (``CallStatusReported``: queued, ringing,
  in-progress, busy, no-answer, failed, completed), freeing an outbound call's slot at its end;
  the end of a call a warm transfer holds ends it there (``web/held_calls.py``);
- ``/twilio/amd`` is the asynchronous answering-machine result of an outbound call (``AnsweredBy``,
  ``MachineDetectionDuration``): handed to the live call, or recorded (``MachineDetected``) when the
  call is not live on this engine;
- ``/twilio/transfer-join`` is that person asking for the room once they heard the summary;
- ``/twilio/transfer-status`` is the end of a warm transfer's call to the person
  (``web/warm_transfer.py``): the held caller's call ends ``transferred``, or comes back to the agent
  on a new stream built like ``/twiml``'s.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from quart import Blueprint, Response, jsonify, request
from quart_trio import QuartTrio

from callbridge.adapters.twilio import signature, twiml
from callbridge.engine.events import CallStatusReported, MachineDetected
from callbridge.engine.routing import CallFacts
from callbridge.web.agents_api import agents_blueprint
from callbridge.web.api import api_blueprint
from callbridge.web.auth import install_sessions, require_token
from callbridge.web.calls_api import calls_api_blueprint
from callbridge.web.console import console_blueprint
from callbridge.web.console_api import console_api_blueprint
from callbridge.web.held_calls import caller_left
from callbridge.web.live_feed import live_feed_blueprint
from callbridge.web.media import CALL_TOKEN_PARAMETER
from callbridge.web.outbound import TERMINAL_STATUSES
from callbridge.web.request_guard import request_guard
from callbridge.web.sessions import SessionKeeper
from callbridge.web.stream_ended import answer_stream_ended, parse_detection_ms
from callbridge.web.tests_api import tests_blueprint
from callbridge.web.tools_offered_api import tools_offered_blueprint
from callbridge.web.warm_transfer import (
    TRANSFER_JOIN_PATH,
    TRANSFER_STATUS_PATH,
    transfer_join_requested,
    transfer_status_reported,
)
from callbridge.web.webhooks_api import webhooks_blueprint

if TYPE_CHECKING:
    from callbridge.server import Server

STREAM_ENDED_PATH = "/twilio/stream-ended"

log = logging.getLogger(__name__)


def create_app(server: Server) -> QuartTrio:
    app = QuartTrio("callbridge")
    app.config["CALLBRIDGE"] = server
    check_request, check_websocket = request_guard(lambda: server.settings.public_url, lambda: server.port)
    app.before_request(check_request)
    app.before_websocket(check_websocket)
    install_sessions(app, SessionKeeper(server.settings.data_dir), lambda: server.settings.public_url)
    app.register_blueprint(small_endpoints_blueprint(server))
    app.register_blueprint(api_blueprint(server))
    app.register_blueprint(agents_blueprint(server))
    app.register_blueprint(console_api_blueprint(server))
    app.register_blueprint(tools_offered_blueprint(server))
    app.register_blueprint(calls_api_blueprint(server))
    app.register_blueprint(live_feed_blueprint(server))
    app.register_blueprint(webhooks_blueprint(server))
    app.register_blueprint(tests_blueprint(server))
    app.register_blueprint(console_blueprint(server))

    async def twilio_params() -> tuple[dict[str, str], Response | None]:
        """The webhook's parameters, or a 403 response when the signature does not match."""
        form = await request.form if request.method == "POST" else {}
        params = {key: form[key] for key in form}
        if server.settings.twilio_auth_token:
            query = request.query_string.decode("latin-1")
            url = signature.webhook_url(server.settings.public_url, request.path, query)
            sent = request.headers.get("X-Twilio-Signature")
            if not signature.is_valid_signature(server.settings.twilio_auth_token, url, form, sent):
                return params, Response("invalid or missing X-Twilio-Signature\n", status=403)
        if request.method == "GET":
            params = {key: request.args[key] for key in request.args}
        return params, None

    def stream_twiml(parameters: dict[str, str]) -> str:
        """``<Connect action><Stream>`` to ``/call`` with ``parameters`` (``From``, ``To``,
        ``CallSid``, ``Direction``, …) and the call's per-call token: ``/twiml``'s answer, and where
        a warm transfer nobody answered sends the caller back."""
        parameters = dict(parameters)
        if server.settings.twilio_auth_token:
            call_sid = parameters.get("CallSid", "")
            parameters[CALL_TOKEN_PARAMETER] = server.admission.token_for(server.settings.twilio_auth_token, call_sid)
        public_url = server.settings.public_url
        return twiml.connect_stream_twiml(
            signature.stream_url(public_url),
            parameters,
            action=signature.webhook_url(public_url, STREAM_ENDED_PATH),
        )

    @app.route("/twiml", methods=["GET", "POST"])
    async def voice_webhook() -> Any:
        params, refused = await twilio_params()
        if refused is not None:
            return refused
        parameters = {key: params.get(key, "") for key in ("From", "To", "CallSid")}
        parameters["Direction"] = params.get("Direction") or "inbound"
        facts = CallFacts.of(parameters["CallSid"], parameters)
        try:
            chosen = None  # an outbound call placed with an agent: from our own log, never from the request
            if parameters["Direction"].startswith("outbound") and parameters["CallSid"]:
                chosen = await server.outbound.agent_for(parameters["CallSid"])
            await server.routing.route_webhook(facts, chosen=chosen)  # recorded before Twilio opens the stream
        except Exception:  # never keep a caller from being answered: the stream's start routes again
            log.exception("call %s: routing at /twiml failed", facts.call_id)
        return Response(stream_twiml(parameters), content_type="text/xml")

    @app.route(STREAM_ENDED_PATH, methods=["POST"])
    async def stream_ended() -> Any:
        params, refused = await twilio_params()
        if refused is not None:
            return refused
        body = await answer_stream_ended(server, params.get("CallSid", ""))
        return Response(body, content_type="text/xml")

    @app.route("/twilio/amd", methods=["POST"])
    async def amd_callback() -> Any:
        params, refused = await twilio_params()
        if refused is not None:
            return refused
        call_sid, answered_by = params.get("CallSid", ""), params.get("AnsweredBy", "")
        if not call_sid or not answered_by:
            return Response("CallSid and AnsweredBy are required\n", status=400)
        detection_ms = parse_detection_ms(params.get("MachineDetectionDuration"))
        call = await server.outbound.wait_live(call_sid)
        delivered = call is not None and call.machine_detected(answered_by, detection_ms)
        if not delivered:  # not live here: maybe on another engine
            payload = {"answered_by": answered_by, "detection_ms": detection_ms}
            delivered = (await server.commands.send(call_sid, "machine_detected", payload)).ok
        if not delivered:
            server.writer.record(
                MachineDetected(call_id=call_sid, at=server.now(), answered_by=answered_by, detection_ms=detection_ms)
            )
        return Response("", status=204)

    @app.route(TRANSFER_STATUS_PATH, methods=["POST"])
    async def transfer_status() -> Any:
        params, refused = await twilio_params()
        if refused is not None:
            return refused
        query = {key: request.args[key] for key in request.args}
        return await transfer_status_reported(server, query, params, stream_twiml)

    @app.route(TRANSFER_JOIN_PATH, methods=["POST"])
    async def transfer_join() -> Any:
        params, refused = await twilio_params()
        if refused is not None:
            return refused
        query = {key: request.args[key] for key in request.args}
        return await transfer_join_requested(server, query, params)

    @app.route("/twilio/status", methods=["POST"])
    async def status_callback() -> Any:
        params, refused = await twilio_params()
        if refused is not None:
            return refused
        call_sid = params.get("CallSid", "")
        if call_sid:
            server.outbound.status_reported(call_sid, params.get("CallStatus", ""))
            duration = params.get("CallDuration")
            server.writer.record(
                CallStatusReported(
                    call_id=call_sid,
                    at=server.now(),
                    status=params.get("CallStatus", ""),
                    duration_s=int(duration) if duration and duration.isdigit() else None,
                    params=params,
                )
            )
            if params.get("CallStatus", "") in TERMINAL_STATUSES and server.live.get(call_sid) is None:
                await caller_left(server, call_sid, params.get("CallStatus", ""))  # a held caller hung up
        return Response("", status=204)

    @app.route("/healthz")
    async def healthz() -> Any:
        ok, body = await server.health()  # callbridge/server.py: what "can take calls" means
        return jsonify(body), (200 if ok else 503)

    return app


def small_endpoints_blueprint(server: Server) -> Blueprint:
    """``GET /tools`` (the function tools' schemas) and ``GET /public-url``, behind the API token."""
    blueprint = Blueprint("small_endpoints", __name__)
    blueprint.before_request(require_token(lambda: server.settings.api_token))

    @blueprint.get("/tools")
    async def tools() -> Any:
        return jsonify(server.agent_registry.schemas())

    @blueprint.get("/public-url")
    async def public_url() -> Any:
        return jsonify({"publicUrl": server.settings.public_url})

    return blueprint
