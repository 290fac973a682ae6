"""Issue 13, finding 8 and the Redis-persistence item: docker-compose.yml puts no secret on
a command line (``ps``, ``docker inspect``), Redis reads its password from a file written
on a tmpfs from the environment, persists with AOF, and Flower takes its login from
FLOWER_BASIC_AUTH.

No Docker here: the compose file is read with PyYAML and interpolated as compose would
(tests/test_compose.py's helpers); then the Redis service's own script is run with the
local ``redis-server`` (the image's entrypoint and ``chown`` stubbed, the container paths
mapped to a temporary folder), and Flower is started as the compose service starts it.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from tests import services as svc
from tests.compose import (
    COMPOSE,
    ENV_EXAMPLE,
    VARIABLE,
    environment,
    interpolate,
    read_env_file,
)

pytestmark = pytest.mark.security

SECRET_NAME = ("PASSWORD", "SECRET", "TOKEN", "API_KEY", "BASIC_AUTH")
SHOWN = ("command", "entrypoint")  # what `ps` and `docker inspect` show, besides healthchecks


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def example_env() -> dict[str, str]:
    """env.example with its secrets filled in, each a distinct recognisable value."""
    assigned, _ = read_env_file(ENV_EXAMPLE)
    return {k: v or f"Sx{k.title().replace('_', '')}9q" for k, v in assigned.items()}


@pytest.fixture(scope="module")
def resolved(compose: dict[str, Any], example_env: dict[str, str]) -> dict[str, Any]:
    return interpolate(compose["services"], example_env)


def _shown(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, text) of every command line the service shows."""
    out = [(key, json.dumps(service[key])) for key in SHOWN if service.get(key)]
    test = (service.get("healthcheck") or {}).get("test")
    return out + ([("healthcheck", json.dumps(test))] if test else [])


def test_no_secret_reaches_a_command_line(
    compose: dict[str, Any], resolved: dict[str, Any], example_env: dict[str, str]
) -> None:
    secrets = {k: v for k, v in example_env.items() if any(n in k for n in SECRET_NAME)}
    assert {"REDIS_PASSWORD", "FLOWER_PASSWORD", "S3_SECRET_ACCESS_KEY"} <= secrets.keys()
    for name, service in compose["services"].items():
        for where, text in _shown(service):
            interpolated = {m.group(1) or m.group(4) for m in VARIABLE.finditer(text)} - {None}
            leaked = {v for v in interpolated if any(n in v for n in SECRET_NAME)}
            assert not leaked, f"{name} {where}: compose interpolates {leaked} (use $$VAR)"
        for where, text in _shown(resolved[name]):
            found = [k for k, v in secrets.items() if v in text]
            assert not found, f"{name} {where} shows {found}: {text}"


def test_redis_reads_its_password_from_a_tmpfs_file_written_from_the_environment(
    compose: dict[str, Any], resolved: dict[str, Any], example_env: dict[str, str]
) -> None:
    redis_service = compose["services"]["redis"]
    assert environment(redis_service)["REDIS_PASSWORD"].startswith("${REDIS_PASSWORD:?")
    argv = resolved["redis"]["command"]
    assert argv[:2] == ["sh", "-c"], argv
    script = argv[2]
    assert '"$REDIS_PASSWORD" > /run/redis/' in script  # expanded by the container's shell
    assert "/run/redis" in redis_service["tmpfs"]  # the file never lands on a disk
    assert "exec docker-entrypoint.sh redis-server /run/redis/" in script  # drops root
    assert "--requirepass" not in script
    probe = " ".join(resolved["redis"]["healthcheck"]["test"])
    assert 'REDISCLI_AUTH="$REDIS_PASSWORD"' in probe and example_env["REDIS_PASSWORD"] not in probe


def test_redis_persists_with_aof_on_a_named_volume(compose: dict[str, Any]) -> None:
    service = compose["services"]["redis"]
    script = service["command"][2]
    for option in ("--appendonly yes", "--appendfsync everysec", "--dir /data"):
        assert option in script, option
    assert "--appendonly no" not in script
    volumes = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
    assert "/data" in volumes, service["volumes"]
    named = compose["volumes"]
    assert volumes["/data"] in named, f"{volumes['/data']}: not a named volume"
    spec = named[volumes["/data"]] or {}
    assert "tmpfs" not in json.dumps(spec), "Redis data on a tmpfs does not survive a restart"


