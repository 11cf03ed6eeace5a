"""What a call does once our side ended its media stream: the answer to ``<Connect action>``.

When the engine ends the stream (the call core decided a hang-up or a transfer, and there are no
Twilio credentials to tell Twilio through REST, or the REST update failed), Twilio requests the
``<Connect action>`` URL and runs the TwiML it gets back. The decision is in the call's log:

- the last ``TransferDialed`` → its ``<Dial>`` TwiML (the caller is put through);
- the last ``PhoneHangUpSent``, or nothing decided → ``<Response><Hangup/></Response>``.

Why the writer is flushed first: the decision was recorded an instant before the stream closed and
may still sit in the writer's batch (read-your-writes). When the call is not over in the log yet —
another engine carried it and its writer has not written — the answer waits a little
(:data:`DECISION_WAIT_S`) for the call's end before answering ``<Hangup/>``.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import trio

from callbridge.adapters.twilio.twiml import hangup_twiml
from callbridge.engine.events import CallEnded, PhoneHangUpSent, TransferDialed

if TYPE_CHECKING:
    from callbridge.web.server import Server

DECISION_WAIT_S = 2.0
POLL_S = 0.1
PAGE = 1000


async def _decision(server: Server, call_sid: str) -> tuple[str | None, bool]:
    """(TwiML of the last decision, or None; whether the call's end is recorded)."""
    answer: str | None = None
    ended = False
    after = 0
    while True:
        read = partial(server.store.read_call_page, call_sid, after=after, limit=PAGE)
        page = await trio.to_thread.run_sync(read, limiter=server.db_threads)
        for recorded in page:
            event = recorded.event
            if isinstance(event, TransferDialed):
                answer = event.twiml
            elif isinstance(event, PhoneHangUpSent):
                answer = hangup_twiml()
            elif isinstance(event, CallEnded):
                ended = True
        if len(page) < PAGE:
            return answer, ended
        after = page[-1].position


async def answer_stream_ended(server: Server, call_sid: str) -> str:
    """The TwiML for a call whose stream we ended (``<Hangup/>`` when nothing else was decided)."""
    if not call_sid:
        return hangup_twiml()
    await server.writer.flush()
    with trio.move_on_after(DECISION_WAIT_S):
        while True:
            answer, ended = await _decision(server, call_sid)
            if answer is not None:
                return answer
            if ended:
                break
            await trio.sleep(POLL_S)
    return hangup_twiml()


def parse_detection_ms(value: str | None) -> int | None:
    """``MachineDetectionDuration`` (milliseconds) as a number, None when absent or not a number."""
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip())
