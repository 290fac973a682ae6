"""The test suite's own layout (issue 14 item 6): helpers that several test modules share
live in helper modules (tests/services.py, tests/policies.py, tests/data.py, tests/cli.py,
tests/workers/pipeline.py, …), never in a ``test_*.py`` module or a ``conftest.py``, so
that no test module imports another one (or a conftest: pytest loads those itself, and an
import of one runs its fixtures' module twice under two names).

Read with ``ast`` (imports inside functions count). :data:`ALLOWED` lists today's debt, in
files being changed by others: it only shrinks — an entry no longer needed fails too.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

# (importer, imported) module names still allowed, each with the helper module to use.
ALLOWED: dict[tuple[str, str], str] = {}


def _module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def _imports(path: Path) -> set[str]:
    """The ``tests.*`` modules ``path`` imports (``from tests.x import y`` counts ``tests.x``
    and, when ``tests.x.y`` is a module, that too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return {m for m in found if m.startswith("tests.")}


def _is_test_or_conftest(module: str) -> bool:
    leaf = module.rsplit(".", 1)[-1]
    path = ROOT.joinpath(*module.split("."))
    exists = path.with_suffix(".py").is_file()
    return exists and (leaf.startswith("test_") or leaf == "conftest")


def _edges() -> set[tuple[str, str]]:
    sources = [p for p in TESTS.rglob("*.py") if "benchmarks" not in p.parts]
    return {
        (_module(p), m)
        for p in sources
        for m in _imports(p)
        if _is_test_or_conftest(m) and m != _module(p)
    }


def test_no_module_imports_a_test_module_or_a_conftest() -> None:
    new = sorted(_edges() - set(ALLOWED))
    assert not new, (
        "move what these import into a helper module under tests/ (not test_*.py or "
        f"conftest.py): {new}"
    )


def test_every_allowed_import_is_still_needed() -> None:
    stale = sorted(set(ALLOWED) - _edges())
    assert not stale, f"paid off: delete these lines from ALLOWED: {stale}"
