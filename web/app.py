"""The Quart app: Twilio's webhooks and the small public endpoints.

Twilio-facing routes are authenticated by ``X-Twilio-Signature`` whenever a Twilio auth token is
configured (a missing or wrong signature gets 403 and starts nothing). The URL signed is the public
one Twilio called (``PUBLIC_URL`` + path + query), never the one hypercorn sees behind a proxy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quart import Response, jsonify, request
from quart_trio import QuartTrio

from callbridge.adapters.twilio import signature, twiml
from callbridge.engine.events import CallStatusReported
from callbridge.web.api import api_blueprint
from callbridge.web.console import console_blueprint
from callbridge.web.console_api import console_api_blueprint
from callbridge.web.live_feed import live_feed_blueprint
from callbridge.web.media import CALL_TOKEN_PARAMETER, call_token

if TYPE_CHECKING:
    from callbridge.web.server import Server


def create_app(server: Server) -> QuartTrio:
    app = QuartTrio("callbridge")
    app.config["CALLBRIDGE"] = server
    app.register_blueprint(api_blueprint(server))
    app.register_blueprint(console_api_blueprint(server))
    app.register_blueprint(live_feed_blueprint(server))
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

    @app.route("/twiml", methods=["GET", "POST"])
    async def voice_webhook() -> Any:
        params, refused = await twilio_params()
        if refused is not None:
            return refused
        parameters = {key: params.get(key, "") for key in ("From", "To", "CallSid")}
        if server.settings.twilio_auth_token:
            parameters[CALL_TOKEN_PARAMETER] = call_token(server.settings.twilio_auth_token, params.get("CallSid", ""))
        body = twiml.connect_stream_twiml(signature.stream_url(server.settings.public_url), parameters)
        return Response(body, content_type="text/xml")

    @app.route("/twilio/status", methods=["POST"])
    async def status_callback() -> Any:
        params, refused = await twilio_params()
        if refused is not None:
            return refused
        call_sid = params.get("CallSid", "")
        if call_sid:
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
        return Response("", status=204)

    @app.route("/tools")
    async def tools() -> Any:
        return jsonify(server.registry.schemas())

    @app.route("/public-url")
    async def public_url() -> Any:
        return jsonify({"publicUrl": server.settings.public_url})

    @app.route("/healthz")
    async def healthz() -> Any:
        ok, body = await server.health()  # web/server.py: what "can take calls" means
        return jsonify(body), (200 if ok else 503)

    return app
