"""Every command explains itself with ``--help``, including an example."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.producer.conftest import CliRunner, clean_env

pytestmark = pytest.mark.e2e

COMMANDS = ("run", "submit", "status", "report", "sim-provider")


def test_top_level_help_lists_every_command(cli: CliRunner) -> None:
    proc = cli("--help")
    assert proc.returncode == 0, proc.stderr
    assert "Route large LLM prompt batches" in proc.stdout
    for command in COMMANDS:
        assert f" {command} " in proc.stdout, command


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help_has_an_example(cli: CliRunner, command: str) -> None:
    # a broken environment must not stop a user from reading the help
    proc = cli(command, "--help", BATCH_ROUTER_ROWS_PER_CHUNK="not-a-number")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Example" in proc.stdout
    assert f"batch-router {command}" in proc.stdout
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
