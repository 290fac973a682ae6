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

``--responses FILE`` (repeatable: ``prompt_id, model, response``) keeps the prompts the
cheapest model answered, with that answer (a labels file with its own ``response`` column —
``batch-router feedback``'s — brings its answers itself); ``--verifier`` trains on the
answers too — a verifier for a cascade (``cascade: {verifier: PATH, min_score}``;
``docs/training.md``).

Reported: k-fold cross-validated metrics per dataset (the pooled model, out-of-fold), and with
two or more SPECs leave-one-dataset-out (train on the others, score the held-out one): ROC AUC
of "needs more than the cheapest tier", APGR (from :mod:`routing.evaluation`, weak = first and
strong = last model), the length-only APGR beside it, and the Brier score of P(needs).

Example::

    batch-router train \\
      ../shared/data/labels/mmlu.parquet:mixtral-8x7b-instruct-v0.1,gpt-4-1106-preview \\
      ../shared/data/labels/gsm8k.parquet:mixtral-8x7b-instruct-v0.1,gpt-4-1106-preview \\
      --out models/router.zip --feedback ours.parquet --feedback-weight 10 --folds 5
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from routing.errors import InputError
from routing.learned.artifact import save_scorer
from routing.learned.config import Label, TrainConfig
from routing.learned.labels import (
    LabelSet,
    load_feedback,
    load_labels,
    load_responses,
    parse_spec,
    with_answers,
)
from routing.learned.validation import (
    cross_validate,
    fingerprint,
    fit_sets,
    leave_one_out,
    unseen,
)

LABELS: tuple[Label, ...] = ("needs", "win_rate")


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
    responses: Sequence[Path] = (),
    verifier: bool = False,
) -> dict[str, Any]:
    """Train on every SPEC (+ feedback), report CV / leave-one-dataset-out metrics, save to
    ``out``. Returns the artifact's metadata. ``label`` defaults to ``win_rate`` for two
    models and ``needs`` (ordinal) for more.

    ``responses`` (answer files, joined on ``prompt_id`` and ``model``) keep only the
    prompts the cheapest model of each SPEC answered — so a prompt-only router and a
    verifier are measured on the same prompts; ``verifier`` trains on those answers too."""
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
    if verifier:
        config = replace(config, answers=True)
    if embedding:
        from routing.embedding import SentenceEmbedding

        config = replace(config, embedding=embedding)
        with console.status(f"loading embedding model {embedding}…"):
            SentenceEmbedding(embedding).fit(None)  # a missing model fails before any work
    started = time.monotonic()
    with console.status("reading labels…"):
        sets = [load_labels(s) for s in parsed]
        fb = [load_feedback(p, parsed) for p in feedback]
        if responses or verifier:  # answers from --responses, or a file's own `response`
            answers = load_responses(responses)
            sets = [with_answers(s, answers) for s in sets]
            fb = [with_answers(f, answers) for f in fb]
    _check_sets(sets, fb, folds)
    with console.status(f"{folds}-fold cross-validation…"):
        cv = cross_validate(sets, fb, feedback_weight, folds, config)
    lodo: dict[str, dict[str, Any]] = {}
    if len(sets) >= 2:
        with console.status("leave-one-dataset-out…"):
            lodo = leave_one_out(sets, fb, feedback_weight, config)
    with console.status("training the final model…"):
        model = fit_sets([*sets, *fb], [1.0] * len(sets) + [feedback_weight] * len(fb), config)
    model = model.with_metadata(
        fingerprint=fingerprint(sets, fb, feedback_weight),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        specs=specs,
        feedback=[
            {"file": str(p), "prompts": f.n, "weight": feedback_weight}
            for p, f in zip(feedback, fb, strict=True)
        ],
        datasets={s.name: s.n for s in sets},
        responses=[str(p) for p in responses],
        verifier=verifier,
        metrics={
            "folds": folds,
            "cv": cv,
            "leave_one_out": lodo,
            "apgr_available": True,
        },
        train_seconds=round(time.monotonic() - started, 1),
    )
    save_scorer(model, out)
    console.print(_table(cv, lodo, folds))
    for line in length_warnings(cv, lodo, folds):
        console.print(f"[yellow]warning:[/] {line}")
    kind = "verifier" if verifier else "router"
    console.print(
        f"wrote {kind} {out} ({out.stat().st_size / 1e6:.1f} MB, {model.version}, "
        f"label {config.label})"
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
        if unseen(s, feedback).n < folds:
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
    table = Table(title="held-out metrics", title_justify="left")
    for col in ("evaluation", "dataset", "prompts", "AUC", "APGR", "length APGR", "Brier"):
        table.add_column(col, justify="left" if col in ("evaluation", "dataset") else "right")
    for title, group in ((f"{folds}-fold CV", cv), ("leave-one-out", lodo)):
        for name, m in group.items():
            table.add_row(
                title, name, f"{m['prompts']:,}", _fmt(m["auc"]), _fmt(m["apgr"]),
                _fmt(m["length_apgr"]), _fmt(m["brier"]),
            )  # fmt: skip
    return table
