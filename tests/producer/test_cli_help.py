"""Every command explains itself with ``--help``, including an example. The commands are
listed from the Typer app itself, so a new command is checked without editing this file."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest
import typer.main

from producer.cli import app
from tests.cli import CliRunner, clean_env

pytestmark = pytest.mark.e2e


def _walk(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """``(path, command)`` of every command and sub-command under ``command``, depth first."""
    found = []
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        found.append(((*path, name), sub))
        found.extend(_walk(sub, (*path, name)))
    return found


ROOT = typer.main.get_command(app)
EVERY = _walk(ROOT)
GROUPS = {" ".join(path): sorted(cmd.commands) for path, cmd in EVERY if hasattr(cmd, "commands")}
COMMANDS = [" ".join(path) for path, cmd in EVERY if not hasattr(cmd, "commands")]
TOP_LEVEL = sorted(getattr(ROOT, "commands", {}))


def test_the_app_lists_the_commands_of_the_design() -> None:
    """The listing walks the real app: the design's commands and the ``audit`` group's
    ``verify`` are all in it (a broken walk would check nothing)."""
    design = {"run", "submit", "status", "watch", "report", "eval", "train", "sim-provider"}
    assert design <= set(TOP_LEVEL), TOP_LEVEL
    assert "audit verify" in COMMANDS and GROUPS.get("audit") == ["verify"], (COMMANDS, GROUPS)


def test_top_level_help_lists_every_command(cli: CliRunner) -> None:
    proc = cli("--help")
    assert proc.returncode == 0, proc.stderr
    assert "Route large LLM prompt batches" in proc.stdout
    for command in TOP_LEVEL:
        assert f" {command} " in proc.stdout, command


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help_has_an_example(cli: CliRunner, command: str) -> None:
    # a broken environment must not stop a user from reading the help
    proc = cli(*command.split(), "--help", BATCH_ROUTER_ROWS_PER_CHUNK="not-a-number")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Example" in proc.stdout
    assert f"batch-router {command}" in proc.stdout
    assert proc.stderr == ""


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_group_help_has_an_example(cli: CliRunner, group: str) -> None:
    proc = cli(*group.split(), "--help", BATCH_ROUTER_ROWS_PER_CHUNK="not-a-number")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr == ""
    assert "Example" in proc.stdout and f"batch-router {group}" in proc.stdout


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_group_help_lists_its_commands(cli: CliRunner, group: str) -> None:
    proc = cli(*group.split(), "--help", BATCH_ROUTER_ROWS_PER_CHUNK="not-a-number")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for sub in GROUPS[group]:
        assert f" {sub} " in proc.stdout, sub
    assert proc.stderr == ""


def test_the_installed_command_is_the_same_cli() -> None:
    exe = shutil.which("batch-router")
    if exe is None:
        pytest.skip("the batch-router console script is not on PATH")
    proc = subprocess.run(
        [exe, "run", "--help"], env=clean_env(), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "Usage: batch-router run" in proc.stdout
    assert "Example: batch-router run" in proc.stdout


def test_version(cli: CliRunner) -> None:
    proc = cli("--version")
    assert proc.returncode == 0, proc.stderr
    assert re.fullmatch(r"batch-router \d+\.\d+\.\d+\S*\n", proc.stdout), proc.stdout
    assert proc.stderr == ""


def test_log_level_is_checked_and_applied(cli: CliRunner) -> None:
    bad = cli("--log-level", "chatty", "status")
    assert bad.returncode == 2 and "one of DEBUG, INFO, WARNING, ERROR" in bad.stderr
    quiet = cli("run", "--sample", "10", "--output", "out-quiet")
    loud = cli("--log-level", "debug", "run", "--sample", "10", "--output", "out-loud")
    assert quiet.returncode == loud.returncode == 0, quiet.stderr + loud.stderr
    lines = [line for line in loud.stderr.splitlines() if re.search(r": (DEBUG|INFO)/", line)]
    assert lines, loud.stderr  # the engine's own records, as text lines
    assert not re.search(r": (DEBUG|INFO)/", quiet.stderr), quiet.stderr
    # the HTTP clients are held at WARNING even at DEBUG: no request lines, no bodies
    assert "HTTP Request" not in loud.stderr and "Request options" not in loud.stderr


def test_shell_completion_is_offered(cli: CliRunner) -> None:
    proc = cli("--show-completion", "bash")
    assert proc.returncode == 0, proc.stderr
    assert "complete" in proc.stdout and "_COMPLETE" in proc.stdout, proc.stdout
