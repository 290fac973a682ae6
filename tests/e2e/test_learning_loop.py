"""The learning loop on the real fleet against recorded traffic (issue 16): the replay
provider (``sim-provider --replay`` on the shared arena labels and answers) answers as the
recorded models did and judges by the recorded quality; a job with ``explore:`` answers a
sample on the partner tier too, the judge tier grades both answers, the labels land in the
object store; ``feedback`` collects them; ``retrain`` trains a challenger on yesterday's
labels and promotes it over a champion only on a win on today's — every step explained by
result columns and the promotion record."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from routing.explore import sampled
from routing.policy import parse_policy
from tests import data, policies, services
from tests.e2e.fleet import Fleet, job_root, results, storage, upload, wait_success
from tests.producer.labels import write_labels

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

LABELS = data.LABELS / "arena_bench_v1.parquet"
RESPONSES = data.LABELS / "responses" / "arena_bench_v1.parquet"
MODELS = {"fast": "Mistral-7B-Instruct-v0.1", "balanced": "Mixtral-8x7B-Instruct-v0.1",
          "expert": "gpt-4-0314"}  # fmt: skip
PRICES = {"fast": ("0.15", "0.60"), "balanced": ("0.40", "1.60"), "expert": ("2.00", "8.00")}
RATE = 0.5


@dataclass
class Replay:
    env: dict[str, str]
    fleet: Fleet
    sim_url: str


@pytest.fixture(scope="module")
def replay(service_dir: Path, s3_endpoint: str) -> Iterator[Replay]:
    """A private Redis, the replay provider and a fleet on them (the object store is the
    session's)."""
    labels, responses = data.require(LABELS), data.require(RESPONSES)
    workdir = service_dir / "loop"
    workdir.mkdir(exist_ok=True)
    sim_url, sim = services.start_sim_provider(
        workdir, "--replay", str(labels), "--responses", str(responses)
    )
    url, redis_proc = services.start_redis(workdir)
    env = services.deployment_env(url, s3_endpoint, sim_url, BATCH_ROUTER_ROWS_PER_CHUNK="500")
    fleet = Fleet(workdir, env)
    with services.stopping(sim, redis_proc), contextlib.ExitStack() as stack:
        stack.callback(fleet.stop)
        fleet.start_default()
        yield Replay(env, fleet, sim_url)


def arena_prompts(n: int) -> pl.DataFrame:
    """``n`` recorded arena prompts every tier's model answered (the replay serves them)."""
    answers = pl.read_parquet(RESPONSES).filter(pl.col("model").is_in(list(MODELS.values())))
    full = answers.group_by("prompt_id").len().filter(pl.col("len") == len(MODELS))
    prompts = (
        pl.read_parquet(LABELS)
        .filter(pl.col("prompt_id").is_in(full["prompt_id"].to_list()))
        .unique("prompt_id", keep="first")
        .filter(pl.col("prompt").str.len_chars() < 4000)
        .sort("prompt_id")
        .head(n)
    )
    return prompts.select("prompt_id", "prompt")


def loop_policy(tmp_path: Path) -> Path:
    tiers: dict[str, dict[str, Any]] = {
        name: {"models": [{"name": model, "provider": "sim", "input_per_mtok": PRICES[name][0],
                           "output_per_mtok": PRICES[name][1]}],
               "max_output_tokens": 4096}
        for name, model in MODELS.items()
    }  # fmt: skip
    tiers["fast"]["max_score"], tiers["balanced"]["max_score"] = 0.99, 0.995  # all to fast
    return policies.write(tmp_path / "loop.yaml", tiers, explore={"rate": RATE, "judge": "expert"})


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "producer", *args], env={**os.environ, **env},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_explore_judge_feedback_retrain_on_the_fleet(
    replay: Replay, bucket: str, tmp_path: Path
) -> None:
    table = arena_prompts(60)
    upload(replay.env, bucket, table.to_arrow(), tmp_path)
    policy = loop_policy(tmp_path)
    job = "loop-night-1"
    proc = services.submit(bucket, job, replay.env, "--policy", str(policy), timeout=400)
    assert proc.returncode == 0, proc.stdout + proc.stderr + replay.fleet.logs()
    st = storage(replay.env)
    wait_success(st, job_root(bucket, job), 60, replay.fleet)
    out = results(st, job_root(bucket, job))
    assert set(out["status"]) == {"ok"} and set(out["tier"]) == {"fast"}

    # Exploration: exactly the sampled prompts, answered by balanced too, graded by expert.
    texts = dict(zip(table["prompt_id"], table["prompt"], strict=True))
    expected = {p for p, t in texts.items() if sampled(job, t, RATE)}
    explored = out.filter(pl.col("explored").is_not_null())
    assert set(explored["prompt_id"]) == expected and set(explored["explored"]) == {"balanced"}
    recorded = pl.read_parquet(RESPONSES)
    for row in out.head(10).iter_rows(named=True):  # the replay's recorded answers
        want = recorded.filter(
            (pl.col("prompt_id") == row["prompt_id"]) & (pl.col("model") == MODELS["fast"])
        )["response"][0]
        assert row["response"] == want
    assert all("graded fast" in r for r in explored["route_reason"])

    # The labels in the store carry the recorded qualities (the replay judges by them).
    root = f"s3://{bucket}/out"
    fb = tmp_path / "fb.parquet"
    collected = cli(replay.env, "feedback", root, "--out", str(fb))
    assert collected.returncode == 0, collected.stderr
    labels = pl.read_parquet(fb)
    assert labels.height == 2 * len(expected)
    quality = pl.read_parquet(LABELS).select("prompt", "model", pl.col("quality").alias("q"))
    joined = labels.join(quality, on=["prompt", "model"])
    assert joined.height == labels.height
    assert (joined["quality"] - joined["q"]).abs().max() < 0.051  # SCORE is 0-10  # type: ignore[operator]

    # Yesterday's night (its labels moved a day back), then retrain on it, judged on today's.
    st_labels = st.list_files(f"{root}/_labels", ".parquet")
    day = datetime.now(UTC).date()
    for uri in st_labels:
        frame = pl.from_arrow(st.read_parquet_file(uri))
        assert isinstance(frame, pl.DataFrame)
        yesterday = (datetime.now(UTC) - timedelta(days=1)).isoformat(timespec="seconds")
        moved = frame.with_columns(pl.lit(yesterday).alias("labelled_at"))
        st.write_parquet(uri.replace(f"day={day}", f"day={day - timedelta(days=1)}"),
                         moved.to_arrow())  # fmt: skip
        st.delete(uri)
    job2 = "loop-night-2"
    upload(replay.env, bucket, arena_prompts(120).tail(60).to_arrow(), tmp_path)
    proc = services.submit(bucket, job2, replay.env, "--policy", str(policy), timeout=400)
    assert proc.returncode == 0, proc.stdout + proc.stderr + replay.fleet.logs()
    base = write_labels(tmp_path / "base.parquet", "base", n=40)
    champion = f"s3://{bucket}/models/router.zip"
    args = ("retrain", root, f"{base}:mixtral-8x7b-instruct-v0.1,strong-x", "--models",
            f"{MODELS['fast']},{MODELS['balanced']}", "--champion", champion, "--json")  # fmt: skip
    first = cli(replay.env, *args)
    assert first.returncode == 0, first.stderr
    record = json.loads(first.stdout[first.stdout.index("{") :])
    assert record["promoted"] is True and record["champion"] is None
    assert record["held_back"]["prompts"] > 0 and record["feedback_prompts"] > 0
    assert st.exists(champion)
    second = cli(replay.env, *args, "--min-gain", "1")
    record2 = json.loads(second.stdout[second.stdout.index("{") :])
    assert record2["promoted"] is False and record2["prev"] == record["hash"]
    assert record2["champion"]["version"] == record["challenger"]["version"]


