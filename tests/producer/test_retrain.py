"""Champion / challenger retraining on judged labels (``batch-router retrain``, issue 16):
the most recent day is held back, the challenger is promoted only when it beats the
champion there, and every run is a hash-chained record."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from producer.commands.retrain import run_retrain, verify_promotions
from routing.errors import InputError
from routing.learned.artifact import load_scorer
from tests.producer.labels import WEAK, write_labels
from workers.explore import LABEL_SCHEMA, label_id
from workers.settings import S3Settings
from workers.storage import Storage

FAST, BALANCED = "fast-model", "balanced-model"


def write_night(root: Path, day: datetime, n: int, offset: int) -> None:
    """A night of judged pairs: prompts mentioning 'ledger' need the balanced model."""
    rows = []
    for i in range(offset, offset + n):
        hard = i % 2 == 0
        prompt = f"Reconcile the ledger entry {i}" if hard else f"Say hello to visitor {i}"
        for model, tier, q in ((FAST, "fast", 0.0 if hard else 1.0), (BALANCED, "balanced", 1.0)):
            rows.append(
                {
                    "dataset": "feedback", "prompt_id": label_id(prompt), "prompt": prompt,
                    "model": model, "quality": q, "input_tokens": 10, "output_tokens": 5,
                    "cost_usd": 1e-6 if tier == "fast" else 1e-5, "response": "…", "tier": tier,
                    "judge": "reference", "tenant": "default", "customer_tier": None,
                    "job_id": f"night-{day:%d}", "source_prompt_id": f"p{i}",
                    "labelled_at": day.isoformat(timespec="seconds"),
                }
            )  # fmt: skip
    folder = root / "_labels" / f"day={day.date()}" / "tenant=default"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=LABEL_SCHEMA), folder / f"n{offset}.parquet")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    now = datetime.now(UTC)
    out = tmp_path / "out"
    write_night(out, now - timedelta(days=1), 60, 0)
    write_night(out, now, 30, 1000)
    return out


def retrain(root: Path, tmp_path: Path, **kwargs: object) -> dict[str, object]:
    spec = f"{write_labels(tmp_path / 'base.parquet', 'base', n=40)}:{WEAK},strong-x"
    console = Console(file=io.StringIO())
    storage = Storage(S3Settings())
    champion = str(tmp_path / "models" / "router.zip")
    return run_retrain(storage, str(root), [spec], (FAST, BALANCED), champion, console, **kwargs)  # type: ignore[arg-type]


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
    storage, console = Storage(S3Settings()), Console(file=io.StringIO())
    spec = [f"{write_labels(tmp_path / 'b.parquet', 'b')}:{WEAK},strong-x"]
    champion = str(tmp_path / "c.zip")
    with pytest.raises(InputError, match="no labels of"):
        run_retrain(storage, str(root), spec, ("x", "y"), champion, console)
    with pytest.raises(InputError, match="judged for both"):  # a model no pair has
        run_retrain(storage, str(root), spec, (FAST, "expert-model"), champion, console)
    with pytest.raises(InputError, match="no labels under"):
        run_retrain(storage, str(tmp_path / "empty"), spec, (FAST, BALANCED), champion, console)
