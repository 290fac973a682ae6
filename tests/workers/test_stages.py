"""The pipeline stages through the local executor: no broker, local files, a
``MemoryJobTracker`` and the simulated provider over real HTTP (in-thread)."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
import yaml

from routing.cost import call_cost
from routing.plan import JobContext, JobPlan
from routing.policy import default_policy_text, parse_policy
from routing.schema import RESULT_COLUMNS
from tests.workers.pipeline import (
    MAX_CHARS,
    POLICY,
    make_policy,
    make_settings,
    plan_job,
    results,
    runtime,
    write_input,
)
from workers import layout, local, stages, tierbatch
from workers.finalize import finalize
from workers.runtime import Runtime
from workers.settings import Settings
from workers.sim.server import SimServer

EASY = "What is 7 plus 5?"
MEDIUM = "Explain why the sky is blue and compare it with sunsets in at least three sentences."
HARD = (
    "Prove that the square root of 2 is irrational, then derive a general theorem, analyse "
    "the trade-offs of three proof styles, and design a step by step lesson plan in JSON "
    "format with exactly 5 parts.\n1. intro\n2. proof\n3. generalise"
)
# under the character limit, over every tier's input-token limit
TOKEN_HEAVY = " ".join(f"w{i}" for i in range(600))[:MAX_CHARS]


@pytest.fixture(scope="module")
def sim_seed() -> int:
    return 5  # the simulated provider's seed (tests/conftest.py)


def mixed_table(other_tenant: str | None = None) -> pa.Table:
    """Good rows of every tier, exact duplicates, bad rows, optional and unknown columns
    (``status`` is an output column name: it comes out as ``src_status``). The rows are
    acme's (``tenant`` acme or null); ``other_tenant`` names another on the ``other`` row."""
    rows: list[tuple[Any, ...]] = [
        # prompt_id, prompt, system, max_output_tokens, tenant
        ("easy", EASY, None, None, "acme"),
        ("medium", MEDIUM, None, None, "acme"),
        ("hard", HARD, "You are a mathematician.", 5, None),
        ("easy-dup", "  What is 7   plus 5? ", None, None, "acme"),
        ("hard-dup", HARD, "You are a mathematician.", 5, None),
        ("null-prompt", None, None, None, "acme"),
        ("empty-prompt", "   ", None, None, "acme"),
        ("medium", "Name a colour.", None, None, "acme"),
        ("too-long", "x" * (MAX_CHARS + 1), None, None, "acme"),
        ("token-heavy", TOKEN_HEAVY, None, None, "acme"),
        (None, "What is 9 plus 1?", None, None, "acme"),
        ("zero-max", "Name a fruit.", None, 0, "acme"),
        ("other", "Name a planet.", "Be brief.", 50, other_tenant),
    ]
    n = len(rows)
    return pa.table(
        {
            "prompt_id": [r[0] for r in rows],
            "prompt": [r[1] for r in rows],
            "system": [r[2] for r in rows],
            "max_output_tokens": pa.array([r[3] for r in rows], pa.int32()),
            "tenant": [r[4] for r in rows],
            "status": [f"upstream-{i}" for i in range(n)],
            "notes": [f"note {i}" for i in range(n)],
            "batch_no": pa.array([100 + i for i in range(n)], pa.int16()),
        }
    )


EXPECTED_REJECTIONS = {
    "null-prompt": "prompt is null",
    "empty-prompt": "prompt is empty",
    "medium": "duplicate prompt_id",  # the second row with that id
    "too-long": f"prompt longer than {MAX_CHARS} characters",
    "token-heavy": "prompt fits no allowed tier's max_input_tokens",
    None: "prompt_id is null",
    "zero-max": "max_output_tokens must be > 0",
}


def run_mixed(
    tmp_path: Path, settings: Settings, table: pa.Table | None = None, **plan_kwargs: Any
) -> tuple[Runtime, JobPlan, dict[str, Any], pl.DataFrame]:
    """The mixed table as acme's job (``--tenant acme``: its rows name acme or no tenant)."""
    rt = runtime(settings)
    uri = write_input(tmp_path / "in" / "mixed.parquet", table or mixed_table())
    plan = plan_job(rt, uri, tmp_path / "out", **{"tenant": "acme", **plan_kwargs})
    manifest = local.run_job(rt, plan)
    return rt, plan, manifest, results(rt, plan)


def money_sum(values: list[Decimal | None]) -> Decimal:
    return sum((v for v in values if v is not None), Decimal(0))


