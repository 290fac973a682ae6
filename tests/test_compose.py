"""The local stack (docker-compose.yml, infra/) runs only real entry points.

No Docker needed: the compose file is read with PyYAML and every command a project
container runs is checked against the project itself — the ``batch-router`` console
script and its Typer commands, the Celery app and its CLI (worker, inspect, flower), the
default policy's tier queues, and the ``Settings`` fields behind each ``BATCH_ROUTER_``
variable. ``docker compose config`` is run too where a compose client is installed.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
import types
import typing
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer.main
import yaml
from pydantic import BaseModel

from tests.compose import (
    COMPOSE,
    ENV_EXAMPLE,
    MissingVariable,
    environment,
    interpolate,
    read_env_file,
    variables,
)

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "infra" / "Dockerfile"
PREFIX = "BATCH_ROUTER_"
SHELL_OPERATORS = {"&&", "||", ";", "|", "&"}
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def commands(command: str | list[str]) -> list[list[str]]:
    """The programs a service command runs; ``sh -c`` scripts are split on operators."""
    argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
    if argv[:2] not in (["sh", "-c"], ["bash", "-c"]):
        return [argv]
    lexer = shlex.shlex(argv[2], posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    found: list[list[str]] = [[]]
    for token in lexer:
        if token in SHELL_OPERATORS:
            found.append([])
        elif token != "exec" or found[-1]:
            found[-1].append(token)
    return [c for c in found if c and c[0] != "set"]


def celery_parts(argv: list[str]) -> tuple[str, str, list[str]]:
    """``celery -A MODULE SUB ARGS…`` → (MODULE, SUB, ARGS)."""
    assert argv[0] == "celery", argv
    if argv[1] in ("-A", "--app"):
        return argv[2], argv[3], argv[4:]
    assert argv[1].startswith("--app="), f"celery needs -A workers.app first: {argv}"
    return argv[1].split("=", 1)[1], argv[2], argv[3:]


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def project(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The services that run the project image (built from infra/Dockerfile)."""
    built = {
        s["image"]
        for s in services.values()
        if isinstance(s.get("build"), dict) and s["build"].get("dockerfile") == "infra/Dockerfile"
    }
    assert built, "no service builds infra/Dockerfile"
    return {name: s for name, s in services.items() if s.get("image") in built}


@pytest.fixture(scope="module")
def example_env() -> dict[str, str]:
    """env.example as shipped, with its empty secrets filled in (as a user would)."""
    assigned, _ = read_env_file(ENV_EXAMPLE)
    return {k: v or f"test-{k.lower().replace('_', '-')}" for k, v in assigned.items()}


@pytest.fixture(scope="module")
def resolved(services: dict[str, dict[str, Any]], example_env: dict[str, str]) -> dict[str, Any]:
    return interpolate(services, example_env)


@pytest.fixture(scope="module")
def policy() -> Any:
    from routing.policy import load_policy

    return load_policy()


