"""Reading the local stack's files as docker compose does (docker-compose.yml,
infra/env.example): variable interpolation, env files, a service's environment. Shared by
tests/test_compose.py and tests/security/test_hardening_compose.py."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "infra" / "env.example"
VARIABLE = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}|\$(\w+)")


class MissingVariable(Exception):
    """A ``${VAR:?message}`` whose variable is unset or empty: compose refuses to start."""


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable interpolation over strings, lists and mappings."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        op, arg = match.group(2), match.group(3)
        current = env.get(name)
        missing = current is None or (op is not None and op.startswith(":") and current == "")
        if op in ("-", ":-") and missing:
            return arg
        if op in ("?", ":?") and missing:
            raise MissingVariable(f"{name}: {arg}")
        return current or ""

    return VARIABLE.sub(one, value)


def variables(text: str) -> dict[str, str | None]:
    """Every ``${VAR…}`` in ``text``: name → operator (``:?``, ``:-``…) or None."""
    found: dict[str, str | None] = {}
    for match in VARIABLE.finditer(text):
        name = match.group(1) or match.group(4)
        if name:
            found[name] = match.group(2) if name not in found else found[name] or match.group(2)
    return found


def read_env_file(path: Path) -> tuple[dict[str, str], set[str]]:
    """``NAME=value`` lines, and the names that appear only commented (``# NAME=…``)."""
    assigned: dict[str, str] = {}
    commented: set[str] = set()
    for line in path.read_text().splitlines():
        if match := re.match(r"^\s*(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$", line):
            if match.group(1):
                commented.add(match.group(2))
            else:
                assigned[match.group(2)] = match.group(3).strip()
    return assigned, commented - assigned.keys()


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}
