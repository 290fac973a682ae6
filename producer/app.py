"""What every ``batch-router`` command shares: the Typer app, the consoles, the common
options, and settings / policy / output resolution. Commands live in ``producer/cli.py``
and in the modules that register themselves on :data:`app` (``producer/commands/status.py``,
``producer/watch/cmd.py``, ``producer/report/cmd.py``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from routing.errors import ConfigError
from routing.names import validate_job_id, validate_tenant
from routing.policy import Policy, load_policy
from workers.settings import Settings

app = typer.Typer(
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, …)
    rich_markup_mode="markdown",
)
console = Console()
err = Console(stderr=True)

OutputOpt = Annotated[
    str | None,
    typer.Option(
        "--output",
        "-o",
        help="output root (local path or s3://bucket/prefix); default BATCH_ROUTER_OUTPUT",
    ),
]
PolicyOpt = Annotated[
    Path | None, typer.Option("--policy", help="routing policy YAML (default: the packaged policy)")
]


def _job_id_checked(value: str | None) -> str | None:
    """Refuse an unsafe job id while the command line is parsed, before anything runs
    (InputError: one line, exit 2)."""
    return None if value is None else validate_job_id(value, "--job-id")


def _job_id_arg_checked(value: str | None) -> str | None:
    return None if value is None else validate_job_id(value, "JOB_ID")


def _tenant_checked(value: str | None) -> str | None:
    return None if value is None else validate_tenant(value, "--tenant")


TenantOpt = Annotated[
    str | None,
    typer.Option(
        help="tenant the job is billed to (letters, digits, '_', '.', '-'; docs/governance.md)",
        callback=_tenant_checked,
    ),
]
JobIdOpt = Annotated[
    str | None,
    typer.Option(
        "--job-id",
        help="job id: ASCII letters, digits, '_', '.', '-' (default: generated)",
        callback=_job_id_checked,
    ),
]
JobIdArg = Annotated[
    str | None,
    typer.Argument(help="job id (default: list recent jobs)", callback=_job_id_arg_checked),
]


def _settings(ctx: typer.Context) -> Settings:
    root = ctx.find_root()
    if root.obj is None:
        try:
            root.obj = Settings()
        except ValidationError as exc:
            problems = "; ".join(
                f"BATCH_ROUTER_{'__'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
                for e in exc.errors()
            )
            raise ConfigError(f"invalid settings (environment or .env): {problems}") from exc
    settings: Settings = root.obj
    return settings


def _policy(settings: Settings, path: Path | None) -> Policy:
    return load_policy(path or settings.policy_path)


def _output(settings: Settings, output: str | None) -> str:
    out = output or settings.output
    if not out:
        raise typer.BadParameter("give --output or set BATCH_ROUTER_OUTPUT", param_hint="--output")
    return out


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )


def _fail(message: str, code: int = 2) -> None:
    """One clear message on stderr (no traceback); exit 2 for bad input or config, 1 for a
    job that ran and failed."""
    err.print(f"[red]error:[/] {escape(message)}", highlight=False)
    sys.exit(code)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


# ---------------------------------------------------------------- root options

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        console.print(f"batch-router {version('batch-router')}", highlight=False)
        raise typer.Exit()


def _log_level(value: str) -> str:
    level = value.upper()
    if level not in LOG_LEVELS:
        raise typer.BadParameter(f"{value!r}: one of {', '.join(LOG_LEVELS)}")
    return level
