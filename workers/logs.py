"""Structured logs: one JSON object per line, with the job, chunk and tier of the task.

Worker processes log through :func:`configure` (installed on Celery's ``setup_logging``
signal by :func:`install`): every record is a JSON object on stderr, e.g.::

    {"ts": "2026-11-28T02:14:07.311Z", "level": "INFO", "logger": "celery.app.trace",
     "message": "Task dispatch[fast][…] succeeded in 0.41s: None", "pid": 311,
     "worker": "fast@host", "task": "dispatch", "task_id": "…", "job_id": "nightly-…",
     "chunk": 3, "tier": "fast"}

The task fields come from :func:`bind`, called by the task signals in ``workers.tasks``
for the task being run (a context variable, plus a per-process copy for the provider
I/O loop's thread, which does not see the task thread's context). ``LOG_FORMAT=text``
switches back to a plain line format (for a developer's terminal); JSON is the default.

What is never logged: secrets, and prompt or response text. Every line is passed through
this process's redactor (``workers.redact``: the Settings' secrets, registered by
:func:`install`, provider keys, token-shaped strings) after formatting, so message,
extras, exception traceback and stack alike; an extra value is redacted before it is cut.
Prompt and response text: only fields listed here and scalar ``extra=`` values under
other names are written — never a record's ``args`` mapping or
Celery's ``data`` (task arguments). The provider SDKs and HTTP client libraries
(:data:`QUIET_LOGGERS`) are held at WARNING whatever their loggers' levels: at DEBUG the
``openai`` and ``anthropic`` SDKs log whole request bodies, i.e. prompts (``OPENAI_LOG`` /
``ANTHROPIC_LOG=debug`` set those loggers to DEBUG when the SDK is imported, so the
handler's :class:`QuietFilter` drops their records below WARNING, not just their level).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import sys
import threading
import traceback
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, TypedDict

from workers import redact

if TYPE_CHECKING:
    from celery import Celery
    from celery.apps.worker import Worker

FORMAT_ENV = "LOG_FORMAT"
CONTEXT_FIELDS = ("task", "task_id", "job_id", "chunk", "tier")
# Loggers that print request bodies (prompts) at DEBUG, or one line per request at INFO.
QUIET_LOGGERS = (
    "openai",
    "anthropic",
    "httpx",
    "httpx2",
    "httpx_aiohttp",
    "httpcore",
    "aiohttp",
    "urllib3",
    "botocore",
    "boto3",
)
# ``extra=`` names never written even when scalar (Celery puts task arguments in ``data``).
_DENIED = frozenset({"data", "args", "kwargs", "prompt", "system", "response", "messages", "body"})
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}
_MAX_EXTRA_CHARS = 2000
Scalar = str | int | float | bool | None  # what a record's extra value is written as

_context: contextvars.ContextVar[Mapping[str, object] | None] = contextvars.ContextVar(
    "batch_router_log_context", default=None
)
_process_context: dict[str, object] = {}  # the main thread's task, for the I/O loop thread
_static: dict[str, object] = {}  # per process: e.g. the Celery node name


# ---------------------------------------------------------------- context


def bind(**fields: object) -> contextvars.Token[Mapping[str, object] | None]:
    """Attach ``fields`` (job_id, chunk, tier, task, task_id…) to every record logged by
    this task until :func:`unbind`. ``None`` values are dropped."""
    values = {k: v for k, v in fields.items() if v is not None}
    if threading.current_thread() is threading.main_thread():
        # prefork / solo pools run one task at a time on the main thread: the provider I/O
        # loop (another thread) logs on its behalf. A threads pool never sets this.
        _process_context.clear()
        _process_context.update(values)
    return _context.set(values)


def unbind(token: contextvars.Token[Mapping[str, object] | None] | None = None) -> None:
    if token is not None:
        with contextlib.suppress(ValueError):  # a token from another context
            _context.reset(token)
            if threading.current_thread() is threading.main_thread():
                _process_context.clear()
            return
    _context.set(None)
    if threading.current_thread() is threading.main_thread():
        _process_context.clear()


@contextlib.contextmanager
def bound(**fields: object) -> Iterator[None]:
    token = bind(**fields)
    try:
        yield
    finally:
        unbind(token)


def current() -> dict[str, object]:
    """The fields bound for the code running now (empty outside a task)."""
    values = _context.get()
    if values is None:
        values = _process_context
    return dict(values)


def set_static(**fields: object) -> None:
    """Fields written on every record of this process (e.g. ``worker`` = the node name)."""
    _static.update({k: v for k, v in fields.items() if v is not None})


class TaskFields(TypedDict, total=False):
    """The log fields of a task call, as its message carries them (absent when null)."""

    job_id: str
    chunk: int
    tier: str


def task_fields(
    name: str, args: Sequence[object] | None, kwargs: Mapping[str, object] | None
) -> TaskFields:
    """job_id / chunk / tier of a batch-router task call (``ingest``, ``dispatch``,
    ``collect``, ``finalize``: the job context first, then the chunk ref, the routed batch
    or the tier batch polled)."""
    args = list(args or ())
    kwargs = dict(kwargs or {})
    ctx = args[0] if args else kwargs.get("ctx")
    detail = args[1] if len(args) > 1 else kwargs.get("batch") or kwargs.get("chunk")
    out = TaskFields()
    if isinstance(ctx, Mapping) and ctx.get("job_id") is not None:
        out["job_id"] = ctx["job_id"]
    if isinstance(detail, Mapping):
        if detail.get("chunk") is not None:
            out["chunk"] = detail["chunk"]
        if name in ("dispatch", "collect") and detail.get("tier") is not None:
            out["tier"] = detail["tier"]
    return out


class ContextFilter(logging.Filter):
    """Copies the bound fields onto each record (``extra=`` values win)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in {**_static, **current()}.items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class QuietFilter(logging.Filter):
    """Drops records below WARNING of :data:`QUIET_LOGGERS` (and their children), whatever
    level a library or its environment variable gave the logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        name = record.name
        return not any(name == q or name.startswith(q + ".") for q in QUIET_LOGGERS)


# ---------------------------------------------------------------- formatting


def _scalar(value: object) -> Scalar:
    if value is None or isinstance(value, bool | int | float):
        return value
    text = redact.redact(str(value))  # before the cut, which could leave a secret's prefix
    return text if len(text) <= _MAX_EXTRA_CHARS else text[:_MAX_EXTRA_CHARS] + "…"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, message, pid, the bound fields,
    scalar extras, and ``exception`` / ``stack`` as text when present."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC)
        out: dict[str, object] = {
            "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for key, value in record.__dict__.items():
            if key in _RECORD_ATTRS or key in _DENIED or key.startswith("_") or key in out:
                continue
            if isinstance(value, Mapping | list | tuple | set):
                continue  # structured extras may carry task arguments: never written
            out[key] = _scalar(value)
        if record.exc_info:
            out["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        return json.dumps(out, ensure_ascii=False, default=str)


TEXT_FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s] %(message)s"


class RedactingFormatter(logging.Formatter):
    """``inner``'s line with every secret redacted (``workers.redact``): the message, the
    extras, the exception traceback and the stack alike."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return redact.redact(self.inner.format(record))


