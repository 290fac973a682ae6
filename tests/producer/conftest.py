"""Fixtures of the producer tests: one sample job run once for the session (``sample_job``).
The ``cli`` fixture lives in tests/conftest.py, the plain helpers in tests/cli.py."""

from __future__ import annotations

import pytest

from tests.cli import SampleJob, run_cli


@pytest.fixture(scope="session")
def sample_job(tmp_path_factory: pytest.TempPathFactory) -> SampleJob:
    cwd = tmp_path_factory.mktemp("sample-job")
    proc = run_cli("run", "--sample", "300", "--output", "out", cwd=cwd)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return SampleJob(proc=proc, cwd=cwd, out=cwd / "out")
