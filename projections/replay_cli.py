"""``callbridge replay CALL_ID [--wav FILE] [--json]``: one recorded call, rebuilt from its events.

Read-only by design: a store that does not exist is an error here (exit 2), not a new empty database
(``engine.store.open_existing_store``), and a mistyped call id says where to find real ones.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from callbridge.engine.events import CallErased
from callbridge.engine.store import EventStore, StoreOpenError, open_existing_store
from callbridge.projections.call_json_halves import write_call_json_in_halves
from callbridge.projections.recording import SAMPLE_RATE, iter_recording
from callbridge.projections.timeline import build_timeline, render_text
from callbridge.projections.views_db import iso

LIST_HINT = "list calls with `GET /api/conversations` (or the web console)"


def _wants_color(out: TextIO) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(out, "isatty", None)
    return bool(isatty and isatty())


def replay_cli(store_url: str, call_id: str, *, wav: str | None, as_json: bool, out: TextIO | None = None) -> int:
    """Print the call's timeline (or, with ``as_json``, its events as JSON) to ``out`` (default: the
    ``sys.stdout`` of the moment) and, with ``wav``, write its stereo recording there (not for an erased
    call: its audio is gone). Returns the exit code: 0; 1 (an unknown call, an erased call's WAV) or 2
    (no store there, a bad URL) with a message on stderr."""
    out = sys.stdout if out is None else out
    try:
        store = open_existing_store(store_url)
    except (ValueError, StoreOpenError) as error:
        print(f"callbridge replay: {error}", file=sys.stderr)
        return 2
    try:
        where = store.description
        written = _print_json(store, store_url, call_id, out) if as_json else None
        recorded = store.read_call(call_id) if wav is not None or not as_json else []
    finally:
        store.close()
    if written == 0 or (written is None and not recorded):
        print(f"callbridge replay: no events for call {call_id} in {where}; {LIST_HINT}", file=sys.stderr)
        return 1
    events = [r.event for r in recorded]
    erased = next((e for e in events if isinstance(e, CallErased)), None)
    if not as_json and wav is None:
        out.write(render_text(build_timeline(events), color=_wants_color(out)))
    if wav is not None and erased is not None:
        print(
            f"callbridge replay: call {call_id} was erased ({iso(erased.at)}): its audio is gone; no WAV written",
            file=sys.stderr,
        )
        return 1
    if wav is not None:
        try:
            samples = _write_wav(Path(wav), iter_recording(events))
        except (OSError, ValueError) as error:
            print(f"callbridge replay: cannot write {wav}: {error}", file=sys.stderr)
            return 1
        message = f"wrote {wav}: {samples / SAMPLE_RATE:.1f} s, stereo 8 kHz 16-bit (caller left, assistant right)\n"
        (sys.stderr if as_json else out).write(message)
    return 0


def _print_json(store: EventStore, store_url: str, call_id: str, out: TextIO) -> int:
    """The call's events as JSON, as they are read (``projections.call_json``); straight to the bytes
    under ``out`` when it has them (an hour's call is ~75 MB of JSON), a long call's second half by a
    second process (``projections.call_json_halves``). Returns how many were written."""
    binary = getattr(out, "buffer", None)
    if binary is None:
        text = io.BytesIO()
        written = write_call_json_in_halves(store, store_url, call_id, text)
        out.write(text.getvalue().decode())
        return written
    out.flush()
    written = write_call_json_in_halves(store, store_url, call_id, binary)
    binary.flush()
    return written


def _write_wav(path: Path, pieces: Iterable[bytes]) -> int:
    """Write the WAV pieces to ``path`` via a temporary file; returns the stereo sample count."""
    tmp = path.with_name(path.name + ".partial")
    written = 0
    try:
        with tmp.open("wb") as file:
            for index, piece in enumerate(pieces):
                file.write(piece)
                if index:
                    written += len(piece)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return written // 4
