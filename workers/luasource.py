"""The Lua scripts of every Redis backend, read from ``workers/scripts/<name>.lua`` (package
data: shipped in the wheel) by :func:`load`, the one loader.

Each file starts with a comment block naming its KEYS, ARGV and what it returns. A line
``--! include <name>`` stands for the prelude ``scripts/<name>.lua`` (shared helpers:
``_ledger_helpers``, ``_now_ms``), which the loader puts in its place; preludes start with
``_`` and are never run alone.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_INCLUDE = re.compile(r"^--! include (\S+)$")


@cache
def load(name: str) -> str:
    """The text of script ``name`` (file name without ``.lua``), its includes expanded."""
    return "".join(_expand(name, ()))


def _expand(name: str, stack: tuple[str, ...]) -> list[str]:
    if name in stack:
        raise ValueError(f"Lua include cycle: {' -> '.join([*stack, name])}")
    text = resources.files("workers").joinpath("scripts", f"{name}.lua").read_text("utf-8")
    out: list[str] = []
    for line in text.splitlines(keepends=True):
        match = _INCLUDE.match(line.rstrip("\n"))
        out.extend(_expand(match.group(1), (*stack, name)) if match else [line])
    return out
