"""The routing policy: tiers, models, prices, thresholds, retry and limits.

A policy is a YAML file validated into frozen pydantic models. Its version is the
hash of its normalised content (defaults left out), so two files that mean the same
thing have the same ``policy_version`` and any change of meaning gives a new one. The
version is stamped on every routed row.
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from importlib import resources
from itertools import pairwise
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from routing.batching import BatchSpec
from routing.dedupe import DedupeSpec
from routing.errors import PolicyError
from routing.experiments import ExperimentSpec, check_arms
from routing.explore import REFERENCE, ExploreSpec
from routing.frozen import Frozen
from routing.gaming import GamingSpec
from routing.minimise import MinimiseSpec
from routing.prices import fill_prices
from routing.resilience import BreakerSpec, BudgetSpec, CascadeSpec
from routing.rules import EntitlementsSpec, PiiSpec, RuleSpec, check_rules

SIMULATED = "simulated"
# Part of every policy version: bump it when a field's default changes meaning.
POLICY_FORMAT = 1
# Result part names used by the pipeline besides tier names.
RESERVED_TIER_NAMES = frozenset({"rejected", "dedupe"})
_MTOK = Decimal(1_000_000)


class ProviderSpec(Frozen):
    """An endpoint speaking a provider wire protocol: ``openai`` (chat completions; the
    base URL ends in ``/v1``) or ``anthropic`` (Messages; the base URL is the API root,
    e.g. ``https://api.anthropic.com``)."""

    kind: Literal["openai", "anthropic"] = "openai"
    base_url: str
    api_key_env: str | None = None
    timeout_s: float = Field(60.0, gt=0)

    @property
    def simulated(self) -> bool:
        return self.base_url == SIMULATED


class ModelSpec(Frozen):
    """A model and its prices in USD per million tokens (written here, or taken from the
    policy's price table by ``price_key``, default the model's name: routing.prices)."""

    name: str
    provider: str
    price_key: str | None = None
    input_per_mtok: Decimal = Field(ge=0)
    output_per_mtok: Decimal = Field(ge=0)
    batch_input_per_mtok: Decimal | None = Field(
        None, ge=0, description="the batch API's input price (default: the price table's)"
    )
    batch_output_per_mtok: Decimal | None = Field(
        None, ge=0, description="the batch API's output price (default: the price table's)"
    )
    cache_read_per_mtok: Decimal | None = Field(
        None,
        ge=0,
        description="price of cached input tokens (prompt caching; default: the price "
        "table's cache_read_input_token_cost, else the input price)",
    )
    cache_write_per_mtok: Decimal | None = Field(
        None,
        ge=0,
        description="price of input tokens written to the provider's cache (Anthropic; "
        "default: the price table's cache_creation_input_token_cost, else the input price)",
    )
    reasoning: bool = Field(
        False,
        description="a reasoning model (o1, o3, gpt-5…): its output cap is sent as "
        "max_completion_tokens, which it takes instead of max_tokens (default: the price "
        "table's supports_reasoning, when the table fills the model's prices)",
    )
    rpm: int | None = Field(None, gt=0, description="requests per minute, all workers together")
    tpm: int | None = Field(None, gt=0, description="tokens per minute, all workers together")

    @property
    def input_per_token(self) -> Decimal:
        return self.input_per_mtok / _MTOK

    @property
    def output_per_token(self) -> Decimal:
        return self.output_per_mtok / _MTOK

    @property
    def has_batch_prices(self) -> bool:
        return self.batch_input_per_mtok is not None and self.batch_output_per_mtok is not None

    def cache_per_token(self, *, batch: bool = False) -> tuple[Decimal, Decimal]:
        """(cached read, cache write) USD per input token: their prices, else the input
        price; in batch mode scaled by the batch discount of the input price."""
        per_in = self.input_per_token
        read = per_in if self.cache_read_per_mtok is None else self.cache_read_per_mtok / _MTOK
        write = per_in if self.cache_write_per_mtok is None else self.cache_write_per_mtok / _MTOK
        if batch and per_in:
            ratio = self.per_token(batch=True)[0] / per_in
            read, write = read * ratio, write * ratio
        return read, write

    def per_token(self, *, batch: bool = False) -> tuple[Decimal, Decimal]:
        """(input, output) USD per token, at the batch API's prices when ``batch``."""
        if not batch:
            return self.input_per_token, self.output_per_token
        if self.batch_input_per_mtok is None or self.batch_output_per_mtok is None:
            raise PolicyError(f"model {self.name!r} has no batch price")
        return self.batch_input_per_mtok / _MTOK, self.batch_output_per_mtok / _MTOK


class TierSpec(Frozen):
    """One tier: its models (first is primary), score threshold, token limits, concurrency."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    models: tuple[ModelSpec, ...] = Field(min_length=1)
    max_score: float | None = Field(None, ge=0, le=1)
    max_input_tokens: int = Field(128_000, gt=0)
    max_output_tokens: int = Field(1024, gt=0)
    concurrency: int = Field(16, gt=0, le=1024)
    pii_allowed: bool = Field(False, description="may receive prompts in which PII was found")
    truncate_input: bool = Field(
        False, description="cut a prompt over max_input_tokens to fit (keeps system + end)"
    )
    fallback: tuple[str, ...] = Field(
        (), description="tiers that serve this tier's prompts while all its models are down"
    )
    cascade: CascadeSpec | None = None
    mode: Literal["realtime", "batch"] = Field(
        "realtime",
        description="batch: the tier's prompts go through the provider's batch API "
        "(the first model's, at its batch price; answers within 24 h)",
    )
    batch: BatchSpec = BatchSpec()

    @property
    def primary(self) -> ModelSpec:
        return self.models[0]

    @property
    def batched(self) -> bool:
        return self.mode == "batch"


class RetrySpec(Frozen):
    max_attempts: int = Field(3, ge=1, le=10)
    base_delay_s: float = Field(0.2, ge=0)
    max_delay_s: float = Field(8.0, ge=0)
    job_budget: float = Field(
        0.10, ge=0, le=10, description="retries per job ≤ this fraction of its prompts"
    )


class PricesSpec(Frozen):
    """A LiteLLM-format price table for models that do not state their prices."""

    table: str | None = None


class LimitsSpec(Frozen):
    """Input limits: per row (a row over them is rejected) and per file / job (checked
    at plan time from sizes and Parquet footers; the whole input is refused)."""

    max_prompt_chars: int = Field(200_000, gt=0)
    max_metadata_bytes: int = Field(65_536, gt=0)
    max_file_bytes: int = Field(10 * 1024**3, gt=0)
    max_rows_per_job: int = Field(100_000_000, gt=0)


class CacheSpec(Frozen):
    """The cross-job response cache (Redis; in memory for the local executor): an answer is
    reused for the same model, generation parameters and normalised (system, prompt) text
    within ``ttl_s``. Per tenant unless ``shared_across_tenants``."""

    enabled: bool = True
    ttl_s: int = Field(86_400, gt=0)
    shared_across_tenants: bool = False


class ClassifierSpec(Frozen):
    """Which scorer computes ``complexity_score``: the built-in heuristic (no training), or
    a router trained by ``batch-router train`` (``path``: a local file or an ``s3://`` URI;
    a relative path is relative to the policy file). The producer copies the model into
    the job at submit time, so a job is scored by one model from start to finish."""

    kind: Literal["heuristic", "learned"] = "heuristic"
    path: str | None = None

    @model_validator(mode="after")
    def _check(self) -> ClassifierSpec:
        if self.kind == "learned" and not self.path:
            raise ValueError("a learned classifier needs `path` (a file from batch-router train)")
        if self.kind == "heuristic" and self.path:
            raise ValueError("the heuristic classifier takes no `path`; use kind: learned")
        return self


class Policy(Frozen):
    """A whole routing policy. Tiers are ordered cheapest first."""

    name: str = "default"
    providers: dict[str, ProviderSpec]
    tiers: tuple[TierSpec, ...] = Field(min_length=1)
    retry: RetrySpec = RetrySpec()
    limits: LimitsSpec = LimitsSpec()
    rules: tuple[RuleSpec, ...] = ()
    entitlements: EntitlementsSpec = EntitlementsSpec()
    pii: PiiSpec = PiiSpec()
    classifier: ClassifierSpec = ClassifierSpec()
    prices: PricesSpec = PricesSpec()
    budgets: BudgetSpec = BudgetSpec()
    cache: CacheSpec = CacheSpec()
    dedupe: DedupeSpec = DedupeSpec()
    breaker: BreakerSpec = BreakerSpec()
    gaming: GamingSpec = GamingSpec()
    minimise: tuple[MinimiseSpec, ...] = ()
    explore: ExploreSpec = ExploreSpec()
    experiment: ExperimentSpec | None = None

    @model_validator(mode="after")
    def _check(self) -> Policy:
        names = [t.name for t in self.tiers]
        if RESERVED_TIER_NAMES & set(names):
            raise ValueError(f"tier names {sorted(RESERVED_TIER_NAMES)} are reserved")
        if len(set(names)) != len(names):
            raise ValueError(f"tier names must be unique: {names}")
        for tier in self.tiers:
            for m in tier.models:
                if m.provider not in self.providers:
                    raise ValueError(f"tier {tier.name}: unknown provider {m.provider!r}")
        scores = [t.max_score for t in self.tiers[:-1] if t.max_score is not None]
        if len(scores) != len(self.tiers) - 1:
            raise ValueError("every tier but the last needs max_score")
        if any(a >= b for a, b in pairwise(scores)):
            raise ValueError(f"max_score must strictly increase with the tier order: {scores}")
        check_rules(tuple(names), self.rules, self.entitlements, self.pii)
        for i, tier in enumerate(self.tiers):
            unknown = [f for f in tier.fallback if f not in names or f == tier.name]
            if unknown:
                raise ValueError(f"tier {tier.name}: fallback {unknown} is not another tier")
            if tier.cascade is not None and i == len(self.tiers) - 1:
                raise ValueError(f"tier {tier.name}: the last tier has no next tier to cascade to")
            if tier.cascade is not None and tier.cascade.judge not in (None, *names):
                raise ValueError(
                    f"tier {tier.name}: cascade judge {tier.cascade.judge!r} is not a tier"
                )
            if tier.batched and not tier.primary.has_batch_prices:
                raise ValueError(
                    f"tier {tier.name} is mode: batch but its model {tier.primary.name!r} has no "
                    "batch price: set batch_input_per_mtok and batch_output_per_mtok, or name "
                    "a price table (prices: {table: ...}) whose entry has "
                    "input_cost_per_token_batches / output_cost_per_token_batches"
                )
        unknown = sorted(set(self.budgets.tier) - set(names))
        if unknown:
            raise ValueError(f"budgets.tier: unknown tiers {unknown}")
        if self.gaming.cap is not None and self.gaming.cap not in names:
            raise ValueError(f"gaming.cap: unknown tier {self.gaming.cap!r}")
        unknown = sorted({t for m in self.minimise for t in m.tiers or ()} - set(names))
        if unknown:
            raise ValueError(f"minimise.tiers: unknown tiers {unknown}")
        if self.experiment is not None:
            check_arms(self.experiment, names, scores)  # each arm's thresholds are valid
        if self.explore.judge != REFERENCE and self.explore.judge not in names:
            raise ValueError(
                f"explore.judge: {self.explore.judge!r} is neither 'reference' nor a tier"
            )
        return self

    @property
    def pii_allowed_tiers(self) -> frozenset[str]:
        """Tiers that may receive a prompt with PII (all of them when PII is only recorded)."""
        if self.pii.action == "record":
            return frozenset(self.tier_names)
        return frozenset(t.name for t in self.tiers if t.pii_allowed)

    @property
    def version(self) -> str:
        """Content hash of the normalised policy (stable across formatting and comments).

        Fields left at their defaults are left out, so a file that writes a default and one
        that omits it mean the same and hash the same, and a release that adds a policy
        field (whose default keeps the old behaviour) changes no version: jobs planned
        before an upgrade still run on upgraded workers. A release that changes what a
        default means bumps :data:`POLICY_FORMAT`, which is hashed too."""
        data = {"format": POLICY_FORMAT, "policy": self.model_dump(exclude_defaults=True)}
        canonical = json.dumps(data, sort_keys=True, default=_canonical)
        return "p-" + hashlib.sha256(canonical.encode()).hexdigest()[:12]

    @property
    def tier_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tiers)

    @property
    def baseline_tier(self) -> TierSpec:
        """The most expensive tier (by its primary model's output price, then input price)."""
        return max(self.tiers, key=lambda t: (t.primary.output_per_mtok, t.primary.input_per_mtok))

    def tier(self, name: str) -> TierSpec:
        for t in self.tiers:
            if t.name == name:
                return t
        raise PolicyError(f"unknown tier {name!r}; tiers are {self.tier_names}")

    def to_yaml(self) -> str:
        return str(yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False))


def _canonical(value: object) -> str:
    """JSON form of a non-JSON value for :attr:`Policy.version`: a price is written without
    trailing zeros, so ``"2.00"``, ``"2.0"`` and ``2`` are the same price."""
    if isinstance(value, Decimal):
        return str(value.normalize())
    raise TypeError(f"cannot hash {type(value).__name__} into a policy version")


def parse_policy(text: str, source: str = "<policy>", base_dir: Path | None = None) -> Policy:
    """Parse and validate policy YAML; raise :class:`PolicyError` naming the source.
    Missing model prices come from the policy's price table (relative to ``base_dir``)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: a policy is a YAML mapping")
    data = fill_prices(data, base_dir, source)
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(f"{source}: invalid policy:\n{_explain(exc)}") from exc


def _explain(exc: ValidationError) -> str:
    """One line per problem: where in the YAML, and what is wrong."""
    lines = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        lines.append(f"  {where}: {error['msg']}")
    return "\n".join(lines)


def default_policy_text() -> str:
    return resources.files("routing").joinpath("default_policy.yaml").read_text()


def load_policy(path: str | Path | None = None) -> Policy:
    """Load a policy file, or the packaged default when ``path`` is None."""
    if path is None:
        return parse_policy(default_policy_text(), "default_policy.yaml")
    p = Path(path)
    if not p.is_file():
        raise PolicyError(f"policy file not found: {p}")
    policy = parse_policy(p.read_text(), str(p), p.parent)
    model = policy.classifier.path
    if model and _relative(model):
        resolved = str((p.parent / model).resolve())
        policy = policy.model_copy(
            update={"classifier": policy.classifier.model_copy(update={"path": resolved})}
        )
    tiers = []
    for tier in policy.tiers:
        cascade = tier.cascade
        if cascade is not None and cascade.verifier and _relative(cascade.verifier):
            resolved = str((p.parent / cascade.verifier).resolve())
            tier = tier.model_copy(
                update={"cascade": cascade.model_copy(update={"verifier": resolved})}
            )
        tiers.append(tier)
    return policy.model_copy(update={"tiers": tuple(tiers)})


def _relative(path: str) -> bool:
    return "://" not in path and not Path(path).is_absolute()
