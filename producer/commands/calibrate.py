"""``batch-router calibrate``: choose a policy's thresholds on labelled prompts.

The glue around :mod:`routing.calibrate`: read the labels, map every policy tier to the
labelled model that stands for it (``--model TIER=MODEL``), score the prompts with the
policy's classifier (or ``--router``), price each (prompt, tier) with the **policy's**
prices and the labelled token counts, search the thresholds for the target, print before
and after, and write the calibrated policy::

    batch-router calibrate ../shared/data/labels/arena_bench_v1.parquet \\
        --model fast=Mistral-7B-Instruct-v0.1 --model balanced=Mixtral-8x7B-Instruct-v0.1 \\
        --model expert=gpt-4-turbo --min-quality 0.95 --out calibrated.yaml
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from rich.console import Console
from rich.table import Table

from producer.commands.evaluate import load_router, read_labels, score_prompts
from routing.calibrate import Outcome, Target, calibrate, outcome
from routing.errors import ConfigError, InputError
from routing.policy import Policy

_REQUIRED = ("prompt_id", "prompt", "model", "quality")


def run_calibrate(
    labels_path: Path,
    policy: Policy,
    models: Sequence[str],
    router: str | None,
    target: Target,
    value: float,
    out: Path | None,
    as_json: bool,
    console: Console,
) -> dict[str, Any]:
    """Calibrate ``policy``'s thresholds; print the result; write the policy to ``out``."""
    mapping = parse_models(models, policy)
    labels = read_labels(labels_path)
    prompts, quality, cost = tier_matrices(labels, policy, mapping, str(labels_path))
    scorer = load_router(router or _policy_router(policy))
    scores = score_prompts(scorer, prompts)
    current = [float(t.max_score or 0) for t in policy.tiers[:-1]]  # all set but the last
    before = outcome(scores, quality, cost, current)
    after = calibrate(scores, quality, cost, target, value)
    calibrated = with_thresholds(policy, after.thresholds)
    result = {
        "labels": str(labels_path),
        "prompts": int(quality.shape[0]),
        "classifier_version": scorer.version,
        "target": {target: value},
        "tiers": {t: m for t, m in mapping.items()},
        "before": before.to_dict(),
        "after": after.to_dict(),
        "policy_version": calibrated.version,
    }
    if out is not None:
        out.write_text(calibrated.to_yaml())
        result["out"] = str(out)
    if as_json:
        console.print_json(json.dumps(result))
    else:
        _print(console, policy, before, after, result)
    return result


def parse_models(models: Sequence[str], policy: Policy) -> dict[str, str]:
    """``TIER=MODEL`` for every tier of the policy, in tier order."""
    mapping: dict[str, str] = {}
    for item in models:
        tier, sep, model = item.partition("=")
        if not sep or not tier or not model:
            raise ConfigError(f"--model {item!r}: write TIER=MODEL, e.g. fast=gpt-3.5-turbo-1106")
        if tier not in policy.tier_names:
            raise ConfigError(
                f"--model {item!r}: unknown tier; the policy's tiers are {policy.tier_names}"
            )
        if tier in mapping:
            raise ConfigError(f"--model: tier {tier!r} given twice")
        mapping[tier] = model
    missing = [t for t in policy.tier_names if t not in mapping]
    if missing:
        raise ConfigError(
            f"--model: give the labelled model standing for every tier; missing {missing} "
            f"(the policy's tiers are {list(policy.tier_names)}; one model may stand for several)"
        )
    return {t: mapping[t] for t in policy.tier_names}


