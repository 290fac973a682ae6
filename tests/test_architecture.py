"""The architecture rules of issue 14, enforced as far as they hold today.

Over the modules of ``routing/``, ``workers/`` and ``producer/`` (their source read with
``ast``, so an import inside a function or under ``if TYPE_CHECKING:`` counts like one at
the top of the module):

1. **size** — no module over :data:`MAX_LINES` lines (DESIGN.md: one noun per module,
   modules under ~400 lines);
2. **layers** — dependencies point one way, ``producer → workers → routing``: ``routing/``
   imports neither ``workers/`` nor ``producer/``, and ``workers/`` does not import
   ``producer/``;
3. **cycles** — no import cycle between modules;
4. **fork safety in one place** — one ``os.register_at_fork`` call (routing/forks.py: what
   a forked child must reset registers with it).

Each rule has an allow-list of today's debt (:data:`OVERSIZED`, :data:`LAYER_VIOLATIONS`,
:data:`CYCLE_EDGES`, :data:`OTHER_FORK_HOOKS`). The lists only shrink: nothing new may join
them, a module on :data:`OVERSIZED` may not grow, and an entry that is no longer needed fails
the test as well, so whoever pays a debt off deletes its line in the same change.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("routing", "workers", "producer")
# Which packages each package may import (besides itself): producer → workers → routing.
MAY_IMPORT = {"routing": set[str](), "workers": {"routing"}, "producer": {"workers", "routing"}}
MAX_LINES = 400

# Modules still over MAX_LINES, each with its line count (``wc -l``) when it was listed as a
# ceiling: it may shrink, never grow. Delete an entry once its module is split.
OVERSIZED: dict[str, int] = {}

# Imports that break "producer → workers → routing", as (importer, imported) modules.
LAYER_VIOLATIONS: dict[tuple[str, str], str] = {}

# Imports that close an import cycle, as (importer, imported) modules: the graph without
# them must be acyclic. Each names the cycle it closes today.
CYCLE_EDGES: dict[tuple[str, str], str] = {}

# The one module that calls ``os.register_at_fork``, and modules that still call it too
# (each with what it should do instead).
FORK_HOOK = "routing/forks.py"
OTHER_FORK_HOOKS: dict[str, str] = {
    "routing/embedding.py": "renews its cache lock: register with routing.forks instead",
}

Edge = tuple[str, str]


@cache
def modules() -> dict[str, Path]:
    """Dotted module name → file, for every module of the three packages."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _owner(name: str) -> str | None:
    """The module of ours that ``name`` (a module or a name in one) belongs to, if any."""
    known = modules()
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def _imported(node: ast.Import | ast.ImportFrom, module: str, path: Path) -> Iterator[str]:
    """The dotted names one import statement loads (``from m import x``: ``m.x`` if that
    is a module, else ``m``)."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    base = node.module or ""
    if node.level:  # relative: from the module's package, up level - 1
        package = module.split(".")[: None if path.name == "__init__.py" else -1]
        base = ".".join([*package[: len(package) - node.level + 1], *filter(None, [base])])
    for alias in node.names:
        yield f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules() else base


@cache
def import_graph() -> dict[str, frozenset[str]]:
    """Module → the modules of ours it imports, anywhere in its source."""
    graph: dict[str, frozenset[str]] = {}
    for module, path in modules().items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                targets.update(_owner(name) for name in _imported(node, module, path))
        graph[module] = frozenset(t for t in targets if t is not None and t != module)
    return graph


def _edges() -> set[Edge]:
    return {(a, b) for a, targets in import_graph().items() for b in targets}


def _path(graph: dict[str, frozenset[str]], start: str, goal: str) -> list[str] | None:
    """A shortest import path from ``start`` to ``goal`` (breadth first), if any."""
    previous: dict[str, str] = {}
    frontier, seen = [start], {start}
    while frontier:
        step = []
        for node in frontier:
            for nxt in sorted(graph.get(node, ())):
                if nxt == goal:
                    chain = [goal, node]
                    while chain[-1] != start:
                        chain.append(previous[chain[-1]])
                    return chain[::-1]
                if nxt not in seen:
                    seen.add(nxt)
                    previous[nxt] = node
                    step.append(nxt)
        frontier = step
    return None


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n")  # as ``wc -l`` counts


def test_modules_fit_in_400_lines() -> None:
    problems = []
    for path in modules().values():
        name, lines = str(path.relative_to(ROOT)), _lines(path)
        ceiling = OVERSIZED.get(name)
        if ceiling is None and lines > MAX_LINES:
            problems.append(
                f"{name}: {lines} lines, over {MAX_LINES}. Split it by concept (one noun per "
                "module, DESIGN.md), e.g. into a subpackage; do not add it to OVERSIZED."
            )
        elif ceiling is not None and lines > ceiling:
            problems.append(
                f"{name}: {lines} lines, more than its ceiling {ceiling} in OVERSIZED. It is "
                "being split (issue 14): move code out rather than add to it, and do not "
                "raise the ceiling."
            )
    assert not problems, "\n".join(problems)


def test_oversized_list_only_shrinks() -> None:
    stale = []
    for name in OVERSIZED:
        path = ROOT / name
        if not path.is_file():
            stale.append(f"{name}: no such module any more; delete its entry from OVERSIZED.")
        elif (lines := _lines(path)) <= MAX_LINES:
            stale.append(
                f"{name}: {lines} lines now, within {MAX_LINES}: delete its entry from "
                "OVERSIZED (the 400-line rule then keeps it there)."
            )
    assert not stale, "\n".join(stale)


def _layer_violations() -> set[Edge]:
    return {
        (a, b)
        for a, b in _edges()
        if (top := b.split(".")[0]) != a.split(".")[0] and top not in MAY_IMPORT[a.split(".")[0]]
    }


def test_dependencies_point_one_way() -> None:
    new = sorted(_layer_violations() - set(LAYER_VIOLATIONS))
    assert not new, "\n".join(
        f"{a} imports {b}: dependencies point producer → workers → routing (DESIGN.md). "
        f"Move what {a} needs from {b.split('.')[0]}/ into the lower layer (a value, or a "
        "Protocol its caller implements), or pass it in from above; an import inside a "
        "function counts too."
        for a, b in new
    )


def test_layer_allow_list_only_shrinks() -> None:
    stale = sorted(set(LAYER_VIOLATIONS) - _layer_violations())
    assert not stale, "\n".join(
        f"{a} no longer imports {b}: delete its entry from LAYER_VIOLATIONS." for a, b in stale
    )


def test_no_import_cycles() -> None:
    graph = {
        a: frozenset(b for b in bs if (a, b) not in CYCLE_EDGES) for a, bs in import_graph().items()
    }
    cycles = {}
    for a, targets in graph.items():
        for b in targets:
            back = _path(graph, b, a)
            if back is not None:
                cycle = [a, *back]
                cycles[frozenset(cycle)] = " → ".join(cycle)
    assert not cycles, "\n".join(
        f"import cycle {text}. Break it: move what both need into a module of its own that "
        "both import, or invert one dependency (a Protocol, or a value passed in). Deferring "
        "the import into a function does not break it; do not add to CYCLE_EDGES."
        for text in sorted(cycles.values())
    )


def test_cycle_allow_list_only_shrinks() -> None:
    edges, graph = _edges(), import_graph()
    stale = []
    for a, b in sorted(CYCLE_EDGES):
        if (a, b) not in edges:
            stale.append(f"{a} no longer imports {b}: delete its entry from CYCLE_EDGES.")
        elif _path(graph, b, a) is None:
            stale.append(
                f"{a} → {b} closes no cycle any more ({b} does not lead back to {a}): delete "
                "its entry from CYCLE_EDGES."
            )
    assert not stale, "\n".join(stale)


def _fork_hooks() -> dict[str, int]:
    """Module file → how many ``register_at_fork`` calls it makes (only those that do)."""
    found = {}
    for path in modules().values():
        calls = sum(
            isinstance(node, ast.Call)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "register_at_fork")
                or (isinstance(node.func, ast.Name) and node.func.id == "register_at_fork")
            )
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        )
        if calls:
            found[str(path.relative_to(ROOT))] = calls
    return found


def test_fork_safety_lives_in_one_hook() -> None:
    hooks = _fork_hooks()
    assert hooks.get(FORK_HOOK) == 1, f"{FORK_HOOK}: expected one register_at_fork call"
    others = sorted(set(hooks) - {FORK_HOOK} - set(OTHER_FORK_HOOKS))
    assert not others, "\n".join(
        f"{name} calls os.register_at_fork: register what a forked child must reset with "
        f"routing.forks (a reset_after_fork method) instead; the process has one hook."
        for name in others
    )
    stale = sorted(set(OTHER_FORK_HOOKS) - set(hooks))
    assert not stale, "\n".join(
        f"{name} no longer calls register_at_fork: delete its entry from OTHER_FORK_HOOKS."
        for name in stale
    )