def test_experiment_report_and_bandit_on_the_fleet(
    replay: Replay, bucket: str, tmp_path: Path
) -> None:
    """Two threshold arms (all fast / all balanced), judged by the expert tier on recorded
    qualities: ``report`` shows both arms' cost and judged quality; the next job's shares
    come from the bandit, recorded in its policy copy."""
    arms = [
        {"name": "cheap"},
        {"name": "strong", "max_score": {"fast": 0.0001, "balanced": 0.995}},
    ]
    experiment = {"name": "exp", "arms": arms, "bandit": {"enabled": True, "floor": 0.1}}
    base = loop_policy(tmp_path)
    data_ = yaml.safe_load(base.read_text())
    data_["experiment"] = experiment
    data_["explore"] = {"rate": 1.0, "judge": "expert"}
    policy = tmp_path / "experiment.yaml"
    policy.write_text(yaml.safe_dump(data_))
    upload(replay.env, bucket, arena_prompts(60).to_arrow(), tmp_path)
    st = storage(replay.env)
    proc = services.submit(bucket, "exp-night-1", replay.env, "--policy", str(policy))
    assert proc.returncode == 0, proc.stdout + proc.stderr + replay.fleet.logs()
    out = results(st, job_root(bucket, "exp-night-1"))
    assert set(out["arm"]) == {"exp:cheap", "exp:strong"}
    tiers = out.group_by("arm").agg(pl.col("tier").unique())
    assert dict(zip(tiers["arm"], tiers["tier"].to_list(), strict=True)) == {
        "exp:cheap": ["fast"], "exp:strong": ["balanced"]
    }  # fmt: skip

    shown = cli(replay.env, "report", f"s3://{bucket}/out", "--json")
    assert shown.returncode == 0, shown.stderr
    by_arm = json.loads(shown.stdout)["by_arm"]
    assert set(by_arm) == {"exp:cheap", "exp:strong"}
    for arm, line in by_arm.items():
        assert line["rows"] == out.filter(pl.col("arm") == arm).height
        assert line["judged"] == line["rows"] and line["quality"] is not None
    assert float(by_arm["exp:strong"]["cost_usd"]) > float(by_arm["exp:cheap"]["cost_usd"])

    proc = services.submit(bucket, "exp-night-2", replay.env, "--policy", str(policy))
    assert proc.returncode == 0, proc.stdout + proc.stderr + replay.fleet.logs()
    copy = parse_policy(
        st.read_bytes(f"{job_root(bucket, 'exp-night-2')}/_job/policy.yaml").decode()
    )
    assert copy.experiment is not None
    weights = dict(
        zip([a.name for a in copy.experiment.arms], copy.experiment.weights(), strict=True)
    )
    better = max(by_arm, key=lambda a: by_arm[a]["quality"]).split(":")[1]
    assert weights[better] > 0.5 and min(weights.values()) >= 0.1 - 1e-9
