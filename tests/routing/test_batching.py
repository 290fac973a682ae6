"""Provider batch mode, the pure part: custom ids, splitting a tier batch into provider
batches, the ``batch:`` policy section and provider limits, batch prices (policy, price
table) and batch costs."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from routing.batching import (
    MB,
    PROVIDER_LIMITS,
    BatchSpec,
    FileLimits,
    RequestId,
    job_hash,
    parse_request_id,
    request_id,
    split,
)
from routing.cost import QUANTUM, call_cost
from routing.errors import PolicyError
from routing.names import JOB_ID_PATTERN, MAX_JOB_ID_CHARS, validate_job_id
from routing.policy import ModelSpec, Policy, TierSpec, load_policy, parse_policy
from tests import data, policies
from tests.routing.helpers import PROPERTY

ID_ALPHABET = re.compile(r"[A-Za-z0-9-]+")
LONGEST_JOB_ID = validate_job_id("j" * MAX_JOB_ID_CHARS)
DEFAULT_MODELS = ("gpt-4o-mini", "gpt-4.1-mini", "gpt-4.1")


# ---------------------------------------------------------------- custom ids


def test_a_custom_id_round_trips() -> None:
    rid = request_id("20261128T021500Z-3fa2c1d4", "c3/r17", 2, 1)
    assert rid == RequestId(job_hash("20261128T021500Z-3fa2c1d4"), 3, 17, 2, 1)
    assert rid.ref == "c3/r17"
    assert str(rid) == f"j{job_hash('20261128T021500Z-3fa2c1d4')}-c3-r17-n2-a1"
    assert parse_request_id(str(rid)) == rid
    assert parse_request_id(str(rid), "20261128T021500Z-3fa2c1d4") == rid


@pytest.mark.parametrize(
    ("ref", "round_", "attempt"),
    [
        ("c0/r0", 0, 0),
        ("c1/r2", 1, 3),
        ("c999999/r999999999", 99, 10),  # a million chunks, a billion rows
        (f"c{10**12}/r{10**12}", 10**6, 10**6),
    ],
)
def test_custom_ids_are_short_plain_ascii(ref: str, round_: int, attempt: int) -> None:
    rid = request_id(LONGEST_JOB_ID, ref, round_, attempt)
    custom_id = str(rid)
    assert ID_ALPHABET.fullmatch(custom_id), custom_id
    assert len(custom_id) <= 64, (len(custom_id), custom_id)
    assert parse_request_id(custom_id, LONGEST_JOB_ID) == rid
    assert rid.ref == ref


def test_every_attempt_and_round_gets_its_own_id() -> None:
    ids = {
        str(request_id("job-1", f"c{c}/r{r}", n, a))
        for c in range(3)
        for r in range(3)
        for n in range(1, 3)
        for a in range(1, 3)
    }
    assert len(ids) == 3 * 3 * 2 * 2
    # and another job's ids are others
    assert str(request_id("job-1", "c0/r0", 1, 1)) != str(request_id("job-2", "c0/r0", 1, 1))


@given(
    job=st.from_regex(JOB_ID_PATTERN, fullmatch=True),
    numbers=st.tuples(*[st.integers(0, 10**9)] * 4),
)
@PROPERTY
def test_custom_id_round_trip_property(job: str, numbers: tuple[int, int, int, int]) -> None:
    chunk, row, round_, attempt = numbers
    rid = request_id(job, f"c{chunk}/r{row}", round_, attempt)
    custom_id = str(rid)
    assert ID_ALPHABET.fullmatch(custom_id) and len(custom_id) <= 64
    assert parse_request_id(custom_id) == rid
    assert parse_request_id(custom_id, job) == rid
    assert (rid.chunk, rid.row, rid.round, rid.attempt) == numbers


GOOD = str(request_id("job-1", "c1/r2", 1, 1))


@pytest.mark.parametrize(
    "foreign",
    [
        "",
        "request-1",
        "batch_req_abc123",
        "3fa2c1d4-58cc-4372-a567-0e02b2c3d479",
        GOOD + "\n",  # `$` alone would let a trailing newline through
        "\n" + GOOD,
        " " + GOOD,
        GOOD + "-x",
        GOOD.upper(),  # the job hash is lower-case hex
        GOOD.replace("-c1-", "-c01-"),  # not how request_id writes 1: another spelling
        GOOD.replace("-r2-", "-r\u0663-"),  # an Arabic-Indic digit three
        GOOD.replace("-c1-", "-c-1-"),
        GOOD.replace("-n1-", "-n-"),
        GOOD[:-4],  # no attempt
        "j0123456789-c1-r2-n1",
        "j012345678-c1-r2-n1-a1",  # 9-digit hash
        "j0123456789a-c1-r2-n1-a1",  # 11-digit hash
    ],
)
def test_parse_rejects_foreign_ids(foreign: str) -> None:
    assert parse_request_id(foreign) is None


def test_parse_rejects_another_jobs_id() -> None:
    other = str(request_id("job-2", "c1/r2", 1, 1))
    assert parse_request_id(other) is not None  # well formed …
    assert parse_request_id(other, "job-1") is None  # … but not this job's
    assert parse_request_id(GOOD, "job-1") is not None


@pytest.mark.parametrize(
    ("ref", "round_", "attempt"),
    [
        ("r2/c1", 1, 1),  # parts swapped: would silently name another row
        ("c1", 1, 1),
        ("c1/r2/x", 1, 1),
        ("c-1/r2", 1, 1),
        ("c1/r+2", 1, 1),
        ("c1/r 2", 1, 1),
        ("c01/r2", 1, 1),  # RequestId.ref would not give it back
        ("c1/r2", -1, 1),
        ("c1/r2", 1, -1),
        (f"c{10**30}/r{10**30}", 1, 1),  # longer than 64 characters
    ],
)
def test_request_id_refuses_what_it_cannot_write(ref: str, round_: int, attempt: int) -> None:
    with pytest.raises(ValueError):
        request_id("job-1", ref, round_, attempt)


def test_job_hash_is_ten_lower_hex_digits() -> None:
    assert re.fullmatch(r"[0-9a-f]{10}", job_hash(LONGEST_JOB_ID))
    assert job_hash("job-1") == job_hash("job-1") != job_hash("job-2")


# ---------------------------------------------------------------- split


def _limits(requests: int, size: int) -> FileLimits:
    return FileLimits(requests=requests, bytes=size)


def test_split_empty_input() -> None:
    assert split([], _limits(10, 100)) == []


def test_split_by_request_count() -> None:
    sizes = [1] * 7
    assert split(sizes, _limits(3, 10**6)) == [range(0, 3), range(3, 6), range(6, 7)]
    assert split([1] * 6, _limits(3, 10**6)) == [range(0, 3), range(3, 6)]
    assert split([1] * 3, _limits(3, 10**6)) == [range(0, 3)]
    assert split([1] * 4, _limits(1, 10**6)) == [range(i, i + 1) for i in range(4)]


def test_split_by_bytes_exact_boundaries() -> None:
    # exactly the limit fits, one byte more does not
    assert split([40, 60], _limits(100, 100)) == [range(0, 2)]
    assert split([40, 61], _limits(100, 100)) == [range(0, 1), range(1, 2)]
    assert split([50, 50, 50, 50], _limits(100, 100)) == [range(0, 2), range(2, 4)]
    assert split([100, 1], _limits(100, 100)) == [range(0, 1), range(1, 2)]
    assert split([0, 0, 100, 0], _limits(100, 100)) == [range(0, 4)]


def test_a_single_oversized_request_is_alone() -> None:
    lim = _limits(100, 100)
    assert split([101], lim) == [range(0, 1)]
    assert split([10, 500, 10], lim) == [range(0, 1), range(1, 2), range(2, 3)]
    assert split([500, 500], lim) == [range(0, 1), range(1, 2)]
    assert split([10, 20, 500], lim) == [range(0, 2), range(2, 3)]


def test_split_both_limits_at_once() -> None:
    assert split([10] * 5 + [95] + [1] * 4, _limits(3, 100)) == [
        range(0, 3),
        range(3, 5),
        range(5, 8),  # 95 + 1 + 1 fits 100 bytes, a fourth request does not fit 3
        range(8, 10),
    ]


def test_split_at_the_provider_limits() -> None:
    openai = PROVIDER_LIMITS["openai"]
    ranges = split([1_000] * 120_000, openai)
    assert [len(r) for r in ranges] == [50_000, 50_000, 20_000]
    big = split([4 * MB] * 120, openai)  # 200 MB hold 50 of these
    assert [len(r) for r in big] == [50, 50, 20]


@given(
    sizes=st.lists(st.integers(0, 150), max_size=60),
    requests=st.integers(1, 8),
    size_limit=st.integers(1, 120),
)
@PROPERTY
def test_split_property(sizes: list[int], requests: int, size_limit: int) -> None:
    limits = _limits(requests, size_limit)
    ranges = split(sizes, limits)
    # every index once, in order, no empty range
    assert [i for r in ranges for i in r] == list(range(len(sizes)))
    assert all(len(r) > 0 and r.step == 1 for r in ranges)
    for k, r in enumerate(ranges):
        used = sum(sizes[i] for i in r)
        assert len(r) <= requests
        assert used <= size_limit or len(r) == 1  # a single oversized request alone
        # greedy: a range ends only when the next request would not fit
        if k + 1 < len(ranges):
            nxt = sizes[r.stop]
            assert len(r) == requests or used + nxt > size_limit


# ---------------------------------------------------------------- BatchSpec, limits


def test_provider_limits_are_the_documented_ones() -> None:
    assert PROVIDER_LIMITS["openai"] == FileLimits(requests=50_000, bytes=200 * MB)
    assert PROVIDER_LIMITS["anthropic"] == FileLimits(requests=100_000, bytes=256 * MB)


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_limits_default_to_the_provider(kind: str) -> None:
    assert BatchSpec().limits(kind) == PROVIDER_LIMITS[kind]


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_policy_limits_below_the_provider_are_kept(kind: str) -> None:
    spec = BatchSpec(max_requests_per_file=1_000, max_bytes_per_file=MB)
    assert spec.limits(kind) == FileLimits(requests=1_000, bytes=MB)
    only_requests = BatchSpec(max_requests_per_file=7).limits(kind)
    assert only_requests == FileLimits(requests=7, bytes=PROVIDER_LIMITS[kind].bytes)


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_policy_limits_above_the_provider_are_clamped(kind: str) -> None:
    spec = BatchSpec(max_requests_per_file=10**9, max_bytes_per_file=10**12)
    assert spec.limits(kind) == PROVIDER_LIMITS[kind]


def test_batch_spec_defaults() -> None:
    spec = BatchSpec()
    assert (spec.max_requests_per_file, spec.max_bytes_per_file) == (None, None)
    assert (spec.poll_s, spec.deadline_s, spec.on_expired) == (60.0, 86_400.0, "realtime")


# ---------------------------------------------------------------- policy: mode, batch


def _without_batch_prices(model: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in model.items() if not k.startswith("batch_")}


def test_tiers_are_realtime_by_default(default_policy: Policy) -> None:
    for tier in default_policy.tiers:
        assert tier.mode == "realtime" and not tier.batched
        assert tier.batch == BatchSpec()
        assert tier.primary.has_batch_prices  # the default policy carries them


def test_a_batch_tier_parses() -> None:
    policy = policies.build(
        {"fast": {"mode": "batch", "batch": {"poll_s": 5, "on_expired": "resubmit"}}}
    )
    fast = policy.tier("fast")
    assert fast.batched and fast.mode == "batch"
    assert fast.batch == BatchSpec(poll_s=5, on_expired="resubmit")
    assert not policy.tier("balanced").batched


def test_batch_mode_without_batch_prices_names_tier_and_model() -> None:
    data_ = policies.edited({"balanced": {"mode": "batch"}})
    tier = next(t for t in data_["tiers"] if t["name"] == "balanced")
    tier["models"] = [_without_batch_prices(m) for m in tier["models"]]
    with pytest.raises(PolicyError, match=r"tier balanced is mode: batch.*'gpt-4\.1-mini'"):
        policies.parse(data_)
    # one of the two prices is not enough either
    tier["models"][0]["batch_input_per_mtok"] = "0.2"
    with pytest.raises(PolicyError, match=r"'gpt-4\.1-mini' has no batch price"):
        policies.parse(data_)
    # a realtime tier needs none
    tier["mode"] = "realtime"
    assert not policies.parse(data_).tier("balanced").primary.has_batch_prices


def test_batch_prices_from_the_policy() -> None:
    data_ = policies.edited({"fast": {"mode": "batch"}})
    fast = data_["tiers"][0]["models"][0]
    fast.update(batch_input_per_mtok="0.05", batch_output_per_mtok="0.2")
    model = policies.parse(data_).tier("fast").primary
    assert (model.batch_input_per_mtok, model.batch_output_per_mtok) == (
        Decimal("0.05"),
        Decimal("0.2"),
    )


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"mode": "turbo"}, "tiers.0.mode"),
        ({"batch": {"poll_s": 0}}, "tiers.0.batch.poll_s"),
        ({"batch": {"poll_s": 86_401}}, "tiers.0.batch.poll_s"),
        ({"batch": {"on_expired": "retry"}}, "tiers.0.batch.on_expired"),
        ({"batch": {"deadline_s": -1}}, "tiers.0.batch.deadline_s"),
        ({"batch": {"max_requests_per_file": 0}}, "tiers.0.batch.max_requests_per_file"),
        ({"batch": {"max_bytes_per_file": -5}}, "tiers.0.batch.max_bytes_per_file"),
        ({"batch": {"completion_window": "48h"}}, "tiers.0.batch.completion_window"),
    ],
)
def test_invalid_batch_settings_name_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(PolicyError, match=rf"test-policy\.yaml: invalid policy:\n.*{field}:"):
        policies.build({"fast": changes})


@pytest.mark.parametrize("field", ["batch_input_per_mtok", "batch_output_per_mtok"])
def test_a_negative_batch_price_is_refused(field: str) -> None:
    data_ = policies.edited()
    data_["tiers"][0]["models"][0][field] = "-0.1"
    with pytest.raises(PolicyError, match=rf"tiers\.0\.models\.0\.{field}:"):
        policies.parse(data_)


def test_defaults_written_out_keep_the_policy_version(default_policy: Policy) -> None:
    reference = policies.build().version
    assert reference == default_policy.version
    defaults = {"poll_s": 60, "deadline_s": 86400, "on_expired": "realtime"}
    for fields in (
        {"mode": "realtime"},
        {"batch": {}},
        {"mode": "realtime", "batch": defaults},
        {"batch": {**defaults, "max_requests_per_file": None, "max_bytes_per_file": None}},
    ):
        assert policies.build(policies.every_tier(**fields)).version == reference, fields


@pytest.mark.parametrize(
    "changes",
    [
        {"mode": "batch"},
        {"batch": {"poll_s": 61}},
        {"batch": {"on_expired": "fail"}},
        {"batch": {"max_requests_per_file": 1000}},
    ],
)
def test_batch_settings_change_the_policy_version(
    default_policy: Policy, changes: dict[str, Any]
) -> None:
    assert policies.build({"fast": changes}).version != default_policy.version


def test_a_batch_policy_survives_the_to_yaml_round_trip() -> None:
    policy = policies.build(policies.every_tier(mode="batch", batch={"poll_s": 5}))
    again = parse_policy(policy.to_yaml())
    assert again == policy and again.version == policy.version


# ---------------------------------------------------------------- prices from the table

TABLE_POLICY = """
name: batch-priced
prices: {table: model_prices.json}
providers:
  p: {kind: openai, base_url: simulated}
