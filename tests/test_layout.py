"""DESIGN.md's import rules: the worker folder is the trust boundary."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "snworker"


def imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def modules(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def test_only_the_launcher_names_the_worker_entry_point():
    users = {p.relative_to(PACKAGE).as_posix() for p in modules(PACKAGE)
             if "worker" not in p.relative_to(PACKAGE).parts[:1]
             and (any(n.startswith("snworker.worker") for n in imports(p))
                  or "snworker.worker" in p.read_text())}
    assert users == {"spawn/__init__.py"}


def test_the_worker_never_imports_the_parent_side_or_the_stub():
    # The worker needs no dill-based `multiprocess`: its end of a connection is the standard
    # library's, which frames the same bytes.
    forbidden = ("snworker.connection", "snworker.channel", "snworker.testing", "snworker.table",
                 "snworker.spawn", "snworker.core", "snworker.aio", "multiprocess.")
    for path in modules(PACKAGE / "worker"):
        names = [n + "." for n in imports(path)]
        assert not [n for n in names if n.startswith(forbidden)], path


def test_the_stub_uses_only_the_public_api_and_its_own_modules():
    for path in modules(PACKAGE / "testing"):
        for name in imports(path):
            if name.startswith("snworker"):
                assert name == "snworker" or name.startswith("snworker.testing"), (path, name)