# ---------------------------------------------------------------- one row out per row in


def test_every_row_comes_out_once_with_status_and_reason(tmp_path: Path, sim: SimServer) -> None:
    _, _, manifest, out = run_mixed(tmp_path, make_settings(sim))
    table = mixed_table()

    assert out.height == table.num_rows == manifest["rows_in"] == manifest["rows_out"]
    assert out["input_row"].to_list() == list(range(table.num_rows))
    assert out["prompt_id"].to_list() == table.column("prompt_id").to_pylist()
    assert set(out["status"]) <= {"ok", "rejected"}

    rejected = out.filter(pl.col("status") == "rejected")
    got = dict(zip(rejected["prompt_id"], rejected["error"], strict=True))
    assert got.keys() == EXPECTED_REJECTIONS.keys()
    for pid, reason in EXPECTED_REJECTIONS.items():
        assert got[pid].startswith(reason), (pid, got[pid])
    assert rejected.filter(pl.col("prompt_id") == "medium")["input_row"].to_list() == [7]
    assert (rejected["cost_usd"] == 0).all() and (rejected["baseline_cost_usd"] == 0).all()
    assert rejected["tier"].is_null().all() and rejected["response"].is_null().all()

    ok = out.filter(pl.col("status") == "ok")
    assert sorted(ok["prompt_id"]) == sorted(
        ["easy", "medium", "hard", "easy-dup", "hard-dup", "other"]
    )
    assert ok["error"].is_null().all()
    assert (ok["response"].str.len_chars() > 0).all()
    assert set(ok["tier"]) == {"fast", "balanced", "expert"}
    assert out["policy_version"].unique().to_list() == [POLICY.version]
    assert out["job_id"].unique().to_list() == ["job-1"]


def test_output_columns_and_carried_through_values(tmp_path: Path, sim: SimServer) -> None:
    _, _, _, out = run_mixed(tmp_path, make_settings(sim))
    table = mixed_table()

    assert tuple(out.columns[: len(RESULT_COLUMNS)]) == RESULT_COLUMNS
    extra = set(out.columns) - set(RESULT_COLUMNS)
    assert extra == {"prompt", "system", "max_output_tokens", "src_status", "notes", "batch_no"}
    assert not [c for c in out.columns if c.startswith("__br_")]
    # unknown columns, and the input's own `status`, come out untouched on every row
    assert out["src_status"].to_list() == table.column("status").to_pylist()
    assert out["notes"].to_list() == table.column("notes").to_pylist()
    assert out["batch_no"].to_list() == table.column("batch_no").to_pylist()
    assert out["prompt"].to_list() == table.column("prompt").to_pylist()
    assert out["system"].to_list() == table.column("system").to_pylist()
    # the job's tenant on every row (rows name it or none); max_output_tokens caps the answer
    assert out["tenant"].to_list() == ["acme"] * table.num_rows
    hard = out.filter(pl.col("prompt_id") == "hard").row(0, named=True)
    assert (hard["finish_reason"], hard["output_tokens"]) == ("length", 5)
    other = out.filter(pl.col("prompt_id") == "other").row(0, named=True)
    assert other["output_tokens"] <= 50


def test_costs_are_exact_per_row(tmp_path: Path, sim: SimServer) -> None:
    _, _, _, out = run_mixed(tmp_path, make_settings(sim))
    baseline_model = POLICY.baseline_tier.primary
    for row in out.filter(pl.col("status") == "ok").iter_rows(named=True):
        tier = POLICY.tier(row["tier"])
        assert (row["model"], row["provider"]) == (tier.primary.name, "sim")
        tokens = (row["input_tokens"], row["output_tokens"])
        assert row["input_tokens"] > 0 and row["output_tokens"] > 0
        baseline = call_cost(baseline_model, *tokens)
        assert row["baseline_cost_usd"] == baseline
        if row["dedupe_of"] is None:
            assert row["cost_usd"] == call_cost(tier.primary, *tokens)
            assert row["attempts"] == 1
        if row["tier"] == "expert":
            assert row["cost_usd"] in (baseline, 0)


