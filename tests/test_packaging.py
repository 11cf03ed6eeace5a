"""What ``pip install .`` puts on a machine: one import package, ``callbridge``, and nothing undeclared.

The repository keeps its top-level folders (``engine/``, ``adapters/``, …); ``pyproject.toml`` maps
them to ``callbridge.engine``, ``callbridge.adapters``, …, so an install never adds global packages
named ``engine`` or ``web`` that collide with somebody else's. These tests build the real wheel and
read the real metadata.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
SOURCE_FOLDERS = {"adapters", "engine", "projections", "web", "mcp_server"}


def _source_modules() -> set[str]:
    """Every module file of the package, named as it is installed."""
    names = {path.relative_to(ROOT).as_posix() for path in (ROOT / "callbridge").rglob("*.py")}
    for folder in SOURCE_FOLDERS:
        for path in (ROOT / folder).rglob("*.py"):
            names.add(f"callbridge/{path.relative_to(ROOT).as_posix()}")
    return names


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--verbose", "--no-deps", "--wheel-dir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        text=True,
    )
    # setuptools warns (and a later version may refuse) when a folder with files is not a listed package
    assert "absent from the `packages` configuration" not in built.stdout + built.stderr
    (path,) = out.glob("callbridge-*.whl")
    return zipfile.ZipFile(path)


def test_the_wheel_installs_exactly_one_top_level_package(wheel: zipfile.ZipFile) -> None:
    top = {name.split("/")[0] for name in wheel.namelist()}
    dist_info = {name for name in top if name.endswith(".dist-info")}
    assert top - dist_info == {"callbridge"}
    (info,) = dist_info
    assert wheel.read(f"{info}/top_level.txt").decode().split() == ["callbridge"]


def test_the_wheel_carries_every_module_and_the_console_assets(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    missing = _source_modules() - names
    assert not missing, f"modules not packaged (add their package to pyproject.toml): {sorted(missing)}"
    assert "callbridge/web/templates/console.html" in names
    assert "callbridge/web/static/app.js" in names
    (info,) = {name.split("/")[0] for name in names if ".dist-info/" in name}
    assert "callbridge = callbridge.cli:main" in wheel.read(f"{info}/entry_points.txt").decode()


def _imported_top_level_names() -> dict[str, str]:
    """Top-level names the package's own code imports (absolute imports), with one file that does."""
    found: dict[str, str] = {}
    files = list((ROOT / "callbridge").rglob("*.py"))
    for folder in SOURCE_FOLDERS:
        files += (ROOT / folder).rglob("*.py")
    for path in files:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


def test_every_import_is_the_standard_library_the_package_or_a_declared_dependency() -> None:
    requires = metadata.requires("callbridge") or []
    declared = {
        Requirement(text).name.lower().replace("_", "-")
        for text in requires
        if "extra ==" not in text  # the runtime code may not lean on dev extras
    }
    providers = metadata.packages_distributions()
    undeclared = {}
    for name, where in _imported_top_level_names().items():
        if name in sys.stdlib_module_names or name in {"callbridge", "__future__"}:
            continue
        dists = {dist.lower().replace("_", "-") for dist in providers.get(name, [])}
        if not dists & declared:
            undeclared[name] = (where, sorted(dists))
    assert not undeclared, f"imported but not declared in [project.dependencies]: {undeclared}"


def test_the_old_top_level_names_are_not_importable_once_installed() -> None:
    """Run from outside the repository, where only what the install provides is importable."""
    names = ("engine", "web", "adapters", "projections", "mcp_server", "callbridge_cli")
    probe = f"import importlib.util as u; print([n for n in {names!r} if u.find_spec(n)])"
    out = subprocess.run([sys.executable, "-c", probe], cwd="/", check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"
