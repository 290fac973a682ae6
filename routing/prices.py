"""Model prices from a LiteLLM price table (``model_prices_and_context_window.json`` format).

The table maps a model name to ``input_cost_per_token`` / ``output_cost_per_token`` (USD per
token; ``*_batches`` for batch APIs), ``litellm_provider`` and ``max_input_tokens``. It is
read with ``parse_float=Decimal``, so ``1.5e-07`` becomes exactly 0.00000015 — no float
drift; a policy price is USD per million tokens, i.e. the per-token price × 10^6, exact.

A policy names the table (``prices: {table: model_prices.json}``, relative to the policy
file); a tier model without ``input_per_mtok`` / ``output_per_mtok`` takes them from the
table entry ``price_key`` (default: the model's name). Prices written in the policy always
win (overrides). The resolved prices are part of the policy, so its version changes when a
price does, and a job's stored policy carries them (workers never read the table).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from routing.errors import PolicyError

_MTOK = Decimal(1_000_000)


@dataclass(frozen=True)
class ModelPrice:
    input_per_mtok: Decimal
    output_per_mtok: Decimal
    batch_input_per_mtok: Decimal | None = None
    batch_output_per_mtok: Decimal | None = None
    provider: str | None = None
    max_input_tokens: int | None = None
    reasoning: bool = False  # supports_reasoning: takes max_completion_tokens
    cache_read_per_mtok: Decimal | None = None
    cache_write_per_mtok: Decimal | None = None


def _per_mtok(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return (Decimal(str(value)) * _MTOK).normalize()
    except ArithmeticError:
        return None


def load_price_table(path: str | Path) -> dict[str, ModelPrice]:
    """Every entry with both token prices (others — images, audio, the ``sample_spec``
    template — are skipped)."""
    p = Path(path)
    if not p.is_file():
        raise PolicyError(f"price table not found: {p}")
    try:
        raw = json.loads(p.read_text(), parse_float=Decimal)
    except (OSError, ValueError) as exc:
        raise PolicyError(f"{p}: not a JSON price table: {exc}") from exc
    if not isinstance(raw, dict):
        raise PolicyError(f"{p}: a price table is a JSON object of model → prices")
    table: dict[str, ModelPrice] = {}
    for name, entry in raw.items():
        if name == "sample_spec" or not isinstance(entry, dict):
            continue
        cost_in = _per_mtok(entry.get("input_cost_per_token"))
        cost_out = _per_mtok(entry.get("output_cost_per_token"))
        if cost_in is None or cost_out is None:
            continue
        max_in = entry.get("max_input_tokens")
        table[name] = ModelPrice(
            input_per_mtok=cost_in,
            output_per_mtok=cost_out,
            batch_input_per_mtok=_per_mtok(entry.get("input_cost_per_token_batches")),
            batch_output_per_mtok=_per_mtok(entry.get("output_cost_per_token_batches")),
            provider=entry.get("litellm_provider"),
            max_input_tokens=int(max_in) if isinstance(max_in, int) else None,
            reasoning=entry.get("supports_reasoning") is True,
            cache_read_per_mtok=_per_mtok(entry.get("cache_read_input_token_cost")),
            cache_write_per_mtok=_per_mtok(entry.get("cache_creation_input_token_cost")),
        )
    return table


def _missing_realtime(model: dict[str, Any]) -> bool:
    return "input_per_mtok" not in model or "output_per_mtok" not in model


def _missing(model: dict[str, Any], batch: bool) -> bool:
    batched = "batch_input_per_mtok" not in model or "batch_output_per_mtok" not in model
    return _missing_realtime(model) or (batch and batched)


def fill_prices(data: dict[str, Any], base_dir: Path | None, source: str) -> dict[str, Any]:
    """The policy mapping with missing model prices taken from its price table: realtime
    prices for every model, and batch prices too for the models of ``mode: batch`` tiers
    (when the table has them; a batch tier's model without any is a policy error)."""
    spec = data.get("prices")
    tiers = data.get("tiers")
    if not isinstance(spec, dict) or not spec.get("table") or not isinstance(tiers, list):
        return data
    # (model, batch tier?, must be in the table?): a model with its realtime prices written
    # needs a table entry only if it is a batch tier's primary (the one whose batch price
    # the policy requires); another model of a batch tier just takes what the table has.
    missing = [
        (m, batch, _missing_realtime(m) or (batch and i == 0))
        for t in tiers
        if isinstance(t, dict)
        for batch in [t.get("mode") == "batch"]
        for i, m in enumerate(t.get("models") or [])
        if isinstance(m, dict) and _missing(m, batch)
    ]
    if not missing:
        return data
    path = Path(spec["table"])
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    table = load_price_table(path)
    for model, batch, required in missing:
        key = model.get("price_key") or model.get("name")
        price = table.get(str(key))
        if price is None and not required:
            continue
        if price is None:
            close = sorted(k for k in table if str(key).lower() in k.lower())[:5]
            hint = f"; similar: {close}" if close else ""
            raise PolicyError(f"{source}: model {key!r} is not in the price table {path}{hint}")
        if price.reasoning:
            model.setdefault("reasoning", True)
        for name in ("cache_read_per_mtok", "cache_write_per_mtok"):
            if getattr(price, name) is not None:
                model.setdefault(name, str(getattr(price, name)))
        model.setdefault("input_per_mtok", str(price.input_per_mtok))
        model.setdefault("output_per_mtok", str(price.output_per_mtok))
        if batch and price.batch_input_per_mtok is not None:
            model.setdefault("batch_input_per_mtok", str(price.batch_input_per_mtok))
        if batch and price.batch_output_per_mtok is not None:
            model.setdefault("batch_output_per_mtok", str(price.batch_output_per_mtok))
    return data
