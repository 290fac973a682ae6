"""The commands that learn and measure routers: ``eval``, ``calibrate`` and ``train``
(registered on the CLI's ``app`` when :mod:`producer.cli` imports this module); their work is
in ``producer/commands/`` (``evaluate.py``, ``calibrate.py``, ``train.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, cast

import typer

from producer.app import PolicyOpt, _policy, _settings, app, console


@app.command("eval")
def eval_(
    labels: Annotated[
        Path, typer.Argument(help="labels Parquet (long: prompt_id, model, quality…)")
    ],
    weak: Annotated[str, typer.Option(help="the cheap model's name in LABELS")],
    strong: Annotated[str, typer.Option(help="the strong model's name in LABELS")],
    router: Annotated[str, typer.Option(help="`heuristic` or a trained model file")] = "heuristic",
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    scores_out: Annotated[
        Path | None, typer.Option(help="write prompt_id, score (.parquet or .csv)")
    ] = None,
    html: Annotated[Path | None, typer.Option("--html", help="write a frontier plot")] = None,
    share: Annotated[
        float | None, typer.Option(help="operating point: share routed to strong")
    ] = None,
    responses: Annotated[
        list[Path] | None,
        typer.Option(
            help="the models' answer texts (prompt_id, model, response), repeatable: only "
            "prompts the weak model answered are scored; a verifier (train --verifier) needs "
            "them and is evaluated as a cascade (the weak call is paid on every prompt)"
        ),
    ] = None,
) -> None:
    """Evaluate a router on labelled data against random, always-weak, always-strong,
    length-only and oracle: cost–quality frontier, APGR, CPT(50%/80%), AIQ, saving at 95%
    quality, confusion matrix, regret.

    Example: `batch-router eval ../shared/data/labels/gsm8k.parquet --weak
    mixtral-8x7b-instruct-v0.1 --strong gpt-4-1106-preview --router heuristic --html f.html`
    """
    from producer.commands.evaluate import run_eval

    run_eval(
        labels, weak, strong, router, as_json, scores_out, html, console,
        share=share, responses=responses or [],
    )  # fmt: skip


@app.command()
def calibrate(
    ctx: typer.Context,
    labels: Annotated[
        Path,
        typer.Argument(
            metavar="LABELS", help="labels Parquet (long: prompt_id, prompt, model, quality…)"
        ),
    ],
    model: Annotated[
        list[str],
        typer.Option(
            "--model",
            help="TIER=MODEL: the labelled model standing for a policy tier (one per tier)",
        ),
    ],
    policy_path: PolicyOpt = None,
    router: Annotated[
        str | None,
        typer.Option(help="`heuristic` or a trained model file (default: the policy's)"),
    ] = None,
    max_top_share: Annotated[
        float | None,
        typer.Option(help="target: at most this fraction of prompts to the last tier"),
    ] = None,
    min_quality: Annotated[
        float | None,
        typer.Option(help="target: keep this fraction of the last tier's quality (0.95)"),
    ] = None,
    max_cost_per_1k: Annotated[
        float | None, typer.Option(help="target: at most this many USD per 1,000 prompts")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="write the calibrated policy YAML here (normalised)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Choose the policy's score thresholds on labelled prompts for one target.

    Each tier is represented by a labelled model (`--model TIER=MODEL`); cost uses the
    policy's prices and the labelled token counts. Prints the tier shares, quality
    retained and cost per 1,000 prompts before and after.

    Example: `batch-router calibrate ../shared/data/labels/arena_bench_v1.parquet --model
    fast=Mistral-7B-Instruct-v0.1 --model balanced=Mixtral-8x7B-Instruct-v0.1 --model
    expert=gpt-4-turbo --min-quality 0.95 --out calibrated.yaml`
    """
    targets = {
        "max_top_share": max_top_share,
        "min_quality": min_quality,
        "max_cost_per_1k": max_cost_per_1k,
    }
    chosen = {k: v for k, v in targets.items() if v is not None}
    if len(chosen) != 1:
        raise typer.BadParameter(
            "give exactly one of --max-top-share, --min-quality, --max-cost-per-1k",
            param_hint="target",
        )
    from producer.commands.calibrate import run_calibrate
    from routing.calibrate import Target

    ((name, value),) = chosen.items()
    policy = _policy(_settings(ctx), policy_path)
    run_calibrate(labels, policy, model, router, cast(Target, name), value, out, as_json, console)


