"""The console's test call (``POST /api/test-call``): a simulated caller phoning this very server,
so a newcomer sees the whole path work offline — the agent's greeting, a tool call, a barge-in, and
the call's end: a transfer to sales (the caller presses 0) or the agent's own goodbye and hang-up
(the caller says that's all), as the body's ``ending`` asks.

What the caller does is fixed here; what the simulated model answers is its built-in script
(``adapters/sim/fake_openai_script.py::DEFAULT_SCRIPT``), whose turns these steps follow.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import TYPE_CHECKING, Any, Literal, get_args

from callbridge.adapters.sim.caller import place_call
from callbridge.adapters.sim.caller_script import (
    Dtmf,
    HangUp,
    Silence,
    Speak,
    Step,
    WaitForAssistant,
    WaitForHangUp,
    barge_in_turn,
)

if TYPE_CHECKING:
    from callbridge.server import Server

log = logging.getLogger(__name__)

TEST_CALL_DEFAULT_S = 40.0
"""Room for the test call's turns (one through a tool, one interrupted) and its end."""
TEST_CALL_MAX_S = 120.0
TEST_CALL_FROM = "+15005550006"
"""The test caller's number (Twilio's magic "valid" test number)."""

Ending = Literal["transfer", "goodbye"]
ENDINGS: tuple[str, ...] = get_args(Ending)


def test_call_script(seconds: float, *, greeted: bool = False, ending: Ending = "transfer") -> list[Step]:
    """What the console's test caller does: hear the agent's greeting out (``greeted``), ask (the
    simulated model looks up the weather), wait for the answer; ask again and talk over the (long)
    reply once it has played a while — a real barge-in; wait for the answer to that, then end:

    - ``transfer``: press 0 for sales (the simulated model transfers the call when the agent has a
      ``sales`` target, and apologises otherwise); hang up once that is answered;
    - ``goodbye``: say that's all (the simulated model says goodbye and hangs up with ``end_call``);
      stay on the line until the agent has hung up.

    The caller also hangs up after ``seconds`` whatever is happening."""
    wait = WaitForAssistant(timeout_s=max(1.0, seconds))
    end: list[Step] = [Dtmf("0"), wait, HangUp()] if ending == "transfer" else [Speak(1000), WaitForHangUp(seconds)]
    return [
        *([wait] if greeted else []),
        Speak(1200),
        wait,
        Silence(400),
        Speak(1200),
        *barge_in_turn(seconds),
        Silence(400),
        *end,
    ]


def local_base_url(host: str, port: int) -> str:
    """How this process reaches its own listener: loopback for a wildcard or loopback bind,
    else the bound address itself."""
    if host in ("", "0.0.0.0", "localhost"):
        return f"http://127.0.0.1:{port}"
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return f"http://{host}:{port}"  # a host name
    if address.version == 6:
        return f"http://[{'::1' if address.is_unspecified else address}]:{port}"
    return f"http://{address}:{port}"


async def run_test_call(server: Server, call_sid: str, seconds: float, ending: Ending = "transfer") -> None:
    """Place the simulated call against this server, as Twilio would (signed with the Twilio auth
    token when one is configured), and log how it went."""
    assert server.port is not None
    settings = server.settings
    report = await place_call(
        local_base_url(settings.host, server.port),
        script=test_call_script(seconds, greeted=server.agent.greeting is not None, ending=ending),
        auth_token=settings.twilio_auth_token,
        public_url=settings.public_url,
        account_sid=settings.twilio_account_sid,
        from_number=TEST_CALL_FROM,
        max_duration_s=seconds,
        status_callback=True,
        call_sid=call_sid,
    )
    if report.errors:
        log.warning("test call %s ended by %s: %s", call_sid, report.ended_by, "; ".join(report.errors))
    else:
        log.info("test call %s ended by %s after %.1f s", call_sid, report.ended_by, report.duration_s)


def test_call_request(body: dict[str, Any]) -> tuple[float, Ending]:
    """The requested length and ending, checked: ValueError with the reason."""
    seconds = body.get("seconds", TEST_CALL_DEFAULT_S)
    if seconds is None:
        seconds = TEST_CALL_DEFAULT_S
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 1 <= seconds <= TEST_CALL_MAX_S:
        raise ValueError(f"'seconds' must be a number from 1 to {TEST_CALL_MAX_S:g}")
    ending = body.get("ending", "transfer")
    if ending == "transfer" or ending is None:
        return float(seconds), "transfer"
    if ending == "goodbye":
        return float(seconds), "goodbye"
    raise ValueError(f"'ending' must be one of {', '.join(repr(e) for e in ENDINGS)}")
