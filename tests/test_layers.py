"""The import directions that keep the layers apart, read from the source (no import is executed).

- the domain core (``dispatcher/core``) imports no framework and nothing of the project but the core and
  the rule table's compiled shapes;
- the rules (``rules/``) import nothing of the project;
- nothing below the composition root (``server/``) imports the gateways, the simulations or the root;
- the gateways import neither the simulations nor the composition root.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FRAMEWORKS = {
    "aiomqtt",
    "aiosqlite",
    "alembic",
    "apscheduler",
    "asyncpg",
    "fastapi",
    "httpx",
    "paho",
    "sqlalchemy",
    "sqlmodel",
    "starlette",
    "uvicorn",
    "websockets",
}
PROJECT = {"dispatcher", "gateways", "rules", "server", "simulations"}


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, dotted module) of every import in the file, relative ones made absolute."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, module]) if module else ".".join(base)
            yield node.lineno, module


def _files(folder: str) -> list[Path]:
    return sorted(p for p in (ROOT / folder).rglob("*.py") if "migrations/versions" not in p.as_posix())


def _offences(folder: str, refused: set[str]) -> list[str]:
    return [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in _files(folder)
        for line, module in _imports(path)
        if module.split(".")[0] in refused
    ]


def test_the_core_imports_no_framework_and_only_the_core_and_the_rules() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in _files("dispatcher/core")
        for line, module in _imports(path)
        if module.split(".")[0] in FRAMEWORKS
        or (module.split(".")[0] in PROJECT and not module.startswith(("dispatcher.core", "rules")))
    ]
    assert found == []


def test_the_rules_import_nothing_of_the_project() -> None:
    assert _offences("rules", PROJECT - {"rules"}) == []


@pytest.mark.parametrize("folder", ["dispatcher", "rules"])
def test_nothing_below_the_composition_root_imports_the_edges_or_the_root(folder: str) -> None:
    assert _offences(folder, {"gateways", "simulations", "server"}) == []


def test_the_gateways_import_neither_simulations_nor_the_root() -> None:
    assert _offences("gateways", {"simulations", "server"}) == []


def test_the_scan_sees_imports() -> None:
    """Guard against a scan that finds nothing: the composition root does import the gateways."""
    assert _offences("server", {"gateways"}) != []
