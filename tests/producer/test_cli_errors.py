"""Mistakes a user makes get one clear message and exit code 2 — never a traceback."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests import policies, services
from tests.cli import CliRunner, assert_clean_error

pytestmark = pytest.mark.e2e


def _write(path: Path, columns: dict[str, pa.Array]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)
    return path


def _good(path: Path) -> Path:
    return _write(path, {"prompt_id": pa.array(["a", "b"]), "prompt": pa.array(["hi", "yo"])})


def _no_job_written(out: Path) -> bool:
    return not list(out.glob("job_id=*")) if out.exists() else True


def test_missing_prompt_column(cli: CliRunner, tmp_path: Path) -> None:
    _write(
        tmp_path / "in" / "day1.parquet", {"prompt_id": pa.array(["a"]), "text": pa.array(["hi"])}
    )
    proc = cli("run", "in/day1.parquet", "--output", "out")
    assert_clean_error(proc, "in/day1.parquet", "'prompt'", "missing")
    assert _no_job_written(tmp_path / "out")


def test_prompt_of_type_int64(cli: CliRunner, tmp_path: Path) -> None:
    _write(tmp_path / "ints.parquet", {"prompt_id": pa.array(["a"]), "prompt": pa.array([1])})
    proc = cli("run", "ints.parquet", "--output", "out")
    assert_clean_error(proc, "ints.parquet", "'prompt'", "int64", "string")


def test_corrupt_file_named_parquet(cli: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "x.parquet").write_text("prompt_id,prompt\na,hello\n")
    proc = cli("run", "x.parquet", "--output", "out")
    assert_clean_error(proc, "x.parquet", "not a readable Parquet file")


def test_every_bad_file_of_a_folder_is_reported_together(cli: CliRunner, tmp_path: Path) -> None:
    _good(tmp_path / "in" / "a.parquet")
    _write(tmp_path / "in" / "b.parquet", {"prompt": pa.array(["hi"])})
    (tmp_path / "in" / "c.parquet").write_bytes(b"PAR1 but not really")
    proc = cli("run", "in", "--output", "out")
    assert_clean_error(proc, "b.parquet", "'prompt_id'", "c.parquet", "not a readable Parquet")
    assert "a.parquet" not in proc.stderr
    assert _no_job_written(tmp_path / "out")


def test_empty_folder(cli: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    proc = cli("run", "empty", "--output", "out")
    assert_clean_error(proc, "empty", "no .parquet files found")


def test_input_that_does_not_exist(cli: CliRunner) -> None:
    proc = cli("run", "nightly.parquet", "--output", "out")
    assert_clean_error(proc, "nightly.parquet", "no such file or folder")


def test_policy_that_is_not_yaml(cli: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text("tiers: [\n  - name: fast\n   oops: : :\n")
    proc = cli("run", "--sample", "20", "--output", "out", "--policy", "policy.yaml")
    assert_clean_error(proc, "policy.yaml", "not valid YAML")
    assert not (tmp_path / "out").exists()  # nothing written before the policy is checked


def test_policy_with_non_increasing_thresholds(cli: CliRunner, tmp_path: Path) -> None:
    assert policies.default_data()["tiers"][1]["max_score"] == 0.60  # balanced, after fast's 0.30
    policies.write(tmp_path / "policy.yaml", tiers={"balanced": {"max_score": 0.20}})
    _good(tmp_path / "in.parquet")
    proc = cli("run", "in.parquet", "--output", "out", "--policy", "policy.yaml")
    assert_clean_error(proc, "policy.yaml", "max_score must strictly increase")


def test_policy_file_not_found(cli: CliRunner, tmp_path: Path) -> None:
    _good(tmp_path / "in.parquet")
    proc = cli("run", "in.parquet", "--output", "out", "--policy", "nope.yaml")
    assert_clean_error(proc, "nope.yaml", "not found")


def test_submit_without_a_broker(cli: CliRunner, tmp_path: Path) -> None:
    _good(tmp_path / "in.parquet")
    proc = cli("submit", "in.parquet", "--output", "out")
    assert_clean_error(proc, "BATCH_ROUTER_BROKER_URL", "run")


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["run", "--output", "out"], id="neither"),
        pytest.param(["run"], id="nothing-at-all"),
        pytest.param(["run", "in.parquet", "--sample", "20", "--output", "out"], id="both"),
    ],
)
def test_run_needs_input_or_sample(cli: CliRunner, tmp_path: Path, args: list[str]) -> None:
    _good(tmp_path / "in.parquet")
    proc = cli(*args)
    assert_clean_error(proc, "INPUT", "--sample")
    assert not (tmp_path / "out").exists()


def test_run_needs_an_output(cli: CliRunner) -> None:
    proc = cli("run", "--sample", "20")
    assert_clean_error(proc, "--output", "BATCH_ROUTER_OUTPUT")


def test_sample_below_the_minimum(cli: CliRunner) -> None:
    proc = cli("run", "--sample", "5", "--output", "out")
    assert_clean_error(proc, "--sample")


def test_invalid_setting_in_the_environment(cli: CliRunner) -> None:
    proc = cli("run", "--sample", "20", "--output", "out", BATCH_ROUTER_ROWS_PER_CHUNK="0")
    assert_clean_error(proc, "BATCH_ROUTER_ROWS_PER_CHUNK", "greater than 0")


def test_status_without_redis(cli: CliRunner) -> None:
    proc = cli("status", "some-job")
    assert_clean_error(proc, "no Redis configured", "BATCH_ROUTER_BROKER_URL")


def test_status_with_unreachable_redis(cli: CliRunner) -> None:
    url = f"redis://:hunter2@127.0.0.1:{services.free_port()}/0"
    proc = cli("status", "some-job", BATCH_ROUTER_BROKER_URL=url)
    assert_clean_error(proc, "cannot reach Redis")
    assert "hunter2" not in proc.stderr  # the password in the URL is never printed
