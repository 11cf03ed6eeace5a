"""``callbridge serve`` refuses privacy and webhook settings it cannot use (exit 2, one line naming the
variable and what it accepts), and its key store is private."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from serve_process import serve_process


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({"CALLBRIDGE_REDACT": "cards,cats"}, "CALLBRIDGE_REDACT: unknown rule 'cats'; use any of cards, national_ids"),
        ({"CALLBRIDGE_REDACT_LOG": "1"}, "CALLBRIDGE_REDACT_LOG=1 needs rules in CALLBRIDGE_REDACT"),
        (
            {"CALLBRIDGE_WEBHOOK_RETRY_WINDOW_SECONDS": "a day"},
            "CALLBRIDGE_WEBHOOK_RETRY_WINDOW_SECONDS must be a number",
        ),
        ({"CALLBRIDGE_WEBHOOK_FIRST_RETRY_SECONDS": "-1"}, "CALLBRIDGE_WEBHOOK_FIRST_RETRY_SECONDS must be a positive"),
    ],
)
async def test_a_bad_privacy_or_webhook_setting_stops_serve_with_one_line(
    tmp_path: Path, env: dict[str, str], said: str
) -> None:
    async with serve_process(tmp_path, "--port", "0", env=env) as refused:
        assert await refused.exit_status() == 2
    assert said in refused.output
    assert "Traceback" not in refused.output


async def test_the_key_store_beside_the_store_is_private(tmp_path: Path) -> None:
    async with serve_process(tmp_path, "--port", "0") as started:
        await started.console_port()
        assert await started.stop() == 0
    keys = tmp_path / "data" / "callbridge-keys.db"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
