"""``run_train`` (the body of ``batch-router train``): specs, feedback, metrics, the artifact."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from rich.console import Console

from producer.commands.train import length_warnings, run_train
from routing.errors import InputError
from routing.features import FEATURE_VERSION, compute_features
from routing.learned.artifact import load_scorer
from routing.learned.labels import load_feedback, parse_spec
from routing.learned.scorer import classifier_version
from routing.learned.validation import DEFAULT_FEEDBACK_WEIGHT
from tests import data
from tests.producer.labels import WEAK, write_labels

STRONG = "gpt-4-1106-preview"


def quiet() -> Console:
    return Console(file=io.StringIO(), width=150)


def test_parse_spec_errors(tmp_path: Path) -> None:
    f = write_labels(tmp_path / "a.parquet", "a")
    assert parse_spec(f"{f}:{WEAK},strong-x").models == (WEAK, "strong-x")
    for bad, message in (
        (str(f), "expected PATH:weak,strong"),
        (f"{f}:{WEAK}", "at least 2 models"),
        (f"{f}:{WEAK},{WEAK}", "listed twice"),
        (f"{tmp_path}/missing.parquet:{WEAK},strong-x", "no such file"),
        (f":{WEAK},strong-x", "expected PATH"),
    ):
        with pytest.raises(InputError, match=message):
            parse_spec(bad)


def test_unknown_models_list_the_models_present(tmp_path: Path) -> None:
    f = write_labels(tmp_path / "a.parquet", "a")
    with pytest.raises(InputError, match=r"unknown model\(s\) \['gpt-5'\].*strong-x"):
        run_train([f"{f}:{WEAK},gpt-5"], tmp_path / "m.zip", [], 1.0, 3, quiet())
    other = tmp_path / "other.parquet"
    pl.read_parquet(f).with_columns(pl.col("model").str.replace("strong-x", "else")).write_parquet(
        other
    )
    with pytest.raises(InputError, match="name them"):
        load_feedback(other, [parse_spec(f"{f}:{WEAK},strong-x")])


def test_bad_options(tmp_path: Path) -> None:
    f = write_labels(tmp_path / "a.parquet", "a")
    spec = f"{f}:{WEAK},strong-x"
    with pytest.raises(InputError, match="folds"):
        run_train([spec], tmp_path / "m.zip", [], 1.0, 1, quiet())
    with pytest.raises(InputError, match="feedback-weight"):
        run_train([spec], tmp_path / "m.zip", [], 0.0, 3, quiet())
    with pytest.raises(InputError, match="SPEC"):
        run_train([], tmp_path / "m.zip", [], 1.0, 3, quiet())
    with pytest.raises(InputError, match="--label must be one of needs, win_rate"):
        run_train([spec], tmp_path / "m.zip", [], 1.0, 3, quiet(), label="ranking")
    with pytest.raises(InputError, match="tolerance"):
        run_train([spec], tmp_path / "m.zip", [], 1.0, 3, quiet(), tolerance=-0.1)
    bad = tmp_path / "bad.parquet"
    pl.DataFrame({"prompt": ["x"]}).write_parquet(bad)
    with pytest.raises(InputError, match="missing column"):
        run_train([f"{bad}:a,b"], tmp_path / "m.zip", [], 1.0, 3, quiet())


def test_two_specs_leave_one_out_and_feedback_changes_the_model(tmp_path: Path) -> None:
    a = write_labels(tmp_path / "a.parquet", "alpha")
    b = write_labels(tmp_path / "b.parquet", "beta", seed=1)
    fb = write_labels(tmp_path / "fb.parquet", "gamma", n=20, seed=2)
    specs = [f"{a}:{WEAK},strong-x", f"{b}:{WEAK},strong-x"]
    plain = run_train(specs, tmp_path / "plain.zip", [], 1.0, 3, quiet())
    fed = run_train(specs, tmp_path / "fed.zip", [fb], 5.0, 3, quiet())
    assert set(plain["metrics"]["cv"]) == {"alpha", "beta"}
    assert set(plain["metrics"]["leave_one_out"]) == {"alpha", "beta"}
    assert fed["feedback"] == [{"file": str(fb), "prompts": 20, "weight": 5.0}]
    assert fed["fingerprint"] != plain["fingerprint"]
    probe = ["prove the gamma theorem 3 and derive every step of the integral"]
    feats = compute_features(pl.Series("prompt", probe))
    s_plain = load_scorer(tmp_path / "plain.zip").score_texts(probe, feats, [12])
    s_fed = load_scorer(tmp_path / "fed.zip").score_texts(probe, feats, [12])
    assert not np.allclose(s_plain, s_fed)


def test_feedback_with_named_models(tmp_path: Path) -> None:
    a = write_labels(tmp_path / "a.parquet", "alpha")
    fb = write_labels(tmp_path / "fb.parquet", "gamma", n=12)
    pl.read_parquet(fb).with_columns(pl.col("model").str.replace("strong-x", "big")).write_parquet(
        fb
    )
    out = run_train(
        [f"{a}:{WEAK},strong-x"], tmp_path / "m.zip", [Path(f"{fb}:{WEAK},big")], 2.0, 3, quiet()
    )
    assert out["feedback"][0]["prompts"] == 12
    assert out["tiers"] == [[WEAK, "strong-x"], [WEAK, "big"]]


def test_gsm8k_subsample_writes_an_artifact(tmp_path: Path) -> None:
    source = data.require(data.LABELS / "gsm8k.parquet")
    ids = pl.read_parquet(source, columns=["prompt_id"]).unique().sort("prompt_id").head(160)
    sample = tmp_path / "gsm8k-small.parquet"
    pl.read_parquet(source).join(ids, on="prompt_id").write_parquet(sample)
    out_path = tmp_path / "models" / "router.zip"
    meta = run_train([f"{sample}:{WEAK},{STRONG}"], out_path, [], 1.0, 3, quiet())
    assert out_path.is_file()
    with zipfile.ZipFile(out_path) as zf:
        stored = json.loads(zf.read("metadata.json"))
    assert stored["feature_version"] == FEATURE_VERSION
    assert stored["classifier_version"] == classifier_version(stored)
    assert len(stored["fingerprint"]) == 64 and stored["created_at"]
    assert stored["sklearn_version"] and stored["datasets"] == {"gsm8k": 160}
    cv = stored["metrics"]["cv"]["gsm8k"]
    assert cv["prompts"] == 160 and 0.0 <= cv["auc"] <= 1.0
    assert cv["apgr"] is None or isinstance(cv["apgr"], float)
    assert meta["fingerprint"] == stored["fingerprint"]
    assert load_scorer(out_path).version == stored["classifier_version"]


def test_label_and_tolerance_options(tmp_path: Path) -> None:
    spec = f"{write_labels(tmp_path / 'a.parquet', 'a')}:{WEAK},strong-x"
    default = run_train([spec], tmp_path / "d.zip", [], 1.0, 3, quiet())
    needs = run_train([spec], tmp_path / "n.zip", [], 1.0, 3, quiet(), label="needs", tolerance=0.1)
    assert default["config"]["label"] == "win_rate"
    assert needs["config"]["label"] == "needs" and needs["config"]["tolerance"] == 0.1
    assert load_scorer(tmp_path / "n.zip").label == "needs"
    assert DEFAULT_FEEDBACK_WEIGHT == 10.0


def test_length_warnings_name_each_evaluation_that_does_not_beat_length() -> None:
    def m(apgr: float | None, length: float | None) -> dict[str, float | None]:
        return {"apgr": apgr, "length_apgr": length}

    cv = {"mmlu": m(0.70, 0.58), "gsm8k": m(0.55, 0.59)}
    lodo = {"mmlu": m(0.58, 0.58), "arena": m(None, 0.55)}
    lines = length_warnings(cv, lodo, 5)
    assert lines == [
        "5-fold CV on gsm8k: APGR 0.550 does not beat length-only 0.590; "
        "a router trained on it alone may (pooling costs small datasets)",
        "leave-one-out on mmlu: APGR 0.580 does not beat length-only 0.580; "
        "on traffic like it, label some (--feedback)",
    ]


def test_train_prints_a_warning_exactly_when_length_wins(tmp_path: Path) -> None:
    a = write_labels(tmp_path / "a.parquet", "alpha")
    b = write_labels(tmp_path / "b.parquet", "beta", seed=1)
    console = Console(file=io.StringIO(), width=200)
    meta = run_train(
        [f"{a}:{WEAK},strong-x", f"{b}:{WEAK},strong-x"], tmp_path / "r.zip", [], 1.0, 3, console
    )
    printed = console.file.getvalue()  # type: ignore[attr-defined]
    metrics = meta["metrics"]
    expected = length_warnings(metrics["cv"], metrics["leave_one_out"], 3)
    assert printed.count("does not beat length-only") == len(expected)
    for line in expected:
        assert line.split(":")[0] in printed