tiers:
  - name: fast
    mode: batch
    models: [{name: gpt-4o-mini, provider: p}]
    max_score: 0.5
  - name: expert
    models: [{name: gpt-4.1, provider: p}]
"""


def _table_policy(text: str = TABLE_POLICY) -> Policy:
    return parse_policy(text, "batch-policy.yaml", base_dir=data.require(data.PRICES).parent)


def test_batch_prices_come_from_the_table() -> None:
    policy = _table_policy()
    fast = policy.tier("fast").primary
    assert (fast.input_per_mtok, fast.output_per_mtok) == (Decimal("0.15"), Decimal("0.6"))
    assert isinstance(fast.batch_input_per_mtok, Decimal)
    assert isinstance(fast.batch_output_per_mtok, Decimal)
    assert (fast.batch_input_per_mtok, fast.batch_output_per_mtok) == (
        Decimal("0.075"),
        Decimal("0.30"),
    )
    # a realtime tier's model gets no batch price from the table: its version is as before
    expert = policy.tier("expert").primary
    assert not expert.has_batch_prices


def test_a_table_entry_without_batch_prices_is_an_error_naming_the_model() -> None:
    text = TABLE_POLICY.replace("name: gpt-4o-mini,", "name: gpt-4-turbo,")
    with pytest.raises(PolicyError, match=r"tier fast is mode: batch.*'gpt-4-turbo'"):
        _table_policy(text)
    # an entry with only one of the two (the table has some) is one too
    half = TABLE_POLICY.replace("name: gpt-4o-mini,", "name: azure/eu/gpt-4o-mini,")
    with pytest.raises(PolicyError, match=r"'azure/eu/gpt-4o-mini' has no batch price"):
        _table_policy(half)


def test_a_batch_model_not_in_the_table_is_an_error_naming_it() -> None:
    text = TABLE_POLICY.replace(
        "name: gpt-4o-mini,", 'name: my-model, input_per_mtok: "1", output_per_mtok: "2",'
    )
    with pytest.raises(PolicyError, match=r"'my-model'"):
        _table_policy(text)


def test_policy_batch_prices_win_over_the_table() -> None:
    text = TABLE_POLICY.replace(
        "name: gpt-4o-mini,", 'name: gpt-4o-mini, batch_output_per_mtok: "0.25",'
    )
    fast = _table_policy(text).tier("fast").primary
    assert fast.batch_output_per_mtok == Decimal("0.25")  # written: kept
    assert fast.batch_input_per_mtok == Decimal("0.075")  # missing: from the table
    both = TABLE_POLICY.replace(
        "name: gpt-4o-mini,",
        'name: gpt-4o-mini, batch_input_per_mtok: "0.01", batch_output_per_mtok: "0.02",',
    )
    fast = _table_policy(both).tier("fast").primary
    assert (fast.batch_input_per_mtok, fast.batch_output_per_mtok) == (
        Decimal("0.01"),
        Decimal("0.02"),
    )


def test_a_batch_tiers_other_models_need_no_table_entry() -> None:
    """Only the primary model of a batch tier must have a batch price; a second model with
    its prices written is fine without a table entry, as it is without a table."""
    text = TABLE_POLICY.replace(
        "models: [{name: gpt-4o-mini, provider: p}]",
        "models: [{name: gpt-4o-mini, provider: p}, "
        '{name: local-model, provider: p, input_per_mtok: "1", output_per_mtok: "1"}]',
    )
    fast = _table_policy(text).tier("fast")
    assert fast.primary.has_batch_prices and not fast.models[1].has_batch_prices
    # a second model that is in the table takes its batch prices too
    text = TABLE_POLICY.replace(
        "models: [{name: gpt-4o-mini, provider: p}]",
        "models: [{name: gpt-4o-mini, provider: p}, {name: gpt-4.1-mini, provider: p}]",
    )
    second = _table_policy(text).tier("fast").models[1]
    assert (second.batch_input_per_mtok, second.batch_output_per_mtok) == (
        Decimal("0.2"),
        Decimal("0.8"),
    )


def test_a_table_batch_policy_survives_the_to_yaml_round_trip() -> None:
    policy = _table_policy()
    again = parse_policy(policy.to_yaml())  # no base_dir: every price is in the stored policy
    assert again == policy and again.version == policy.version


def test_the_default_batch_prices_agree_with_the_table(default_policy: Policy) -> None:
    table_text = (
        "prices: {table: model_prices.json}\n"
        "providers: {p: {kind: openai, base_url: simulated}}\n"
        "tiers:\n"
        + "".join(
            f"  - {{name: t{i}, mode: batch, models: [{{name: {m}, provider: p}}]"
            + (f", max_score: 0.{i + 1}}}\n" if i < 2 else "}\n")
            for i, m in enumerate(DEFAULT_MODELS)
        )
    )
    from_table = _table_policy(table_text)
    for ours, theirs in zip(default_policy.tiers, from_table.tiers, strict=True):
        a, b = ours.primary, theirs.primary
        assert a.name == b.name
        assert (a.batch_input_per_mtok, a.batch_output_per_mtok) == (
            b.batch_input_per_mtok,
            b.batch_output_per_mtok,
        ), a.name


# ---------------------------------------------------------------- cost


def _model(**prices: str) -> ModelSpec:
    return ModelSpec.model_validate({"name": "m", "provider": "p", **prices})


def test_batch_call_cost_is_exact() -> None:
    model = _model(
        input_per_mtok="0.15",
        output_per_mtok="0.60",
        batch_input_per_mtok="0.075",
        batch_output_per_mtok="0.30",
    )
    cost = call_cost(model, 1_000, 500, batch=True)
    assert cost == Decimal("0.000225")  # 1000 × 0.075e-6 + 500 × 0.30e-6
    assert cost.as_tuple().exponent == QUANTUM.as_tuple().exponent
    assert call_cost(model, 1_000, 500) == Decimal("0.00045")
    assert call_cost(model, 1, 1, batch=True) == Decimal("0.000000375")
    assert call_cost(model, 0, 0, batch=True) == Decimal(0)
    # 1 token at 1e-7 $/Mtok is 1e-13: below the quantum, rounds half-even to 0
    tiny = _model(
        input_per_mtok="1",
        output_per_mtok="1",
        batch_input_per_mtok="1e-7",
        batch_output_per_mtok="5e-7",
    )
    assert call_cost(tiny, 1, 0, batch=True) == Decimal("0E-12")
    assert call_cost(tiny, 0, 1, batch=True) == Decimal("0E-12")  # 5e-13 → 0 (half-even)
    assert call_cost(tiny, 0, 3, batch=True) == Decimal("2E-12")  # 1.5e-12 → 2e-12


@pytest.mark.parametrize("name", DEFAULT_MODELS)
def test_default_batch_cost_is_half_the_realtime_cost(default_policy: Policy, name: str) -> None:
    model = next(t.primary for t in default_policy.tiers if t.primary.name == name)
    for tokens_in, tokens_out in [(0, 0), (1, 1), (1_000, 500), (123_457, 2_049), (10**9, 10**7)]:
        batch = call_cost(model, tokens_in, tokens_out, batch=True)
        realtime = call_cost(model, tokens_in, tokens_out)
        assert batch * 2 == realtime, (name, tokens_in, tokens_out)
        assert batch.as_tuple().exponent == realtime.as_tuple().exponent == -12


@given(tokens_in=st.integers(0, 10**9), tokens_out=st.integers(0, 10**8))
@PROPERTY
def test_default_batch_cost_is_half_property(tokens_in: int, tokens_out: int) -> None:
    for tier in load_policy().tiers:
        model = tier.primary
        assert call_cost(model, tokens_in, tokens_out, batch=True) * 2 == call_cost(
            model, tokens_in, tokens_out
        )


def test_per_token_without_batch_prices_raises() -> None:
    model = _model(input_per_mtok="2", output_per_mtok="8")
    assert model.per_token() == (Decimal("0.000002"), Decimal("0.000008"))
    with pytest.raises(PolicyError, match=r"model 'm' has no batch price"):
        model.per_token(batch=True)
    with pytest.raises(PolicyError, match="no batch price"):
        call_cost(model, 1, 1, batch=True)
    half = _model(input_per_mtok="2", output_per_mtok="8", batch_input_per_mtok="1")
    assert not half.has_batch_prices
    with pytest.raises(PolicyError):
        half.per_token(batch=True)


def test_per_token_batch_prices() -> None:
    model = _model(
        input_per_mtok="2", output_per_mtok="8", batch_input_per_mtok="1", batch_output_per_mtok="4"
    )
    assert model.per_token(batch=True) == (Decimal("0.000001"), Decimal("0.000004"))


def test_tier_spec_batched_follows_mode() -> None:
    model = {"name": "m", "provider": "p", "input_per_mtok": "1", "output_per_mtok": "1"}
    assert not TierSpec.model_validate({"name": "t", "models": [model]}).batched
    assert TierSpec.model_validate({"name": "t", "models": [model], "mode": "batch"}).batched


def test_yaml_round_trip_of_batch_section_keeps_types() -> None:
    # a YAML int for a float field and back: same spec, same dump
    spec = BatchSpec.model_validate(yaml.safe_load("{poll_s: 30, deadline_s: 3600}"))
    assert spec == BatchSpec(poll_s=30.0, deadline_s=3600.0)
    assert BatchSpec.model_validate(spec.model_dump(mode="json")) == spec
