"""``batch-router train``: fit the learned scorer on labelled files, cross-validate it, save it.

Each SPEC is ``PATH:weak,strong[,more…]`` — a labels file in the long format of
``../shared/data/labels/`` (``prompt_id, prompt, model, quality`` and optionally
``input_tokens, cost_usd``) and the models to learn from, **cheapest first**. Two models give
a weak/strong router; more give an ordinal (cheapest adequate tier) router. Every SPEC must
list the same number of models; the k-th model of each SPEC is tier k.

``--embedding MODEL`` adds the prompt's sentence embedding to the features
and a vote of the nearest training prompts (:mod:`routing.embedding`; off by default: MMLU
APGR 0.685 → 0.700, GSM8K 0.638 → 0.666, but ~60 prompts/s, 350× slower scoring).

``--feedback FILE`` or ``--feedback FILE:weak,strong[,…]`` (repeatable) adds user-labelled
prompts (same format) to every training set with weight ``--feedback-weight`` (10 measured
best, ``docs/training.md``); bare ``FILE`` must hold the models of one SPEC, the
``FILE:weak,strong`` form names them when the file calls them differently. Feedback prompts
are never scored in the reported metrics. ``--label needs|win_rate`` (default ``win_rate`` for
two models, ``needs`` for more) and ``--tolerance`` set the target.

Reported: k-fold cross-validated metrics per dataset (the pooled model, out-of-fold), and with
two or more SPECs leave-one-dataset-out (train on the others, score the held-out one): ROC AUC
of "needs more than the cheapest tier", APGR (from :mod:`routing.evaluate`, weak = first and
strong = last model), the length-only APGR beside it, and the Brier score of P(needs).

Example::

    batch-router train \\
      ../shared/data/labels/mmlu.parquet:mixtral-8x7b-instruct-v0.1,gpt-4-1106-preview \\
      ../shared/data/labels/gsm8k.parquet:mixtral-8x7b-instruct-v0.1,gpt-4-1106-preview \\
      --out models/router.zip --feedback ours.parquet --feedback-weight 10 --folds 5
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import polars as pl
from rich.console import Console
from rich.table import Table
from sklearn.metrics import brier_score_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold

from routing.errors import InputError
from routing.features import compute_features
from routing.learned import Label, LearnedScorer, TrainConfig, fit_scorer, levels, save_scorer
from routing.tokens import count_tokens

evaluate: ModuleType | None
try:
    from routing import evaluate
except ImportError:  # pragma: no cover - the evaluation module ships with routing
    evaluate = None

REQUIRED = ("prompt_id", "prompt", "model", "quality")
LABELS: tuple[Label, ...] = ("needs", "win_rate")
DEFAULT_FEEDBACK_WEIGHT = 10.0  # the measured plateau is 5–20 (docs/training.md)


@dataclass(frozen=True)
class Spec:
    """A labels file and the models to learn from, cheapest first."""

    path: Path
    models: tuple[str, ...]


def parse_spec(text: str, min_models: int = 2) -> Spec:
    """``PATH:m1,m2[,…]`` → :class:`Spec`; the file must exist."""
    path, sep, names = str(text).rpartition(":")
    models = tuple(m.strip() for m in names.split(",") if m.strip()) if sep else ()
    if not sep or not path:
        raise InputError(f"SPEC {text!r}: expected PATH:weak,strong[,more…]")
    if len(models) < min_models:
        raise InputError(f"SPEC {text!r}: name at least {min_models} models, cheapest first")
    if len(set(models)) != len(models):
        raise InputError(f"SPEC {text!r}: a model is listed twice")
    if not Path(path).is_file():
        raise InputError(f"SPEC {text!r}: no such file {path}")
    return Spec(Path(path), models)


@dataclass(frozen=True)
class LabelSet:
    """One file's prompts labelled for every model of a spec (``quality``: prompts × models)."""

    name: str
    models: tuple[str, ...]
    rows: pl.DataFrame  # the long rows used: prompt_id, prompt, model, quality, cost_usd, …
    prompt_ids: list[str]
    prompts: list[str]
    input_tokens: np.ndarray
    quality: np.ndarray

    @property
    def n(self) -> int:
        return len(self.prompts)

    def take(self, idx: np.ndarray) -> LabelSet:
        ids = [self.prompt_ids[i] for i in idx]
        return replace(
            self,
            rows=self.rows.filter(pl.col("prompt_id").is_in(ids)),
            prompt_ids=ids,
            prompts=[self.prompts[i] for i in idx],
            input_tokens=self.input_tokens[idx],
            quality=self.quality[idx],
        )


