"""Job-wide exact dedupe (workers.dedupe): the local executor with its in-memory claims and
the simulated provider over HTTP, and the Redis claim store against a real Redis."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
import redis

from routing.policy import Policy
from routing.router import FINGERPRINT
from tests import policies
from tests.workers.pipeline import (
    LossySink,
    make_settings,
    plan_job,
    results,
    runtime,
    write_input,
)
from workers import audit, dedupe, layout, local, stages, tierbatch
from workers.claims import MemoryClaims, RedisClaims
from workers.finalize import finalize
from workers.jobstate import MemoryJobTracker
from workers.reconcile import reconcile
from workers.runtime import Runtime
from workers.sim.server import SimServer

DISTINCT, COPIES = 60, 3  # 60 prompts, each 3 times, spread over 6 chunks of 30 rows


def _policy(job_wide: bool = True) -> Policy:
    return policies.build(
        source="dedupe-test.yaml",
        dedupe={"job_wide": job_wide},
        retry={"max_attempts": 2, "base_delay_s": 0.001, "max_delay_s": 0.01},
        breaker={"failures": 1000, "min_calls": 1000},
        cache={"enabled": False},
    )


def _table() -> pa.Table:
    prompts = [f"Question {i}: what is {i} times {i + 1}?" for i in range(DISTINCT)]
    rows = [
        (f"p{c}-{i}", p if c == 0 else f"  {p}\n")
        for c in range(COPIES)
        for i, p in enumerate(prompts)
    ]
    return pa.table({"prompt_id": [r[0] for r in rows], "prompt": [r[1] for r in rows]})


@pytest.fixture(scope="module")
def sim_seed() -> int:
    return 3  # the simulated provider's seed (tests/conftest.py)


def _run(tmp_path: Path, sim: SimServer, policy: Policy, job_id: str) -> tuple:
    rt = runtime(make_settings(sim))
    uri = write_input(tmp_path / "in" / f"{job_id}.parquet", _table())
    plan = plan_job(rt, uri, tmp_path / "out", rows_per_chunk=30, job_id=job_id, policy=policy)
    manifest = local.run_job(rt, plan)
    return rt, plan, manifest, results(rt, plan)


def test_each_distinct_prompt_is_sent_once_across_chunks(tmp_path: Path, sim: SimServer) -> None:
    rt, plan, manifest, out = _run(tmp_path, sim, _policy(), "jw-1")
    assert len(plan.chunks) == 6
    assert sum(sim.stats()["requests_by_model"].values()) == DISTINCT
    assert out.height == DISTINCT * COPIES == manifest["rows_out"] == manifest["rows_in"]
    assert out["status"].unique().to_list() == ["ok"]
    dups = out.filter(pl.col("dedupe_of").is_not_null())
    assert dups.height == DISTINCT * (COPIES - 1)
    canon = out.filter(pl.col("dedupe_of").is_null()).select(
        pl.col("prompt_id").alias("dedupe_of"),
        pl.col("response").alias("c_response"),
        pl.col("baseline_cost_usd").alias("c_baseline"),
        pl.col("model").alias("c_model"),
    )
    joined = dups.join(canon, on="dedupe_of", how="left")
    assert joined["c_response"].null_count() == 0
    assert (joined["response"] == joined["c_response"]).all()
    assert (joined["baseline_cost_usd"] == joined["c_baseline"]).all()
    assert (joined["model"] == joined["c_model"]).all()
    assert (dups["cost_usd"] == 0).all() and (dups["attempts"] == 0).all()
    # the filled rows are their own parts, with an audit trail the manifest anchors
    names = manifest["parts"]
    assert any(n.endswith("-dedupe.parquet") for n in names)
    assert audit.verify_job(rt.storage, plan.context.job_root).ok
    # totals are the sums of the rows
    assert manifest["totals"]["cost_usd"] == str(sum(out["cost_usd"].to_list()))
    assert manifest["totals"]["duplicates_answered"] == dups.height
    # job status: held rows counted as "duplicate" at ingest, as their real status after
    status = rt.tracker.status("jw-1")
    assert status is not None and status.rows_by_status == {"ok": DISTINCT * COPIES}


def test_without_job_wide_dedupe_each_chunk_sends_its_own(tmp_path: Path, sim: SimServer) -> None:
    _, _, _, out = _run(tmp_path, sim, _policy(job_wide=False), "jw-off")
    assert sum(sim.stats()["requests_by_model"].values()) == DISTINCT * COPIES
    assert out["dedupe_of"].null_count() == out.height


def test_finalize_twice_gives_the_same_result(tmp_path: Path, sim: SimServer) -> None:
    rt, plan, first, _ = _run(tmp_path, sim, _policy(), "jw-twice")
    root = plan.context.job_root
    part = next(p for p in rt.storage.list_files(layout.results_dir(root)) if "-dedupe" in p)
    before = Path(part).stat().st_mtime_ns
    second = finalize(rt, plan.context)
    assert Path(part).stat().st_mtime_ns == before  # not rewritten
    for key in ("rows_out", "totals", "audit", "parts", "rows_by_status"):
        assert second[key] == first[key]


class _Sink:
    """Collects the routed batches of an ingest (nothing is dispatched)."""

    def __init__(self) -> None:
        self.batches: list[dict] = []

    def dispatch(self, ctx: object, batch: dict) -> None:
        self.batches.append(batch)

    def finalize(self, ctx: object) -> None:
        pass


def test_a_redelivered_ingest_makes_the_same_split(tmp_path: Path, sim: SimServer) -> None:
    rt, plan, _, _ = _run(tmp_path, sim, _policy(), "jw-redeliver")
    ctx, chunk = plan.context, plan.chunks[3]
    record = dedupe.record_uri(ctx.job_root, chunk.chunk)
    held = rt.storage.read_parquet(record).column("prompt_id").to_pylist()
    assert held  # chunk 3 holds rows answered elsewhere
    Path(record).unlink()  # lose the record: only the claims (own claimant) remain

    sink = _Sink()
    stages.ingest(rt, ctx, chunk, sink)
    sent = [
        pid
        for b in sink.batches
        for pid in tierbatch.load_batch(rt.storage, b)["prompt_id"].to_pylist()
    ]
    assert rt.storage.read_parquet(record).column("prompt_id").to_pylist() == held
    assert not set(sent) & set(held) and len(sent) + len(held) == chunk.take


def test_a_failed_canonical_row_fails_its_duplicates(tmp_path: Path, sim: SimServer) -> None:
    sim.configure(fail_models=["gpt-4o-mini"])  # the fast tier's model: an outage
    _, _, manifest, out = _run(tmp_path, sim, _policy(), "jw-fail")
    failed = out.filter(pl.col("status") == "failed")
    assert failed.height > 0 and failed["dedupe_of"].null_count() < failed.height
    canon_status = dict(zip(out["prompt_id"], out["status"], strict=True))
    dups = out.filter(pl.col("dedupe_of").is_not_null())
    for pid, status in zip(dups["dedupe_of"], dups["status"], strict=True):
        assert status == canon_status[pid]
    assert (failed["cost_usd"] == 0).all() and (failed["baseline_cost_usd"] == 0).all()
    assert manifest["rows_out"] == manifest["rows_in"]


def test_memory_claims_recognise_their_claimant() -> None:
    store = MemoryClaims()
    assert store.claim("j", [("f1", "0:a"), ("f2", "0:b")], 60) == ["0:a", "0:b"]
    assert store.claim("j", [("f1", "1:x"), ("f1", "0:a")], 60) == ["0:a", "0:a"]
    assert store.claim("other-job", [("f1", "1:x")], 60) == ["1:x"]


def test_redis_claims_set_nx_with_ttl(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    store = RedisClaims(client)
    job = "claims-test"
    items = [(f"fp{i}", f"0:p{i}") for i in range(2500)]  # more than one Lua batch
    assert store.claim(job, items, 120) == [me for _, me in items]
    again = store.claim(job, [("fp1", "3:q"), ("fp1", "0:p1"), ("new", "3:r")], 120)
    assert again == ["0:p1", "0:p1", "3:r"]
    key = dedupe.claim_key(job, "fp1")
    assert client.get(key) == b"0:p1" and 0 < client.ttl(key) <= 120
    assert key.startswith(f"br:job:{{{job}}}")


def test_a_decision_record_of_another_run_is_not_replayed(tmp_path: Path, sim: SimServer) -> None:
    rt, plan, _, _ = _run(tmp_path, sim, _policy(), "jw-stale")
    ctx, chunk = plan.context, plan.chunks[4]
    record = dedupe.record_uri(ctx.job_root, chunk.chunk)
    held = rt.storage.read_parquet(record).column("prompt_id").to_pylist()
    stale = {"prompt_id": ["someone-else"], FINGERPRINT: ["0" * 32], dedupe.HOLDER: ["0:x"]}
    rt.storage.write_parquet(record, pa.table(stale))
    stages.ingest(rt, ctx, chunk, _Sink())
    assert rt.storage.read_parquet(record).column("prompt_id").to_pylist() == held


def test_a_held_row_without_its_canonical_result_fails_not_vanishes(
    tmp_path: Path, sim: SimServer
) -> None:
    rt, plan, _, _ = _run(tmp_path, sim, _policy(), "jw-lost")
    root = plan.context.job_root
    parts = rt.storage.list_files(layout.results_dir(root), ".parquet")
    for uri in parts:  # lose chunk 0's answers and every filled part
        if "-dedupe" in uri or "part-c000000-" in uri:
            Path(uri).unlink()
    assert dedupe.fill_duplicates(rt, plan.context, _policy()) == DISTINCT * (COPIES - 1)
    out = results(rt, plan).filter(pl.col("dedupe_of").is_not_null())
    lost = out.filter(pl.col("status") == "failed")
    assert lost.height == 30 * (COPIES - 1)  # the copies of chunk 0's 30 prompts
    assert lost["error"].str.starts_with("canonical row 0:").all()
    assert (lost["cost_usd"] == 0).all()


def test_reconcile_after_lost_state_keeps_the_split(tmp_path: Path, sim: SimServer) -> None:
    """Every tier batch lost, then Redis too (a fresh tracker: no claims): reconcile
    re-sends the tier parts; the decision records keep each prompt sent once."""
    policy = _policy()
    rt = runtime(make_settings(sim))
    uri = write_input(tmp_path / "in" / "lost.parquet", _table())
    plan = plan_job(rt, uri, tmp_path / "out", rows_per_chunk=30, job_id="jw-lost-state",
                    policy=policy)  # fmt: skip
    ctx = plan.context
    rt.tracker.register(ctx.job_id, {"total_chunks": ctx.total_chunks})
    lossy = LossySink(rt, lose=set(policy.tier_names))
    for chunk in plan.chunks:
        stages.ingest(rt, ctx, chunk, lossy)
    assert sum(sim.stats()["requests_by_model"].values()) == 0

    fresh = Runtime(settings=rt.settings, storage=rt.storage, tracker=MemoryJobTracker())
    sink = LossySink(fresh, lose=set())
    report = reconcile(fresh, ctx.job_root, sink)
    assert report.reingested == [] and sink.finalized == 1
    assert sum(sim.stats()["requests_by_model"].values()) == DISTINCT
    out = results(fresh, plan)
    assert out.height == DISTINCT * COPIES and out["prompt_id"].n_unique() == out.height
    assert set(out["status"]) == {"ok"}
    assert out["dedupe_of"].is_not_null().sum() == DISTINCT * (COPIES - 1)


class _NoFinalize(LossySink):
    """Dispatches inline; the finalize message is lost."""

    def finalize(self, ctx: object) -> None:
        self.finalized += 1


def _planned(tmp_path: Path, sim: SimServer, job_id: str) -> tuple:
    rt = runtime(make_settings(sim))
    uri = write_input(tmp_path / "in" / f"{job_id}.parquet", _table())
    plan = plan_job(rt, uri, tmp_path / "out", rows_per_chunk=30, job_id=job_id,
                    policy=_policy())  # fmt: skip
    rt.tracker.register(plan.context.job_id, {"total_chunks": plan.context.total_chunks})
    return rt, plan


def _exactly_once(rt: Runtime, plan: object) -> pl.DataFrame:
    out = results(rt, plan)
    assert out.height == DISTINCT * COPIES and out["prompt_id"].n_unique() == out.height
    assert set(out["status"]) == {"ok"}, out.filter(pl.col("status") != "ok")["error"][0]
    return out


def test_reconcile_finalizes_a_job_whose_finalize_message_was_lost(
    tmp_path: Path, sim: SimServer
) -> None:
    rt, plan = _planned(tmp_path, sim, "jw-lost-finalize")
    ctx = plan.context
    dropping = _NoFinalize(rt, lose=set())
    for chunk in plan.chunks:
        stages.ingest(rt, ctx, chunk, dropping)
    assert dropping.finalized == 1 and not rt.storage.exists(layout.success(ctx.job_root))

    sink = LossySink(rt, lose=set())
    report = reconcile(rt, ctx.job_root, sink)
    assert report.state == "finalizing" and report.parts_resent == {} and sink.ingested == []
    assert sink.finalized == 1 and rt.storage.exists(layout.success(ctx.job_root))
    out = _exactly_once(rt, plan)
    assert out["dedupe_of"].is_not_null().sum() == DISTINCT * (COPIES - 1)
    assert sum(sim.stats()["requests_by_model"].values()) == DISTINCT


def test_lost_claims_resolve_a_held_row_by_fingerprint(tmp_path: Path, sim: SimServer) -> None:
    """Chunk 0 claims prompts 0-29 but dies before its record; chunk 2 (their second
    copies) is held by chunk 0; Redis loses the claims; chunk 4 (third copies) claims them
    and answers; chunk 0, redelivered, is now held by chunk 4. Chunk 2's recorded holder
    has no answer of its own: its rows take chunk 4's, the answer for their fingerprint."""
    rt, plan = _planned(tmp_path, sim, "jw-lost-claims")
    ctx, chunks = plan.context, plan.chunks
    sink = _NoFinalize(rt, lose=set(_policy().tier_names))  # chunk 0's batches die with it
    stages.ingest(rt, ctx, chunks[0], sink)
    Path(dedupe.record_uri(ctx.job_root, 0)).unlink()  # died before its record was written
    sink.lose = set()
    stages.ingest(rt, ctx, chunks[2], sink)
    record = rt.storage.read_parquet(dedupe.record_uri(ctx.job_root, 2))
    assert set(h.split(":")[0] for h in record.column(dedupe.HOLDER).to_pylist()) == {"0"}
    rt._dedupe = MemoryClaims()  # Redis restarted without persistence: the claims are gone
    stages.ingest(rt, ctx, chunks[4], sink)
    stages.ingest(rt, ctx, chunks[0], sink)  # redelivered
    record = rt.storage.read_parquet(dedupe.record_uri(ctx.job_root, 0))
    assert set(h.split(":")[0] for h in record.column(dedupe.HOLDER).to_pylist()) == {"4"}
    for i in (1, 3, 5):
        stages.ingest(rt, ctx, chunks[i], sink)

    finalize(rt, ctx)
    out = _exactly_once(rt, plan)
    second = out.filter(pl.col("prompt_id").is_in([f"p1-{i}" for i in range(30)]))  # chunk 2
    assert second.height == 30 and second["dedupe_of"].str.starts_with("p2-").all()
    answers = dict(zip(out["prompt_id"], out["response"], strict=True))
    for pid, of in zip(second["prompt_id"], second["dedupe_of"], strict=True):
        assert answers[pid] == answers[of]
    assert sum(sim.stats()["requests_by_model"].values()) == DISTINCT


def test_only_the_canonical_rows_needed_are_read(tmp_path: Path, sim: SimServer) -> None:
    rt, plan, _, out = _run(tmp_path, sim, _policy(), "jw-needed")
    wanted = {"0:p0-3", "1:p0-40", "0:nope"}
    found = dedupe._canonical_rows(rt, plan.context.job_root, wanted)
    assert set(found) == {"0:p0-3", "1:p0-40"}
    answers = dict(zip(out["prompt_id"], out["response"], strict=True))
    assert found["1:p0-40"]["response"] == answers["p0-40"]
