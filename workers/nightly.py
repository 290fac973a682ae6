"""Nightly jobs: schedules from a YAML file, one job per window, submitted by beat's tick.

The file (``BATCH_ROUTER_SCHEDULE``) lists schedules::

    schedules:
      - name: acme-nightly                  # unique; part of the job id and Redis keys (<= 69)
        cron: "15 2 * * *"                  # UTC; a 6th field means seconds
        input: s3://input/nightly/{date}/   # {date} = the window's YYYY-MM-DD, {window} =
        output: s3://out/nightly/           #   its YYYYMMDDTHHMMSSZ; both usable in either
        tenant: acme                        # optional (routing.names: checked at load)
        policy: /etc/batch-router/acme.yaml # optional (default: the packaged policy)

A window is a cron fire time. Each tick (beat, every ``nightly_tick_s``) takes, per
schedule, the *latest* window at or before now and submits it unless it was already
claimed — so after an outage only the latest missed window runs (caught up once), never
the whole backlog. The claim is one Lua call in Redis (``SET NX`` of the window's key,
guarded by the schedule's last claimed window, which only moves forward): two beats, or
two ticks racing, never start the same window twice, nor an older window after a newer.
The job id is derived from (schedule, window) alone, so a tick retrying a window whose
submission failed half-way (job registered, then an error) finds that job and adopts it
instead of submitting a second one.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import redis
import yaml
from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from routing.errors import ConfigError, InputError, JobConflictError, PermanentError
from routing.names import validate_job_id, validate_tenant
from workers import connections, keys, luasource
from workers.jobstate import RedisJobTracker
from workers.settings import Settings

log = logging.getLogger("batch_router.nightly")
_Entry = TypeVar("_Entry", bound=BaseModel)


# The scripts: workers/scripts/nightly_{claim,unclaim}.lua.


class CronEntry(BaseModel):
    """What every entry of the schedules file has: a cron (UTC) and its latest window."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cron: str

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        if not croniter.is_valid(value):
            raise ValueError(f"not a cron expression: {value!r}")
        return value

    def latest_window(self, now: datetime) -> datetime:
        """The last fire time at or before ``now`` (UTC): minute-aligned for a 5-field
        cron, second-aligned with a seconds field — every tick inside one fire minute
        (or second) gets the same window."""
        start = now.astimezone(UTC).replace(microsecond=0) + timedelta(seconds=1)
        prev: datetime = croniter(self.cron, start).get_prev(datetime)
        return prev.astimezone(UTC)


class Schedule(CronEntry):
    """One nightly job definition."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    input: str
    output: str
    tenant: str | None = None
    policy: Path | None = None

    @field_validator("tenant")
    @classmethod
    def _valid_tenant(cls, value: str | None) -> str | None:
        try:
            return None if value is None else validate_tenant(value)
        except InputError as exc:  # pydantic reports ValueErrors; load_schedules wraps them
            raise ValueError(str(exc)) from exc

    @model_validator(mode="after")
    def _safe_job_ids(self) -> Schedule:
        """Every window's job id (``job_id_for``: same length for every window) is safe."""
        try:
            validate_job_id(job_id_for(self, datetime(2000, 1, 1, tzinfo=UTC)))
        except InputError as exc:
            raise ValueError(
                f"name {self.name!r} gives unsafe job ids (a schedule name has at most 69 "
                f"characters and no '..'): {exc}"
            ) from exc
        return self

    @field_validator("input", "output")
    @classmethod
    def _valid_template(cls, value: str) -> str:
        try:
            value.format(date="2000-01-01", window="20000101T000000Z")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"{value!r}: only {{date}} and {{window}} may be used") from exc
        return value

    def render(self, template: str, window: datetime) -> str:
        return template.format(date=window.date().isoformat(), window=stamp(window))


def stamp(window: datetime) -> str:
    return window.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def load_entries(path: Path, key: str, model: type[_Entry], what: str) -> list[_Entry]:
    """The ``key:`` list of a schedules file as ``model`` entries with unique names; a clear
    ConfigError names what is wrong (``what``: how an entry is called in it)."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
        entries = data.get(key, []) if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise ConfigError(f"{path}: expected `{key}:` with a list ({what} entries)")
        parsed = [model.model_validate(e) for e in entries]
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the schedules: {exc}") from exc
    except ValidationError as exc:
        raise ConfigError(f"{path}: invalid {what}: {exc}") from exc
    names = [getattr(e, "name", None) for e in parsed]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: {what} names must be unique: {names}")
    return parsed


def load_schedules(path: Path) -> list[Schedule]:
    """Read and check a schedules file's job schedules."""
    return load_entries(path, "schedules", Schedule, "schedule")