def _read(path: Path) -> pl.DataFrame:
    try:
        frame = pl.read_parquet(path)
    except Exception as exc:
        raise InputError(f"{path}: not a readable Parquet file ({exc})") from exc
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; need {list(REQUIRED)}")
    return frame


def load_labels(spec: Spec) -> LabelSet:
    """Read a spec's file: the prompts with a quality for every one of its models."""
    frame = _read(spec.path)
    present = sorted(frame.get_column("model").drop_nulls().unique().to_list())
    unknown = [m for m in spec.models if m not in present]
    if unknown:
        raise InputError(f"{spec.path}: unknown model(s) {unknown}; the file has {present}")
    rows = (
        frame.filter(pl.col("model").is_in(spec.models))
        .drop_nulls(["prompt_id", "quality"])
        .with_columns(pl.col("prompt_id").cast(pl.String))
    )
    if rows.select(pl.struct("prompt_id", "model").is_duplicated().any()).item():
        raise InputError(f"{spec.path}: more than one row for the same (prompt_id, model)")
    complete = pl.col("model").n_unique().over("prompt_id") == len(spec.models)
    rows = rows.filter(complete).sort("prompt_id", maintain_order=True)
    if "cost_usd" not in rows.columns:
        rows = rows.with_columns(cost_usd=pl.lit(0.0))
    if "input_tokens" not in rows.columns:
        tokens = count_tokens(rows.get_column("prompt").to_list())
        rows = rows.with_columns(input_tokens=pl.Series(tokens))
    rows = rows.with_columns(pl.col("cost_usd").fill_null(0.0), pl.col("prompt").fill_null(""))
    wide = rows.pivot(on="model", index="prompt_id", values="quality", sort_columns=False)
    first = rows.unique("prompt_id", keep="first", maintain_order=True)
    wide = first.select("prompt_id", "prompt", "input_tokens").join(wide, on="prompt_id")
    if wide.height == 0:
        raise InputError(f"{spec.path}: no prompt is labelled for all of {list(spec.models)}")
    name = spec.path.stem
    if "dataset" in rows.columns and rows.get_column("dataset").n_unique() == 1:
        name = str(rows.get_column("dataset")[0])
    return LabelSet(
        name=name,
        models=spec.models,
        rows=rows,
        prompt_ids=wide.get_column("prompt_id").cast(pl.String).to_list(),
        prompts=wide.get_column("prompt").to_list(),
        input_tokens=wide.get_column("input_tokens").cast(pl.Int64).to_numpy(),
        quality=wide.select(spec.models).cast(pl.Float64).to_numpy(),
    )


def load_feedback(path: Path | str, specs: Sequence[Spec]) -> LabelSet:
    """A feedback file, ``FILE`` or ``FILE:models``; bare, it must hold one SPEC's models."""
    text = str(path)
    if not Path(text).is_file() and ":" in text:
        return load_labels(parse_spec(text))
    if not Path(text).is_file():
        raise InputError(f"--feedback {text}: no such file")
    present = set(_read(Path(text)).get_column("model").drop_nulls().unique().to_list())
    for spec in specs:
        if set(spec.models) <= present:
            return load_labels(Spec(Path(text), spec.models))
    wanted = " or ".join(str(list(s.models)) for s in specs)
    raise InputError(
        f"--feedback {text}: holds models {sorted(present)}, not the SPEC models {wanted}; "
        "name them: --feedback FILE:weak,strong"
    )


