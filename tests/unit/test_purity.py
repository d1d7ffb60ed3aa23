"""The pure core never touches the event loop, sockets, the database or the clock
(design.md §2, §7 rule 1): checked on the source with ``ast``, so that a lazy import
inside a function is caught too."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Final

import pytest

PROXY = Path(__file__).resolve().parents[2] / "proxy"
PURE_MODULES: Final = sorted(
    [
        *(PROXY / "sip").rglob("*.py"),
        *(PROXY / "b2bua").rglob("*.py"),
        *[path for path in [PROXY / "numbers.py"] if path.exists()],
    ]
)
FORBIDDEN: Final = frozenset({"asyncio", "socket", "sqlite3", "time", "datetime", "threading"})


def imported_modules(source: str) -> set[str]:
    """Top-level names of every module imported anywhere in ``source``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.partition(".")[0])
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name | ast.Attribute)
            and (node.func.id if isinstance(node.func, ast.Name) else node.func.attr)
            in {"__import__", "import_module"}
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value.partition(".")[0])
    return names


def test_the_pure_core_is_found() -> None:
    assert PROXY / "sip" / "transaction.py" in PURE_MODULES
    assert PROXY / "sip" / "message.py" in PURE_MODULES


@pytest.mark.parametrize("path", PURE_MODULES, ids=lambda path: str(path.relative_to(PROXY)))
def test_pure_module_imports_no_io_or_clock(path: Path) -> None:
    assert not imported_modules(path.read_text(encoding="utf-8")) & FORBIDDEN


@pytest.mark.parametrize(
    "source",
    [
        "import time",
        "import asyncio.events",
        "from datetime import datetime",
        "def f():\n    import socket\n",
        "import importlib\nimportlib.import_module('sqlite3')",
        "__import__('threading')",
    ],
)
def test_the_check_catches_every_import_form(source: str) -> None:
    assert imported_modules(source) & FORBIDDEN
