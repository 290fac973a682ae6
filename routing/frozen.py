"""The one base of the project's frozen value models (policy sections, plans, specs)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Frozen(BaseModel):
    """Immutable, and strict about its fields: an unknown key in a policy or a message is an
    error, not silently ignored."""

    model_config = ConfigDict(frozen=True, extra="forbid")
