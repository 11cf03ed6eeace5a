"""The package's layers hold: adapters <- engine <- projections <- web | mcp_server <- the composition
root (``callbridge.server``) <- the CLI, and no package's modules import each other in a circle.

The contracts are in ``.importlinter``; import-linter (the standard tool) checks them on the real
import graph, type-checking-only imports aside.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_import_contracts_are_kept() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--config", str(ROOT / ".importlinter")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "2 kept, 0 broken" in result.stdout


REPOSITORY_CHECKS = {"test_benchmarks.py", "test_docs_references.py", "test_layers.py", "test_packaging.py"}
"""The only tests at ``tests/``'s top: they check the repository as a whole, not one package."""
NOT_MIRRORED = {"fixtures", "artifacts", "__pycache__"}


def test_the_tests_mirror_the_source_tree() -> None:
    """``tests/engine/`` specifies ``engine/``, ``tests/adapters/twilio/`` ``adapters/twilio/``, … and
    ``tests/callbridge/`` the composition root and CLI: a test is found where its subject is."""
    tests = ROOT / "tests"
    folders = [
        path.relative_to(tests)
        for path in tests.rglob("*")
        if path.is_dir() and not NOT_MIRRORED & set(path.relative_to(tests).parts)
    ]
    assert folders, "no test folders"
    unmirrored = [str(folder) for folder in folders if not (ROOT / folder).is_dir()]
    assert not unmirrored, f"test folders without a source folder of the same path: {unmirrored}"
    loose = {path.name for path in tests.glob("test_*.py") if "def test_" in path.read_text()}
    assert loose <= REPOSITORY_CHECKS, f"move these tests next to their subject's folder: {loose - REPOSITORY_CHECKS}"


def test_a_test_imports_helpers_from_its_own_folder_or_the_top_only() -> None:
    """pytest puts each test's folder on the import path as it collects it, so an import from a sibling
    folder works in a whole run and fails when that folder is not collected first."""
    tests = ROOT / "tests"
    folder_of = {path.stem: path.parent for path in tests.rglob("*.py") if "fixtures" not in path.parts}
    crossing = [
        f"{path.relative_to(tests)} imports {name}"
        for path in tests.rglob("*.py")
        for name in re.findall(r"^(?:from|import) (\w+)", path.read_text(), re.MULTILINE)
        if folder_of.get(name) not in (None, tests, path.parent)
    ]
    assert not crossing, f"move these helpers to tests/ (the top): {crossing}"
