"""Job ids and tenant names: what is allowed, and the sentinels no tenant may equal.

A **job id** names Redis keys (``br:job:{<id>}…``, cleared by a SCAN over
``br:job:{<id>}*``), the job's folder ``…/job_id=<id>/`` and Celery messages. It must be
one plain ASCII path segment: :data:`JOB_ID_PATTERN`, at most
:data:`MAX_JOB_ID_CHARS` characters, no ``..``. Generated ids
(``20261128T021500Z-3fa2c1d4``) and nightly ids (``nightly-<schedule>-<window>-<hash>``)
fit.

A **tenant** bills the job, scopes its budgets and cache, and becomes the percent-encoded
path segment ``cost/day=…/tenant=<encoded>/`` of the cost rollup (and a drop-folder
folder name). It must be one plain name in any script: letters, digits and combining marks,
plus ``_ . -``; starting with a letter or digit; in Unicode NFC; at most
:data:`MAX_TENANT_ENCODED_BYTES` bytes once percent-encoded (200 ASCII characters, 22 CJK
ones), so ``tenant=<encoded>`` stays well inside a 255-byte file name. No whitespace,
punctuation, symbols, control or invisible (format) characters, and none of
:data:`RESERVED_TENANTS`: the values the code itself gives a meaning.

:func:`key_problems` checks that the object keys a job will write fit the limits of
the stores (S3: 1,024 bytes a key; a local file system: 255 bytes a name).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from urllib.parse import quote

from routing.errors import InputError
from routing.resilience import WILDCARD

MAX_JOB_ID_CHARS = 101
JOB_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,100}")
MAX_TENANT_ENCODED_BYTES = 200
_TENANT_PUNCTUATION = frozenset("_.-")

# The sentinels: values the code gives a meaning of its own.
SHARED_CACHE = "*"  # the response cache's namespace when shared across tenants
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"  # Hive's (and polars') name for a null partition
NO_TENANT_LABEL = "(none)"  # the report's label of rows without a tenant
NOT_ROUTED_LABEL = "(not routed)"  # the report's tier / model of rows never routed
NO_TENANT_FOLDER = "_no-tenant"  # drop folder: where a file outside a tenant folder goes
RESERVED_TENANTS = frozenset(
    {WILDCARD, SHARED_CACHE, HIVE_NULL, NO_TENANT_LABEL, NOT_ROUTED_LABEL, NO_TENANT_FOLDER}
    | {"", ".", ".."}
)

S3_MAX_KEY_BYTES = 1024
MAX_NAME_BYTES = 255  # one path segment of a local file system (NAME_MAX)
LOCAL_TEMP_BYTES = 10  # a local write goes through ".<name>.<8 random>" (workers.storage)


def _shown(value: str, limit: int = 40) -> str:
    """``value`` quoted for a one-line message: escapes visible, long values cut."""
    return repr(value if len(value) <= limit else value[:limit] + "…")


def encoded(value: str) -> str:
    """A value as one percent-encoded path segment (how the cost rollup names a tenant)."""
    return quote(value, safe="")


def validate_job_id(job_id: str, source: str = "") -> str:
    """``job_id`` if it is one safe path segment, else :class:`InputError` (one line)."""
    if not isinstance(job_id, str) or not JOB_ID_PATTERN.fullmatch(job_id) or ".." in job_id:
        shown = _shown(job_id) if isinstance(job_id, str) else type(job_id).__name__
        raise InputError(
            f"{source + ': ' if source else ''}job id {shown} is not allowed: use 1 to "
            f"{MAX_JOB_ID_CHARS} ASCII letters, digits, '_', '.' or '-', starting with a "
            "letter or digit, without '..'"
        )
    return job_id


def tenant_problem(tenant: str) -> str | None:
    """Why ``tenant`` is not an allowed tenant name, or None."""
    if tenant in RESERVED_TENANTS or tenant.casefold() in {r.casefold() for r in RESERVED_TENANTS}:
        return "is reserved (it has a meaning of its own in caches, budgets or reports)"
    if not unicodedata.is_normalized("NFC", tenant):
        return "is not in Unicode NFC form; normalise it"
    if not _name_char(tenant[0], first=True) or not all(_name_char(c) for c in tenant[1:]):
        return (
            "is not allowed: use letters, digits, combining marks, '_', '.' or '-', starting "
            "with a letter or digit (no spaces, punctuation, symbols or invisible characters)"
        )
    size = len(encoded(tenant))
    if size > MAX_TENANT_ENCODED_BYTES:
        return (
            f"is too long: {size} bytes as a percent-encoded path segment, over the "
            f"limit of {MAX_TENANT_ENCODED_BYTES} bytes; use a shorter name"
        )
    return None


def _name_char(char: str, first: bool = False) -> bool:
    kind = unicodedata.category(char)[0]
    if first:
        return kind in "LN"
    return kind in "LNM" or char in _TENANT_PUNCTUATION


def validate_tenant(tenant: str, source: str = "") -> str:
    """``tenant`` if it is an allowed tenant name, else :class:`InputError` (one line)."""
    problem = tenant_problem(tenant) if isinstance(tenant, str) else f"is a {type(tenant).__name__}"
    if problem is not None:
        shown = _shown(tenant) if isinstance(tenant, str) else ""
        raise InputError(f"{source + ': ' if source else ''}tenant {shown} {problem}")
    return tenant


def key_problems(uris: Iterable[str]) -> list[str]:
    """Why some of ``uris`` (objects a job will write) cannot be written: an S3 key over
    1,024 bytes, a local path segment over 255 bytes (the file name's temporary name
    included)."""
    problems: list[str] = []
    for uri in uris:
        if uri.startswith("s3://"):
            key = uri.removeprefix("s3://").partition("/")[2]
            if len(key.encode()) > S3_MAX_KEY_BYTES:
                problems.append(
                    f"{_shown(uri, 80)}: S3 key of {len(key.encode())} bytes, over the "
                    f"{S3_MAX_KEY_BYTES}-byte limit"
                )
            continue
        *dirs, name = uri.split("/")
        sizes = [len(part.encode()) for part in dirs] + [len(name.encode()) + LOCAL_TEMP_BYTES]
        if max(sizes) > MAX_NAME_BYTES:
            problems.append(
                f"{_shown(uri, 80)}: a path segment of {max(sizes)} bytes, over the "
                f"{MAX_NAME_BYTES}-byte file name limit"
            )
    return problems
