"""``WS /logs`` against a real running server: real simulated calls, real WebSocket clients.

The feed is a projection of the event log: what a browser sees live is what the store holds, in
order, and a replay of the stored call gives the same messages.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import trio
from bridge_harness import Bridge, running_bridge
from trio_websocket import ConnectionClosed, ConnectionRejected, WebSocketConnection, open_websocket_url

from callbridge.adapters.sim.caller import place_call
from callbridge.adapters.sim.caller_report import CallReport
from callbridge.adapters.sim.caller_script import HangUp, Silence, Speak, Step, WaitForAssistant
from callbridge.adapters.sim.fake_openai_script import FunctionCall, Script, Turn
from callbridge.engine.events import SETTINGS_STREAM, CallSessionConfigChanged, DefaultSessionConfigSaved
from callbridge.engine.tools import Tool, ToolRegistry
from callbridge.web.live_feed import Subscription

TOKEN = "test-token"  # what running_bridge configures
WAIT_S = 20.0
"""Guard against a hang: every read from the feed fails after this long (not synchronisation)."""
ONE_TURN: list[Step] = [Speak(900), WaitForAssistant(timeout_s=15), HangUp()]
SILENT: list[Step] = [Silence(60_000), HangUp()]
"""A caller who stays on the line until the test hangs up from the server."""
SCRIPT = Script(turns=[Turn(transcript="Hi there", reply="Hello! How can I help you today?")])

Message = dict[str, Any]


class Feed:
    """One browser on ``/logs``: reads JSON messages, remembers them, sends commands."""

    def __init__(self, ws: WebSocketConnection, hello: Message) -> None:
        self.ws = ws
        self.hello = hello
        self.seen: list[Message] = []

    async def next(self) -> Message:
        with trio.fail_after(WAIT_S):
            message: Message = json.loads(await self.ws.get_message())
        self.seen.append(message)
        return message

    async def until(self, wanted: Callable[[Message], bool]) -> Message:
        while not wanted(message := await self.next()):
            pass
        return message

    async def send(self, message: Message | str) -> None:
        await self.ws.send_message(message if isinstance(message, str) else json.dumps(message))


def is_type(kind: str, call_id: str | None = None) -> Callable[[Message], bool]:
    return lambda m: m["type"] == kind and (call_id is None or m["call_id"] == call_id)


def ended(feed: Feed, call_id: str) -> bool:
    return any(m["type"] == "call.ended" and m["call_id"] == call_id for m in feed.seen)


def feed_url(bridge: Bridge, **query: str) -> str:
    return bridge.base_url.replace("http://", "ws://") + "/logs?" + urlencode({"token": TOKEN, **query})


@asynccontextmanager
async def open_feed(bridge: Bridge, **query: str) -> AsyncIterator[Feed]:
    async with open_websocket_url(feed_url(bridge, **query)) as ws:
        with trio.fail_after(WAIT_S):
            hello = json.loads(await ws.get_message())
        assert hello["type"] == "feed.hello" and hello["call_id"] is None and hello["stream_sid"] is None
        yield Feed(ws, hello)


async def call_in(nursery: trio.Nursery, bridge: Bridge, script: list[Step], reports: list[CallReport]) -> None:
    async def run() -> None:
        reports.append(await place_call(bridge.base_url, script=script))

    nursery.start_soon(run)


async def replay(bridge: Bridge, call_id: str, speed: str) -> tuple[list[Message], int | None]:
    """Every message of a replay, and the close code."""
    messages: list[Message] = []
    async with open_websocket_url(feed_url(bridge, replay=call_id, speed=speed)) as ws:
        with trio.fail_after(WAIT_S):
            try:
                while True:
                    messages.append(json.loads(await ws.get_message()))
            except ConnectionClosed as closed:
                return messages, closed.reason.code if closed.reason else None
    raise AssertionError("unreachable")


# --- a call on the feed, and its replay ------------------------------------------------------------


async def test_a_call_is_on_the_feed_from_start_to_end_and_replays_the_same(tmp_path: Path) -> None:
    async with running_bridge(tmp_path, script=SCRIPT) as bridge, open_feed(bridge) as feed:
        assert feed.hello["live_calls"] == [] and feed.hello["session"] == bridge.server.default_session
        report = await place_call(bridge.base_url, script=ONE_TURN)
        await feed.until(is_type("call.ended"))
        live = feed.seen
        replayed, code = await replay(bridge, report.call_sid, speed="10")

    assert report.ok, report.errors
    assert all(m["call_id"] == report.call_sid and m["stream_sid"] == report.stream_sid for m in live)
    started, ended = live[0], live[-1]
    assert started["type"] == "call.started" and started["model"] == "sim"
    assert started["from"] == report.from_number and started["to"] == report.to_number
    assert ended["type"] == "call.ended" and ended["reason"] == "caller_hangup" and ended["duration"] > 0
    types = [m["type"] for m in live]
    transcript = next(m for m in live if m["type"] == "conversation.item.input_audio_transcription.completed")
    assert transcript["transcript"] == "Hi there"
    spoken = next(m for m in live if m["type"] == "response.output_audio_transcript.done")
    assert spoken["transcript"] == "Hello! How can I help you today?"
    assert "response.done" in types and "callbridge.model.connected" in types
    update = next(m for m in live if m["type"] == "session.update")
    assert update["direction"] == "client" and update["session"]["type"] == "realtime"
    assert not [t for t in types if "audio.delta" in t or t == "input_audio_buffer.append"]

    assert code == 1000
    assert replayed[-1] == {
        "type": "feed.replay_done",
        "call_id": report.call_sid,
        "stream_sid": report.stream_sid,
        "messages": len(live),
    }
    assert replayed[:-1] == live


async def test_a_replay_of_an_unknown_call_or_at_a_bad_speed_is_an_error_then_close(tmp_path: Path) -> None:
    async with running_bridge(tmp_path) as bridge:
        unknown, unknown_code = await replay(bridge, "CAnope", speed="2")
        too_fast, too_fast_code = await replay(bridge, "CAnope", speed="1000")
    assert [m["error"]["code"] for m in unknown] == ["unknown_call"] and unknown_code == 4404
    assert unknown[0]["type"] == "error" and unknown[0]["call_id"] == "CAnope"
    assert [m["error"]["code"] for m in too_fast] == ["invalid_speed"] and too_fast_code == 4400


# --- who sees what ---------------------------------------------------------------------------------


async def test_call_id_keeps_one_calls_messages(tmp_path: Path) -> None:
    reports: list[CallReport] = []
    async with running_bridge(tmp_path, script=SCRIPT) as bridge, open_feed(bridge) as everything:
        async with trio.open_nursery() as nursery:
            await call_in(nursery, bridge, ONE_TURN, reports)
            first = (await everything.until(is_type("call.started")))["call_id"]
            async with open_feed(bridge, call_id=first) as one:
                await call_in(nursery, bridge, ONE_TURN, reports)
                second = (await everything.until(lambda m: m["type"] == "call.started" and m["call_id"] != first))[
                    "call_id"
                ]
                await everything.until(lambda m: ended(everything, first) and ended(everything, second))
                # a message about no call comes after everything else and reaches both feeds
                await everything.send({"type": "session.update", "session": {"voice": "cedar"}})
                await one.until(is_type("callbridge.default_session.saved"))

    assert len(reports) == 2 and all(r.ok for r in reports)
    assert {m["call_id"] for m in one.seen} == {first, None}
    # the filtered feed opened during the first call: it has the rest of that call, in order
    mine = [m for m in everything.seen if m["call_id"] == first]
    filtered = [m for m in one.seen if m["call_id"] == first]
    assert filtered == mine[-len(filtered) :] and filtered[-1]["type"] == "call.ended"
    assert any(m["type"] == "response.done" for m in filtered)
    assert [m["type"] for m in one.seen if m["call_id"] is None] == ["callbridge.default_session.saved"]
    assert any(m["call_id"] == second and m["type"] == "response.done" for m in everything.seen)


async def test_a_stuck_browser_misses_messages_and_is_told_without_slowing_anyone(tmp_path: Path) -> None:
    async with running_bridge(tmp_path, script=SCRIPT) as bridge, open_feed(bridge) as healthy:
        hub = bridge.server.feed
        hub.buffer_size = 2  # the next browser lags after two messages
        async with open_feed(bridge) as slow:
            hub.buffer_size = 256
            with hub.subscribe(buffer_size=2) as stuck:  # never read during the call
                report = await place_call(bridge.base_url, script=ONE_TURN)
                await healthy.until(is_type("call.ended"))
                held = [json.loads(await stuck.next() or "null") for _ in range(3)]
            # the slow browser reads only now: what it got plus what it was told it missed is everything
            received = missed = 0
            while received + missed < len(healthy.seen):
                message = await slow.next()
                if message["type"] == "feed.gap":
                    missed += message["missed"]
                else:
                    received += 1

    assert report.ok, report.errors
    assert [m["type"] for m in healthy.seen][-1] == "call.ended"
    assert not any(m["type"] == "feed.gap" for m in healthy.seen)
    assert held[:2] == healthy.seen[:2]
    assert held[2] == {"type": "feed.gap", "call_id": None, "stream_sid": None, "missed": len(healthy.seen) - 2}
    assert missed > 0
    slow_messages = [m for m in slow.seen if m["type"] != "feed.gap"]
    assert all(m in healthy.seen for m in slow_messages)


async def test_a_subscription_tells_of_a_loss_where_it_happened() -> None:
    subscription = Subscription(None, 2)
    for text in ("a", "b", "c"):
        subscription.offer(text)  # c is missed
    assert await subscription.next() == "a"
    subscription.offer("d")  # room for the gap marker, not for d
    got = [await subscription.next() or "" for _ in range(3)]
    assert got[0] == "b"
    assert [json.loads(g)["missed"] for g in got[1:]] == [1, 1]
    subscription.close()
    assert await subscription.next() is None


# --- browser commands ---------------------------------------------------------------------------


async def test_a_default_session_update_is_recorded_and_survives_a_restart(tmp_path: Path) -> None:
    async with running_bridge(tmp_path) as bridge, open_feed(bridge) as feed:
        await feed.send({"type": "session.update", "session": {"instructions": "Answer like a pirate."}})
        saved = await feed.until(is_type("callbridge.default_session.saved"))
        await feed.send({"type": "session.update", "session": {"voice": 42}})
        refused = await feed.until(is_type("error"))
        default = dict(bridge.server.default_session)
        stored = await bridge.events(SETTINGS_STREAM)

    assert saved["call_id"] is None and saved["session"]["instructions"] == "Answer like a pirate."
    assert saved["session"]["voice"] == "marin"  # merged over the default, not replacing it
    assert refused["error"]["code"] == "invalid_session" and "voice" in refused["error"]["message"]
    assert default == saved["session"]  # the refused update changed nothing
    assert [e.session_config for e in stored if isinstance(e, DefaultSessionConfigSaved)] == [saved["session"]]

    async with running_bridge(tmp_path) as restarted, open_feed(restarted) as feed:
        assert feed.hello["session"]["instructions"] == "Answer like a pirate."
        assert restarted.server.default_session == saved["session"]


async def test_a_call_session_update_and_response_create_reach_that_call_only(tmp_path: Path) -> None:
    reports: list[CallReport] = []
    async with running_bridge(tmp_path, script=SCRIPT) as bridge, open_feed(bridge) as feed:
        async with trio.open_nursery() as nursery:
            await call_in(nursery, bridge, SILENT, reports)
            await call_in(nursery, bridge, SILENT, reports)
            first = (await feed.until(is_type("callbridge.model.connected")))["call_id"]
            second = (await feed.until(is_type("callbridge.model.connected")))["call_id"]
            await feed.send(
                {"type": "session.update", "call_id": first, "session": {"instructions": "Only speak French."}}
            )
            changed = await feed.until(is_type("callbridge.session.changed"))
            sent = await feed.until(lambda m: m["type"] == "session.update" and m.get("direction") == "client")
            await feed.send({"type": "response.create", "call_id": second})
            await feed.until(is_type("response.done"))
            for call_id in (first, second):
                call = bridge.server.live.get(call_id)
                assert call is not None
                call.hang_up("test_over")
            await feed.until(lambda m: ended(feed, first) and ended(feed, second))
        first_events = await bridge.events(first)
        second_events = await bridge.events(second)
        sessions = bridge.fake.sessions

    assert changed["call_id"] == first and changed["session"]["instructions"] == "Only speak French."
    assert sent["call_id"] == first and sent["session"]["instructions"] == "Only speak French."
    assert [e.session_config["instructions"] for e in first_events if isinstance(e, CallSessionConfigChanged)] == [
        "Only speak French."
    ]
    assert not [e for e in second_events if isinstance(e, CallSessionConfigChanged)]
    french = [s for s in sessions if any("Only speak French." in r.raw for r in s.client_events)]
    assert len(french) == 1
    [other] = [s for s in sessions if s is not french[0]]
    assert [r.type for r in other.client_events].count("session.update") == 1  # the initial one only
    responses = [m for m in feed.seen if m["type"] == "response.create"]
    assert [(m["call_id"], m["direction"]) for m in responses] == [(second, "client")]
    assert {m["call_id"] for m in feed.seen if m["type"] == "response.done"} == {second}


async def test_a_person_answers_a_tool_call_from_the_feed_and_the_model_speaks_the_answer(tmp_path: Path) -> None:
    registry = ToolRegistry()
    registry.register(
        Tool(
            name="ask_operator",
            description="Ask the human operator",
            parameters={"type": "object", "properties": {"question": {"type": "string"}}},
            handler=None,
        )
    )
    script = Script(
        turns=[
            Turn(
                transcript="Can I get a refund?",
                function_call=FunctionCall(name="ask_operator", arguments={"question": "Refund?"}),
                after_tool="The operator says: {output}",
            )
        ]
    )
    async with running_bridge(tmp_path, script=script, registry=registry) as bridge, open_feed(bridge) as feed:
        async with trio.open_nursery() as nursery:
            reports: list[CallReport] = []
            await call_in(nursery, bridge, [Speak(900), WaitForAssistant(timeout_s=20), HangUp()], reports)
            requested = await feed.until(is_type("callbridge.tool_call.requested"))
            call_id, tool_call_id = requested["call_id"], requested["tool_call_id"]
            async with open_feed(bridge) as console:  # a console opened now sees the pending call
                [live] = console.hello["live_calls"]
                answer = {"type": "function_call_output", "call_id": tool_call_id, "output": "Yes, approved."}
                await console.send({"type": "conversation.item.create", "item": answer})
                no_call = await console.until(is_type("error"))
                await console.send({"type": "conversation.item.create", "call_id": call_id, "item": answer})
            completed = await feed.until(is_type("callbridge.tool_call.completed"))
            spoken = await feed.until(is_type("response.output_audio_transcript.done"))
            await feed.until(is_type("response.done"))
            await feed.until(is_type("call.ended"))

    assert reports[0].ok, reports[0].errors
    assert requested["handler"] == "human" and requested["name"] == "ask_operator"
    assert json.loads(requested["arguments"]) == {"question": "Refund?"}
    assert live["call_id"] == call_id
    assert [p["tool_call_id"] for p in live["pending_tool_calls"]] == [tool_call_id]
    assert no_call["error"]["code"] == "missing_call_id"
    assert completed["source"] == "human" and completed["output"] == "Yes, approved."
    assert completed["handler"] == "human"
    output = next(m for m in feed.seen if m["type"] == "conversation.item.create" and m.get("direction") == "client")
    assert output["item"] == answer
    assert spoken["transcript"] == "The operator says: Yes, approved."


async def test_bad_browser_messages_get_an_error_and_the_feed_goes_on(tmp_path: Path) -> None:
    async with running_bridge(tmp_path) as bridge, open_feed(bridge) as feed:
        codes = []
        for message in (
            "{not json",
            "[" * 100_000 + "]" * 100_000,  # deeper than any parser's recursion limit
            "[1, 2]",
            {"type": "input_audio_buffer.append", "audio": ""},
            {"type": "response.create"},
            {"type": "response.create", "call_id": "CAnot-live"},
            {"type": "session.update", "call_id": "CAnot-live", "session": {}},
            {"type": "session.update", "session": "loud"},
            {"type": "conversation.item.create", "call_id": "CAnot-live", "item": {"type": "message"}},
        ):
            await feed.send(message)
            error = await feed.next()
            assert error["type"] == "error" and error["error"]["type"] == "feed_error"
            codes.append(error["error"]["code"])
        await feed.send({"type": "session.update", "session": {"voice": "cedar"}})
        saved = await feed.next()
    assert codes == [
        "invalid_json",
        "invalid_json",
        "invalid_event",
        "unknown_event",
        "missing_call_id",
        "unknown_call",
        "unknown_call",
        "invalid_session",
        "unknown_call",
    ]
    assert saved["type"] == "callbridge.default_session.saved" and saved["session"]["voice"] == "cedar"


async def test_at_shutdown_the_feed_shows_the_calls_ending_then_closes_going_away(tmp_path: Path) -> None:
    reports: list[CallReport] = []
    async with running_bridge(tmp_path, script=SCRIPT) as bridge, open_feed(bridge) as feed:
        async with trio.open_nursery() as nursery:
            await call_in(nursery, bridge, SILENT, reports)
            await feed.until(is_type("callbridge.model.connected"))
            bridge.server.shutdown.set()
            with pytest.raises(ConnectionClosed) as closed:
                await feed.until(lambda m: False)

    assert feed.seen[-1]["type"] == "call.ended" and feed.seen[-1]["reason"] == "server_shutdown"
    assert closed.value.reason is not None and closed.value.reason.code == 1001


# --- authentication -----------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["", "?token=wrong"])
async def test_the_feed_refuses_a_browser_without_the_token(tmp_path: Path, query: str) -> None:
    async with running_bridge(tmp_path) as bridge:
        url = bridge.base_url.replace("http://", "ws://") + "/logs" + query
        with pytest.raises(ConnectionRejected) as rejected:
            async with open_websocket_url(url):
                pass
        async with open_websocket_url(
            bridge.base_url.replace("http://", "ws://") + "/logs",
            extra_headers=[(b"Authorization", f"Bearer {TOKEN}".encode())],
        ) as ws:
            hello = json.loads(await ws.get_message())
    assert rejected.value.status_code == 401
    assert hello["type"] == "feed.hello"
