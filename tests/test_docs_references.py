"""The repository's own documents are the ones its code, help and docs point at: no reference to a
document that is not in the repository, and every ``docs/protocols.md`` section cited exists."""

from __future__ import annotations

import re
from pathlib import Path

from callbridge.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("adapters", "callbridge", "engine", "mcp_server", "projections", "web", "tests", "benchmarks", "docs")
MISSING = re.compile(r"\.\./shared|stack-notes|CONTRACT\.md|(?<![\w/])protocols\.md")
CITED = re.compile(r"docs/protocols\.md,? ((?:[A-E][0-9]*(?:-[A-E]?[0-9]+)?(?:, | and )?)+)")


def repository_texts() -> dict[Path, str]:
    files = [ROOT / "README.md", ROOT / "DEVELOPERS.md", ROOT / "Makefile"]
    for folder in SOURCES:
        files += [p for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".md", ".js", ".html") and p.is_file()]
    return {path: path.read_text(errors="replace") for path in files if "__pycache__" not in path.parts}


def test_nothing_points_at_documents_outside_the_repository() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{text[: m.start()].count(chr(10)) + 1}: {m.group(0)}"
        for path, text in repository_texts().items()
        if path.name != "test_docs_references.py"
        for m in MISSING.finditer(text)
    ]
    assert found == []
    assert not MISSING.search(build_parser().format_help())


def test_every_cited_section_of_docs_protocols_exists() -> None:
    protocols = (ROOT / "docs" / "protocols.md").read_text()
    labels = set(re.findall(r"^##+ ([A-E][0-9]*)\.", protocols, re.MULTILINE))
    pitfalls = protocols.split("\n## D.", 1)[1]
    labels |= {f"D{number}" for number in re.findall(r"^([0-9]+)\. ", pitfalls, re.MULTILINE)}
    cited: set[str] = set()
    for text in repository_texts().values():
        for m in CITED.finditer(text):
            for part in re.split(r", | and ", m.group(1)):
                first, _, last = part.partition("-")
                cited.add(first)
                if last:
                    cited.add(last if last[0].isalpha() else first[0] + last)
    assert {"A7", "B6", "C", "D4"} <= cited
    assert cited <= labels, sorted(cited - labels)
    assert (ROOT / "docs" / "contract.md").exists()