def test_exact_duplicates_reuse_the_canonical_answer_at_zero_cost(
    tmp_path: Path, sim: SimServer
) -> None:
    _, _, manifest, out = run_mixed(tmp_path, make_settings(sim))
    rows = {r["prompt_id"]: r for r in out.filter(pl.col("status") == "ok").iter_rows(named=True)}
    for dup, original in (("easy-dup", "easy"), ("hard-dup", "hard")):
        d, o = rows[dup], rows[original]
        assert d["dedupe_of"] == original and o["dedupe_of"] is None
        assert d["response"] == o["response"] and d["tier"] == o["tier"]
        assert (d["input_tokens"], d["output_tokens"]) == (o["input_tokens"], o["output_tokens"])
        assert d["cost_usd"] == 0 and o["cost_usd"] > 0
        assert d["baseline_cost_usd"] == o["baseline_cost_usd"]
        assert d["attempts"] == 0
    assert manifest["duplicates"] == 2
    stats = sim.stats()
    assert stats["completions"] == 4  # six ok rows, two answered from their original
    assert stats["duplicate_prompts"] == 0


@pytest.mark.security
def test_job_tenant_overrides_rows_and_rejects_a_different_one(
    tmp_path: Path, sim: SimServer
) -> None:
    _, _, manifest, out = run_mixed(tmp_path, make_settings(sim), mixed_table("globex"))
    assert out["tenant"].unique().to_list() == ["acme"]
    other = out.filter(pl.col("prompt_id") == "other").row(0, named=True)
    assert other["status"] == "rejected"
    assert other["error"] == (
        "tenant column 'globex' differs from the job's tenant 'acme' (submit with --tenant globex)"
    )
    assert manifest["tenant"] == "acme" and list(manifest["by_tenant"]) == ["acme"]


@pytest.mark.security
def test_without_a_job_tenant_rows_never_choose_theirs(tmp_path: Path, sim: SimServer) -> None:
    """No --tenant: the job's tenant is ``default``; rows naming acme are rejected, not
    billed to acme (issue 13, finding 3)."""
    _, _, manifest, out = run_mixed(tmp_path, make_settings(sim), tenant=None)
    assert out["tenant"].unique().to_list() == ["default"]
    rejected = out.filter(pl.col("error").str.starts_with("tenant column 'acme' differs"))
    # acme's rows without an earlier reason (prompt, limits); rows without a tenant run
    assert sorted(rejected["prompt_id"]) == ["easy", "easy-dup", "medium", "medium", "token-heavy"]
    ok = out.filter(pl.col("status") == "ok")
    assert sorted(ok["prompt_id"]) == ["hard", "hard-dup", "other"]
    assert list(manifest["by_tenant"]) == ["default"]


# ---------------------------------------------------------------- manifest and cost summary


def test_manifest_cost_summary_and_success(tmp_path: Path, sim: SimServer) -> None:
    rt, plan, manifest, out = run_mixed(tmp_path, make_settings(sim))
    root = plan.context.job_root
    storage = rt.storage

    assert storage.exists(layout.success(root)) and storage.read_bytes(layout.success(root)) == b""
    assert json.loads(storage.read_bytes(layout.manifest(root))) == manifest

    cost, baseline = (
        money_sum(out["cost_usd"].to_list()),
        money_sum(out["baseline_cost_usd"].to_list()),
    )
    assert cost > 0 and baseline > cost
    totals = manifest["totals"]
    assert Decimal(totals["cost_usd"]) == cost and totals["cost_usd"] == str(cost)
    assert Decimal(totals["baseline_cost_usd"]) == baseline
    assert Decimal(totals["saving_usd"]) == baseline - cost
    assert manifest["complete"] is True
    counts = out["status"].value_counts()
    expected = dict(zip(counts["status"], counts["count"], strict=True))
    assert manifest["rows_by_status"] == {"ok": 6, "failed": 0, "rejected": 7, "over_budget": 0}
    assert expected == {"ok": 6, "rejected": 7}
    assert sum(Decimal(t["cost_usd"]) for t in manifest["by_tier"].values()) == cost
    assert sum(t["rows"] for t in manifest["by_model"].values()) == out.height
    assert manifest["parts"] == [
        Path(p).name for p in storage.list_files(layout.results_dir(root), ".parquet")
    ]
    # one money format everywhere: 12 places, zero included; percentages to 3 places
    assert manifest["totals"]["cache_saved_usd"] == "0.000000000000"
    for path, value in _leaves(manifest):
        if path.endswith("_usd"):
            assert re.fullmatch(r"-?\d+\.\d{12}", value), (path, value)
        if path.endswith("_pct"):
            assert value == round(value, 3), (path, value)

    summary = pl.from_arrow(storage.read_parquet(layout.cost_summary(root)))
    assert isinstance(summary, pl.DataFrame)
    assert summary["rows"].sum() == out.height
    assert money_sum(summary["cost_usd"].to_list()) == cost
    assert money_sum(summary["baseline_cost_usd"].to_list()) == baseline
    ok = out.filter(pl.col("status") == "ok")
    assert summary["input_tokens"].sum() == ok["input_tokens"].sum()

    status = rt.tracker.status(plan.context.job_id)
    assert status is not None
    assert status.state == "succeeded"
    assert status.chunks_done == status.total_chunks == plan.context.total_chunks
    assert status.rows_by_status == {"ok": 6, "rejected": 7}
    assert Decimal(status.meta["cost_usd"]) == cost


