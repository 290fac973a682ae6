"""Nightly champion / challenger rounds from beat (``workers/retrain_beat.py``): a due window
runs once (the nightly claim, real Redis), a bad round is recorded and not retried, the
schedules file's ``retrain:`` entries are checked, and beat sends the tick to the ingest
queue."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
import yaml

from routing.errors import ConfigError
from tests.producer.labels import WEAK, write_labels
from tests.producer.retrain_labels import BALANCED, FAST, write_night
from workers import nightly, retrain_beat
from workers.retrain import verify_promotions
from workers.settings import S3Settings, Settings
from workers.storage import Storage

pytestmark = pytest.mark.ops


def entry(tmp_path: Path, root: Path, **extra: object) -> retrain_beat.RetrainSchedule:
    spec = f"{write_labels(tmp_path / 'base.parquet', 'base', n=40)}:{WEAK},strong-x"
    return retrain_beat.RetrainSchedule.model_validate(
        {
            "name": f"r-{uuid.uuid4().hex[:6]}",
            "cron": "30 5 * * *",
            "root": str(root),
            "specs": [spec],
            "models": [FAST, BALANCED],
            "champion": str(tmp_path / "models" / "router.zip"),
            **extra,
        }
    )


def test_a_due_window_runs_once_and_the_next_window_runs_again(
    tmp_path: Path, redis_url: str
) -> None:
    root = tmp_path / "out"
    now = datetime.now(UTC)
    write_night(root, now - timedelta(days=1), 60, 0)
    write_night(root, now, 30, 1000)
    round_ = entry(tmp_path, root)
    client = redis.Redis.from_url(redis_url)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    storage = Storage(S3Settings())
    fire = datetime(2026, 12, 7, 5, 30, tzinfo=UTC)

    def tick(at: datetime) -> list[dict[str, object]]:
        return retrain_beat.tick(settings, [round_], at, storage, client)

    (first,) = tick(fire + timedelta(seconds=5))
    assert first["promoted"] is True
    assert tick(fire + timedelta(minutes=1)) == []  # the same window: claimed
    (second,) = tick(fire + timedelta(days=1, minutes=2))  # the next night
    assert second["prev"] == first["hash"]
    assert verify_promotions(storage, str(root)) == 2
    key = nightly.window_key(round_.key, fire)
    assert client.get(key) is not None  # the claim is where the nightly claims are


def test_a_round_that_cannot_run_is_recorded_and_not_retried(
    tmp_path: Path, redis_url: str
) -> None:
    round_ = entry(tmp_path, tmp_path / "empty")  # no labels under it yet
    client = redis.Redis.from_url(redis_url)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    fire = datetime(2026, 12, 7, 5, 30, tzinfo=UTC)
    storage = Storage(S3Settings())
    assert retrain_beat.tick(settings, [round_], fire, storage, client) == []
    why = client.get(nightly.window_key(round_.key, fire))
    assert why is not None and b"not run: no labels under" in why
    assert retrain_beat.tick(settings, [round_], fire, storage, client) == []


def test_the_schedules_file_lists_rounds_and_beat_sends_them_to_ingest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers.app import make_app
    from workers.queues import INGEST_QUEUE

    good = {"name": "acme", "cron": "30 5 * * *", "root": "s3://o/", "specs": ["a:b,c"],
            "models": ["b", "c"], "champion": "s3://m/r.zip"}  # fmt: skip
    path = tmp_path / "schedules.yaml"
    path.write_text(yaml.safe_dump({"schedules": [], "retrain": [good]}))
    assert [r.name for r in retrain_beat.load_retrains(path)] == ["acme"]
    monkeypatch.setenv("BATCH_ROUTER_SCHEDULE", str(path))
    beat = make_app(Settings()).conf.beat_schedule
    assert beat["retrain-tick"]["options"]["queue"] == INGEST_QUEUE
    assert beat["retrain-tick"]["args"][0][0]["name"] == "acme"
    for bad, message in (
        ({**good, "cron": "nope"}, "cron"),
        ({**good, "models": ["only-one"]}, "models"),
        ({**good, "specs": []}, "specs"),
        ({**good, "name": "../x"}, "name"),
    ):
        path.write_text(yaml.safe_dump({"retrain": [bad]}))
        with pytest.raises(ConfigError, match=message):
            retrain_beat.load_retrains(path)
    path.write_text(yaml.safe_dump({"retrain": [good, good]}))
    with pytest.raises(ConfigError, match="unique"):
        retrain_beat.load_retrains(path)
