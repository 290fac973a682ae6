"""``batch-router watch``: the S3 drop folder as a service (``producer/watch/watcher.py``)."""

from __future__ import annotations

import signal
from typing import Annotated, Any, Literal

import typer
from rich.markup import escape

from producer.app import OutputOpt, PolicyOpt, _output, _policy, _settings, app, console, err


@app.command()
def watch(
    ctx: typer.Context,
    inbox: Annotated[
        str, typer.Argument(metavar="INBOX", help="s3://bucket/inbox/ (files in INBOX/TENANT/)")
    ],
    once: Annotated[
        bool, typer.Option("--once", help="handle what is there now, wait for it, exit")
    ] = False,
    mode: Annotated[
        str, typer.Option(help="`poll` (list the inbox) or `sqs` (S3 event notifications)")
    ] = "poll",
    queue_url: Annotated[
        str | None,
        typer.Option(help="SQS queue URL (sqs mode); default BATCH_ROUTER_WATCH_QUEUE_URL"),
    ] = None,
    output: OutputOpt = None,
    policy: PolicyOpt = None,
) -> None:
    """Turn every Parquet file dropped in INBOX/TENANT/ into one job on the fleet, then
    move it to processed/TENANT/JOB_ID/ (or failed/…, with an error.json saying why).

    Each file version (key, ETag, size) becomes exactly one job, however many watchers run.
    Runs until SIGTERM (in-flight jobs are handed back to the other watchers); with
    `--once`, exits 1 if any file failed. docs/operations.md has the layout and SQS setup.

    Example: `batch-router watch s3://input/inbox/ --output s3://out/drop/ --once`
    """
    if mode not in ("poll", "sqs"):
        raise typer.BadParameter("`poll` or `sqs`", param_hint="--mode")
    settings = _settings(ctx)
    if not settings.distributed:
        raise typer.BadParameter("watch needs the fleet: set BATCH_ROUTER_BROKER_URL=redis://…")
    url = queue_url or settings.watch_queue_url
    if mode == "sqs" and not url:
        raise typer.BadParameter("give --queue-url or BATCH_ROUTER_WATCH_QUEUE_URL")
    from producer.watch.watcher import Watcher

    try:
        watcher = Watcher(
            settings,
            _policy(settings, policy),
            inbox,
            _output(settings, output),
            say=lambda line: console.print(escape(line), highlight=False, soft_wrap=True),
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="INBOX") from exc

    def stop(signum: int, _: Any) -> None:
        err.print(f"{signal.Signals(signum).name}: handing back what is in flight, then exiting")
        watcher.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    how: Literal["poll", "sqs"] = "sqs" if mode == "sqs" else "poll"
    err.print(f"watching {escape(watcher.folder.uri)} ({how}{', once' if once else ''})")
    if how == "sqs":
        from producer.watch.sqs import SqsSource, sqs_client

        SqsSource(watcher, sqs_client(settings), str(url)).run(once)
    else:
        watcher.poll(once)
    failed = watcher.counts["failed"] + watcher.counts["error"]
    replaced = watcher.counts["replaced"]  # replaced while its job ran: the new one is new
    err.print(
        f"stopped: {watcher.counts['processed']} processed, {failed} failed"
        + (f", {replaced} replaced in the inbox while their job ran" if replaced else "")
    )
    if once and failed:
        raise typer.Exit(1)
