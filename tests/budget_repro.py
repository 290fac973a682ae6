"""Issue 13, finding 1's reproduction, shared by the local-executor test
(tests/workers/test_hardening_ledger.py) and the fleet test
(tests/e2e/test_hardening_budget.py): ``ROWS`` different prompts whose ids repeat
(``p{i % IDS}``) under a ``CAP`` job budget, and what must hold of the job that ran them."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import polars as pl
import pyarrow as pa
import yaml

from routing.policy import default_policy_text

CAP = Decimal("0.003")
ROWS, IDS, PER_CHUNK = 200, 10, 10


def capped_policy_data(cap: Decimal = CAP, **extra: Any) -> dict[str, Any]:
    """The issue's policy: the default one with ``budgets: {on_exhausted: over_budget,
    job: {usd: cap}}`` (no cache: every row is a paid call)."""
    data: dict[str, Any] = yaml.safe_load(default_policy_text())
    data["budgets"] = {"on_exhausted": "over_budget", "job": {"usd": str(cap)}}
    data["cache"] = {"enabled": False}
    data.update(extra)
    return data


def repeated_ids(rows: int = ROWS, ids: int = IDS) -> pa.Table:
    """``rows`` different prompts whose ids are ``p{i % ids}``."""
    return pa.table(
        {
            "prompt_id": [f"p{i % ids}" for i in range(rows)],
            "prompt": [
                f"Ticket {i}: summarise the history of bridge number {i * 7 + 3} in detail."
                for i in range(rows)
            ],
        }
    )


def money(values: list[Decimal | None]) -> Decimal:
    return sum((v for v in values if v is not None), Decimal(0))


def assert_cap_held(manifest: dict[str, Any], out: pl.DataFrame, ledger: Any) -> pl.DataFrame:
    """Every row out once, spend within the cap and equal to what the ledger settled, each
    id kept by exactly one row and every other occurrence rejected. Returns the kept rows."""
    spent = money(out["cost_usd"].to_list())
    assert out.height == ROWS == manifest["rows_in"] == manifest["rows_out"]
    assert spent <= CAP
    assert ledger.settled_usd == spent and ledger.reserved_usd == 0
    assert Decimal(manifest["totals"]["cost_usd"]) == spent
    dup = out.filter(pl.col("error") == "duplicate prompt_id")
    assert dup.height == ROWS - IDS and (dup["status"] == "rejected").all()
    kept = out.filter(pl.col("error").fill_null("") != "duplicate prompt_id")
    assert sorted(kept["prompt_id"].to_list()) == [f"p{i}" for i in range(IDS)]
    return kept
