"""The ``batch-router`` command line: the job commands; the others register themselves
from ``producer/commands/status.py``, ``producer/training/cmd.py`` (eval, calibrate, train),
``producer/watch/cmd.py`` and ``producer/report/cmd.py``
(imported at the end of this module); the others' glue is in ``producer/commands/``."""

from __future__ import annotations

import os
import secrets
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.markup import escape

from producer.app import (
    JobIdOpt,
    OutputOpt,
    PolicyOpt,
    TenantOpt,
    _fail,
    _log_level,
    _output,
    _policy,
    _progress,
    _settings,
    _version,
    app,
    console,
    err,
)
from routing.errors import BatchRouterError, JobFailedError
from workers import layout
from workers.storage import Storage, join


@app.callback()
def _main(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
    log_level: Annotated[
        str,
        typer.Option(
            "--log-level",
            callback=_log_level,
            help="log lines on stderr from this level: DEBUG, INFO, WARNING, ERROR (text, or "
            "JSON with LOG_FORMAT=json); prompts and secrets are never logged",
        ),
    ] = "WARNING",
) -> None:
    """Route large LLM prompt batches to the cheapest adequate model tier. Example:
    `batch-router run --sample 2000 --output ./br-out` runs a whole job on the local
    executor and the simulated provider, and prints the cost report."""
    from workers import logs

    ctx.obj = None  # Settings are read on first use, so `--help` works with a broken env
    fmt = "json" if os.environ.get(logs.FORMAT_ENV, "").strip().lower() == "json" else "text"
    logs.configure(log_level, fmt=fmt)


@app.command()
def run(
    ctx: typer.Context,
    input_uri: Annotated[
        str | None, typer.Argument(metavar="INPUT", help="Parquet file or folder (local or s3://)")
    ] = None,
    output: OutputOpt = None,
    sample: Annotated[
        int | None, typer.Option(help="generate N sample prompts instead of reading INPUT", min=10)
    ] = None,
    job_id: JobIdOpt = None,
    tenant: TenantOpt = None,
    policy: PolicyOpt = None,
    threads: Annotated[int, typer.Option(help="chunks run in parallel (local executor)")] = 2,
    as_json: Annotated[bool, typer.Option("--json", help="print the manifest as JSON")] = False,
) -> None:
    """Run a whole job and wait; prints the cost report.

    Uses the local executor when no broker is configured (BATCH_ROUTER_BROKER_URL unset).

    Example: `batch-router run prompts.parquet --output ./out`
    """
    if (input_uri is None) == (sample is None):
        raise typer.BadParameter("give INPUT or --sample N (one of them)", param_hint="INPUT")
    settings = _settings(ctx)
    from producer import jobs

    out = _output(settings, output)
    routing_policy = _policy(settings, policy)
    if input_uri is None:
        from producer.sample import sample_prompts

        # each run its own file: a later --sample never rewrites an earlier job's input
        name = f"prompts-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}.parquet"
        input_uri = join(out, "_sample", name)
        Storage(settings.s3).write_parquet(input_uri, sample_prompts(sample or 0))
    manifest = jobs.run(
        settings, routing_policy, input_uri, out, job_id, tenant, threads, _progress()
    )
    _print_manifest(manifest, as_json)
    root = layout.job_root(out, str(manifest["job_id"]))
    err.print(f"results: {escape(root)}", highlight=False)


@app.command()
def submit(
    ctx: typer.Context,
    input_uri: Annotated[str, typer.Argument(metavar="INPUT", help="s3:// prefix or file")],
    output: OutputOpt = None,
    job_id: JobIdOpt = None,
    tenant: TenantOpt = None,
    policy: PolicyOpt = None,
    wait: Annotated[bool, typer.Option("--wait", help="wait with a progress bar")] = False,
) -> None:
    """Plan a job from Parquet footers and enqueue it on the Celery fleet.

    Example: `batch-router submit s3://input/nightly/ --output s3://out/ --tenant acme --wait`
    """
    settings = _settings(ctx)
    if not settings.distributed:
        raise typer.BadParameter("submit needs BATCH_ROUTER_BROKER_URL (or use `run`)")
    from producer import jobs
    from workers.jobs.submit import submit_job

    plan = submit_job(
        settings, _policy(settings, policy), input_uri, _output(settings, output), job_id, tenant
    )
    console.print(
        f"submitted job [bold]{plan.context.job_id}[/]: {plan.rows_total:,} rows in "
        f"{plan.context.total_chunks} chunks → {plan.context.job_root}"
    )
    if wait:
        status = jobs.wait_with_progress(settings, plan.context.job_id, _progress())
        if status.state != "succeeded":
            err.print(f"[red]{escape(status.describe())}[/]", highlight=False)
            raise typer.Exit(1)
        _print_manifest(jobs.manifest_of(settings, plan.context.job_root), False)


