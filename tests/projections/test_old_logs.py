"""Logs recorded by an older engine keep reading the same.

``tests/fixtures/v1/callbridge.db`` holds four calls (a plain turn with a key press and a status
callback, a tool call, a barge-in, a dropped and re-seeded model session) recorded by the engine
before the pure call core (see ``tests/fixtures/record_v1_store.py``); ``answers.json`` is what the
read side of that engine answered about them. Every later engine must answer the same: the
conversations API, each call's metrics, its recording, and its ``callbridge replay`` timeline.
Where a later change deliberately alters an answer, ``answers.json`` is edited in that commit and
the commit says why.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from old_log_answers import FIXTURE, collect_answers


@pytest.fixture(scope="module")
def expected() -> dict[str, object]:
    return json.loads((FIXTURE / "answers.json").read_text())


async def test_the_v1_fixture_reads_the_same_through_the_api_and_replay(tmp_path: Path, expected: dict) -> None:
    answers = await collect_answers(FIXTURE / "callbridge.db", tmp_path / "served")
    assert sorted(answers) == sorted(expected)
    for key in sorted(expected):
        assert answers[key] == expected[key], key
