"""The IncomingPhoneNumbers client (twilio package underneath) against the local fake of the
Twilio REST API, over real sockets on 127.0.0.1; and the fake's own wire behaviour."""

from __future__ import annotations

import base64
from functools import partial

import httpx2
import pytest
import trio

from callbridge.adapters.sim.fake_twilio_rest import FakeTwilioRest, serve_fake_twilio_rest
from callbridge.adapters.twilio.rest import IncomingPhoneNumbers, PhoneNumber
from callbridge.adapters.twilio.rest_errors import RestErrorKind, TwilioRestError

ACCOUNT = "AC" + "ab" * 16
TOKEN = "twilio-secret-token-0123456789"
NUMBERS_PATH = f"/2010-04-01/Accounts/{ACCOUNT}/IncomingPhoneNumbers.json"


@pytest.fixture
async def fake(nursery: trio.Nursery) -> FakeTwilioRest:
    account = FakeTwilioRest(ACCOUNT, TOKEN)
    started: FakeTwilioRest = await nursery.start(partial(serve_fake_twilio_rest, "127.0.0.1", 0, fake=account))
    return started


def client(fake: FakeTwilioRest, token: str = TOKEN, **kwargs: float) -> IncomingPhoneNumbers:
    return IncomingPhoneNumbers(ACCOUNT, token, base_url=fake.url, **kwargs)


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then released)."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port: int = listeners[0].socket.getsockname()[1]
    for listener in listeners:
        await listener.aclose()
    return port


# --- list --------------------------------------------------------------------------------------


async def test_list_returns_every_number_with_its_voice_webhook(fake: FakeTwilioRest) -> None:
    support = fake.add_number("+15550001111", friendly_name="Support", voice_url="https://old.example/voice")
    fake.add_number("+15550002222")
    trunked = fake.add_number("+15550003333", friendly_name="Trunk")
    trunked["trunk_sid"] = "TK" + "0" * 32

    numbers = await client(fake).alist_numbers()

    assert [n.phone_number for n in numbers] == ["+15550001111", "+15550002222", "+15550003333"]
    assert numbers[0] == PhoneNumber(
        sid=support["sid"],
        phone_number="+15550001111",
        friendly_name="Support",
        voice_url="https://old.example/voice",
        voice_method="POST",
        status_callback="",
        status_callback_method="POST",
        voice_application_sid="",
        trunk_sid="",
    )
    assert numbers[1].friendly_name == "+15550002222"  # Twilio's default name is the number
    assert numbers[2].trunk_sid == "TK" + "0" * 32


async def test_list_follows_next_page_uri_across_pages(fake: FakeTwilioRest) -> None:
    for index in range(7):
        fake.add_number(f"+1555000{index:04d}")

    numbers = await client(fake).alist_numbers(page_size=3)

    assert [n.phone_number for n in numbers] == [f"+1555000{index:04d}" for index in range(7)]
    pages = [query for method, path, query in fake.requests if path == NUMBERS_PATH]
    assert [page.get("Page", "0") for page in pages] == ["0", "1", "2"]
    assert {page["PageSize"] for page in pages} == {"3"}


async def test_list_stops_at_the_limit(fake: FakeTwilioRest) -> None:
    for index in range(5):
        fake.add_number(f"+1555000{index:04d}")
    numbers = await client(fake).alist_numbers(limit=2)
    assert [n.phone_number for n in numbers] == ["+15550000000", "+15550000001"]


async def test_an_empty_account_lists_no_numbers(fake: FakeTwilioRest) -> None:
    assert await client(fake).alist_numbers() == []


# --- update ------------------------------------------------------------------------------------


async def test_set_voice_webhook_updates_url_method_and_status_callback(fake: FakeTwilioRest) -> None:
    number = fake.add_number("+15550001111", voice_url="https://old.example/voice", voice_method="GET")

    updated = await client(fake).aset_voice_webhook(
        number["sid"], voice_url="https://bridge.example/twiml", status_callback="https://bridge.example/twilio/status"
    )

    assert updated.sid == number["sid"]
    assert (updated.voice_url, updated.voice_method) == ("https://bridge.example/twiml", "POST")
    assert (updated.status_callback, updated.status_callback_method) == ("https://bridge.example/twilio/status", "POST")
    assert fake.updates == [
        (
            number["sid"],
            {
                "VoiceUrl": "https://bridge.example/twiml",
                "VoiceMethod": "POST",
                "StatusCallback": "https://bridge.example/twilio/status",
                "StatusCallbackMethod": "POST",
            },
        )
    ]
    listed = await client(fake).alist_numbers()
    assert listed == [updated]  # the account now has it


async def test_updating_an_unknown_number_is_not_found(fake: FakeTwilioRest) -> None:
    with pytest.raises(TwilioRestError) as raised:
        await client(fake).aset_voice_webhook("PN" + "0" * 32, voice_url="https://bridge.example/twiml")
    error = raised.value
    assert (error.kind, error.status, error.code) == (RestErrorKind.NOT_FOUND, 404, 20404)
    assert "not found" in str(error)
    assert fake.updates == []


# --- failures ----------------------------------------------------------------------------------


async def test_bad_credentials_are_refused_with_20003_and_never_echoed(fake: FakeTwilioRest) -> None:
    number = fake.add_number("+15550001111")
    wrong = "wrong-token-do-not-echo"

    with pytest.raises(TwilioRestError) as listing:
        await client(fake, token=wrong).alist_numbers()
    with pytest.raises(TwilioRestError) as updating:
        await client(fake, token=wrong).aset_voice_webhook(number["sid"], voice_url="https://bridge.example/twiml")

    for error in (listing.value, updating.value):
        assert (error.kind, error.status, error.code) == (RestErrorKind.AUTH, 401, 20003)
        assert "TWILIO_AUTH_TOKEN" in str(error)
        assert wrong not in str(error) and TOKEN not in str(error)
    assert fake.refused_auth == 2
    assert fake.updates == []
    assert fake.numbers[number["sid"]]["voice_url"] == ""