@app.command()
def train(
    specs: Annotated[list[str], typer.Argument(metavar="SPEC...", help="PATH:weak,strong[,…]")],
    out: Annotated[Path, typer.Option("--out", help="where to write the trained router")],
    feedback: Annotated[
        list[Path] | None,
        typer.Option(
            help="extra labelled prompts (same format), repeatable: FILE, or FILE:weak,strong "
            "when the file names its models differently from the SPECs"
        ),
    ] = None,
    feedback_weight: Annotated[
        float, typer.Option(help="sample weight of feedback rows (10 measured best)")
    ] = 10.0,
    folds: Annotated[int, typer.Option(help="cross-validation folds", min=2)] = 5,
    label: Annotated[
        str | None,
        typer.Option(help="needs | win_rate (default: win_rate for two models, needs for more)"),
    ] = None,
    tolerance: Annotated[
        float, typer.Option(help="quality within this of the best counts as adequate / a tie")
    ] = 0.0,
    embedding: Annotated[
        str | None,
        typer.Option(
            metavar="MODEL",
            help="add sentence embeddings of the prompt and a nearest-neighbour vote: "
            "all-MiniLM-L6-v2 (the bundled model); needs batch-router[embeddings] "
            "wherever the router is loaded; MMLU APGR 0.685 -> 0.700, GSM8K 0.638 -> 0.666, "
            "~350x slower scoring (docs/training.md)",
        ),
    ] = None,
    responses: Annotated[
        list[Path] | None,
        typer.Option(
            help="the models' answer texts (prompt_id, model, response), repeatable: only "
            "prompts the cheapest model answered are used (joined on prompt_id and model)"
        ),
    ] = None,
    verifier: Annotated[
        bool,
        typer.Option(
            "--verifier",
            help="learn a verifier: P(the strong answer is better | the prompt and the "
            "cheapest model's answer); the answers come from --responses, or from a labels "
            "file's own response column (batch-router feedback's) (docs/training.md)",
        ),
    ] = False,
) -> None:
    """Train the learned router (or, with --verifier, an answer verifier for a cascade) on
    labelled files, cross-validate it and save it.

    Example: `batch-router train
    ../shared/data/labels/gsm8k.parquet:mixtral-8x7b-instruct-v0.1,gpt-4-1106-preview
    --out router.zip`
    """
    from producer.commands.train import run_train

    run_train(
        specs, out, feedback or [], feedback_weight, folds, console,
        label=label, tolerance=tolerance, embedding=embedding,
        responses=responses or [], verifier=verifier,
    )  # fmt: skip


@app.command()
def feedback(
    ctx: typer.Context,
    root: Annotated[
        str,
        typer.Argument(metavar="ROOT", help="an output root (local or s3://) whose jobs explored"),
    ],
    out: Annotated[Path, typer.Option("--out", help="the labels file to write (.parquet)")],
    tenant: Annotated[
        list[str] | None, typer.Option(help="only these tenants' labels (repeatable)")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="only labels of this day or later (YYYY-MM-DD, UTC)")
    ] = None,
) -> None:
    """Collect the judged labels exploration wrote under ROOT/_labels/ into one labels file
    for `batch-router train --feedback` (docs/training.md).

    Example: `batch-router feedback s3://acme-out --since 2026-12-01 --out fb.parquet`
    """
    from producer.commands.feedback import run_feedback
    from producer.report.cmd import _day
    from workers.storage import Storage

    storage = Storage(_settings(ctx).s3)
    run_feedback(storage, root, out, console, tenants=tenant or None, since=_day(since, "--since"))


@app.command()
def retrain(
    ctx: typer.Context,
    root: Annotated[
        str, typer.Argument(metavar="ROOT", help="the output root whose _labels/ feed it")
    ],
    specs: Annotated[
        list[str], typer.Argument(metavar="SPEC...", help="base labels PATH:weak,strong")
    ],
    models: Annotated[
        str,
        typer.Option(help="weak,strong: the tiers' models in the labels (e.g. gpt-4o-mini,gpt-4o)"),
    ],
    champion: Annotated[
        str, typer.Option(help="the router the policy uses (local or s3://); replaced on a win")
    ],
    holdout_days: Annotated[
        int, typer.Option(help="the most recent days of labels held back to compare on")
    ] = 1,
    feedback_weight: Annotated[float, typer.Option(help="sample weight of the labels")] = 10.0,
    min_gain: Annotated[
        float, typer.Option(help="promote only when APGR beats the champion's by more")
    ] = 0.0,
    tenant: Annotated[
        list[str] | None, typer.Option(help="only these tenants' labels (repeatable)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the audit record")] = False,
) -> None:
    """Champion / challenger: train a challenger on SPECs + the judged labels under ROOT,
    compare it with the champion on the most recent held-back labels, promote it only if it
    wins; every run is a hash-chained record in ROOT/_models/promotions/ (docs/training.md).

    Example: `batch-router retrain s3://acme-out base.parquet:mixtral,gpt-4 --models
    gpt-4o-mini,gpt-4o --champion s3://models/acme-router.zip`
    """
    import json

    from workers.retrain import run_retrain
    from workers.storage import Storage

    names = tuple(m.strip() for m in models.split(",") if m.strip())
    if len(names) != 2:
        raise typer.BadParameter("give two models: weak,strong", param_hint="--models")
    record = run_retrain(
        Storage(_settings(ctx).s3), root, specs, (names[0], names[1]), champion,
        holdout_days=holdout_days, feedback_weight=feedback_weight, min_gain=min_gain,
        tenants=tenant or None,
    )  # fmt: skip
    verdict = "[green]promoted[/]" if record["promoted"] else "[yellow]kept the champion[/]"
    console.print(f"{verdict}: {record['reason']}", highlight=False)
    if as_json:
        console.print_json(json.dumps(record))
