"""Champion / challenger retraining on judged labels (``batch-router retrain``, issue 16):
the most recent day is held back, the challenger is promoted only when it beats the
champion there, and every run is a hash-chained record."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from routing.errors import InputError
from routing.learned.artifact import load_scorer
from tests.producer.labels import WEAK, write_labels
from tests.producer.retrain_labels import BALANCED, FAST, write_night
from workers.retrain import run_retrain, verify_promotions
from workers.settings import S3Settings
from workers.storage import Storage


@pytest.fixture
def root(tmp_path: Path) -> Path:
    now = datetime.now(UTC)
    out = tmp_path / "out"
    write_night(out, now - timedelta(days=1), 60, 0)
    write_night(out, now, 30, 1000)
    return out


def retrain(root: Path, tmp_path: Path, **kwargs: object) -> dict[str, object]:
    spec = f"{write_labels(tmp_path / 'base.parquet', 'base', n=40)}:{WEAK},strong-x"
    storage = Storage(S3Settings())
    champion = str(tmp_path / "models" / "router.zip")
    return run_retrain(storage, str(root), [spec], (FAST, BALANCED), champion, **kwargs)  # type: ignore[arg-type]


def test_first_run_promotes_then_a_higher_bar_keeps_the_champion(
    root: Path, tmp_path: Path
) -> None:
    first = retrain(root, tmp_path)
    assert first["promoted"] is True and first["champion"] is None
    held = first["held_back"]
    assert isinstance(held, dict) and held["prompts"] == 30 and held["days"] == 1
    assert first["feedback_prompts"] == 60
    challenger = first["challenger"]
    assert isinstance(challenger, dict) and challenger["apgr"] > 0.7  # learned 'ledger'
    model = load_scorer(tmp_path / "models" / "router.zip")
    assert model.version == challenger["version"]
    assert Path(challenger["artifact"]).is_file()

    second = retrain(root, tmp_path, min_gain=1.0)
    assert second["promoted"] is False and "≤ champion" in str(second["reason"])
    champion = second["champion"]
    assert isinstance(champion, dict) and champion["version"] == model.version
    assert second["prev"] == first["hash"]
    storage = Storage(S3Settings())
    assert verify_promotions(storage, str(root)) == 2

    records = sorted((root / "_models" / "promotions").glob("*.json"))
    edited = json.loads(records[0].read_text())
    edited["challenger"]["apgr"] = 0.99
    records[0].write_text(json.dumps(edited))
    with pytest.raises(InputError, match="does not match its chain"):
        verify_promotions(storage, str(root))


def test_errors(root: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="holdout-days"):
        retrain(root, tmp_path, holdout_days=0)
    storage = Storage(S3Settings())
    spec = [f"{write_labels(tmp_path / 'b.parquet', 'b')}:{WEAK},strong-x"]
    champion = str(tmp_path / "c.zip")
    with pytest.raises(InputError, match="no labels of"):
        run_retrain(storage, str(root), spec, ("x", "y"), champion)
    with pytest.raises(InputError, match="judged for both"):  # a model no pair has
        run_retrain(storage, str(root), spec, (FAST, "expert-model"), champion)
    with pytest.raises(InputError, match="no labels under"):
        run_retrain(storage, str(tmp_path / "empty"), spec, (FAST, BALANCED), champion)