async def test_an_unreachable_api_is_reported_as_unreachable() -> None:
    port = await closed_port()
    numbers = IncomingPhoneNumbers(ACCOUNT, TOKEN, base_url=f"http://127.0.0.1:{port}")
    with pytest.raises(TwilioRestError) as raised:
        await numbers.alist_numbers()
    assert raised.value.kind is RestErrorKind.UNREACHABLE
    assert f"127.0.0.1:{port}" in str(raised.value) and "refused" in str(raised.value).lower()


async def test_an_api_that_never_answers_times_out(nursery: trio.Nursery) -> None:
    async def hold(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()  # accepts the connection, never answers

    listeners = await nursery.start(partial(trio.serve_tcp, hold, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    numbers = IncomingPhoneNumbers(ACCOUNT, TOKEN, base_url=f"http://127.0.0.1:{port}", timeout_s=0.3)
    with pytest.raises(TwilioRestError) as raised:
        await numbers.alist_numbers()
    assert raised.value.kind is RestErrorKind.UNREACHABLE
    assert "within 0.3 s" in str(raised.value)


async def test_a_peer_that_is_not_twilio_is_a_bad_response(nursery: trio.Nursery) -> None:
    async def html(stream: trio.SocketStream) -> None:
        await stream.receive_some(65536)
        body = b"<html>not the Twilio API</html>"
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n"
        await stream.send_all(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        await stream.aclose()

    listeners = await nursery.start(partial(trio.serve_tcp, html, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    with pytest.raises(TwilioRestError) as raised:
        await IncomingPhoneNumbers(ACCOUNT, TOKEN, base_url=f"http://127.0.0.1:{port}").alist_numbers()
    assert raised.value.kind is RestErrorKind.BAD_RESPONSE
    assert "TWILIO_API_BASE_URL" in str(raised.value)


def test_the_client_needs_both_credentials_and_never_shows_the_token() -> None:
    with pytest.raises(ValueError):
        IncomingPhoneNumbers(ACCOUNT, "")
    assert TOKEN not in repr(IncomingPhoneNumbers(ACCOUNT, TOKEN, base_url="http://127.0.0.1:1"))


# --- the fake on the wire ----------------------------------------------------------------------


async def test_fake_error_bodies_have_twilios_shape(fake: FakeTwilioRest) -> None:
    async with httpx2.AsyncClient(base_url=fake.url) as http:
        anonymous = await http.get(NUMBERS_PATH)
        unknown = await http.get(NUMBERS_PATH.replace(".json", "/PNnope.json"), headers=basic(ACCOUNT, TOKEN))
        other_account = await http.get(NUMBERS_PATH.replace(ACCOUNT, "AC" + "cd" * 16), headers=basic(ACCOUNT, TOKEN))

    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Basic")
    assert anonymous.json() == {
        "code": 20003,
        "message": "Authenticate",
        "more_info": "https://www.twilio.com/docs/errors/20003",
        "status": 401,
    }
    for response in (unknown, other_account):
        assert response.status_code == 404
        body = response.json()
        assert (body["code"], body["status"]) == (20404, 404)
        assert set(body) == {"code", "message", "more_info", "status"}


async def test_fake_list_page_carries_the_paging_meta_and_filters(fake: FakeTwilioRest) -> None:
    fake.add_number("+15550001111", friendly_name="Support")
    fake.add_number("+15550002222", friendly_name="Sales")
    fake.add_number("+15550003333", friendly_name="Support")
    async with httpx2.AsyncClient(base_url=fake.url, headers=basic(ACCOUNT, TOKEN)) as http:
        first = (await http.get(NUMBERS_PATH, params={"PageSize": 2})).json()
        support = (await http.get(NUMBERS_PATH, params={"FriendlyName": "Support"})).json()
        by_number = (await http.get(NUMBERS_PATH, params={"PhoneNumber": "2222"})).json()
        bad_size = await http.get(NUMBERS_PATH, params={"PageSize": 0})

    assert (first["page"], first["page_size"], first["start"], first["end"]) == (0, 2, 0, 1)
    assert first["next_page_uri"] == f"{NUMBERS_PATH}?PageSize=2&Page=1"
    assert first["previous_page_uri"] is None
    assert first["incoming_phone_numbers"][0]["uri"].startswith(
        f"/2010-04-01/Accounts/{ACCOUNT}/IncomingPhoneNumbers/PN"
    )
    assert [n["phone_number"] for n in support["incoming_phone_numbers"]] == ["+15550001111", "+15550003333"]
    assert support["next_page_uri"] is None
    assert [n["phone_number"] for n in by_number["incoming_phone_numbers"]] == ["+15550002222"]
    assert bad_size.status_code == 400


async def test_fake_refuses_a_method_that_is_not_get_or_post(fake: FakeTwilioRest) -> None:
    number = fake.add_number("+15550001111")
    async with httpx2.AsyncClient(base_url=fake.url, headers=basic(ACCOUNT, TOKEN)) as http:
        response = await http.post(
            NUMBERS_PATH.replace(".json", f"/{number['sid']}.json"),
            data={"VoiceUrl": "https://x/", "VoiceMethod": "PUT"},
        )
    assert response.status_code == 400 and "VoiceMethod" in response.json()["message"]
    assert fake.numbers[number["sid"]]["voice_url"] == ""
