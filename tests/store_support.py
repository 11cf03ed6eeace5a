"""Making a real store fail the way disks do: a read-only SQLite file, and "disk full" for a process.

Root ignores file modes, so as root a file is made immutable (``chattr +i``) instead of read-only;
where neither works the test is skipped with the reason. Disk full is a file-size limit
(``RLIMIT_FSIZE``) on another process: its writes then fail with EFBIG, which SQLite reports as a
disk I/O error (Python ignores SIGXFSZ, so the process lives on).
"""

from __future__ import annotations

import os
import resource
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def read_only(*paths: Path) -> Iterator[None]:
    """``paths`` cannot be written (by this user, root included) inside the block."""
    existing = [p for p in paths if p.exists()]
    modes = {p: p.stat().st_mode for p in existing}
    if os.geteuid() == 0:
        done = subprocess.run(["chattr", "+i", *map(str, existing)], capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"as root a file is made read-only with chattr +i, which failed here: {done.stderr.strip()}")
    else:
        for p in existing:
            p.chmod(0o444)
    try:
        yield
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", *map(str, existing)], check=True)
        for p, mode in modes.items():
            p.chmod(mode)


def store_files(db: Path) -> list[Path]:
    """A SQLite store's database and write-ahead log (never ``-shm``: SQLite maps it, and an
    unwritable map is a bus error, not an error SQLite can report)."""
    return [db, db.with_name(db.name + "-wal")]


def fill_disk(pid: int, limit_bytes: int = 4096) -> None:
    """From now on process ``pid`` cannot grow any file beyond ``limit_bytes``: a full disk."""
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (limit_bytes, resource.RLIM_INFINITY))


def free_disk(pid: int) -> None:
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