# ---------------------------------------------------------------- the script, run for real


@pytest.fixture
def container(tmp_path: Path) -> Path:
    """A folder standing for the container: stubs of the image's entrypoint (which only
    drops root, then execs its arguments) and of ``chown``; the tmpfs and /data."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("docker-entrypoint.sh", 'exec "$@"'), ("chown", "exit 0")):
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    (tmp_path / "run-redis").mkdir()
    (tmp_path / "data").mkdir()
    return tmp_path


def _in(container: Path, text: str) -> str:
    return text.replace("/run/redis", str(container / "run-redis")).replace(
        "/data", str(container / "data")
    )


@pytest.fixture
def started(container: Path, resolved: dict[str, Any]) -> Iterator[tuple[int, int, str]]:
    """The compose Redis service's script run with a local redis-server: (pid, port,
    password)."""
    password = "Rp7Kq2Wz5Xn8Lm3"
    port = svc.free_port()
    env = {**os.environ, "REDIS_PASSWORD": password, "PATH": f"{container / 'bin'}:/usr/bin:/bin"}
    script = _in(container, resolved["redis"]["command"][2])
    args = ["--port", str(port), "--bind", "127.0.0.1"]
    log = (container / "redis.log").open("wb")
    proc = subprocess.Popen(
        ["sh", "-c", script, "sh", *args], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        client = redis.Redis(port=port, password=password)
        svc.wait_until(lambda: bool(client.ping()), 15, "redis from the compose script")
        yield proc.pid, port, password
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)


def test_the_redis_service_script_starts_a_protected_persistent_redis(
    started: tuple[int, int, str], container: Path, resolved: dict[str, Any]
) -> None:
    pid, port, password = started
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port).ping()
    client = redis.Redis(port=port, password=password, decode_responses=True)
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
    assert client.config_get("save") == {"save": ""}
    client.set("br:probe", "1")
    assert any((container / "data").rglob("*.aof")), "no append-only file in /data"
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    assert b"redis-server" in cmdline and password.encode() not in cmdline
    conf = next((container / "run-redis").iterdir())
    assert conf.stat().st_mode & 0o077 == 0, oct(conf.stat().st_mode)
    probe = resolved["redis"]["healthcheck"]["test"][1].replace("redis-cli", f"redis-cli -p {port}")
    for given, ok in ((password, True), ("wrong-password", False)):
        env = {**os.environ, "REDIS_PASSWORD": given}
        done = subprocess.run(["sh", "-c", probe], env=env, capture_output=True, timeout=15)
        assert (done.returncode == 0) is ok, (given, done)


@pytest.mark.integration
def test_flower_as_compose_starts_it_asks_for_the_login_and_shows_none(
    resolved: dict[str, Any], redis_url: str, tmp_path: Path
) -> None:
    """The compose service's own command and FLOWER_BASIC_AUTH (only the port changed,
    the broker the test Redis): 401 without the login, 200 with it; the password is in
    neither the process's command line nor its arguments."""
    service = resolved["flower"]
    login = environment(service)["FLOWER_BASIC_AUTH"]
    argv = [a for a in service["command"] if not a.startswith("--port")]
    port = svc.free_port()
    env = {**os.environ, "BATCH_ROUTER_BROKER_URL": redis_url, "FLOWER_BASIC_AUTH": login}
    cmd = [sys.executable, "-m", *argv, f"--port={port}", "--address=127.0.0.1"]
    proc = svc.start(cmd, tmp_path / "flower.log", "flower", env=env)
    with svc.stopping(proc):
        url = f"http://127.0.0.1:{port}/api/workers"
        svc.wait_until(lambda: _status(f"http://127.0.0.1:{port}/healthcheck") == 200, 60, "flower")
        assert _status(url) == 401
        assert _status(url, login) == 200
        assert _status(url, login.split(":")[0] + ":wrong") == 401
        # what docs/operations.md warns of: these answer without a login (hence 127.0.0.1)
        assert _status(f"http://127.0.0.1:{port}/metrics") == 200
        cmdline = Path(f"/proc/{proc.popen.pid}/cmdline").read_bytes()
        assert login.split(":", 1)[1].encode() not in cmdline


def _status(url: str, login: str | None = None) -> int:
    request = urllib.request.Request(url)
    if login:
        request.add_header("Authorization", "Basic " + base64.b64encode(login.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code
