"""Nightly champion / challenger retraining from beat (``workers/retrain.py`` does one round).

The nightly schedules file (``BATCH_ROUTER_SCHEDULE``, ``workers/nightly.py``) may list,
besides ``schedules:``, retraining rounds::

    retrain:
      - name: acme-router                     # unique among the retrain entries
        cron: "30 5 * * *"                    # UTC, after the night's jobs
        root: s3://out/nightly/               # the output root whose _labels/ feed it
        specs: [/etc/batch-router/base.parquet:mixtral-8x7b-instruct-v0.1,gpt-4-1106-preview]
        models: [gpt-4o-mini, gpt-4o]         # weak, strong: the tiers' models in the labels
        champion: s3://models/acme-router.zip # what the policy's classifier.path names
        holdout_days: 1                       # optional: as `batch-router retrain`
        min_gain: 0.0
        feedback_weight: 10.0
        tenants: [acme]                       # optional: only these tenants' labels

Beat sends the retrain tick (task ``retrain_tick``, on the ingest queue: a round trains for
seconds to minutes, which must not hold the finalize queue) every ``nightly_tick_s``. For
each entry the tick takes the latest cron window at or before now and claims it with the
nightly schedules' claim (one Lua call: a window runs once, even with two beats); a claimed
window runs :func:`workers.retrain.run_retrain`, whose record lands in the root's promotion
trail. A round that fails on bad input (no labels yet, no pair) is recorded in the claim
and not retried; one that fails on the store or Redis gives the window back for the next
tick.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from pydantic import Field

from routing.errors import PermanentError
from workers import connections, luasource
from workers.nightly import CronEntry, last_key, load_entries, stamp, window_key
from workers.retrain import run_retrain
from workers.settings import Settings
from workers.storage import Storage

log = logging.getLogger("batch_router.retrain")


class RetrainSchedule(CronEntry):
    """One nightly retraining round (see the module doc)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    root: str
    specs: tuple[str, ...] = Field(min_length=1)
    models: tuple[str, str]
    champion: str
    holdout_days: int = Field(1, ge=1, le=366)
    min_gain: float = Field(0.0, ge=0)
    feedback_weight: float = Field(10.0, gt=0)
    tenants: tuple[str, ...] | None = None

    @property
    def key(self) -> str:
        """Its name among the nightly claims (``retrain.<name>``: no job schedule's name
        can take it, schedule names have no ``.`` prefix)."""
        return f"retrain.{self.name}"


def load_retrains(path: Path) -> list[RetrainSchedule]:
    """The ``retrain:`` entries of a schedules file (none: an empty list)."""
    return load_entries(path, "retrain", RetrainSchedule, "retrain entry")


def tick(
    settings: Settings,
    rounds: list[RetrainSchedule],
    now: datetime,
    storage: Storage | None = None,
    client: redis.Redis | None = None,
) -> list[dict[str, Any]]:
    """Run every round whose latest window is due and not claimed yet; their records."""
    r = client or connections.state_client(settings)
    claim = r.register_script(luasource.load("nightly_claim"))
    unclaim = r.register_script(luasource.load("nightly_unclaim"))
    store = storage or Storage(settings.s3)
    done = []
    for entry in rounds:
        window = entry.latest_window(now)
        claim_keys = [last_key(entry.key), window_key(entry.key, window)]
        epoch = int(window.timestamp())
        label = f"{entry.key}@{stamp(window)}"
        previous = claim(keys=claim_keys, args=[epoch, label, settings.job_ttl_s])
        if previous is None:
            continue
        try:
            record = run_retrain(
                store, entry.root, list(entry.specs), entry.models, entry.champion,
                holdout_days=entry.holdout_days, feedback_weight=entry.feedback_weight,
                min_gain=entry.min_gain, tenants=list(entry.tenants) if entry.tenants else None,
            )  # fmt: skip
        except PermanentError as exc:  # no labels yet, no pair, a bad SPEC: recorded
            r.set(claim_keys[1], f"{label} not run: {exc}", ex=settings.job_ttl_s)
            log.error("retrain %s window %s: %s", entry.name, stamp(window), exc)
            continue
        except Exception:  # store or Redis unavailable: the next tick tries again
            unclaim(keys=claim_keys, args=[epoch, previous])
            raise
        done.append(record)
    return done


def retrain_args(path: Path) -> list[dict[str, Any]]:
    """The rounds as beat sends them to the tick task (checked when beat starts)."""
    return [r.model_dump(mode="json") for r in load_retrains(path)]


def tick_task(settings: Settings, rounds: list[dict[str, Any]]) -> list[str]:
    """Body of the ``retrain_tick`` task: the challengers' decisions."""
    parsed = [RetrainSchedule.model_validate(r) for r in rounds]
    records = tick(settings, parsed, datetime.now(UTC))
    return [f"{rec['challenger']['version']}: {rec['reason']}" for rec in records]
