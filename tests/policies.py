"""Test policies: the packaged default policy with some sections changed.

The one way the tests edit a policy: load the default's YAML as a mapping, replace whole
top-level sections (``retry={...}``, ``budgets={...}``) and update fields of named tiers
(``tiers={"expert": {"concurrency": 4}}``), then parse it (:func:`build`) or write it to a
file a job points at (:func:`write`, :func:`policy_file`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from routing.policy import Policy, default_policy_text, parse_policy

TierChanges = dict[str, dict[str, Any]]


def default_data() -> dict[str, Any]:
    """The default policy as a plain mapping (a new copy each call, safe to mutate)."""
    data = yaml.safe_load(default_policy_text())
    assert isinstance(data, dict)
    return data


def tier_names() -> list[str]:
    return [t["name"] for t in default_data()["tiers"]]


def every_tier(**fields: Any) -> TierChanges:
    """``tiers=`` changes setting the same ``fields`` on every default tier."""
    return {name: dict(fields) for name in tier_names()}


def edited(tiers: TierChanges | None = None, **sections: Any) -> dict[str, Any]:
    """The default policy's mapping with ``tiers`` fields merged into the named tiers and
    each top-level ``sections`` entry replaced whole."""
    data = default_data()
    for name, fields in (tiers or {}).items():
        next(t for t in data["tiers"] if t["name"] == name).update(fields)
    data.update(sections)
    return data


def parse(data: dict[str, Any], source: str = "test-policy.yaml") -> Policy:
    """Parse a policy mapping (``source`` names it in errors)."""
    return parse_policy(yaml.safe_dump(data), source)


def build(
    tiers: TierChanges | None = None, source: str = "test-policy.yaml", **sections: Any
) -> Policy:
    """The default policy with these changes, parsed (see :func:`edited`)."""
    return parse(edited(tiers, **sections), source)


def write(path: Path, tiers: TierChanges | None = None, **sections: Any) -> Path:
    """Write the default policy with these changes to ``path`` (a job's ``--policy``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(edited(tiers, **sections)))
    return path


def policy_file(
    tmp_path: Path, tiers: TierChanges | None = None, **sections: Any
) -> tuple[Path, Policy]:
    """``tmp_path/policy.yaml`` holding the edited default policy, and that policy parsed."""
    path = write(tmp_path / "policy.yaml", tiers, **sections)
    return path, parse_policy(path.read_text(), str(path))


def learned_classifier(model_path: str | Path) -> dict[str, Any]:
    """The default ``classifier`` section switched to the learned router at ``model_path``
    (relative paths resolve against the policy file's folder)."""
    return {**default_data()["classifier"], "kind": "learned", "path": str(model_path)}


def in_mode(mode: str, tiers: TierChanges, batch: dict[str, Any], **sections: Any) -> Policy:
    """The default policy with ``tiers`` changes, every tier in provider batch mode (with
    ``batch`` settings) when ``mode`` is ``batch``, else realtime."""
    changes = every_tier(mode="batch", batch=batch) if mode == "batch" else {}
    for name, fields in tiers.items():
        changes.setdefault(name, {}).update(fields)
    return build(tiers=changes, **sections)
