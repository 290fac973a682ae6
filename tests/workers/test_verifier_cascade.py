"""A cascade scored by a verifier (``cascade: {verifier: PATH, min_score}``, issue 16): the
job copies the verifier when it is planned, a tier's answers are scored together, those
below ``min_score`` go on to the next tier — in realtime and in provider batch mode — and
every row records its score and where it came from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from routing.confidence import verifier_scores
from routing.errors import ConfigError, PolicyError
from routing.learned.answer import answer_frame
from routing.learned.artifact import load_scorer, save_scorer
from routing.learned.config import TrainConfig
from routing.learned.training import fit_scorer
from routing.policy import load_policy
from routing.resilience import CascadeSpec
from tests import policies
from tests.workers.pipeline import (
    FAST_BATCH,
    make_settings,
    plan_job,
    prompts,
    results,
    runtime,
    write_input,
)
from workers import layout, local
from workers.sim.server import SimServer

THRESHOLD = 0.3  # a tie with the stronger tier scores 0.5, a loss to it ~0


def train_verifier(path: Path, answers: bool = True) -> Path:
    """A small verifier that learned "a short answer needs the stronger tier" (the
    simulator's answers run from a few words to ~200 tokens, so both kinds occur)."""
    rng = np.random.default_rng(0)
    n = 200
    words = rng.integers(2, 120, size=n)
    texts = [" ".join(["word"] * int(k)) + "." for k in words]
    prompts_ = [f"Question {i}: explain the thing." for i in range(n)]
    quality = np.column_stack([(words > 40).astype(float), np.ones(n)])
    model = fit_scorer(
        prompts_,
        np.full(n, 8),
        quality,
        config=TrainConfig(answers=answers, answer_ngrams=0, answer_weight=1.0),
        answers=answer_frame(prompts_, texts) if answers else None,
    )
    save_scorer(model, path)
    return path


@pytest.fixture(scope="module")
def verifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_verifier(tmp_path_factory.mktemp("verifier") / "verifier.zip")


def cascade(verifier: Path, min_score: float = THRESHOLD) -> dict[str, Any]:
    return {"cascade": {"verifier": str(verifier), "min_score": min_score}}


# ---------------------------------------------------------------- policy and scores


def test_a_cascade_takes_exactly_one_signal() -> None:
    assert CascadeSpec(min_confidence=0.6).threshold == 0.6
    assert CascadeSpec(verifier="v.zip", min_score=0.3).threshold == 0.3
    for bad in (
        {},
        {"min_confidence": 0.6, "verifier": "v.zip", "min_score": 0.3},
        {"verifier": "v.zip"},
        {"min_score": 0.3},
        {"verifier": " ", "min_score": 0.3},
        {"verifier": "v.zip", "min_score": 1.5},
    ):
        with pytest.raises(ValueError):
            CascadeSpec(**bad)
    with pytest.raises(PolicyError, match="min_score"):
        policies.build(tiers={"fast": {"cascade": {"verifier": "v.zip"}}})


def test_a_relative_verifier_path_is_relative_to_the_policy_file(tmp_path: Path) -> None:
    file = policies.write(tmp_path / "conf" / "p.yaml", tiers={"fast": cascade(Path("v.zip"))})
    spec = load_policy(file).tier("fast").cascade
    assert spec is not None and spec.verifier == str((tmp_path / "conf" / "v.zip").resolve())


def test_verifier_scores_are_the_adequacy_probability_with_hard_zeros(verifier: Path) -> None:
    model = load_scorer(verifier)
    long_answer = " ".join(["word"] * 100) + "."
    scores = verifier_scores(
        model,
        ["Explain it."] * 5,
        [long_answer, "Short.", "", long_answer, "I cannot help with that."],
        ["stop", "stop", "stop", "length", "stop"],
        [None, None, None, None, None],
    )
    assert scores[0] > THRESHOLD > scores[1] > 0  # long answers were adequate in training
    assert scores[2:] == [0.0, 0.0, 0.0]  # empty, cut off, refused
    assert verifier_scores(model, [], [], [], []) == []


# ---------------------------------------------------------------- whole jobs


def run(tmp_path: Path, sim: SimServer, policy: Any, job_id: str) -> pl.DataFrame:
    rt = runtime(make_settings(sim))
    uri = write_input(tmp_path / job_id / "in.parquet", prompts(60))
    plan = plan_job(
        rt, uri, tmp_path / job_id / "out", rows_per_chunk=40, job_id=job_id, policy=policy
    )
    assert Path(layout.verifier(plan.context.job_root, "fast")).is_file()  # the job's copy
    local.run_job(rt, plan)
    return results(rt, plan)


@pytest.mark.parametrize("mode", ["realtime", "batch"])
def test_verifier_cascade_escalates_exactly_the_answers_below_min_score(
    tmp_path: Path, sim: SimServer, verifier: Path, mode: str
) -> None:
    policy = policies.in_mode(mode, {"fast": cascade(verifier)}, FAST_BATCH)
    out = run(tmp_path, sim, policy, f"verified-{mode}")
    assert set(out["status"]) == {"ok"}
    started = out.filter((pl.col("tier") == "fast") | (pl.col("escalated_from") == "fast"))
    version = load_scorer(verifier).version
    assert set(started["confidence_source"]) == {f"verifier:{version}"}
    unsure = started.filter(pl.col("confidence") < THRESHOLD)
    sure = started.filter(pl.col("confidence") >= THRESHOLD)
    assert unsure.height > 0 and sure.height > 0
    assert set(unsure["escalated_from"]) == {"fast"} and set(unsure["tier"]) == {"balanced"}
    assert set(unsure["round"]) == {2} and set(sure["round"]) == {1}
    assert sure["escalated_from"].null_count() == sure.height
    assert all(f"verifier:{version}" in r for r in unsure["route_reason"])
    assert all(f"verifier:{version}" in r and ": kept" in r for r in sure["route_reason"])
    others = out.filter(pl.col("tier") != "fast").filter(pl.col("escalated_from").is_null())
    assert others["confidence_source"].null_count() == others.height  # no cascade there
    # The scores recorded are the verifier's on the fast tier's answers.
    model = load_scorer(verifier)
    first = sure.sort("prompt_id")
    again = verifier_scores(
        model,
        first["prompt_id"].map_elements(lambda p: _text(p), return_dtype=pl.String).to_list(),
        first["response"].to_list(),
        first["finish_reason"].to_list(),
        [None] * first.height,
    )
    assert again == pytest.approx(first["confidence"].to_list())


def _text(prompt_id: str) -> str:
    table = prompts(60)
    ids = table.column("prompt_id").to_pylist()
    return str(table.column("prompt").to_pylist()[ids.index(prompt_id)])


def test_a_missing_or_prompt_only_verifier_is_refused_before_any_spend(
    tmp_path: Path, sim: SimServer
) -> None:
    rt = runtime(make_settings(sim))
    uri = write_input(tmp_path / "in.parquet", prompts(5))
    missing = policies.build(tiers={"fast": cascade(tmp_path / "nope.zip")})
    with pytest.raises(ConfigError, match="no such file"):
        plan_job(rt, uri, tmp_path / "out", job_id="j-missing", policy=missing)
    router = train_verifier(tmp_path / "router.zip", answers=False)
    prompt_only = policies.build(tiers={"fast": cascade(router)})
    with pytest.raises(ConfigError, match="not a verifier"):
        plan_job(rt, uri, tmp_path / "out", job_id="j-router", policy=prompt_only)
    assert not list(tmp_path.rglob("plan.json"))  # refused before the job was written