# --- metrics ---------------------------------------------------------------------------


def _apgr(labels: LabelSet, scores: np.ndarray) -> float | None:
    if evaluate is None:
        return None
    pair = evaluate.Pair.from_labels(labels.rows, labels.models[0], labels.models[-1])
    by_id = dict(zip(labels.prompt_ids, scores.tolist(), strict=True))
    aligned = np.array([by_id[str(i)] for i in pair.prompt_ids.to_list()])
    value = evaluate.apgr(pair, evaluate.frontier(pair, aligned))
    return None if value is None else float(value)


def metrics(
    labels: LabelSet, scores: np.ndarray, p_needs: np.ndarray, tolerance: float
) -> dict[str, Any]:
    """AUC / APGR / length-only APGR / Brier of one scored evaluation set."""
    needs = levels(labels.quality, "needs", tolerance) > 0
    both = bool(needs.any() and not needs.all())
    return {
        "prompts": labels.n,
        "needs_rate": float(needs.mean()),
        "auc": float(roc_auc_score(needs, scores)) if both else None,
        "apgr": _apgr(labels, scores),
        "length_apgr": _apgr(labels, labels.input_tokens.astype(np.float64)),
        "brier": float(brier_score_loss(needs, p_needs)) if both else None,
    }


def _fit(parts: Sequence[LabelSet], weights: Sequence[float], config: TrainConfig) -> LearnedScorer:
    return fit_scorer(
        [p for s in parts for p in s.prompts],
        np.concatenate([s.input_tokens for s in parts]),
        np.vstack([s.quality for s in parts]),
        config=config,
        sample_weight=np.concatenate(
            [np.full(s.n, w) for s, w in zip(parts, weights, strict=True)]
        ),
        groups=np.concatenate([np.full(s.n, i) for i, s in enumerate(parts)]),
        tiers=list(dict.fromkeys(s.models for s in parts)),
    )


def _score(model: LearnedScorer, labels: LabelSet) -> tuple[np.ndarray, np.ndarray]:
    texts = pl.Series("prompt", labels.prompts, dtype=pl.String)
    feats = compute_features(texts)
    probs = model.tier_probabilities(texts, feats, labels.input_tokens)
    return model.score_texts(texts, feats, labels.input_tokens), 1.0 - probs[:, 0]


def _unseen(labels: LabelSet, feedback: Sequence[LabelSet]) -> LabelSet:
    """``labels`` minus the prompts whose text is in the feedback (never score training rows)."""
    seen = {p for f in feedback for p in f.prompts}
    keep = np.array([i for i, p in enumerate(labels.prompts) if p not in seen], dtype=np.int64)
    return labels if len(keep) == labels.n else labels.take(keep)


