"""``run_eval`` (the body of ``batch-router eval``) on the shared labels, called directly."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from rich.console import Console

from producer.commands.evaluate import run_eval
from routing.errors import ConfigError, InputError
from tests import data

LABELS = data.LABELS
WEAK, STRONG = "mixtral-8x7b-instruct-v0.1", "gpt-4-1106-preview"
GSM8K_PROMPTS = 1_319


@pytest.fixture(scope="module")
def gsm8k() -> Path:
    return data.require(LABELS / "gsm8k.parquet")


def run(labels: Path, *, as_json: bool = False, **kwargs: Any) -> tuple[dict[str, Any], str]:
    out = io.StringIO()
    console = Console(file=out, width=200, color_system=None)
    options: dict[str, Any] = {"weak": WEAK, "strong": STRONG, "router": "heuristic"}
    options |= {"scores_out": None, "html_out": None} | kwargs
    result = run_eval(labels, as_json=as_json, console=console, **options)
    return result, out.getvalue()


def test_heuristic_on_gsm8k_prints_router_and_baselines(gsm8k: Path) -> None:
    result, text = run(gsm8k)
    assert result["router"] == "heuristic"
    assert result["prompts"] == GSM8K_PROMPTS
    assert 0.5 < result["apgr"] < 1
    for needle in ("APGR", "CPT(50%)", "AIQ", "saving@95%", "heuristic", "length-only", "oracle"):
        assert needle in text
    assert "frontier" in text


def test_json_is_one_object_with_the_headline_metrics(gsm8k: Path) -> None:
    result, text = run(gsm8k, as_json=True)
    printed = json.loads(text)
    assert printed == json.loads(json.dumps(result))
    for key in ("apgr", "cpt50", "cpt80", "aiq", "baselines"):
        assert key in printed
    assert set(printed["baselines"]) == {
        "random",
        "always-weak",
        "always-strong",
        "length-only",
        "oracle",
    }
    assert printed["baselines"]["random"]["apgr"] == pytest.approx(0.5)
    assert round(printed["baselines"]["oracle"]["operating_point"]["quality"], 3) == 0.929


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_scores_out_has_one_row_per_prompt(gsm8k: Path, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"scores{suffix}"
    run(gsm8k, scores_out=path)
    scores = pl.read_parquet(path) if suffix == ".parquet" else pl.read_csv(path)
    assert scores.columns == ["prompt_id", "score"]
    assert scores.height == GSM8K_PROMPTS
    assert scores.get_column("prompt_id").n_unique() == GSM8K_PROMPTS


def test_html_is_a_self_contained_svg_plot(gsm8k: Path, tmp_path: Path) -> None:
    path = tmp_path / "frontier.html"
    run(gsm8k, html_out=path)
    page = path.read_text()
    assert "<svg" in page and "<polyline" in page
    assert "<script" not in page and "http" not in page.replace("http://www.w3.org", "")


def test_multi_model_file_adds_the_tier_table(tmp_path: Path) -> None:
    arena = data.require(LABELS / "arena_bench_v1.parquet")
    result, text = run(
        arena, weak="Mixtral-8x7B-Instruct-v0.1", strong="gpt-4-turbo", as_json=False
    )
    assert result["multi_tier"]["prompts"] == 286
    assert "cheapest adequate" in text


def test_missing_router_file_is_a_config_error(gsm8k: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        run(gsm8k, router=str(tmp_path / "nope.skops"))


def test_trained_router_without_loader_is_a_config_error(
    gsm8k: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "router.skops"
    model.write_bytes(b"not a model")
    monkeypatch.setitem(sys.modules, "routing.learned.artifact", None)  # import fails
    with pytest.raises(ConfigError, match="trained routers are not available"):
        run(gsm8k, router=str(model))


def test_bad_arguments_are_clear_errors(gsm8k: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\.parquet or \.csv"):
        run(gsm8k, scores_out=tmp_path / "scores.txt")
    with pytest.raises(InputError, match="no strong model 'gpt-5'"):
        run(gsm8k, strong="gpt-5")
    with pytest.raises(InputError, match="not found"):
        run(tmp_path / "missing.parquet")