def log_format() -> str:
    value = os.environ.get(FORMAT_ENV, "json").strip().lower()
    return "text" if value == "text" else "json"


def configure(
    level: int | str = logging.INFO, stream: IO[str] | None = None, fmt: str | None = None
) -> logging.Handler:
    """Replace the root logger's handlers with one writing to ``stream`` (default: the
    process's real stderr) in ``fmt`` (``json`` or ``text``; default ``$LOG_FORMAT``)."""
    handler = logging.StreamHandler(stream if stream is not None else sys.__stderr__)
    fmt = fmt or log_format()
    inner = JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(RedactingFormatter(inner))
    handler.addFilter(QuietFilter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("celery", "celery.task", "celery.redirected"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.captureWarnings(True)
    return handler


# ---------------------------------------------------------------- Celery wiring


def install(app: Celery) -> None:
    """Make every ``celery`` process of ``app`` log through :func:`configure`.

    ``setup_logging`` having a receiver tells Celery not to configure logging itself. The
    worker's ASCII banner (plain text on stdout) is replaced by one JSON record, and
    stdout/stderr written by task code are redirected to the ``celery.redirected``
    logger, as Celery does when it owns logging. The app's Settings (``make_app``) are
    registered for redaction here, so every process of the app redacts their secrets."""
    from celery import signals

    redact.register(getattr(app.conf, "batch_router_settings", None))

    def _setup_logging(loglevel: int | str | None = None, **_: object) -> None:
        configure(loglevel or logging.INFO)

    def _worker_init(
        sender: str | None = None,
        instance: Worker | None = None,
        options: Mapping[str, object] | None = None,
        **_: object,
    ) -> None:
        from celery.utils.log import mlevel

        set_static(worker=sender)
        # Now, not at setup_logging: the worker warns (e.g. running as root) before that.
        configure(mlevel((options or {}).get("loglevel") or logging.INFO))
        if instance is not None and log_format() == "json":
            instance.quiet = True  # no ASCII banner: JSON only

    def _worker_ready(
        sender: str | None = None, instance: Worker | None = None, **_: object
    ) -> None:
        if instance is None:
            return
        queues = sorted(instance.app.amqp.queues.consume_from or ())
        logging.getLogger("batch_router.worker").info(
            "worker %s starting: queues %s, concurrency %s",
            sender,
            ",".join(queues),
            getattr(instance, "concurrency", None),
            extra={"queues": ",".join(queues)},
        )
        if getattr(instance, "redirect_stdouts", False):
            instance.app.log.redirect_stdouts(instance.redirect_stdouts_level)

    # Connected by call, not as decorators: Celery's signals are untyped, and a decorator
    # returning Any would erase the receivers' types.
    signals.setup_logging.connect(_setup_logging, weak=False)
    signals.celeryd_init.connect(_worker_init, weak=False)
    signals.celeryd_after_setup.connect(_worker_ready, weak=False)