audit_app = typer.Typer(
    no_args_is_help=True,
    help="The audit trail of a job's routing decisions (docs/governance.md). Example:\n\n"
    "`batch-router audit verify s3://out/job_id=20261128T021500Z-3fa2c1d4`",
)
app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
def audit_verify(
    ctx: typer.Context,
    path: Annotated[
        str,
        typer.Argument(metavar="JOB_PATH", help="a job folder (…/job_id=ID), local or s3://"),
    ],
    expect: Annotated[
        str | None,
        typer.Option(help="anchors sha256 recorded elsewhere (append-only log) to match"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Check a finished job's audit trail: every record's hash and chain link, each
    part's chain against its anchor in manifest.json, and that every result part has its
    audit object. Exit 1 naming the first broken record if anything was edited, deleted,
    inserted or reordered.

    Example: `batch-router audit verify s3://out/job_id=20261128T021500Z-3fa2c1d4`
    """
    from producer.commands.audit import run_verify

    storage = Storage(_settings(ctx).s3)
    try:
        intact = run_verify(storage, path, expect, as_json, console, err)
    except FileNotFoundError as exc:
        raise typer.BadParameter(str(exc), param_hint="JOB_PATH") from exc
    if not intact:
        raise typer.Exit(1)


@app.command("sim-provider")
def sim_provider(
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    latency_ms: Annotated[float, typer.Option(help="mean latency per request")] = 0.0,
    latency_jitter_ms: Annotated[float, typer.Option(help="uniform ± jitter")] = 0.0,
    error_rate: Annotated[float, typer.Option(help="share of HTTP 500s")] = 0.0,
    rate_limit_rate: Annotated[float, typer.Option(help="share of HTTP 429s")] = 0.0,
    retry_after: Annotated[float, typer.Option(help="Retry-After of a 429, s")] = 1.0,
    hang_rate: Annotated[float, typer.Option(help="share of requests that hang")] = 0.0,
    hang_s: Annotated[float, typer.Option(help="how long a hang lasts, s")] = 30.0,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    batch_processing_s: Annotated[
        float, typer.Option(help="a provider batch ends this long after its creation, s")
    ] = 0.0,
    batch_error_rate: Annotated[
        float, typer.Option(help="share of batch requests answered with an error line")
    ] = 0.0,
    batch_expire_rate: Annotated[
        float, typer.Option(help="share of batch requests not reached (the batch expires)")
    ] = 0.0,
    replay: Annotated[
        str | None,
        typer.Option(
            metavar="LABELS",
            help="replay mode: answer with recorded answers; a labels Parquet (prompt_id, "
            "prompt, model, quality) whose prompts and models are served",
        ),
    ] = None,
    responses: Annotated[
        list[str] | None,
        typer.Option(
            metavar="FILE",
            help="with --replay: a responses Parquet (prompt_id, model, response); repeatable",
        ),
    ] = None,
) -> None:
    """Serve the simulated provider: OpenAI-compatible chat completions and Anthropic
    Messages (logprobs, latency and error injection), their batch APIs (OpenAI Files +
    Batches, Anthropic Message Batches), counters at /_sim/stats. It grades LLM-judge
    requests itself; with --replay it answers a recorded prompt with that model's recorded
    answer (404 replay_miss when there is none).

    Example: `batch-router sim-provider --port 8000 --latency-ms 50 --rate-limit-rate 0.02`;
    `batch-router sim-provider --replay ../shared/data/labels/arena_bench_v1.parquet
    --responses ../shared/data/labels/responses/arena_bench_v1.parquet`
    """
    from routing.errors import InputError
    from workers.sim.config import SimConfig
    from workers.sim.replay import Replay
    from workers.sim.server import serve

    try:
        config = SimConfig(
            latency_ms_mean=latency_ms,
            latency_ms_jitter=latency_jitter_ms,
            error_rate=error_rate,
            rate_limit_rate=rate_limit_rate,
            retry_after_s=retry_after,
            hang_rate=hang_rate,
            hang_s=hang_s,
            seed=seed,
            batch_processing_s=batch_processing_s,
            batch_error_rate=batch_error_rate,
            batch_expire_rate=batch_expire_rate,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    recorded = None
    if (replay is None) != (not responses):
        _fail("--replay LABELS and --responses FILE go together (replay mode needs both)")
    if replay is not None and responses:
        try:
            recorded = Replay.load(replay, responses)  # before binding the port
        except InputError as exc:
            _fail(str(exc))
            return
        err.print(f"replay mode: {escape(recorded.describe())}", highlight=False)
    err.print(f"simulated provider on http://{host}:{port}/v1")
    try:
        serve(host, port, config, recorded)
    except OSError as exc:  # the port is taken, or the address is not this machine's
        _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


def main() -> None:
    import redis

    try:
        app()
    except JobFailedError as exc:
        _fail(str(exc), code=1)
    except BatchRouterError as exc:
        _fail(str(exc))
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        _fail(f"cannot reach Redis: {exc}")


# Commands defined in their own modules register themselves on ``app`` when imported.
import producer.commands.status  # noqa: E402
import producer.training.cmd  # noqa: E402
import producer.watch.cmd  # noqa: E402, F401
from producer.report.cmd import _print_manifest  # noqa: E402

__all__ = ["app", "main"]
