"""The routing policy: loading, validation errors, content-hash version, lookups."""

from __future__ import annotations

import copy
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from routing import policy as policy_module
from routing.errors import PermanentError, PolicyError
from routing.policy import Policy, default_policy_text, load_policy, parse_policy

# ---------------------------------------------------------------- the packaged default


def test_default_policy_loads_with_three_ordered_tiers(default_policy: Policy) -> None:
    assert default_policy.tier_names == ("fast", "balanced", "expert")
    assert [t.max_score for t in default_policy.tiers[:-1]] == [0.30, 0.60]
    assert default_policy.providers["sim"].simulated
    assert all(t.primary.provider == "sim" for t in default_policy.tiers)


def test_default_policy_prices_are_exact_decimals(default_policy: Policy) -> None:
    fast = default_policy.tier("fast").primary
    assert fast.input_per_mtok == Decimal("0.15")
    assert fast.input_per_token == Decimal("0.00000015")
    assert fast.output_per_token == Decimal("0.0000006")


def test_load_policy_without_path_is_the_packaged_default(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(default_policy_text())
    assert load_policy(path) == load_policy()
    assert load_policy(str(path)).version == load_policy().version


def test_policy_is_frozen(default_policy: Policy) -> None:
    with pytest.raises(ValidationError):
        default_policy.name = "other"  # type: ignore[misc]


# ---------------------------------------------------------------- version: stable


def _version(data: Any) -> str:
    return parse_policy(data if isinstance(data, str) else yaml.safe_dump(data)).version


def test_version_looks_like_a_short_hash(default_policy: Policy) -> None:
    assert re.fullmatch(r"p-[0-9a-f]{12}", default_policy.version)


def test_version_ignores_comments_and_blank_lines() -> None:
    text = default_policy_text()
    stripped = "\n".join(
        line.split("#", 1)[0].rstrip() for line in text.splitlines() if line.split("#", 1)[0]
    )
    commented = "# a new header comment\n\n" + text.replace("tiers:", "tiers:   # cheapest first")
    assert "#" not in stripped
    assert _version(stripped) == _version(text) == _version(commented)


def test_version_ignores_yaml_style_and_key_order(policy_data: dict[str, Any]) -> None:
    reference = _version(default_policy_text())
    assert _version(yaml.safe_dump(policy_data, default_flow_style=True)) == reference
    assert _version(yaml.safe_dump(policy_data, sort_keys=True, indent=4)) == reference
    assert _version(json.dumps(policy_data)) == reference  # JSON is YAML too
    reordered = dict(reversed(list(policy_data.items())))
    reordered["tiers"] = [dict(reversed(list(t.items()))) for t in policy_data["tiers"]]
    assert _version(reordered) == reference


def test_version_ignores_how_a_price_is_written(policy_data: dict[str, Any]) -> None:
    reference = _version(policy_data)
    expert = policy_data["tiers"][2]["models"][0]
    for spelling in ("2.0", "2", 2, 2.0, "2.000000", "2E0"):
        expert["input_per_mtok"] = spelling
        assert _version(policy_data) == reference, spelling
    fast = policy_data["tiers"][0]["models"][0]
    fast["input_per_mtok"] = 0.15  # an unquoted YAML float is the same price
    assert _version(policy_data) == reference


def test_version_ignores_explicitly_written_defaults(policy_data: dict[str, Any]) -> None:
    reference = _version(policy_data)
    policy_data["providers"]["sim"]["timeout_s"] = 60
    policy_data["limits"] = {"max_prompt_chars": 200000}
    policy_data["retry"] = {"max_attempts": 3, "base_delay_s": 0.2, "max_delay_s": 8}
    assert _version(policy_data) == reference


def test_a_release_adding_a_policy_field_changes_no_version(
    policy_data: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Jobs planned before an upgrade still match on upgraded workers: a new field whose
    default keeps the old behaviour is not part of the hash; POLICY_FORMAT is."""
    reference = _version(policy_data)

    class NextRelease(Policy):
        shiny_new_feature: bool = False

    assert NextRelease.model_validate(copy.deepcopy(policy_data)).version == reference
    monkeypatch.setattr(policy_module, "POLICY_FORMAT", policy_module.POLICY_FORMAT + 1)
    assert _version(policy_data) != reference


def test_version_survives_the_to_yaml_round_trip(default_policy: Policy) -> None:
    # The job stores policy.to_yaml(); workers re-parse it and compare versions.
    again = parse_policy(default_policy.to_yaml())
    assert again == default_policy
    assert again.version == default_policy.version


# ---------------------------------------------------------------- version: changes


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("tiers", 0, "models", 0, "input_per_mtok"), "0.16"),
        (("tiers", 0, "models", 0, "output_per_mtok"), "0.61"),
        (("tiers", 2, "models", 0, "output_per_mtok"), "8.000001"),
        (("tiers", 1, "models", 0, "name"), "gpt-4.1-nano"),
        (("tiers", 0, "max_score"), 0.31),
        (("tiers", 1, "max_input_tokens"), 64001),
        (("tiers", 2, "max_output_tokens"), 4096),
        (("tiers", 0, "concurrency"), 65),
        (("retry", "max_attempts"), 4),
        (("limits", "max_prompt_chars"), 1000),
        (("providers", "sim", "base_url"), "http://127.0.0.1:9999/v1"),
    ],
)
def test_version_changes_when_meaning_changes(
    policy_data: dict[str, Any], path: tuple[Any, ...], value: Any
) -> None:
    reference = _version(policy_data)
    node = policy_data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert _version(policy_data) != reference


def test_version_changes_when_a_fallback_model_is_added(policy_data: dict[str, Any]) -> None:
    reference = _version(policy_data)
    models = policy_data["tiers"][0]["models"]
    models.append({**models[0], "name": "backup"})
    assert _version(policy_data) != reference


# ---------------------------------------------------------------- invalid policies


def _error(data: Any, source: str = "bad.yaml") -> str:
    text = data if isinstance(data, str) else yaml.safe_dump(data)
    with pytest.raises(PolicyError) as info:
        parse_policy(text, source)
    message = str(info.value)
    assert source in message, "the error names the policy file"
    return message


def test_policy_error_is_permanent() -> None:
    assert issubclass(PolicyError, PermanentError)


def test_unknown_provider_is_named(policy_data: dict[str, Any]) -> None:
    policy_data["tiers"][1]["models"][0]["provider"] = "openrouter"
    message = _error(policy_data)
    assert "unknown provider" in message
    assert "'openrouter'" in message
    assert "balanced" in message


@pytest.mark.parametrize("scores", [[0.6, 0.3], [0.3, 0.3], [0.5, 0.49999]])
def test_thresholds_must_strictly_increase(
    policy_data: dict[str, Any], scores: list[float]
) -> None:
    for tier, score in zip(policy_data["tiers"], scores, strict=False):
        tier["max_score"] = score
    message = _error(policy_data)
    assert "max_score must strictly increase" in message
    assert str(scores[0]) in message


def test_duplicate_tier_names(policy_data: dict[str, Any]) -> None:
    policy_data["tiers"][1]["name"] = "fast"
    message = _error(policy_data)
    assert "unique" in message
    assert "fast" in message


@pytest.mark.parametrize("index", [0, 1])
def test_missing_max_score_on_a_non_last_tier(policy_data: dict[str, Any], index: int) -> None:
    del policy_data["tiers"][index]["max_score"]
    assert "every tier but the last needs max_score" in _error(policy_data)


def test_last_tier_needs_no_max_score(policy_data: dict[str, Any], make_policy: Any) -> None:
    assert "max_score" not in policy_data["tiers"][-1]
    assert make_policy(policy_data).tiers[-1].max_score is None


@pytest.mark.parametrize(
    ("path", "value", "fragment"),
    [
        (("tiers", 0, "max_score"), 1.5, "max_score"),
        (("tiers", 0, "max_score"), -0.1, "max_score"),
        (("tiers", 0, "models", 0, "input_per_mtok"), "-1", "input_per_mtok"),
        (("tiers", 0, "models", 0, "output_per_mtok"), "cheap", "output_per_mtok"),
        (("tiers", 0, "models"), [], "models"),
        (("tiers", 0, "name"), "Fast Tier", "name"),
        (("tiers", 0, "max_input_tokens"), 0, "max_input_tokens"),
        (("tiers", 0, "concurrency"), 0, "concurrency"),
        (("providers", "sim", "kind"), "grpc", "kind"),
        (("retry", "max_attempts"), 0, "max_attempts"),
        (("limits", "max_prompt_chars"), 0, "max_prompt_chars"),
        (("tiers",), [], "tiers"),
    ],
)
def test_field_errors_name_the_field(
    policy_data: dict[str, Any], path: tuple[Any, ...], value: Any, fragment: str
) -> None:
    node = policy_data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert fragment in _error(policy_data)


def test_unknown_keys_are_rejected_not_ignored(policy_data: dict[str, Any]) -> None:
    policy_data["tiers"][0]["max_scroe"] = 0.5  # a typo must not silently use the default
    message = _error(policy_data)
    assert "max_scroe" in message


def test_missing_providers(policy_data: dict[str, Any]) -> None:
    del policy_data["providers"]
    assert "providers" in _error(policy_data)


@pytest.mark.parametrize("text", ["tiers: [unclosed", "a: b: c", "\tname: x"])
def test_invalid_yaml(text: str) -> None:
    assert "not valid YAML" in _error(text)


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just a string", "42"])
def test_a_policy_must_be_a_mapping(text: str) -> None:
    assert "mapping" in _error(text)


def test_load_policy_names_a_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(PolicyError, match="not found") as info:
        load_policy(missing)
    assert str(missing) in str(info.value)


def test_load_policy_names_the_invalid_file(tmp_path: Path) -> None:
    path = tmp_path / "broken-policy.yaml"
    path.write_text("name: x\n")
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert str(path) in str(info.value)


# ---------------------------------------------------------------- lookups


def test_tier_lookup(default_policy: Policy) -> None:
    assert default_policy.tier("balanced").name == "balanced"
    with pytest.raises(PolicyError, match="unknown tier 'turbo'") as info:
        default_policy.tier("turbo")
    assert "expert" in str(info.value), "the error lists the tiers that exist"


def test_baseline_is_the_most_expensive_tier(default_policy: Policy) -> None:
    assert default_policy.baseline_tier.name == "expert"


def test_baseline_does_not_depend_on_tier_position(policy_data: dict[str, Any]) -> None:
    # Make the middle tier the priciest: the baseline follows price, not order.
    policy_data["tiers"][1]["models"][0].update(input_per_mtok="15", output_per_mtok="75")
    policy = parse_policy(yaml.safe_dump(policy_data))
    assert policy.baseline_tier.name == "balanced"


def test_baseline_ties_on_output_price_break_on_input_price(policy_data: dict[str, Any]) -> None:
    for tier, input_price in zip(policy_data["tiers"], ["1", "3", "2"], strict=True):
        tier["models"][0].update(input_per_mtok=input_price, output_per_mtok="10")
    policy = parse_policy(yaml.safe_dump(policy_data))
    assert policy.baseline_tier.name == "balanced"


def test_baseline_uses_the_primary_model(policy_data: dict[str, Any]) -> None:
    fast_models = policy_data["tiers"][0]["models"]
    fast_models.append({**fast_models[0], "name": "pricey-fallback", "output_per_mtok": "999"})
    policy = parse_policy(yaml.safe_dump(policy_data))
    assert policy.baseline_tier.name == "expert"
    assert policy.tier("fast").primary.name == "gpt-4o-mini"


def test_tier_name_rejected_is_reserved() -> None:
    text = default_policy_text().replace("name: fast", "name: rejected")
    with pytest.raises(PolicyError, match="reserved"):
        parse_policy(text)
