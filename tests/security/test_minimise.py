"""Data minimisation (policy ``minimise:``): selected tenants / tiers keep no prompt,
system prompt or response in any output object — results, rejected rows, staged batches,
audit, manifest, cost — only fingerprints; other tenants keep theirs."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from routing.errors import PolicyError
from routing.minimise import MinimiseSpec, dropped, minimise
from routing.policy import default_policy_text, parse_policy
from tests.producer.conftest import clean_env, run_cli
from tests.security.scan import hits, local_objects

pytestmark = pytest.mark.security


def test_minimise_nulls_the_fields_of_matching_rows_only() -> None:
    table = pa.table(
        {
            "prompt_id": ["a", "b", "c", "d"],
            "prompt": ["pa", "pb", "pc", "pd"],
            "system": ["sa", "sb", None, "sd"],
            "response": ["ra", "rb", "rc", "rd"],
            "tenant": ["acme", "acme", "globex", None],
            "tier": ["expert", "fast", "expert", "expert"],
            "minimised": pa.nulls(4, pa.string()),
        }
    )
    entries = [
        MinimiseSpec(tenants=("acme",), drop=("prompt", "system")),
        MinimiseSpec(tiers=("expert",), drop="response"),
    ]
    assert dropped(table, entries) == ["prompt,response,system", "prompt,system", "response",
                                       "response"]  # fmt: skip
    out = minimise(table, entries).to_pydict()
    assert out["prompt"] == [None, None, "pc", "pd"]
    assert out["system"] == [None, None, None, "sd"]
    assert out["response"] == [None, "rb", None, None]
    assert out["minimised"] == ["prompt,response,system", "prompt,system", "response", "response"]
    assert minimise(table, []) is table


def _job(tmp_path: Path, name: str, tenant: str, prompts: list[str]) -> Path:
    data = yaml.safe_load(default_policy_text())
    data["minimise"] = [{"tenants": ["acme"], "drop": ["prompt", "response", "system"]}]
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(data))
    src = tmp_path / f"{name}.parquet"
    n = len(prompts)
    pq.write_table(
        pa.table(
            {
                "prompt_id": [f"{name}-{i}" for i in range(n)],
                "prompt": prompts,
                "system": [f"system-{name}-marker-{i}" for i in range(n)],
                "metadata": [json.dumps({"row": i}) for i in range(n)],
            }
        ),
        src,
    )
    out = tmp_path / f"out-{name}"
    proc = run_cli(
        "run", str(src), "--output", str(out), "--policy", str(policy), "--tenant", tenant,
        "--threads", "1", cwd=tmp_path,
        # every routed batch staged as Parquet under _staging/, to check it is removed
        env=clean_env(BATCH_ROUTER_INLINE_BATCH_MAX_BYTES="0", BATCH_ROUTER_ROWS_PER_CHUNK="25"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def _prompts(tag: str) -> list[str]:
    good = [f"Tell me about the zebra {tag}quokka{i} please." for i in range(60)]
    rejected = [f"nul {tag}quokka-nul\x00 here", "x" * 10 + f" {tag}quokka-long " + "y" * 200_001]
    return good + good[:5] + rejected  # with duplicates and rejected rows


def test_a_minimised_tenant_leaves_no_text_in_any_output(tmp_path: Path) -> None:
    out = _job(tmp_path, "acme", "acme", _prompts("min"))
    objects = list(local_objects(out))
    names = [n for n, _ in objects]
    assert any("/results/" in n for n in names) and any("/_audit/" in n for n in names)
    assert not any("/_staging/" in n for n in names), names
    needles = ["minquokka", "min-quokka", "system-acme-marker"]
    assert hits(objects, needles) == {}
    results = pq.read_table(out.glob("job_id=*/results").__next__())
    rows = results.to_pylist()
    assert len(rows) == 67
    assert all(r["prompt"] is None and r["response"] is None for r in rows)
    assert {r["minimised"] for r in rows} == {"prompt,response,system"}
    assert sum(r["status"] == "ok" for r in rows) == 65
    assert sum(r["status"] == "rejected" for r in rows) == 2
    # the audit trail keeps a fingerprint of every row
    assert run_cli("audit", "verify", str(next(out.glob("job_id=*"))), cwd=tmp_path).returncode == 0


def test_other_tenants_keep_their_text(tmp_path: Path) -> None:
    out = _job(tmp_path, "globex", "globex", _prompts("keep"))
    results = pq.read_table(next(out.glob("job_id=*/results"))).to_pylist()
    assert all(r["minimised"] is None for r in results)
    ok = [r for r in results if r["status"] == "ok"]
    assert all(r["response"] and "keepquokka" in r["prompt"] for r in ok)
    assert hits(local_objects(out), ["keepquokka"])  # the control: the scan does find text


def test_minimise_entries_are_validated() -> None:
    data = yaml.safe_load(default_policy_text())
    data["minimise"] = [{"tiers": ["gold"]}]
    with pytest.raises(PolicyError, match=r"minimise\.tiers: unknown tiers \['gold'\]"):
        parse_policy(yaml.safe_dump(data))
    data["minimise"] = [{"tenants": "acme", "drop": ["prompt", "metadata"]}]
    with pytest.raises(PolicyError, match=r"minimise\.0\.drop"):
        parse_policy(yaml.safe_dump(data))
    data["minimise"] = [{"tenants": "acme"}]
    spec = parse_policy(yaml.safe_dump(data)).minimise[0]
    assert spec.tenants == ("acme",) and spec.drop == ("prompt", "response", "system")