def cross_validate(
    sets: Sequence[LabelSet],
    feedback: Sequence[LabelSet],
    fb_weight: float,
    folds: int,
    config: TrainConfig,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """k-fold out-of-fold metrics per dataset of the pooled model (feedback always trains)."""
    evals = [_unseen(s, feedback) for s in sets]
    n_levels = 3 if config.label == "win_rate" else len(sets[0].models)
    strata = np.concatenate(
        [
            i * n_levels + levels(s.quality, config.label, config.tolerance)
            for i, s in enumerate(evals)
        ]
    )
    offsets = np.cumsum([0] + [s.n for s in evals])
    scores, p_needs = np.zeros(len(strata)), np.zeros(len(strata))
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        splits = list(splitter.split(np.zeros(len(strata)), strata))
    for train, test in splits:
        parts = [s.take(_local(train, offsets, i)) for i, s in enumerate(evals)]
        model = _fit([*parts, *feedback], [1.0] * len(parts) + [fb_weight] * len(feedback), config)
        for i, s in enumerate(evals):
            idx = _local(test, offsets, i)
            scores[idx + offsets[i]], p_needs[idx + offsets[i]] = _score(model, s.take(idx))
    return {
        s.name: metrics(
            s,
            scores[offsets[i] : offsets[i + 1]],
            p_needs[offsets[i] : offsets[i + 1]],
            config.tolerance,
        )
        for i, s in enumerate(evals)
    }


def _local(idx: np.ndarray, offsets: np.ndarray, i: int) -> np.ndarray:
    sel = idx[(idx >= offsets[i]) & (idx < offsets[i + 1])]
    return np.sort(sel - offsets[i])


def leave_one_out(
    sets: Sequence[LabelSet], feedback: Sequence[LabelSet], fb_weight: float, config: TrainConfig
) -> dict[str, dict[str, Any]]:
    """Per dataset: train on the other datasets (+ feedback), score the held-out one."""
    out = {}
    for i, held in enumerate(sets):
        others = [s for j, s in enumerate(sets) if j != i]
        model = _fit(
            [*others, *feedback], [1.0] * len(others) + [fb_weight] * len(feedback), config
        )
        target = _unseen(held, feedback)
        out[held.name] = metrics(target, *_score(model, target), config.tolerance)
    return out


# --- the command -----------------------------------------------------------------------


def fingerprint(sets: Sequence[LabelSet], feedback: Sequence[LabelSet], fb_weight: float) -> str:
    """SHA-256 of the label rows used (dataset, prompt_id, model, quality, prompt) + weights."""
    h = hashlib.sha256()
    for role, group in (("train", sets), ("feedback", feedback)):
        for s in group:
            rows = s.rows.select("prompt_id", "model", "quality", "prompt").sort(
                "prompt_id", "model"
            )
            h.update(json.dumps([role, s.name, list(s.models)]).encode())
            for row in rows.iter_rows():
                h.update(json.dumps(row, ensure_ascii=False).encode() + b"\n")
    h.update(json.dumps({"feedback_weight": fb_weight}).encode())
    return h.hexdigest()


def run_train(
    specs: list[str],
    out: Path,
    feedback: list[Path],
    feedback_weight: float,
    folds: int,
    console: Console,
    *,
    label: Label | str | None = None,
    tolerance: float = 0.0,
    config: TrainConfig | None = None,
    embedding: str | None = None,
) -> dict[str, Any]:
    """Train on every SPEC (+ feedback), report CV / leave-one-dataset-out metrics, save to
    ``out``. Returns the artifact's metadata. ``label`` defaults to ``win_rate`` for two
    models and ``needs`` (ordinal) for more."""
    if not specs:
        raise InputError("give at least one SPEC (PATH:weak,strong)")
    if folds < 2:
        raise InputError(f"--folds must be at least 2, got {folds}")
    if feedback_weight <= 0:
        raise InputError(f"--feedback-weight must be positive, got {feedback_weight}")
    if tolerance < 0:
        raise InputError(f"--tolerance must be at least 0, got {tolerance}")
    parsed = [parse_spec(s) for s in specs]
    if len({len(s.models) for s in parsed}) > 1:
        raise InputError("every SPEC must list the same number of models (tier k = k-th model)")
    config = _config(config, label, tolerance, len(parsed[0].models))
    if embedding:
        from routing.embedding import SentenceEmbedding

        config = replace(config, embedding=embedding)
        with console.status(f"loading embedding model {embedding}…"):
            SentenceEmbedding(embedding).fit(None)  # a missing model fails before any work
    started = time.monotonic()
    with console.status("reading labels…"):
        sets = [load_labels(s) for s in parsed]
        fb = [load_feedback(p, parsed) for p in feedback]
    _check_sets(sets, fb, folds)
    with console.status(f"{folds}-fold cross-validation…"):
        cv = cross_validate(sets, fb, feedback_weight, folds, config)
    lodo: dict[str, dict[str, Any]] = {}
    if len(sets) >= 2:
        with console.status("leave-one-dataset-out…"):
            lodo = leave_one_out(sets, fb, feedback_weight, config)
    with console.status("training the final model…"):
        model = _fit([*sets, *fb], [1.0] * len(sets) + [feedback_weight] * len(fb), config)
    model = model.with_metadata(
        fingerprint=fingerprint(sets, fb, feedback_weight),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        specs=specs,
        feedback=[
            {"file": str(p), "prompts": f.n, "weight": feedback_weight}
            for p, f in zip(feedback, fb, strict=True)
        ],
        datasets={s.name: s.n for s in sets},
        metrics={
            "folds": folds,
            "cv": cv,
            "leave_one_out": lodo,
            "apgr_available": evaluate is not None,
        },
        train_seconds=round(time.monotonic() - started, 1),
    )
    save_scorer(model, out)
    console.print(_table(cv, lodo, folds))
    for line in length_warnings(cv, lodo, folds):
        console.print(f"[yellow]warning:[/] {line}")
    console.print(
        f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {model.version}, label {config.label})"
    )
    return {**model.metadata, "classifier_version": model.version, "artifact": str(out)}


