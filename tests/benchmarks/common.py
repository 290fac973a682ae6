"""What the benchmarks print in every JSON line."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def git_rev() -> str:
    """The measured commit (``-dirty``: with uncommitted changes)."""
    cmd = ["git", "-C", str(ROOT), "describe", "--always", "--dirty", "--abbrev=12"]
    return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
