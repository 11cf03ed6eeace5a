"""``replay --json`` of a long call on two cores: the second half of the call written by a child process.

Why: one process writes an hour's call (49,000 events, 44 MB of audio) at ~4.5 µs an event, its
native work included (``projections.call_json``): 0.23 s on a fast day of the 2-core development
machine, 0.55 s on a slow one. What is left per event is Python's own loop, which a thread cannot
share (measured: a thread reading the next page while this one writes made it slower, the two
fighting for the GIL). A second process can.

How (:func:`write_call_json_in_halves`):

- The call's last version is read. A call under ``min_events`` events (about twelve minutes) is
  written by this process alone: a fork costs more than it saves there.
- A child (``os.fork``) opens the store anew from its URL — a database connection is never used on
  both sides of a fork — and writes the records of the versions after the split (:data:`FIRST_SHARE`
  of them before it) into an unnamed temporary file, each after ``,\\n``. It reports how many
  through a pipe and leaves by ``os._exit``, so nothing of this process (``out``'s buffer, the
  store's connections) is flushed or closed twice.
- Meanwhile this process writes ``[\\n`` and the first part to ``out``. Then it copies the child's
  file after its own records (its first ``,\\n`` becomes ``[\\n`` when it wrote none) and ends the
  array.
- The bytes are :func:`call_json.write_call_json`'s, and so ``event_json.write_json``'s
  (``tests/projections/test_call_json_halves.py``). A child that fails (no count, a bad exit
  status: say the temporary file's disk is full) costs time, not output: this process then writes
  the second half itself, straight to ``out``.

Events appended while the call is read (a live call) are in the second half, read to its end.
A warning about an event the store cannot open may be logged by both processes.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
from typing import BinaryIO

from callbridge.engine.store import EventStore, open_existing_store
from callbridge.projections.call_json import (
    ARRAY_END,
    ARRAY_START,
    PAGE_SIZE,
    SEPARATOR,
    write_call_json,
    write_records,
)

log = logging.getLogger(__name__)

MIN_EVENTS = 10_000
"""Calls with fewer events are written by one process."""
FIRST_SHARE = 0.54
"""The share of the call's events this process writes. The child starts later (the fork, a store opened
anew) and its records are copied once more; alternated on an hour's call (``benchmarks/replay.py``,
best of 5, twice): a 0.54 share 0.246 / 0.248 s, halves 0.256 / 0.259 s, 0.58 0.262 / 0.259 s."""
_COPY_CHUNK = 1 << 20


def write_call_json_in_halves(
    store: EventStore,
    store_url: str,
    call_id: str,
    out: BinaryIO,
    *,
    page_size: int = PAGE_SIZE,
    min_events: int | None = None,
) -> int:
    """:func:`call_json.write_call_json` with the call's last part (after :data:`FIRST_SHARE` of its
    versions) written by a forked child that opens ``store_url`` (the store ``store`` was opened from) for
    itself. Returns how many events were written.
    ``min_events``: the fewest events split (default :data:`MIN_EVENTS`)."""
    last = store.last_version(call_id)
    if last < max(MIN_EVENTS if min_events is None else min_events, 2) or not hasattr(os, "fork"):
        return write_call_json(store, call_id, out, page_size=page_size)
    split = round(last * FIRST_SHARE)
    try:
        second = tempfile.TemporaryFile()
    except OSError as error:  # no room for the child's half: one process needs none
        log.warning("no temporary file for a second process (%s): writing the call in one", error)
        return write_call_json(store, call_id, out, page_size=page_size)
    with second:
        child = _fork_second_half(store_url, call_id, split, second, page_size)
        try:
            written = write_records(store, call_id, out, page_size=page_size, through_version=split)
        except BaseException:
            _stop(child)
            raise
        counted = _wait_for(child)
        first = SEPARATOR if written else ARRAY_START
        if counted is None:  # the child failed: this process writes its half, straight to ``out``
            counted = write_records(store, call_id, out, page_size=page_size, first=first, after_version=split)
        elif counted:
            second.seek(len(SEPARATOR))
            out.write(first)
            shutil.copyfileobj(second, out, _COPY_CHUNK)
        written += counted
    if written:
        out.write(ARRAY_END)
    return written


class _Child:
    def __init__(self, pid: int, report: int) -> None:
        self.pid = pid
        self.report = report
        """The read end of the pipe the child writes its count to."""


def _fork_second_half(store_url: str, call_id: str, split: int, into: BinaryIO, page_size: int) -> _Child | None:
    """Start the child writing the versions after ``split`` into ``into``; None when it cannot be started."""
    read_end, write_end = os.pipe()
    try:
        pid = os.fork()
    except OSError as error:
        os.close(read_end)
        os.close(write_end)
        log.warning("cannot start a second process for the call's second half (%s): writing it here", error)
        return None
    if pid == 0:  # the child: everything in here ends in os._exit
        status = 1
        try:
            os.close(read_end)
            own = open_existing_store(store_url)
            counted = write_records(own, call_id, into, page_size=page_size, first=SEPARATOR, after_version=split)
            into.flush()
            os.write(write_end, str(counted).encode())
            status = 0
        except BaseException:  # reported by the exit status; the parent writes this half
            log.exception("the second process writing call %s's second half failed", call_id)
        finally:
            os._exit(status)
    os.close(write_end)
    return _Child(pid, read_end)


def _wait_for(child: _Child | None) -> int | None:
    """The number of events the child wrote, once it has exited; None when it failed."""
    if child is None:
        return None
    try:
        with os.fdopen(child.report, "rb") as report:
            text = report.read()
    finally:
        _, status = os.waitpid(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0 or not text.isdigit():
        log.warning("the second process did not finish the call's second half: writing it here")
        return None
    return int(text)


def _stop(child: _Child | None) -> None:
    """This process failed first: end the child and reap it."""
    if child is None:
        return
    os.close(child.report)
    try:
        os.kill(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    os.waitpid(child.pid, 0)
