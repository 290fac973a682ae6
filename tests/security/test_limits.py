"""Input limits checked at plan time, from object sizes and Parquet footers only: a file
over ``limits.max_file_bytes`` or a job over ``limits.max_rows_per_job`` is refused whole
(exit 2, naming the file or input and the limit) before anything runs or is written."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from routing.errors import InputError
from routing.policy import LimitsSpec
from tests import policies
from tests.cli import assert_clean_error, clean_env, run_cli
from workers.jobs.plan import read_footers
from workers.settings import S3Settings
from workers.storage import Storage

pytestmark = pytest.mark.security


def write_prompts(path: Path, n: int, words: int = 5) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    prompts = [f"Question {i}: " + "word " * words for i in range(n)]
    pq.write_table(pa.table({"prompt_id": [f"p{i}" for i in range(n)], "prompt": prompts}), path)
    return path


def limits_policy(tmp_path: Path, **limits: int) -> Path:
    default = policies.default_data().get("limits", {})
    return policies.write(tmp_path / "policy.yaml", limits={**default, **limits})


def test_a_file_over_max_file_bytes_is_refused_whole(tmp_path: Path) -> None:
    small = write_prompts(tmp_path / "in" / "a-small.parquet", 5)
    big = write_prompts(tmp_path / "in" / "b-big.parquet", 400, words=60)
    limit = small.stat().st_size + 100
    assert big.stat().st_size > limit
    policy = limits_policy(tmp_path, max_file_bytes=limit)
    proc = run_cli(
        "run", str(tmp_path / "in"), "--output", "out", "--policy", str(policy),
        cwd=tmp_path, env=clean_env(),
    )  # fmt: skip
    assert_clean_error(
        proc, str(big), f"{big.stat().st_size} bytes", f"limits.max_file_bytes = {limit}"
    )
    assert str(small) not in proc.stderr  # only the offending file is named
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.parquet"))


def test_a_job_over_max_rows_per_job_is_refused_whole(tmp_path: Path) -> None:
    write_prompts(tmp_path / "in" / "a.parquet", 60)
    write_prompts(tmp_path / "in" / "b.parquet", 50)
    policy = limits_policy(tmp_path, max_rows_per_job=100)
    proc = run_cli(
        "run", str(tmp_path / "in"), "--output", "out", "--policy", str(policy),
        cwd=tmp_path, env=clean_env(),
    )  # fmt: skip
    assert_clean_error(proc, "110 rows in 2 file(s)", "limits.max_rows_per_job = 100")
    assert not any((tmp_path / "out").rglob("results/*.parquet"))


def test_within_the_limits_the_job_runs(tmp_path: Path) -> None:
    path = write_prompts(tmp_path / "in" / "a.parquet", 30)
    policy = limits_policy(tmp_path, max_rows_per_job=30, max_file_bytes=path.stat().st_size)
    proc = run_cli(
        "run", str(path), "--output", "out", "--policy", str(policy), "--json",
        cwd=tmp_path, env=clean_env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_read_footers_reports_every_problem_at_once(tmp_path: Path) -> None:
    write_prompts(tmp_path / "in" / "a.parquet", 300, words=50)
    write_prompts(tmp_path / "in" / "b.parquet", 300, words=50)
    (tmp_path / "in" / "c.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(InputError) as caught:
        read_footers(
            Storage(S3Settings()),
            str(tmp_path / "in"),
            LimitsSpec(max_file_bytes=1000, max_rows_per_job=10),
        )
    text = str(caught.value)
    assert text.count("limits.max_file_bytes = 1000") == 2
    assert "c.parquet" in text
    # the files over the size limit are not read, so the row limit sees no rows of them
    assert "max_rows_per_job" not in text
