"""The shared data folder (``../shared/data`` next to the repository): the real prompt
corpus, the labelled benchmarks and the price table some tests read.

Every test that needs it goes through :func:`require`: where the folder is absent the test
is skipped with the missing path as its reason, except in CI (``CI=true``), where a missing
data folder is a failure — a CI run must not pass by skipping what it was meant to check.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CORPUS = SHARED_DATA / "prompts" / "corpus.parquet"
LABELS = SHARED_DATA / "labels"
PRICES = SHARED_DATA / "prices" / "model_prices.json"


def in_ci() -> bool:
    """True when the environment says this is a CI run (``CI=true``, as CI services set)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require(path: Path, *more: Path) -> Path:
    """``path`` (and ``more``) must exist: else skip the test, or fail it in CI. Returns
    ``path``."""
    __tracebackhide__ = True  # report the skip or failure at the test that asked
    missing = [p for p in (path, *more) if not p.exists()]
    if missing:
        names = ", ".join(str(p) for p in missing)
        reason = f"shared data not found: {names} (../shared/data is absent)"
        if in_ci():
            pytest.fail(
                f"{reason}; CI=true needs it, so this is a failure, not a skip", pytrace=False
            )
        pytest.skip(reason)
    return path
