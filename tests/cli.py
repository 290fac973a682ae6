"""The ``batch-router`` CLI run as a user runs it: a subprocess, in a scratch working
directory (so no ``.env`` is picked up), with no ``BATCH_ROUTER_*`` variables inherited
(so the local executor is used unless a test sets a broker)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CliRunner = Callable[..., subprocess.CompletedProcess[str]]


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment minus every ``BATCH_ROUTER_*`` variable, plus ``extra``.

    A wide terminal keeps rich from wrapping messages, so assertions can match them whole.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCH_ROUTER_")}
    env.update(COLUMNS="200", NO_COLOR="1", TERM="dumb")
    env.update(extra)
    return env


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "producer", *args],
        cwd=cwd,
        env=env if env is not None else clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def assert_clean_error(
    proc: subprocess.CompletedProcess[str], *needles: str, code: int = 2, max_lines: int = 8
) -> None:
    """Exit ``code``, a short message on stderr containing every needle, no traceback."""
    both = proc.stdout + proc.stderr
    assert proc.returncode == code, both
    assert "Traceback" not in both, both
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert 0 < len(lines) <= max_lines, proc.stderr
    for needle in needles:
        assert needle in proc.stderr, f"{needle!r} not in stderr:\n{proc.stderr}"


@dataclass(frozen=True)
class SampleJob:
    """``batch-router run --sample 300 --output OUT``, run once for the session."""

    proc: subprocess.CompletedProcess[str]
    cwd: Path
    out: Path

    @property
    def job_root(self) -> Path:
        roots = sorted(self.out.glob("job_id=*"))
        assert len(roots) == 1, roots
        return roots[0]
