"""ARCHITECTURE.md against the code it describes.

Its code map has one row per module of paas/, agent/ and web/ (``__init__.py``
aside): a module added without a row, or a row left for a module that is
gone, fails here. The import rules it states are import-linter's contracts
(pyproject.toml, run by scripts/test.sh); the Docker SDK's door is checked
here.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARCHITECTURE = ROOT / "ARCHITECTURE.md"
PACKAGES = ("paas", "agent", "web")
MAP_HEADING = "## Code map"
# a backticked module path: `paas/cli/server.py`
MODULE = re.compile(r"`((?:paas|agent|web)/[A-Za-z0-9_/]+\.py)`")
# a row of the map: | `agent/plan.py` | what it is |
ROW = re.compile(r"^\|\s*`((?:paas|agent|web)/[A-Za-z0-9_/]+\.py)`\s*\|")


def modules_on_disk() -> set[str]:
    return {
        path.relative_to(ROOT).as_posix()
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if path.name != "__init__.py"
    }


def code_map() -> str:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    assert MAP_HEADING in text, f"ARCHITECTURE.md has no {MAP_HEADING!r} section"
    section = text.split(MAP_HEADING, 1)[1]
    return re.split(r"^## ", section, maxsplit=1, flags=re.MULTILINE)[0]


def map_rows() -> list[str]:
    return [m[1] for line in code_map().splitlines() if (m := ROW.match(line))]


def test_every_module_has_a_row_in_the_code_map() -> None:
    missing = sorted(modules_on_disk() - set(map_rows()))
    assert not missing, f"modules without a row in ARCHITECTURE.md's code map: {missing}"


def test_every_row_of_the_code_map_is_a_module() -> None:
    gone = sorted(set(map_rows()) - modules_on_disk())
    assert not gone, f"ARCHITECTURE.md's code map names modules that do not exist: {gone}"


def test_each_module_has_one_row() -> None:
    twice = sorted(name for name, n in Counter(map_rows()).items() if n > 1)
    assert not twice, f"modules with more than one row in the code map: {twice}"


def test_every_module_architecture_md_names_exists() -> None:
    named = set(MODULE.findall(ARCHITECTURE.read_text(encoding="utf-8")))
    gone = sorted(name for name in named if not (ROOT / name).is_file())
    assert not gone, f"ARCHITECTURE.md names modules that do not exist: {gone}"


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def importers(top: str) -> set[str]:
    """The files of paas/, agent/ and web/ (``__init__.py`` too) that import
    ``top`` or one of its submodules."""
    files = [path for package in PACKAGES for path in (ROOT / package).rglob("*.py")]
    return {
        path.relative_to(ROOT).as_posix()
        for path in files
        if any(m == top or m.startswith(f"{top}.") for m in imports(path))
    }


def test_the_docker_sdk_comes_in_through_the_engine_door() -> None:
    """import-linter (pyproject.toml) holds the layering and subprocess; this
    is the one door it does not name: the Docker SDK."""
    assert importers("docker") == {"agent/docker_engine.py"}
