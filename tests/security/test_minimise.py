"""Data minimisation (policy ``minimise:``): selected tenants / tiers keep no prompt,
system prompt or response in any output object — results, rejected rows, staged batches,
audit, manifest, cost — only fingerprints; other tenants keep theirs."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from routing.errors import PolicyError
from routing.minimise import MinimiseSpec, dropped, minimise
from tests import policies
from tests.cli import clean_env, run_cli
from tests.security.scan import hits, local_objects
from tests.workers.pipeline import make_settings, plan_job, runtime, write_input
from workers import layout, stages
from workers.finalize import finalize
from workers.sim.server import SimServer

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


def _job(
    tmp_path: Path, name: str, tenant: str, prompts: list[str], system: str | None = None
) -> Path:
    """Run the job through the CLI; ``system``: one system prompt for every row (else one
    per row)."""
    policy = policies.write(
        tmp_path / "policy.yaml",
        minimise=[{"tenants": ["acme"], "drop": ["prompt", "response", "system"]}],
        dedupe={"job_wide": True},
    )
    src = tmp_path / f"{name}.parquet"
    n = len(prompts)
    pq.write_table(
        pa.table(
            {
                "prompt_id": [f"{name}-{i}" for i in range(n)],
                "prompt": prompts,
                "system": [system or f"system-{name}-marker-{i}" for i in range(n)],
                # the same for copies of a prompt (metadata is part of a fingerprint's scope)
                "metadata": [json.dumps({"row": prompts.index(p)}) for p in prompts],
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


def test_job_wide_duplicates_leave_no_text_in_any_object(tmp_path: Path) -> None:
    """Rows held for another chunk's answer (job-wide dedupe) keep no text anywhere:
    their decision record holds keys only, their filled part is minimised."""
    good = [f"Explain the wombat {i} dupquokka{i} briefly." for i in range(40)]
    prompts = good + good  # every copy in another 25-row chunk than its first occurrence
    out = _job(tmp_path, "acme", "acme", prompts, system="shared-system-dupmarker text")
    job = next(out.glob("job_id=*"))
    assert len(list((job / "_job" / "dedupe").glob("*.parquet"))) == 4
    rows = pq.read_table(job / "results").to_pylist()
    assert len(rows) == 80 and {r["status"] for r in rows} == {"ok"}
    assert sum(r["dedupe_of"] is not None for r in rows) == 40
    objects = list(local_objects(out))
    assert hits(objects, ["dupquokka", "shared-system-dupmarker"]) == {}
    # the filled rows still carry their input's other columns
    held = [r for r in rows if r["dedupe_of"] is not None]
    assert all(r["metadata"] and r["input_row"] >= 40 for r in held)
    assert run_cli("audit", "verify", str(job), cwd=tmp_path).returncode == 0


def test_other_tenants_keep_their_text(tmp_path: Path) -> None:
    out = _job(tmp_path, "globex", "globex", _prompts("keep"))
    results = pq.read_table(next(out.glob("job_id=*/results"))).to_pylist()
    assert all(r["minimised"] is None for r in results)
    ok = [r for r in results if r["status"] == "ok"]
    assert all(r["response"] and "keepquokka" in r["prompt"] for r in ok)
    assert hits(local_objects(out), ["keepquokka"])  # the control: the scan does find text


def test_minimise_entries_are_validated() -> None:
    with pytest.raises(PolicyError, match=r"minimise\.tiers: unknown tiers \['gold'\]"):
        policies.build(minimise=[{"tiers": ["gold"]}])
    with pytest.raises(PolicyError, match=r"minimise\.0\.drop"):
        policies.build(minimise=[{"tenants": "acme", "drop": ["prompt", "metadata"]}])
    spec = policies.build(minimise=[{"tenants": "acme"}]).minimise[0]
    assert spec.tenants == ("acme",) and spec.drop == ("prompt", "response", "system")


class _Collect:
    """Keeps the routed batches of an ingest; counts finalize triggers."""

    def __init__(self) -> None:
        self.batches: list[dict] = []
        self.finalized = 0

    def dispatch(self, ctx: object, batch: dict) -> None:
        self.batches.append(batch)

    def finalize(self, ctx: object) -> None:
        self.finalized += 1


def test_staged_batches_redelivery_and_sweep_under_minimise(tmp_path: Path, sim: SimServer) -> None:
    """A dispatch redelivered after its staged batch was deleted (killed before the ack)
    is already done, not dead-lettered; a staged copy left behind is swept at finalize."""
    policy = policies.build(source="minimise.yaml", minimise=[{"tenants": ["acme"]}])
    n = 40
    table = pa.table(
        {
            "prompt_id": [f"s{i}" for i in range(n)],
            "prompt": [
                ("What is 2 plus 2?" if i % 2 else "Prove it step by step") + f" {i}"
                for i in range(n)
            ],
        }
    )
    rt = runtime(make_settings(sim, inline_batch_max_bytes=0))  # every batch staged
    uri = write_input(tmp_path / "in.parquet", table)
    plan = plan_job(rt, uri, tmp_path / "out", job_id="min-staged", tenant="acme",
                    policy=policy)  # fmt: skip
    ctx = plan.context
    rt.tracker.register(ctx.job_id, {"total_chunks": ctx.total_chunks})
    sink = _Collect()
    for chunk in plan.chunks:
        stages.ingest(rt, ctx, chunk, sink)
    assert sink.batches and all(b.get("staged") for b in sink.batches)
    left = rt.storage.read_bytes(sink.batches[0]["staged"])
    for batch in sink.batches:
        stages.dispatch(rt, ctx, batch, sink)
    assert not any(rt.storage.exists(b["staged"]) for b in sink.batches)
    part = Path(layout.result_part(ctx.job_root, 0, sink.batches[0]["tier"]))
    before = part.stat().st_mtime_ns
    stages.dispatch(rt, ctx, sink.batches[0], sink)  # redelivered: no error, not redone
    assert part.stat().st_mtime_ns == before and sink.finalized == 1
    rt.storage.write_bytes(sink.batches[0]["staged"], left)  # a copy left behind
    finalize(rt, ctx)
    assert rt.storage.list_files(str(Path(ctx.job_root) / "_staging")) == []
    assert hits(local_objects(tmp_path / "out"), ["plus 2", "step by step"]) == {}
