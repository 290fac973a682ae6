"""``batch-router retrain``: one champion / challenger round (``workers/retrain.py``), its
decision printed (and its audit record with ``--json``)."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from workers.retrain import run_retrain as _run
from workers.storage import Storage


def run_retrain(
    storage: Storage,
    root: str,
    specs: list[str],
    models: tuple[str, str],
    champion: str,
    console: Console,
    **options: Any,
) -> dict[str, Any]:
    """:func:`workers.retrain.run_retrain`, and a line saying what it decided."""
    record = _run(storage, root, specs, models, champion, **options)
    verdict = "[green]promoted[/]" if record["promoted"] else "[yellow]kept the champion[/]"
    console.print(f"{verdict}: {record['reason']}", highlight=False)
    return record
