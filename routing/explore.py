"""Exploration (pure): which answered prompts are also asked of a neighbouring tier, so that
the job's own traffic yields judged labels (issue 16; ``docs/training.md``).

``explore: {rate: 0.1, judge: reference}`` in the policy: a deterministic sample of the
job's distinct prompts — :func:`sampled`, a hash of the job id and the prompt text below
``rate``, so a redelivered task picks the same rows and another night another sample — is
answered by its routed tier *and* by the tier next to it (:func:`partner`: the next dearer
tier the prompt is allowed, else the next cheaper one with ``direction: down`` or when there
is none above). Both calls are paid and attributed to the row. Each answer is then graded
(``routing.judge``): by the ``reference`` column when the input has one (``judge:
reference``, exact or numeric match), or by the primary model of a named tier (``judge:
<tier>``, the LLM-judge protocol; those calls are paid too). The two graded answers become
two label rows (``workers/explore.py``) that ``batch-router feedback`` collects and
``batch-router train --feedback`` learns from.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Literal

from pydantic import Field, model_validator

from routing.frozen import Frozen

REFERENCE = "reference"  # judge: grade by the input's reference column
REFERENCE_COLUMN = "reference"


class ExploreSpec(Frozen):
    """The policy's ``explore:`` section (see the module doc); ``rate: 0`` (default) is off."""

    rate: float = Field(0.0, ge=0, le=1)
    judge: str = REFERENCE  # "reference" or a tier name (its primary model grades)
    direction: Literal["up", "down"] = "up"  # the preferred neighbour of the routed tier
    max_rows: int | None = Field(None, ge=0)  # per tier batch: a cap on exploration spend

    @model_validator(mode="after")
    def _check(self) -> ExploreSpec:
        if not self.judge.strip():
            raise ValueError("explore.judge: 'reference' or a tier name")
        return self

    @property
    def enabled(self) -> bool:
        return self.rate > 0 and self.max_rows != 0


def sampled(job_id: str, prompt: str, rate: float) -> bool:
    """Whether the prompt is explored in this job: blake2b(job id, prompt) below ``rate``."""
    if rate <= 0:
        return False
    digest = hashlib.blake2b(
        f"{job_id}\x1f{prompt}".encode("utf-8", "surrogatepass"), digest_size=8
    ).digest()
    return int.from_bytes(digest, "big") / 2**64 < rate


def partner(
    tier: str, names: Sequence[str], allowed: Sequence[str], direction: str = "up"
) -> str | None:
    """The tier that answers an explored prompt routed to ``tier`` too: the nearest dearer
    allowed tier (``up``) or cheaper one (``down``), the other way when there is none."""
    i = names.index(tier)
    up = [n for n in names[i + 1 :] if n in allowed]
    down = [n for n in reversed(names[:i]) if n in allowed]
    order = (up, down) if direction == "up" else (down, up)
    for side in order:
        if side:
            return side[0]
    return None