def _config(
    config: TrainConfig | None, label: Label | str | None, tolerance: float, n_models: int
) -> TrainConfig:
    base = config or TrainConfig()
    if label is not None and label not in LABELS:
        raise InputError(f"--label must be one of {', '.join(LABELS)}, got {label!r}")
    named = [x for x in LABELS if x == label]
    chosen: Label = named[0] if named else ("win_rate" if n_models == 2 else "needs")
    if chosen == "win_rate" and n_models != 2:
        raise InputError("label win_rate needs exactly two models per SPEC; use needs")
    return replace(base, label=chosen, tolerance=tolerance)


def _check_sets(sets: Sequence[LabelSet], feedback: Sequence[LabelSet], folds: int) -> None:
    names = [s.name for s in sets]
    if len(set(names)) != len(names):
        raise InputError(f"two SPECs name the same dataset {names}; give distinct files")
    k = len(sets[0].models)
    if any(len(f.models) != k for f in feedback):
        raise InputError(f"feedback must name {k} models, like the SPECs")
    for s in sets:
        if _unseen(s, feedback).n < folds:
            raise InputError(f"{s.name}: {s.n} labelled prompts, fewer than --folds {folds}")


def _fmt(x: Any) -> str:
    return "—" if x is None else f"{x:.3f}"


def length_warnings(
    cv: dict[str, dict[str, Any]], lodo: dict[str, dict[str, Any]], folds: int
) -> list[str]:
    """One line per held-out evaluation where the router does not beat routing by length:
    such a router costs scoring time for nothing there (docs/training.md)."""
    out = []
    hints = {
        f"{folds}-fold CV": "a router trained on it alone may (pooling costs small datasets)",
        "leave-one-out": "on traffic like it, label some (--feedback)",
    }
    for title, group in ((f"{folds}-fold CV", cv), ("leave-one-out", lodo)):
        for name, m in group.items():
            apgr, length = m["apgr"], m["length_apgr"]
            if apgr is not None and length is not None and apgr <= length:
                out.append(
                    f"{title} on {name}: APGR {apgr:.3f} does not beat length-only "
                    f"{length:.3f}; {hints[title]}"
                )
    return out


def _table(cv: dict[str, dict[str, Any]], lodo: dict[str, dict[str, Any]], folds: int) -> Table:
    table = Table(title="learned scorer — held-out metrics", title_justify="left")
    for col in ("evaluation", "dataset", "prompts", "AUC", "APGR", "length APGR", "Brier"):
        table.add_column(col, justify="left" if col in ("evaluation", "dataset") else "right")
    for title, group in ((f"{folds}-fold CV", cv), ("leave-one-out", lodo)):
        for name, m in group.items():
            table.add_row(
                title, name, f"{m['prompts']:,}", _fmt(m["auc"]), _fmt(m["apgr"]),
                _fmt(m["length_apgr"]), _fmt(m["brier"]),
            )  # fmt: skip
    return table
