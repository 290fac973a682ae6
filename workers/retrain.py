"""Champion / challenger retraining on the job's own judged labels (issue 16;
``docs/training.md``): ``batch-router retrain`` (``producer/training/cmd.py``) and
beat's nightly retrain tick (:func:`tick`, schedules under ``retrain:`` in the nightly
schedules file) run :func:`run_retrain`.

1. The labels exploration wrote under ROOT (``batch-router feedback``'s collection) for the
   two models ``--models weak,strong`` (the tiers' models) are split by day: the most
   recent ``--holdout-days`` are **held back**; the rest are feedback.
2. A **challenger** is trained on the SPECs plus that feedback (weight
   ``--feedback-weight``), exactly as ``batch-router train --feedback`` does.
3. The **champion** (``--champion``: the file the policy's ``classifier.path`` names, local
   or ``s3://``) and the challenger are scored on the held-back prompts — which neither was
   trained on — by APGR (and AUC). The challenger replaces the champion only when its APGR
   beats the champion's by more than ``--min-gain`` (or when there is no champion yet). Jobs
   copy the classifier when they are planned, so a promotion never changes a running job.
4. Every run appends a record to ``ROOT/_models/promotions/<UTC stamp>.json``: both
   versions and scores, the held-back days and prompts, the decision — hash-chained (each
   record carries the SHA-256 of the previous one), so the trail cannot be edited quietly.
   The challenger is kept at ``ROOT/_models/challengers/<stamp>-<version>.zip`` either way.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from routing.errors import InputError
from routing.learned.artifact import save_scorer
from routing.learned.config import TrainConfig
from routing.learned.labels import LabelSet, Spec, load_labels, parse_spec
from routing.learned.scorer import LearnedScorer
from routing.learned.validation import (
    DEFAULT_FEEDBACK_WEIGHT,
    _score,
    fingerprint,
    fit_sets,
    metrics,
)
from workers.classifier import scorer_from_bytes
from workers.labels import collect_labels
from workers.storage import Storage, join

MODELS_DIR = "_models"
log = logging.getLogger("batch_router.retrain")


def _split(frame: pl.DataFrame, models: tuple[str, str], days: int) -> tuple[pl.DataFrame, ...]:
    """(feedback, held back, the first held-back day) of the labels of ``models``."""
    rows = frame.filter(pl.col("model").is_in(list(models)))
    if rows.height == 0:
        raise InputError(f"no labels of {list(models)} under the root (--models)")
    day = pl.col("labelled_at").str.slice(0, 10)
    last = date.fromisoformat(str(rows.select(day.max()).item()))
    first_held = (last - timedelta(days=days - 1)).isoformat()
    held_ids = rows.filter(day >= first_held).get_column("prompt_id").unique().to_list()
    held = _paired(rows.filter(pl.col("prompt_id").is_in(held_ids)))
    train = _paired(rows.filter(~pl.col("prompt_id").is_in(held_ids)))
    if held.height == 0:
        raise InputError(
            f"no prompt of the last {days} day(s) of labels (since {first_held}) is judged "
            f"for both {list(models)}: explored pairs join neighbouring tiers — name two "
            "neighbouring tiers' models in --models, or wait for more nights"
        )
    return train, held, pl.DataFrame({"day": [first_held]})


def _paired(rows: pl.DataFrame) -> pl.DataFrame:
    """The rows of prompts labelled for both models."""
    return rows.filter(pl.col("model").n_unique().over("prompt_id") == 2)


def _as_labels(frame: pl.DataFrame, models: tuple[str, str], name: str, tmp: Path) -> LabelSet:
    path = tmp / f"{name}.parquet"
    frame.write_parquet(path)
    return load_labels(Spec(path, models))


def _evaluate(model: LearnedScorer, held: LabelSet, tolerance: float) -> dict[str, Any]:
    m = metrics(held, *_score(model, held), tolerance)
    return {"version": model.version, "apgr": m["apgr"], "auc": m["auc"]}


def _champion(storage: Storage, uri: str) -> LearnedScorer | None:
    if not storage.exists(uri):
        return None
    current = scorer_from_bytes(storage.read_bytes(uri), uri)
    if not isinstance(current, LearnedScorer) or current.verifier:
        raise InputError(f"--champion {uri}: not a learned router")
    return current


def run_retrain(
    storage: Storage,
    root: str,
    specs: list[str],
    models: tuple[str, str],
    champion: str,
    *,
    holdout_days: int = 1,
    feedback_weight: float = DEFAULT_FEEDBACK_WEIGHT,
    min_gain: float = 0.0,
    config: TrainConfig | None = None,
    tenants: list[str] | None = None,
) -> dict[str, Any]:
    """One champion/challenger round (see the module doc); returns the audit record."""
    if holdout_days < 1:
        raise InputError(f"--holdout-days must be at least 1, got {holdout_days}")
    if not specs:
        raise InputError("give at least one SPEC (PATH:weak,strong): the base training data")
    started = time.monotonic()
    parsed = [parse_spec(s) for s in specs]
    if any(len(p.models) != 2 for p in parsed):
        raise InputError("retrain learns a weak/strong router: every SPEC names two models")
    labels, _, _ = collect_labels(storage, root, tenants=tenants)
    train_rows, held_rows, first = _split(labels, models, holdout_days)
    current = _champion(storage, champion)
    # The challenger learns what the champion learned, the way it learned it (its config:
    # an embedding, a tolerance…), unless told otherwise; both are scored alike.
    inherited = None
    if current is not None:
        known = TrainConfig.__dataclass_fields__
        inherited = TrainConfig(
            **{k: v for k, v in current.metadata["config"].items() if k in known}
        )
    config = replace(config or inherited or TrainConfig(), label="win_rate")
    with tempfile.TemporaryDirectory(prefix="br-retrain-") as tmp:
        sets = [load_labels(p) for p in parsed]
        held = _as_labels(held_rows, models, "held", Path(tmp))
        feedback = (
            [_as_labels(train_rows, models, "feedback", Path(tmp))] if train_rows.height else []
        )
        weights = [1.0] * len(sets) + [feedback_weight] * len(feedback)
        challenger = fit_sets([*sets, *feedback], weights, config).with_metadata(
            fingerprint=fingerprint(sets, feedback, feedback_weight),
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            specs=specs,
            feedback=[{"root": root, "prompts": f.n, "weight": feedback_weight} for f in feedback],
            datasets={s.name: s.n for s in sets},
            metrics={"held_back": {"prompts": held.n}},
        )
        artifact = Path(tmp) / "challenger.zip"
        save_scorer(challenger, artifact)
        data = artifact.read_bytes()
    new = _evaluate(challenger, held, config.tolerance)
    old = None if current is None else _evaluate(current, held, config.tolerance)
    promoted, reason = _decide(old, new, min_gain)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    kept = join(root, MODELS_DIR, "challengers", f"{stamp}-{new['version'].replace('/', '-')}.zip")
    storage.write_bytes(kept, data)
    if promoted:
        storage.write_bytes(champion, data)
    record = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "champion_uri": champion,
        "champion": old,
        "challenger": {**new, "artifact": kept},
        "held_back": {"since_day": first["day"][0], "days": holdout_days, "prompts": held.n},
        "feedback_prompts": sum(f.n for f in feedback),
        "models": list(models),
        "min_gain": min_gain,
        "promoted": promoted,
        "reason": reason,
        "seconds": round(time.monotonic() - started, 1),
    }
    record = _append(storage, root, stamp, record)
    log.info("retrain %s: %s (%s)", champion, "promoted" if promoted else "kept", reason)
    return record


def _decide(old: dict[str, Any] | None, new: dict[str, Any], min_gain: float) -> tuple[bool, str]:
    if new["apgr"] is None:
        return False, "the held-back prompts have no quality gap: APGR undefined"
    if old is None:
        return True, f"no champion yet; challenger APGR {new['apgr']:.4f} on the held-back prompts"
    if old["apgr"] is None or new["apgr"] > old["apgr"] + min_gain:
        return (
            True,
            f"challenger APGR {new['apgr']:.4f} > champion {old['apgr'] or 0:.4f} + {min_gain}",
        )
    return False, f"challenger APGR {new['apgr']:.4f} ≤ champion {old['apgr']:.4f} + {min_gain}"


def _append(storage: Storage, root: str, stamp: str, record: dict[str, Any]) -> dict[str, Any]:
    """Write the record with the hash of the previous one (the chain) and its own."""
    folder = join(root, MODELS_DIR, "promotions")
    previous = storage.list_files(folder, ".json")
    prev = json.loads(storage.read_bytes(previous[-1]))["hash"] if previous else None
    body = {**record, "prev": prev}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    out = {**body, "hash": digest}
    storage.write_bytes(join(folder, f"{stamp}.json"), json.dumps(out, indent=2).encode())
    return out


def verify_promotions(storage: Storage, root: str) -> int:
    """Check the promotion records' chain; the number of records, or InputError naming the
    first record that does not match."""
    folder = join(root, MODELS_DIR, "promotions")
    prev = None
    files = storage.list_files(folder, ".json")
    for uri in files:
        record = json.loads(storage.read_bytes(uri))
        claimed = record.pop("hash", None)
        digest = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()
        if record.get("prev") != prev or claimed != digest:
            raise InputError(f"{uri}: the promotion record does not match its chain")
        prev = claimed
    return len(files)
