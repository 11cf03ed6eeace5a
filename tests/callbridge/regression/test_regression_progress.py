"""Progress on the terminal: a line per finished test, and under them a bar redrawn as each test
finishes (only on a terminal: a pipe or a file gets the lines alone)."""

from __future__ import annotations

import io

from callbridge.regression.output import Progress
from callbridge.regression.suite import TestResult


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def result(name: str, passed: bool) -> TestResult:
    return TestResult(name=name, source=f"{name}.toml", passed=passed, new_call="CA2", seconds=1.5)


def test_a_terminal_gets_a_bar_under_the_lines_and_a_pipe_only_the_lines() -> None:
    terminal, pipe = Terminal(), io.StringIO()
    for out in (terminal, pipe):
        progress = Progress(out, 2)
        progress.finished(1, 2, result("a", False))
        progress.finished(2, 2, result("b", True))

    assert pipe.getvalue() == "[1/2] FAIL a (CA2, 1.5 s)\n[2/2] PASS b (CA2, 1.5 s)\n"
    bar = "·" * 30
    assert terminal.getvalue() == (
        f"[{bar}] 0/2"
        "\r\033[K[1/2] FAIL a (CA2, 1.5 s)\n"
        f"[{'#' * 15}{'·' * 15}] 1/2, 1 failed"
        "\r\033[K[2/2] PASS b (CA2, 1.5 s)\n"
    )
