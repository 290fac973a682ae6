"""``train --verifier`` and ``eval --responses``: a verifier learns from the weak model's
answers, is saved as a checked artifact and is evaluated as a cascade (issue 16)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from rich.console import Console

from producer.commands.evaluate import run_eval
from producer.commands.train import run_train
from routing.errors import ConfigError, InputError
from routing.features import compute_features
from routing.learned.answer import answer_frame
from routing.learned.artifact import load_scorer
from tests import data
from tests.producer.labels import WEAK, write_answered


def quiet() -> Console:
    return Console(file=io.StringIO(), width=150)


@pytest.fixture(scope="module")
def answered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("answered")
    return write_answered(d / "labels.parquet", d / "responses.parquet", "toy", n=80)


@pytest.fixture(scope="module")
def verifier(answered: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    labels, responses = answered
    out = tmp_path_factory.mktemp("model") / "verifier.zip"
    run_train(
        [f"{labels}:{WEAK},strong-x"], out, [], 1.0, 3, quiet(), responses=[responses],
        verifier=True,
    )  # fmt: skip
    return out


def evaluate(labels: Path, router: Path | str, **kwargs: Any) -> dict[str, Any]:
    options: dict[str, Any] = {"scores_out": None, "html_out": None, "as_json": True}
    return run_eval(labels, WEAK, "strong-x", str(router), console=quiet(), **(options | kwargs))


def independent_apgr(labels: Path, scores: pl.DataFrame) -> float:
    """RouteLLM's APGR from the scores file alone: route the top-k scored prompts strong for
    every k (equal scores as one step, linear in between), area under PGR versus share."""
    wide = (
        pl.read_parquet(labels)
        .pivot(on="model", index="prompt_id", values="quality")
        .join(scores, on="prompt_id")
    )
    weak, strong = wide[WEAK].to_numpy(), wide["strong-x"].to_numpy()
    s = wide["score"].to_numpy()
    n, gap = len(s), strong.mean() - weak.mean()
    xs, ys, quality, taken = [0.0], [0.0], weak.sum(), 0
    for value in sorted(set(s.tolist()), reverse=True):
        group = s == value
        quality += (strong[group] - weak[group]).sum()
        taken += int(group.sum())
        xs.append(taken / n)
        ys.append((quality / n - weak.mean()) / gap)
    return float(sum((xs[i] - xs[i - 1]) * (ys[i] + ys[i - 1]) / 2 for i in range(1, len(xs))))


def test_verifier_needs_responses(answered: tuple[Path, Path], tmp_path: Path) -> None:
    labels, _ = answered
    with pytest.raises(InputError, match="give --responses"):
        run_train([f"{labels}:{WEAK},strong-x"], tmp_path / "v.zip", [], 1.0, 3, quiet(),
                  verifier=True)  # fmt: skip


def test_verifier_artifact_is_checked_and_needs_answers(verifier: Path) -> None:
    model = load_scorer(verifier)
    assert model.verifier and model.metadata["verifier"] is True
    assert model.metadata["responses"] and model.metadata["config"]["answers"] is True
    prompts = ["Question 1 of toy: how many apples are left in basket 1?"]
    feats = compute_features(pl.Series("prompt", prompts))
    with pytest.raises(ConfigError, match="verifier"):
        model.score_texts(prompts, feats, [20])
    sure, unsure = model.score_texts(
        prompts * 2,
        pl.concat([feats, feats]),
        [20, 20],
        answer_frame(prompts * 2, ["12 - 5 = 7 apples.\n#### 7", "I'm not sure, maybe, I think"]),
    )
    assert unsure > sure  # the hedged answer sends the prompt on


def test_verifier_beats_the_prompt_only_router_on_the_same_prompts(
    answered: tuple[Path, Path], tmp_path: Path
) -> None:
    labels, responses = answered
    spec = [f"{labels}:{WEAK},strong-x"]
    prompt_only = run_train(spec, tmp_path / "p.zip", [], 1.0, 3, quiet(), responses=[responses])
    assert not load_scorer(tmp_path / "p.zip").verifier
    verifier = run_train(
        spec, tmp_path / "v.zip", [], 1.0, 3, quiet(), responses=[responses], verifier=True
    )
    cv_p, cv_v = prompt_only["metrics"]["cv"]["toy"], verifier["metrics"]["cv"]["toy"]
    assert cv_p["prompts"] == cv_v["prompts"] == 80
    # 40 % of prompts need the strong model: the oracle's APGR is ~0.8, random's 0.5
    assert cv_v["apgr"] > 0.75 and cv_p["apgr"] < 0.65


def test_eval_as_a_cascade_matches_an_independent_apgr(
    answered: tuple[Path, Path], verifier: Path, tmp_path: Path
) -> None:
    labels, responses = answered
    scores_out = tmp_path / "scores.parquet"
    result = evaluate(labels, verifier, responses=[responses], scores_out=scores_out)
    assert result["cascade"] is True and result["prompts"] == 80
    scores = pl.read_parquet(scores_out)
    assert result["apgr"] == pytest.approx(independent_apgr(labels, scores), abs=1e-9)
    # The weak call is paid on every prompt: all-strong costs weak + strong.
    assert result["strong"]["cost_usd"] == pytest.approx(25 * 1e-6 + 25 * 1e-5)
    assert result["weak"]["cost_usd"] == pytest.approx(25 * 1e-6)


def test_eval_errors(answered: tuple[Path, Path], verifier: Path, tmp_path: Path) -> None:
    labels, responses = answered
    with pytest.raises(InputError, match="is a verifier"):
        evaluate(labels, verifier)
    pl.DataFrame({"prompt_id": ["x"], "model": [WEAK]}).write_parquet(tmp_path / "bad.parquet")
    with pytest.raises(InputError, match=r"missing column\(s\) \['response'\]"):
        evaluate(labels, verifier, responses=[tmp_path / "bad.parquet"])
    other = pl.read_parquet(responses).filter(pl.col("model") != WEAK)
    other.write_parquet(tmp_path / "other.parquet")
    with pytest.raises(InputError, match="no answer of the weak model"):
        evaluate(labels, verifier, responses=[tmp_path / "other.parquet"])
    with pytest.raises(InputError, match="no such file"):
        evaluate(labels, verifier, responses=[tmp_path / "missing.parquet"])
    twice = pl.concat([pl.read_parquet(responses)] * 2)
    twice.write_parquet(tmp_path / "twice.parquet")
    with pytest.raises(InputError, match="more than one answer"):
        evaluate(labels, verifier, responses=[tmp_path / "twice.parquet"])


def test_prompt_only_router_with_responses_scores_only_answered_prompts(
    answered: tuple[Path, Path], tmp_path: Path
) -> None:
    labels, responses = answered
    half = pl.read_parquet(responses).filter(
        pl.col("prompt_id").str.extract(r"(\d+)$").cast(pl.Int64) < 40
    )
    half.write_parquet(tmp_path / "half.parquet")
    result = evaluate(labels, "heuristic", responses=[tmp_path / "half.parquet"])
    assert result["prompts"] == 40 and result["cascade"] is False


def test_shared_labels_verifier_beats_prompt_only_in_cv(tmp_path: Path) -> None:
    """On GSM8K with Mixtral's real answers (held-out folds): the verifier's APGR is well
    above the prompt-only router's on the same prompts and folds (docs/training.md)."""
    labels = data.require(data.LABELS / "gsm8k.parquet")
    responses = data.require(data.LABELS / "responses" / "gsm8k.parquet")
    spec = [f"{labels}:{WEAK},gpt-4-1106-preview"]
    p = run_train(spec, tmp_path / "p.zip", [], 1.0, 3, quiet(), responses=[responses])
    v = run_train(
        spec, tmp_path / "v.zip", [], 1.0, 3, quiet(), responses=[responses], verifier=True
    )
    cv_p, cv_v = p["metrics"]["cv"]["gsm8k"], v["metrics"]["cv"]["gsm8k"]
    assert cv_v["apgr"] > cv_p["apgr"] + 0.05
    assert cv_v["apgr"] > cv_v["length_apgr"] + 0.05
    out = tmp_path / "scores.parquet"
    result = run_eval(
        labels, WEAK, "gpt-4-1106-preview", str(tmp_path / "v.zip"), True, out, None, quiet(),
        responses=[responses],
    )  # fmt: skip
    assert result["cascade"] is True and result["prompts"] == 1_319
    assert np.isfinite(pl.read_parquet(out)["score"].to_numpy()).all()
    assert json.loads(json.dumps(result))["apgr"] == result["apgr"]


def test_a_labels_file_with_its_own_answers_needs_no_responses(
    answered: tuple[Path, Path], tmp_path: Path
) -> None:
    """Exploration labels (``batch-router feedback``) carry ``response``: a verifier trains
    on them as they are, as a SPEC or as feedback."""
    labels, responses = answered
    own = pl.read_parquet(labels).join(
        pl.read_parquet(responses).select("prompt_id", "model", "response"),
        on=["prompt_id", "model"],
    )
    own.write_parquet(tmp_path / "own.parquet")
    meta = run_train([f"{tmp_path / 'own.parquet'}:{WEAK},strong-x"], tmp_path / "v.zip", [],
                     1.0, 3, quiet(), verifier=True)  # fmt: skip
    assert meta["verifier"] is True and meta["metrics"]["cv"]["toy"]["apgr"] > 0.75