@pytest.fixture(scope="module")
def worker_queues(project: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """Service name → queues its ``celery worker -Q`` consumes."""
    out: dict[str, list[str]] = {}
    for name, service in project.items():
        for argv in commands(service["command"]):
            if argv[0] == "celery" and celery_parts(argv)[1] == "worker":
                _, _, args = celery_parts(argv)
                queues = [args[i + 1] for i, a in enumerate(args) if a in ("-Q", "--queues")]
                queues += [a.split("=", 1)[1] for a in args if a.startswith("--queues=")]
                out[name] = [q for arg in queues for q in arg.split(",")]
    return out


# ------------------------------------------------------------------- entry point checks


def check_batch_router(argv: list[str]) -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "batch-router" in scripts, "batch-router is not a console script in pyproject.toml"
    module_name, _, func = scripts["batch-router"].partition(":")
    assert callable(getattr(importlib.import_module(module_name), func))
    from producer.cli import app

    names = {c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands}
    assert len(argv) > 1 and argv[1] in names, f"`{shlex.join(argv)}`: commands are {names}"
    command = typer.main.get_command(app).commands[argv[1]]  # type: ignore[attr-defined]
    command.make_context(argv[1], argv[2:])  # unknown options or bad values raise


def check_celery(argv: list[str]) -> None:
    from celery import Celery
    from celery.bin.base import CLIContext
    from celery.bin.celery import celery as celery_cli

    module_name, sub, args = celery_parts(argv)
    module = importlib.import_module(module_name)
    assert isinstance(getattr(module, "app", None), Celery), f"{module_name}.app is no Celery app"
    assert sub in celery_cli.commands, f"`celery {sub}` does not exist"
    if sub == "flower":
        from flower.options import options

        importlib.metadata.distribution("flower")
        flags = [a[2:].split("=", 1)[0] for a in args if a.startswith("--")]
        assert all(f in options for f in flags), f"unknown flower option in {args}"
        return
    obj = CLIContext(app=module.app, no_color=True, workdir=None, quiet=True)
    celery_cli.commands[sub].make_context(sub, list(args), obj=obj)


def check_python_c(argv: list[str]) -> None:
    assert argv[1] == "-c", f"python runs only -c one-liners here: {argv}"
    tree = ast.parse(argv[2])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                importlib.import_module(alias.name)
        elif isinstance(node, ast.ImportFrom) and node.module:
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name), f"{node.module} has no {alias.name}"


CHECKS = {"batch-router": check_batch_router, "celery": check_celery, "python": check_python_c}


# ------------------------------------------------------------------------------ tests


def test_project_services_run_real_entry_points(resolved: dict[str, Any], project: dict) -> None:
    assert {"flower", "sim-provider", "worker-ingest", "s3-init"} <= project.keys()
    for name in project:
        assert resolved[name].get("command"), f"{name}: no command (the image CMD is --help)"
        for argv in commands(resolved[name]["command"]):
            assert argv[0] in CHECKS, f"{name}: `{argv[0]}` is not a project entry point"
            CHECKS[argv[0]](argv)


def test_worker_queues_exist_and_every_queue_has_a_worker(
    worker_queues: dict[str, list[str]], policy: Any
) -> None:
    from workers.queues import FINALIZE_QUEUE, INGEST_QUEUE, tier_queue

    tier_queues = {tier_queue(t) for t in policy.tier_names}
    known = {INGEST_QUEUE, FINALIZE_QUEUE} | tier_queues
    consumed = {q for queues in worker_queues.values() for q in queues}
    for name, queues in worker_queues.items():
        assert queues, f"{name}: a worker without -Q would consume the default queue only"
        assert set(queues) <= known, f"{name}: unknown queue(s) {set(queues) - known}"
    assert known <= consumed, f"queues with no worker: {sorted(known - consumed)}"
    for tier in policy.tier_names:
        assert f"worker-{tier}" in worker_queues, f"tier {tier}: no worker-{tier} service"


def test_workers_scale(project: dict[str, dict[str, Any]], worker_queues: dict) -> None:
    """``--scale worker-x=N`` needs per-container node names, no fixed name or host port."""
    for name in worker_queues:
        service = project[name]
        assert "container_name" not in service and "ports" not in service, name
        argv = commands(service["command"])[0]
        node = argv[argv.index("-n") + 1]
        assert node.endswith("@%h"), f"{name}: node name {node!r} must end in @%h"
        probe = " ".join(service["healthcheck"]["test"][1:])
        assert f"{node.removesuffix('%h')}$$HOSTNAME" in probe, f"{name}: healthcheck {probe}"


