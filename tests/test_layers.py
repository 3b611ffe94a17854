"""The dependency rule of DESIGN.md, held by a test: api/cli -> services -> domain;
storage, executors and scm never reach up; nothing but the CLI imports the API."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "conveyor"

FORBIDDEN = {
    "domain": (
        "conveyor.services",
        "conveyor.storage",
        "conveyor.executors",
        "conveyor.scm",
        "conveyor.api",
        "conveyor.cli",
        "conveyor.wiring",
        "conveyor.settings",
    ),
    "services": (
        "conveyor.storage",
        "conveyor.executors",
        "conveyor.scm",
        "conveyor.api",
        "conveyor.cli",
        "conveyor.wiring",
    ),
    "storage": (
        "conveyor.services",
        "conveyor.executors",
        "conveyor.scm",
        "conveyor.api",
        "conveyor.cli",
        "conveyor.wiring",
    ),
    "executors": (
        "conveyor.services",
        "conveyor.storage",
        "conveyor.api",
        "conveyor.cli",
        "conveyor.wiring",
    ),
    "scm": (
        "conveyor.services",
        "conveyor.storage",
        "conveyor.executors",
        "conveyor.api",
        "conveyor.cli",
        "conveyor.wiring",
    ),
    "outbound": (
        "conveyor.services",
        "conveyor.storage",
        "conveyor.executors",
        "conveyor.scm",
        "conveyor.api",
        "conveyor.cli",
        "conveyor.wiring",
    ),
    # The outer layers reach storage, executors and scm only through the services and
    # the composition root (wiring), never directly.
    "api": (
        "conveyor.storage",
        "conveyor.executors",
        "conveyor.scm",
        "conveyor.outbound",
        "conveyor.cli",
    ),
    "cli": ("conveyor.storage", "conveyor.executors", "conveyor.scm", "conveyor.outbound"),
    # The client talks to a server over HTTP only, whatever machine it runs on.
    "client": (
        "conveyor.domain",
        "conveyor.services",
        "conveyor.storage",
        "conveyor.executors",
        "conveyor.scm",
        "conveyor.outbound",
        "conveyor.api",
        "conveyor.cli",
        "conveyor.web",
        "conveyor.wiring",
        "conveyor.settings",
    ),
    "web": (
        "conveyor.storage",
        "conveyor.executors",
        "conveyor.scm",
        "conveyor.services",
        "conveyor.api",
        "conveyor.cli",
        "conveyor.wiring",
    ),
}


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_only_what_it_may(layer: str) -> None:
    broken = [
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in sorted((PACKAGE / layer).rglob("*.py"))
        for name in sorted(imports_of(path))
        if any(name == f or name.startswith(f"{f}.") for f in FORBIDDEN[layer])
    ]
    assert broken == []


def test_nothing_but_the_cli_imports_the_api() -> None:
    broken = [
        str(path.relative_to(PACKAGE))
        for path in sorted(PACKAGE.rglob("*.py"))
        if not path.is_relative_to(PACKAGE / "api") and not path.is_relative_to(PACKAGE / "cli")
        for name in imports_of(path)
        if name == "conveyor.api" or name.startswith("conveyor.api.")
    ]
    assert broken == []


def test_every_package_is_held_to_a_rule() -> None:
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert packages == set(FORBIDDEN)