def test_finalize_twice_gives_the_same_manifest(tmp_path: Path, sim: SimServer) -> None:
    rt, plan, first, _ = run_mixed(tmp_path, make_settings(sim))
    root = plan.context.job_root
    summary = rt.storage.read_bytes(layout.cost_summary(root))
    second = finalize(rt, plan.context)
    assert {**second, "finished_at": None} == {**first, "finished_at": None}
    assert rt.storage.read_bytes(layout.cost_summary(root)) == summary
    assert rt.storage.exists(layout.success(root))


# ---------------------------------------------------------------- chunking and many files


def numbered(n: int, start: int = 0, file_tag: str = "") -> pa.Table:
    prompts = [
        [EASY, MEDIUM, HARD][i % 3].replace("7", str(i)).replace("sky", f"sky {i}")
        + f" (item {file_tag}{i})"
        for i in range(start, start + n)
    ]
    return pa.table(
        {
            "prompt_id": [f"{file_tag}{i}" for i in range(start, start + n)],
            "prompt": prompts,
            "orig_index": pa.array(range(n), pa.int64()),
        }
    )


def test_many_files_and_row_groups_are_chunked_without_loss(tmp_path: Path) -> None:
    """Three files: row groups grouped into chunks, a big row group split into slices, a
    file of nothing but bad rows; the in-process simulator the local executor starts."""
    rt = runtime(make_settings())
    a = write_input(tmp_path / "in" / "a.parquet", numbered(47, file_tag="a"), row_group_size=7)
    b = write_input(
        tmp_path / "in" / "sub" / "b.parquet", numbered(53, file_tag="b"), row_group_size=53
    )
    bad = pa.table({"prompt_id": ["z1", "z2"], "prompt": [None, ""], "orig_index": [0, 1]})
    c = write_input(tmp_path / "in" / "c.parquet", bad)
    write_input(tmp_path / "in" / "_ignored" / "d.parquet", numbered(3, file_tag="d"))

    plan = plan_job(rt, str(tmp_path / "in"), tmp_path / "out", rows_per_chunk=20)
    assert [f.uri for f in plan.files] == [a, c, b]
    assert plan.context.total_chunks == len(plan.chunks) > 6
    assert any(ch.skip > 0 for ch in plan.chunks)  # the 53-row group was split
    assert any(len(ch.row_groups) > 1 for ch in plan.chunks)  # 7-row groups were merged

    with local.simulated_providers(POLICY, rt.settings) as effective:
        rt.settings = effective
        manifest = local.run_job(rt, plan, threads=4)
    out = results(rt, plan)

    assert out.height == 102 == manifest["rows_in"] == manifest["rows_out"]
    assert out.select("input_file", "input_row").is_unique().all()
    assert (out["input_row"] == out["orig_index"]).all()  # positions survive chunking
    per_file = dict(out.group_by("input_file").len().iter_rows())
    assert per_file == {a: 47, b: 53, c: 2}
    assert out.filter(pl.col("input_file") == c)["status"].to_list() == ["rejected"] * 2
    assert out.filter(pl.col("input_file") != c)["status"].unique().to_list() == ["ok"]
    assert len(manifest["parts"]) == len(
        rt.storage.list_files(layout.results_dir(plan.context.job_root))
    )
    status = rt.tracker.status(plan.context.job_id)
    assert status is not None and status.chunks_done == plan.context.total_chunks


# ---------------------------------------------------------------- provider failures