def tier_matrices(
    labels: pl.DataFrame, policy: Policy, mapping: dict[str, str], source: str
) -> tuple[pl.Series, np.ndarray, np.ndarray]:
    """Prompts labelled for every mapped model, and their ``(n, tiers)`` quality and cost.

    Cost = the tier's primary model prices × the labelled ``input_tokens`` /
    ``output_tokens`` of the model standing for it; ``cost_usd`` where those are missing."""
    missing = [c for c in _REQUIRED if c not in labels.columns]
    if missing:
        raise InputError(f"{source}: missing columns {missing} (need {list(_REQUIRED)})")
    known = set(labels.get_column("model").unique().to_list())
    unknown = sorted({m for m in mapping.values() if m not in known})
    if unknown:
        raise ConfigError(f"{source}: no labels for {unknown}; it has {sorted(known)}")
    for name in ("input_tokens", "output_tokens", "cost_usd"):
        if name not in labels.columns:
            labels = labels.with_columns(pl.lit(None, pl.Float64).alias(name))
    rows = labels.filter(pl.col("quality").is_not_null()).select(
        "prompt_id", "prompt", "model", "quality", "input_tokens", "output_tokens", "cost_usd"
    )
    if rows.select(pl.struct("prompt_id", "model").is_duplicated().any()).item():
        raise InputError(f"{source}: a (prompt_id, model) pair appears twice")
    frame: pl.DataFrame | None = None
    for k, (tier, model) in enumerate(mapping.items()):
        spec = policy.tier(tier).primary
        side = rows.filter(pl.col("model") == model).select(
            "prompt_id",
            "prompt",
            pl.col("quality").cast(pl.Float64).alias(f"q{k}"),
            _cost(spec.input_per_mtok, spec.output_per_mtok).alias(f"c{k}"),
        )
        frame = side if frame is None else frame.join(side.drop("prompt"), on="prompt_id")
    assert frame is not None
    frame = frame.drop_nulls().sort("prompt_id")
    if frame.height == 0:
        raise InputError(
            f"{source}: no prompt is labelled for all of {sorted(set(mapping.values()))}"
        )
    n = len(mapping)
    quality = frame.select([f"q{k}" for k in range(n)]).to_numpy().astype(np.float64)
    cost = frame.select([f"c{k}" for k in range(n)]).to_numpy().astype(np.float64)
    return frame.get_column("prompt"), quality, cost


def _cost(input_per_mtok: Decimal, output_per_mtok: Decimal) -> pl.Expr:
    priced = (
        pl.col("input_tokens").cast(pl.Float64) * float(input_per_mtok)
        + pl.col("output_tokens").cast(pl.Float64) * float(output_per_mtok)
    ) / 1_000_000
    return pl.coalesce(priced, pl.col("cost_usd").cast(pl.Float64))


def with_thresholds(policy: Policy, thresholds: Sequence[float]) -> Policy:
    """``policy`` with the tiers' ``max_score`` replaced (validated again)."""
    data = policy.model_dump(mode="json")
    for tier, t in zip(data["tiers"][:-1], thresholds, strict=True):
        tier["max_score"] = float(t)
    return Policy.model_validate(data)


def _policy_router(policy: Policy) -> str:
    if policy.classifier.kind == "learned":
        assert policy.classifier.path is not None
        return policy.classifier.path
    return "heuristic"


def _print(
    console: Console, policy: Policy, before: Outcome, after: Outcome, result: dict[str, Any]
) -> None:
    console.print(
        f"calibrated on {result['prompts']:,} prompts of {result['labels']} "
        f"({result['classifier_version']}), target "
        + ", ".join(f"{k.replace('_', '-')} {v}" for k, v in result["target"].items())
    )
    table = Table(title_justify="left")
    table.add_column("")
    table.add_column("before", justify="right")
    table.add_column("after", justify="right")
    for i, tier in enumerate(policy.tiers):
        bound = (
            f" (max_score {before.thresholds[i]:.4f} → {after.thresholds[i]:.4f})"
            if i < len(before.thresholds)
            else ""
        )
        table.add_row(
            f"share {tier.name}{bound}", f"{before.shares[i]:.1%}", f"{after.shares[i]:.1%}"
        )
    table.add_row(
        "quality retained", f"{before.quality_retained:.1%}", f"{after.quality_retained:.1%}"
    )
    table.add_row("cost / 1,000 prompts", f"${before.cost_per_1k:.4f}", f"${after.cost_per_1k:.4f}")
    table.add_row(
        "saving vs all-" + policy.tiers[-1].name, f"{before.saving:.1%}", f"{after.saving:.1%}"
    )
    console.print(table)
    if "out" in result:
        console.print(f"wrote {result['out']} (policy {result['policy_version']})")
    else:
        console.print(
            "thresholds: "
            + ", ".join(f"{t:.6f}" for t in after.thresholds)
            + " (use --out to write the policy)"
        )