@pytest.mark.security
def test_flower_requires_basic_auth_without_default_password(
    services: dict[str, Any], example_env: dict[str, str]
) -> None:
    """Flower takes its login from FLOWER_BASIC_AUTH (an environment variable: a
    ``--basic-auth`` flag would show in ``ps`` and ``docker inspect``)."""
    (name,) = (
        n for n, s in services.items() for c in commands(s.get("command") or ["-"]) if "flower" in c
    )
    flower = commands(services[name]["command"])[0]
    assert not [a for a in flower if a.startswith("--basic-auth")], f"on the command line: {flower}"
    value = environment(services[name]).get("FLOWER_BASIC_AUTH")
    assert value, f"{name}: no FLOWER_BASIC_AUTH"
    match = re.search(r":\$\{(\w+):\?[^}]+\}$", value)
    assert match, f"flower password in {value!r} must be ${{VAR:?…}} (no default)"
    assert value[: match.start()], "flower basic auth needs a user"
    with pytest.raises(MissingVariable):
        interpolate(value, {k: v for k, v in example_env.items() if k != match.group(1)})
    with pytest.raises(MissingVariable):
        interpolate(value, {**example_env, match.group(1): ""})


def _field_path(parts: list[str]) -> None:
    """``["s3", "endpoint_url"]`` must walk Settings' fields; a dict field takes any key."""
    from workers.settings import Settings

    model: Any = Settings
    for index, part in enumerate(parts):
        if isinstance(model, tuple):  # a dict key (e.g. the provider name)
            model = model[1]
            continue
        name = f"{PREFIX}{'__'.join(parts).upper()}"
        assert model is not None, f"{name}: {parts[index - 1]} has no sub-fields"
        assert part in model.model_fields, f"{name}: {model.__name__} has no field {part!r}"
        model = _nested(model.model_fields[part].annotation)