def last_key(name: str) -> str:
    """String: epoch seconds of the schedule's latest claimed window."""
    return keys.nightly_last(name)


def window_key(name: str, window: datetime) -> str:
    """String: the window's claim record (job id, or why it could not be submitted)."""
    return keys.nightly_window(name, stamp(window))


def job_id_for(schedule: Schedule, window: datetime) -> str:
    """The window's job id, the same on every tick and every beat: ``nightly-<name>-<stamp>-``
    plus 6 hex digits of a hash of (name, window)."""
    digest = hashlib.sha256(f"{schedule.name}\0{stamp(window)}".encode()).hexdigest()[:6]
    return f"nightly-{schedule.name}-{stamp(window)}-{digest}"


@dataclass(frozen=True)
class Fired:
    schedule: str
    window: datetime
    job_id: str
    error: str | None = None
    adopted: bool = False  # the job was already registered: not submitted again


Submit = Callable[[Settings, Schedule, datetime, str], None]


def tick(
    settings: Settings,
    schedules: list[Schedule],
    now: datetime,
    submit: Submit,
    client: redis.Redis | None = None,
) -> list[Fired]:
    """Submit the latest due window of every schedule that has not been claimed yet; a
    window whose job is already registered (an earlier attempt failed after registering
    it) is adopted, not submitted again."""
    r = client or connections.state_client(settings)
    claim = r.register_script(luasource.load("nightly_claim"))
    unclaim = r.register_script(luasource.load("nightly_unclaim"))
    jobs = RedisJobTracker(r, settings.job_ttl_s)
    fired = []
    for schedule in schedules:
        window = schedule.latest_window(now)
        job_id = job_id_for(schedule, window)
        claim_keys = [last_key(schedule.name), window_key(schedule.name, window)]
        epoch = int(window.timestamp())
        previous = claim(keys=claim_keys, args=[epoch, job_id, settings.job_ttl_s])
        if previous is None:
            continue
        try:
            if jobs.status(job_id) is not None:
                raise JobConflictError(f"job {job_id} is already registered")
            submit(settings, schedule, window, job_id)
        except JobConflictError:  # registered by an earlier, interrupted attempt: adopt it
            fired.append(Fired(schedule.name, window, job_id, adopted=True))
            log.warning(
                "nightly %s window %s: adopted job %s", schedule.name, stamp(window), job_id
            )
            continue
        except PermanentError as exc:  # e.g. no input for that night: recorded, not retried
            r.set(claim_keys[1], f"{job_id} not submitted: {exc}", ex=settings.job_ttl_s)
            fired.append(Fired(schedule.name, window, job_id, str(exc)))
            log.error("nightly %s window %s: %s", schedule.name, stamp(window), exc)
            continue
        except Exception:  # store or Redis unavailable: the next tick tries again
            unclaim(keys=claim_keys, args=[epoch, previous])
            raise
        fired.append(Fired(schedule.name, window, job_id))
        log.info("nightly %s window %s: submitted job %s", schedule.name, stamp(window), job_id)
    return fired


def fleet_submit(settings: Settings, schedule: Schedule, window: datetime, job_id: str) -> None:
    """Plan and enqueue the window's job as ``batch-router submit`` does
    (``workers.jobs.submit``)."""
    from routing.policy import load_policy
    from workers.jobs.submit import submit_job

    policy = load_policy(schedule.policy or settings.policy_path)
    input_uri = schedule.render(schedule.input, window)
    output = schedule.render(schedule.output, window)
    submit_job(settings, policy, input_uri, output, job_id, schedule.tenant)


def schedule_args(path: Path) -> list[dict[str, Any]]:
    """The schedules as beat sends them to the tick task (checked when beat starts)."""
    return [s.model_dump(mode="json") for s in load_schedules(path)]


def tick_task(settings: Settings, schedules: list[dict[str, Any]]) -> list[str]:
    """Body of the ``nightly_tick`` task: tick now with the real submitter."""
    parsed = [Schedule.model_validate(s) for s in schedules]
    fired = tick(settings, parsed, datetime.now(UTC), fleet_submit)
    return [f.job_id for f in fired if f.error is None]
