"""The per-process resources every stage is handed (:class:`Runtime`), and where a stage
sends what it produces (:class:`Sink`).

The Celery tasks (workers/tasks.py) and the local executor (workers/local.py) each build
one Runtime per process and pass it down to the stages (workers/stages.py) and their
helpers (dedupe, prompt ids, reconcile, finalize); they depend on this module, not on the
stages that call them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from routing.classify import Scorer
from routing.errors import PolicyError
from routing.plan import JobContext
from routing.policy import Policy, parse_policy
from workers.classifier import job_scorer
from workers.guards import Guards
from workers.jobstate import JobTracker
from workers.settings import Settings
from workers.storage import Storage


class Sink(Protocol):
    """Where routed batches and the finalize signal go."""

    def dispatch(self, ctx: JobContext, batch: dict[str, Any]) -> None: ...
    def finalize(self, ctx: JobContext) -> None: ...


@dataclass
class Runtime:
    """Per-process resources, built once and passed to every stage."""

    settings: Settings
    storage: Storage
    tracker: JobTracker
    scorer: Scorer | None = None  # overrides the policy's classifier (tests, benchmarks)
    _policies: dict[str, Policy] = field(default_factory=dict)
    _scorers: dict[str, Scorer] = field(default_factory=dict)
    _guards: dict[str, Guards] = field(default_factory=dict)

    def guards(self, policy: Policy) -> Guards:
        """Budget ledger, breakers, rate limits and retry budget (per policy, per process)."""
        if policy.version not in self._guards:
            self._guards[policy.version] = Guards.for_policy(self.settings, policy)
        return self._guards[policy.version]

    def scorer_for(self, ctx: JobContext, policy: Policy) -> Scorer:
        """The job's scorer, loaded once per process (a job's model copy never changes)."""
        if self.scorer is not None:
            return self.scorer
        key = ctx.classifier_uri or policy.classifier.kind
        if key not in self._scorers:
            self._scorers[key] = job_scorer(self.storage, ctx, policy)
        return self._scorers[key]

    def policy(self, ctx: JobContext) -> Policy:
        """The job's policy, read once per process from the copy stored with the job."""
        if ctx.policy_version not in self._policies:
            text = self.storage.read_bytes(ctx.policy_uri).decode()
            policy = parse_policy(text, ctx.policy_uri)
            if policy.version != ctx.policy_version:
                raise PolicyError(
                    f"{ctx.policy_uri}: version {policy.version} != job's {ctx.policy_version}"
                )
            self._policies[ctx.policy_version] = policy
        return self._policies[ctx.policy_version]