def _nested(annotation: Any) -> Any:
    """What a field nests into: a model, ``("dict", inner)``, or None for a leaf."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
    if typing.get_origin(annotation) is dict:
        return ("dict", _nested(typing.get_args(annotation)[1]))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def test_batch_router_env_names_are_settings_fields(
    project: dict[str, dict[str, Any]], policy: Any
) -> None:
    names = {n for s in project.values() for n in environment(s) if n.startswith(PREFIX)}
    assert f"{PREFIX}BROKER_URL" in names
    for name in names:
        parts = name.removeprefix(PREFIX).lower().split("__")
        _field_path(parts)
        if parts[0] == "providers":
            assert parts[1] in policy.providers, f"{name}: no provider {parts[1]!r} in the policy"


def test_settings_built_from_compose_env_point_at_compose_services(
    resolved: dict[str, Any],
    project: dict[str, Any],
    policy: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    from workers.provider import resolve_endpoint
    from workers.settings import Settings

    password = environment(resolved["redis"])["REDIS_PASSWORD"]  # what Redis requires
    s3_env = environment(resolved["s3"])
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in project:
        env = environment(resolved[name])
        for key in [k for k in os.environ if k.startswith(PREFIX)]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = Settings()
        broker = urlsplit(settings.broker())
        assert (broker.hostname, broker.port, broker.password) == ("redis", 6379, password)
        assert urlsplit(settings.s3.endpoint_url or "").hostname == "s3"
        assert settings.s3.access_key_id is not None and settings.s3.secret_access_key is not None
        assert settings.s3.access_key_id.get_secret_value() == s3_env["AWS_ACCESS_KEY_ID"]
        assert settings.s3.secret_access_key.get_secret_value() == s3_env["AWS_SECRET_ACCESS_KEY"]
        for provider, spec in policy.providers.items():
            url = urlsplit(resolve_endpoint(provider, spec, settings).base_url)
            assert url.hostname in resolved, f"{name}: provider {provider} at {url.hostname}?"
            served = commands(resolved[url.hostname]["command"])[0]
            assert served[served.index("--port") + 1] == str(url.port)


def test_s3_buckets_are_created_and_valid(resolved: dict[str, Any]) -> None:
    code = commands(resolved["s3-init"]["command"])[0][2]
    loop = re.search(r"for bucket in (\([^)]*\))", code)
    assert loop, "s3-init: no `for bucket in (…)` loop"
    buckets = set(ast.literal_eval(loop.group(1)))
    assert all(BUCKET_NAME.match(b) for b in buckets), f"invalid S3 bucket name in {buckets}"
    used = set(re.findall(r"s3://([^/\s\"']+)", json.dumps(resolved)))
    assert used and used <= buckets, f"buckets used but not created: {used - buckets}"


def test_depends_on_is_consistent(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for target, spec in (service.get("depends_on") or {}).items():
            assert target in services, f"{name} depends on unknown {target}"
            condition = spec["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{target} has no healthcheck"
            if condition == "service_completed_successfully":
                assert services[target].get("restart") == "no", f"{target} is no one-shot"


def test_env_example_documents_every_variable(compose: dict[str, Any]) -> None:
    found = variables(json.dumps(compose))  # values only, not comments
    assigned, commented = read_env_file(ENV_EXAMPLE)
    missing = found.keys() - assigned.keys() - commented
    assert not missing, f"not in infra/env.example: {sorted(missing)}"
    for name, op in found.items():
        if op in (":?", "?"):
            assert name in assigned, f"required {name} must be an active line in env.example"
        if re.search("PASSWORD|SECRET", name):
            assert name in assigned and assigned[name] == "", f"{name}: ship no default secret"
    assert not (assigned.keys() - found.keys()), "env.example names variables compose never uses"


def test_compose_refuses_to_start_with_the_unedited_env_example(
    services: dict[str, Any],
) -> None:
    assigned, _ = read_env_file(ENV_EXAMPLE)
    with pytest.raises(MissingVariable):
        interpolate(services, assigned)


def test_dockerfile_installs_the_project_as_non_root() -> None:
    text = DOCKERFILE.read_text()
    lines = [ln.strip() for ln in re.sub(r"\\\n", " ", text).splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    assert lines[0].split()[1].startswith("python:3.11-slim"), lines[0]
    assert any(re.search(r"pip install[^&]*\s\.(\s|$)", ln) for ln in lines if ln[:4] == "RUN ")
    users = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), "the image must not run as root"
    cmd = [ln for ln in lines if ln.startswith("CMD ")][-1]
    assert json.loads(cmd.removeprefix("CMD ")) == ["batch-router", "--help"]
    for line in lines:
        assert not re.match(r"(ENV|ARG)\s.*(PASSWORD|SECRET|TOKEN|API_KEY)", line), line


def test_dockerfile_copies_what_the_build_needs_and_no_secrets() -> None:
    """COPY only named build inputs (a developer's .env must never enter the image), and
    every one of them must exist, pyproject's readme included (setuptools needs it)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    sources: list[str] = []
    for line in DOCKERFILE.read_text().splitlines():
        if re.match(r"\s*(COPY|ADD)\s", line) and "--from=" not in line:
            sources += [s.rstrip("/") for s in line.split()[1:-1] if not s.startswith("--")]
    assert sources and not {".", "./", "*"} & set(sources), f"whole context copied: {sources}"
    needed = {"pyproject.toml", pyproject["project"]["readme"]}
    needed |= {
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    assert needed <= set(sources), f"Dockerfile does not copy {needed - set(sources)}"
    absent = [s for s in sources if not (ROOT / s).exists()]
    assert not absent, f"Dockerfile copies missing files {absent}: `pip install .` would fail"


def _compose_client() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


@pytest.mark.skipif(_compose_client() is None, reason="no docker compose client installed")
def test_docker_compose_config_validates(example_env: dict[str, str], tmp_path: Path) -> None:
    client = _compose_client() or []
    full = tmp_path / "full.env"
    full.write_text("".join(f"{k}={v}\n" for k, v in example_env.items()))
    base = [*client, "--project-directory", str(ROOT), "-f", str(COMPOSE)]
    ok = subprocess.run(
        [*base, "--env-file", str(full), "--profile", "example", "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    shipped = subprocess.run(
        [*base, "--env-file", str(ENV_EXAMPLE), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shipped.returncode != 0, "compose started without the required secrets"
