"""How a cascade tier's answers are scored: logprob confidence, or the job's copy of a
verifier (``cascade.verifier``, trained by ``batch-router train --verifier``).

The planner copies each verifier a policy names to ``_job/verifier-<tier>.zip`` and checks
that it loads and is a verifier (:func:`copy_verifiers`); workers load that copy once per
process (:class:`AnswerCheck`, built by ``Runtime.answer_check``). The scores themselves
are :mod:`routing.confidence`'s: one per answer, higher is better, and the answer goes on to
the next tier when its score is below ``cascade.threshold``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from routing.confidence import confidence, verifier_scores
from routing.errors import ConfigError
from routing.plan import JobContext
from routing.policy import Policy, TierSpec
from workers import layout
from workers.classifier import scorer_from_bytes
from workers.storage import Storage

if TYPE_CHECKING:
    from routing.learned.scorer import LearnedScorer
    from workers.provider import Completion

LOGPROBS = "logprobs"  # confidence_source of a min_confidence cascade


def read_verifier(storage: Storage, uri: str) -> tuple[bytes, LearnedScorer]:
    """The verifier's bytes and the model they load into; ConfigError unless it is one."""
    if not storage.exists(uri):
        raise ConfigError(
            f"cascade verifier {uri}: no such file (write one with `batch-router train --verifier`)"
        )
    data = storage.read_bytes(uri)
    model = scorer_from_bytes(data, uri)
    if not getattr(model, "verifier", False):
        raise ConfigError(
            f"cascade verifier {uri}: a prompt-only router, not a verifier (train it with "
            "--verifier --responses …)"
        )
    return data, model  # type: ignore[return-value]


def copy_verifiers(storage: Storage, policy: Policy, root: str) -> list[tuple[str, bytes]]:
    """(the job's copy, bytes) of every tier's verifier, each checked; nothing written."""
    out = []
    for tier in policy.tiers:
        if tier.cascade is not None and tier.cascade.verifier is not None:
            data, _ = read_verifier(storage, tier.cascade.verifier)
            out.append((layout.verifier(root, tier.name), data))
    return out


class AnswerCheck:
    """Scores a cascade tier's answers for one job (see the module doc)."""

    def __init__(self, storage: Storage | None, ctx: JobContext) -> None:
        self._storage, self._ctx = storage, ctx
        self._models: dict[str, LearnedScorer] = {}

    def _model(self, tier: TierSpec) -> LearnedScorer:
        if tier.name not in self._models:
            if self._storage is None:
                raise ConfigError(f"tier {tier.name}: no store to read the job's verifier from")
            uri = layout.verifier(self._ctx.job_root, tier.name)
            self._models[tier.name] = read_verifier(self._storage, uri)[1]
        return self._models[tier.name]

    def preload(self, tier: TierSpec) -> None:
        """Load the tier's verifier now (a Caller does, off its I/O loop), when there is a
        store to read it from."""
        if self._storage is not None:
            self._model(tier)

    def source(self, tier: TierSpec) -> str:
        """What scored the tier's answers: ``logprobs`` or ``verifier:<version>``."""
        assert tier.cascade is not None
        if tier.cascade.verifier is None:
            return LOGPROBS
        return f"verifier:{self._model(tier).version}"

    def scores(
        self, tier: TierSpec, prompts: Sequence[str], done: Sequence[Completion]
    ) -> list[float]:
        """One score per answer of ``tier`` (a tier with a cascade), higher is better."""
        assert tier.cascade is not None
        if tier.cascade.verifier is None:
            return [confidence(d.text, d.finish_reason, d.logprobs) for d in done]
        return verifier_scores(
            self._model(tier),
            prompts,
            [d.text for d in done],
            [d.finish_reason for d in done],
            [d.logprobs for d in done],
        )