def test_provider_down_fails_rows_but_the_job_finalizes(tmp_path: Path, sim: SimServer) -> None:
    sim.configure(error_rate=1.0)
    _, _, manifest, out = run_mixed(tmp_path, make_settings(sim))

    assert out.height == manifest["rows_in"] == manifest["rows_out"]
    assert manifest["complete"] is True
    assert manifest["rows_by_status"] == {"ok": 0, "failed": 6, "rejected": 7, "over_budget": 0}
    failed = out.filter(pl.col("status") == "failed")
    assert (failed["error"].str.starts_with("retryable provider error (status 500)")).all()
    assert failed["response"].is_null().all()
    assert (failed["cost_usd"] == 0).all() and (failed["baseline_cost_usd"] == 0).all()
    originals = failed.filter(pl.col("dedupe_of").is_null())
    assert (originals["attempts"] == POLICY.retry.max_attempts).all()
    assert Decimal(manifest["totals"]["cost_usd"]) == 0
    assert sim.stats()["errors"] == 4 * POLICY.retry.max_attempts


# ---------------------------------------------------------------- batches: inline and staged


class RecordingSink:
    """Keeps routed batches instead of dispatching them."""

    def __init__(self) -> None:
        self.batches: list[dict[str, Any]] = []
        self.finalized = 0

    def dispatch(self, ctx: JobContext, batch: dict[str, Any]) -> None:
        self.batches.append(batch)

    def finalize(self, ctx: JobContext) -> None:
        self.finalized += 1


@pytest.mark.parametrize(("limit", "kind"), [(256_000, "inline"), (0, "staged")])
def test_routed_batches_inline_or_staged(tmp_path: Path, limit: int, kind: str) -> None:
    rt = runtime(make_settings(inline_batch_max_bytes=limit))
    uri = write_input(tmp_path / "in.parquet", mixed_table())
    plan = plan_job(rt, uri, tmp_path / "out", tenant="acme")
    rt.tracker.register(plan.context.job_id, {"total_chunks": plan.context.total_chunks})
    sink = RecordingSink()
    stages.ingest(rt, plan.context, plan.chunks[0], sink)

    assert sorted(b["tier"] for b in sink.batches) == ["balanced", "expert", "fast"]
    for batch in sink.batches:
        assert batch.get(kind) is not None
        assert batch.get("staged" if kind == "inline" else "inline") is None
        json.dumps(batch)  # travels as a JSON message
        table = tierbatch.load_batch(rt.storage, batch)
        assert table.num_rows == batch["rows"]
        assert set(table.column("tier").to_pylist()) == {batch["tier"]}
        if kind == "staged":
            assert batch["staged"] == layout.staged_batch(plan.context.job_root, 0, batch["tier"])
    assert sum(b["rows"] for b in sink.batches) == 6
    assert sink.finalized == 0  # tier parts are not written yet


def test_inline_and_staged_paths_give_the_same_results(tmp_path: Path, sim: SimServer) -> None:
    outs = []
    for limit in (256_000, 0):
        _, plan, manifest, out = run_mixed(
            tmp_path / str(limit), make_settings(sim, inline_batch_max_bytes=limit)
        )
        staged = Path(plan.context.job_root) / "_staging" / "routed"
        assert staged.is_dir() == (limit == 0)
        assert manifest["complete"]
        outs.append(out.drop("latency_ms", "input_file"))
    assert outs[0].equals(outs[1])


# ---------------------------------------------------------------- redelivery


class InlineSink:
    def __init__(self, rt: Runtime) -> None:
        self.rt, self.finalized = rt, 0

    def dispatch(self, ctx: JobContext, batch: dict[str, Any]) -> None:
        stages.dispatch(self.rt, ctx, batch, self)

    def finalize(self, ctx: JobContext) -> None:
        self.finalized += 1


@pytest.mark.parametrize("limit", [256_000, 0])
def test_redelivered_ingest_overwrites_the_same_parts(
    tmp_path: Path, sim: SimServer, limit: int
) -> None:
    rt = runtime(make_settings(sim, inline_batch_max_bytes=limit))
    uri = write_input(tmp_path / "in.parquet", numbered(30), row_group_size=10)
    plan = plan_job(rt, uri, tmp_path / "out", rows_per_chunk=10)
    first = local.run_job(rt, plan)
    storage, root = rt.storage, plan.context.job_root
    parts = storage.list_files(layout.results_dir(root))
    before = results(rt, plan)

    sink = InlineSink(rt)
    for chunk in (plan.chunks[1], plan.chunks[1], plan.chunks[0]):  # redelivered, twice
        stages.ingest(rt, plan.context, chunk, sink)
    assert sink.finalized == 0  # the finalizer was already triggered once
    assert storage.list_files(layout.results_dir(root)) == parts
    after = results(rt, plan)
    assert after.height == 30 and after["prompt_id"].is_unique().all()
    assert after.drop("latency_ms").equals(before.drop("latency_ms"))

    again = finalize(rt, plan.context)
    assert {**again, "finished_at": None} == {**first, "finished_at": None}
    status = rt.tracker.status(plan.context.job_id)
    assert status is not None and status.rows_done == 30


