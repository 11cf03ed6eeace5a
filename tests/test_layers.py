"""The package's layers hold: adapters <- engine <- projections <- web | mcp_server <- the composition
root (``callbridge.server``) <- the CLI, and no package's modules import each other in a circle.

The contracts are in ``.importlinter``; import-linter (the standard tool) checks them on the real
import graph, type-checking-only imports aside.
"""

from __future__ import annotations

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