def test_finalize_refuses_a_job_with_missing_rows(tmp_path: Path, sim: SimServer) -> None:
    rt = runtime(make_settings(sim))
    uri = write_input(tmp_path / "in.parquet", numbered(20), row_group_size=10)
    plan = plan_job(rt, uri, tmp_path / "out", rows_per_chunk=10)
    rt.tracker.register(plan.context.job_id, {"total_chunks": plan.context.total_chunks})
    sink = InlineSink(rt)
    stages.ingest(rt, plan.context, plan.chunks[0], sink)  # chunk 1 never ran
    assert sink.finalized == 0

    with pytest.raises(RuntimeError, match="10 rows out, 20 in"):
        finalize(rt, plan.context)
    root = plan.context.job_root
    assert not rt.storage.exists(layout.success(root))
    assert json.loads(rt.storage.read_bytes(layout.manifest(root)))["complete"] is False
    status = rt.tracker.status(plan.context.job_id)
    assert status is not None and status.state == "failed"


# ---------------------------------------------------------------- real prompts


def test_real_prompts_from_the_corpus(tmp_path: Path, sim: SimServer, corpus_path: Path) -> None:
    """400 real prompts of mixed kinds plus 40 exact repeats, on the default tiers."""
    policy = make_policy()
    data = yaml.safe_load(policy.to_yaml())
    default = yaml.safe_load(default_policy_text())
    for tier, original in zip(data["tiers"], default["tiers"], strict=True):
        tier["max_input_tokens"] = original["max_input_tokens"]
    data["limits"] = default["limits"]
    policy = parse_policy(yaml.safe_dump(data))

    corpus = pl.read_parquet(corpus_path).unique("prompt", keep="first", maintain_order=True)
    sample = corpus.sample(n=400, seed=3, shuffle=True).select("prompt_id", "prompt", "kind")
    repeats = sample.head(40).with_columns(pl.col("prompt_id") + "-again")
    table = pl.concat([sample, repeats]).to_arrow()

    rt = runtime(make_settings(sim))
    uri = write_input(tmp_path / "in.parquet", table)  # one chunk: repeats meet their original
    plan = plan_job(rt, uri, tmp_path / "out", policy=policy)
    manifest = local.run_job(rt, plan)
    out = results(rt, plan)

    assert out.height == table.num_rows == manifest["rows_out"]
    assert out["status"].unique().to_list() == ["ok"]
    assert out["kind"].to_list() == table.column("kind").to_pylist()
    assert out["tier"].n_unique() >= 2
    assert out.filter(pl.col("dedupe_of").is_not_null()).height == manifest["duplicates"] == 40
    assert sim.stats()["completions"] == 400
    assert Decimal(manifest["totals"]["cost_usd"]) == money_sum(out["cost_usd"].to_list())
    assert Decimal(manifest["totals"]["saving_usd"]) > 0


def test_rows_with_different_output_limits_are_not_duplicates(
    tmp_path: Path, sim: SimServer
) -> None:
    table = pa.table(
        {
            "prompt_id": ["short", "long"],
            "prompt": ["Describe the sea.", "Describe the sea."],
            "max_output_tokens": [3, 500],
        }
    )
    rt = runtime(make_settings(sim))
    plan = plan_job(rt, write_input(tmp_path / "in.parquet", table), tmp_path / "out")
    local.run_job(rt, plan)
    out = results(rt, plan)
    long = out.filter(pl.col("prompt_id") == "long").row(0, named=True)
    assert long["dedupe_of"] is None
    assert long["output_tokens"] > 3


def test_ingest_routes_with_the_process_memos(tmp_path: Path, sim: SimServer) -> None:
    """Routing keeps no memo of its own: ingest hands route_batch this process's memos
    (workers.memos), which a later job of the same policy and scorer reuses."""
    from workers.memos import process_memos

    memos = process_memos()
    assert process_memos() is memos
    memos.text.clear(), memos.decisions.clear()
    run_mixed(tmp_path, make_settings(sim))
    assert len(memos.text) > 0 and len(memos.decisions) > 0


def _leaves(value: object, path: str = "") -> list[tuple[str, Any]]:
    """Every scalar of a JSON document with its dotted path."""
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in _leaves(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [leaf for i, v in enumerate(value) for leaf in _leaves(v, f"{path}[{i}]")]
    return [(path, value)]
