"""The audit chain (routing.audit): records, line format, and every kind of tampering
found and named — edit, delete, insert, reorder, truncate, append, swap, re-seal."""

from __future__ import annotations

import hashlib
import itertools
import json
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from routing.audit.chain import (
    ERROR_CHARS,
    FIELDS,
    Anchor,
    AuditError,
    PartId,
    anchor_of_footer,
    anchors_digest,
    build_chain,
    footer,
    genesis,
    manifest_section,
    read_section,
)
from routing.audit.verify import check_chain, check_rows
from routing.schema import MONEY

pytestmark = pytest.mark.security

PID = PartId("job-1", 3, "fast")
SECRET = "my card number is 4111 1111 1111 1111"


def part_table(n: int = 8) -> pa.Table:
    prompts = [f"question {i}: what is {i} plus {i}?" for i in range(n)]
    prompts[1] = SECRET
    return pa.table(
        {
            "job_id": ["job-1"] * n,
            "prompt_id": [f"p{i}" for i in range(n)],
            "tenant": ["acme"] * n,
            "status": ["ok"] * (n - 1) + ["failed"],
            "tier": ["fast"] * n,
            "model": ["m-fast"] * n,
            "provider": ["sim"] * n,
            "input_tokens": pa.array([10 + i for i in range(n)], pa.int64()),
            "output_tokens": pa.array([20] * n, pa.int64()),
            "cost_usd": pa.array([Decimal("0.000012345678")] * (n - 1) + [Decimal(0)], MONEY),
            "baseline_cost_usd": pa.array([Decimal("0.0001")] * n, MONEY),
            "attempts": pa.array([1] * (n - 1) + [3], pa.int32()),
            "escalated_from": [None] * n,
            "dedupe_of": [None] * n,
            "complexity_score": [0.125 + i / 100 for i in range(n)],
            "confidence": [None] * (n - 1) + [float("nan")],
            "route_reason": ["score 0.125 < 0.30 → fast"] * n,
            "policy_version": ["p-1"] * n,
            "error": [None] * (n - 1) + ["x" * 1000],
            "classifier_version": ["heuristic-1/f1"] * n,
            "pii_kinds": [None, "credit_card, phone"] + [None] * (n - 2),
            "fallback_from": [None] * n,
            "input_row": pa.array(range(n), pa.int64()),
            "prompt": prompts,
            "system": ["Be brief."] * n,
        }
    )


def lines(table: pa.Table | None = None, pid: PartId = PID) -> list[str]:
    return build_chain(table if table is not None else part_table(), pid).text()


def anchor(pid: PartId = PID) -> Anchor:
    return build_chain(part_table(), pid).anchor


def reseal(record: dict[str, Any]) -> str:
    """A record re-hashed as a forger with the code would (hash over the other fields)."""
    body = {k: record[k] for k in FIELDS}
    chain = json.dumps(body, separators=(",", ":"), ensure_ascii=True)
    digest = hashlib.sha256(chain.encode()).hexdigest()
    return chain[:-1] + f',"hash":"{digest}"}}'


def problem(rows: list[str], pid: PartId = PID, anchored: bool = True) -> str:
    check = check_chain(rows, pid, anchor() if anchored else None)
    assert check.problem is not None, "tampering not detected"
    return str(check.problem)


# ---------------------------------------------------------------- records


def test_one_record_per_row_in_order_with_the_decision() -> None:
    rows = [json.loads(line) for line in lines()]
    assert [r["seq"] for r in rows] == list(range(8))
    assert [r["prompt_id"] for r in rows] == [f"p{i}" for i in range(8)]
    first = rows[0]
    assert list(first) == [*FIELDS, "hash"]
    assert (first["job_id"], first["chunk"], first["part"]) == ("job-1", 3, "fast")
    assert (first["tier"], first["model"], first["provider"], first["status"]) == (
        "fast",
        "m-fast",
        "sim",
        "ok",
    )
    assert first["rule"] == "score 0.125 < 0.30 → fast"
    assert first["features"]["complexity_score"] == 0.125
    assert first["features"]["input_tokens"] == 10
    assert (first["policy_version"], first["classifier_version"]) == ("p-1", "heuristic-1/f1")
    assert first["cost_usd"] == "0.000012345678"  # exact, as a string
    assert rows[-1]["cost_usd"] == "0.000000000000"  # never 0E-12
    assert rows[1]["pii_kinds"] == ["credit_card", "phone"]
    assert rows[-1]["attempts"] == 3 and rows[-1]["confidence"] is None  # NaN
    assert len(rows[-1]["error"]) == ERROR_CHARS


def test_no_prompt_text_only_a_fingerprint() -> None:
    text = build_chain(part_table(), PID).jsonl.decode()
    assert "4111" not in text and "question" not in text and "Be brief" not in text
    fp = json.loads(text.splitlines()[1])["fingerprint"]
    assert len(fp) == 64
    # whitespace-only differences are the same prompt (as in routing.dedupe)
    spaced = part_table().set_column(
        part_table().column_names.index("prompt"),
        "prompt",
        pa.array([f"  {SECRET.replace(' ', '   ')}\n"] * 8),
    )
    assert json.loads(lines(spaced)[1])["fingerprint"] == fp


def test_the_chain_links_every_record_to_the_one_before() -> None:
    rows = [json.loads(line) for line in lines()]
    assert rows[0]["prev"] == genesis(PID)
    for before, after in itertools.pairwise(rows):
        assert after["prev"] == before["hash"]
    assert anchor() == Anchor(8, rows[-1]["hash"])


def test_an_intact_chain_passes_and_is_deterministic() -> None:
    chain = build_chain(part_table(), PID)
    assert chain == build_chain(part_table(), PID)  # a redelivered part rewrites the same chain
    check = check_chain(chain.text(), PID, chain.anchor)
    assert check.problem is None
    assert (check.records, check.head) == (8, chain.anchor.head)
    assert check.prompt_ids == [f"p{i}" for i in range(8)]


def test_an_empty_part_has_an_empty_chain_anchored_at_genesis() -> None:
    chain = build_chain(part_table().slice(0, 0), PID)
    assert chain.lines == [] and chain.anchor == Anchor(0, genesis(PID))
    assert check_chain([], PID, chain.anchor).problem is None


def test_the_anchor_round_trips_through_the_footer() -> None:
    chain = build_chain(part_table(), PID)
    assert anchor_of_footer(footer(chain.anchor)) == chain.anchor
    with pytest.raises(AuditError, match="no audit anchor"):
        anchor_of_footer({b"other": b"{}"})
    with pytest.raises(AuditError, match="no audit anchor"):
        anchor_of_footer(None)


# ---------------------------------------------------------------- tampering


def test_an_edited_field_names_the_record() -> None:
    rows = lines()
    rows[4] = rows[4].replace('"status":"ok"', '"status":"failed"')
    assert problem(rows) == (
        "part-c000003-fast (seq 4, line 5): content does not match its hash: the record was edited"
    )


def test_an_edited_cost_names_the_record() -> None:
    rows = lines()
    rows[2] = rows[2].replace('"cost_usd":"0.000012345678"', '"cost_usd":"0.000000000001"')
    assert "(seq 2, line 3)" in problem(rows) and "edited" in problem(rows)


def test_an_edited_and_resealed_record_breaks_the_next_link() -> None:
    rows = lines()
    record = json.loads(rows[4])
    record["tier"] = "expert"
    rows[4] = reseal(record)
    assert "(seq 5, line 6): prev does not match the hash of seq 4" in problem(rows)


def test_a_chain_rewritten_from_an_edit_on_breaks_only_the_anchor() -> None:
    rows, prev = lines(), None
    for i in range(4, len(rows)):
        record = json.loads(rows[i])
        if i == 4:
            record["model"] = "m-cheaper"
        else:
            record["prev"] = prev
        rows[i] = reseal(record)
        prev = json.loads(rows[i])["hash"]
    assert check_chain(rows, PID, None).problem is None  # self-consistent alone…
    message = problem(rows)  # …but not the chain the manifest anchored
    assert "(seq 7)" in message and "does not match the manifest anchor" in message


def test_a_deleted_record_is_named() -> None:
    rows = lines()
    del rows[3]
    assert "(seq 3, line 4): found seq 4 where seq 3 was expected: record seq 3 is missing" in (
        problem(rows)
    )


def test_an_inserted_copy_is_named() -> None:
    rows = lines()
    rows.insert(5, rows[2])
    assert "(seq 5, line 6): found seq 2 where seq 5 was expected: a record was inserted" in (
        problem(rows)
    )


def test_a_forged_insertion_with_a_valid_link_is_named_at_the_next_record() -> None:
    rows = lines()
    forged = json.loads(rows[5])  # seq 5, prev = hash of seq 4: passes on its own
    forged["prompt_id"] = "ghost"
    rows.insert(5, reseal(forged))
    assert "(seq 6, line 7): found seq 5 where seq 6 was expected: a record was inserted" in (
        problem(rows)
    )


def test_two_reordered_records_are_named() -> None:
    rows = lines()
    rows[2], rows[3] = rows[3], rows[2]
    assert "(seq 2, line 3): found seq 3 where seq 2 was expected: records out of order: " in (
        problem(rows)
    )
    assert "seq 2 is at line 4" in problem(rows)


def test_a_truncated_tail_is_named() -> None:
    rows = lines()[:5]
    assert check_chain(rows, PID, None).problem is None
    assert "(seq 5): the chain ends after 5 records but the manifest anchors 8" in problem(rows)


def test_the_last_record_deleted_is_named() -> None:
    assert "(seq 7)" in problem(lines()[:-1])


def test_appended_records_are_named() -> None:
    rows = lines()
    extra = json.loads(rows[-1])
    extra.update(seq=8, prev=extra["hash"], prompt_id="late")
    rows.append(reseal(extra))
    assert "(seq 8): 1 records after the 8 the manifest anchors" in problem(rows)


def test_a_whole_object_swapped_with_another_part_is_named() -> None:
    other = PartId("job-1", 3, "expert")
    message = problem(lines(pid=other), pid=PID)
    assert "(seq 0, line 1): record belongs to job job-1 chunk 3 part expert" in message
    moved = PartId("job-1", 4, "fast")  # same tier, another chunk
    assert "chunk 4 part fast" in problem(lines(pid=moved), pid=PID)


def test_a_record_from_another_job_is_named() -> None:
    rows = lines()
    rows[6] = lines(pid=PartId("job-2", 3, "fast"))[6]
    assert "(seq 6, line 7): record belongs to job job-2" in problem(rows)


def test_a_relabelled_object_does_not_start_from_its_genesis() -> None:
    rows = lines(pid=PartId("job-1", 3, "expert"))
    record = json.loads(rows[0])
    record["part"] = "fast"
    rows[0] = reseal(record)
    assert "(seq 0, line 1): prev is not the part's genesis hash" in problem(rows)


@pytest.mark.parametrize(
    "edit",
    [
        lambda s: s.replace('{"v"', '{ "v"'),  # same values, other bytes
        lambda s: s.replace('{"v":', '{"v":"v0","v":'),  # a duplicate member
    ],
)
def test_a_reformatted_line_is_an_edit(edit: Any) -> None:
    rows = lines()
    rows[1] = edit(rows[1])
    assert "(seq 1, line 2): content does not match its hash" in problem(rows)


@pytest.mark.parametrize(
    "edit",
    [
        lambda s: s.replace('"seq":1,', '"seq":true,'),
        lambda s: s[:-10],  # cut
        lambda s: "",  # blank line
        lambda s: None,  # a null
        lambda s: s.replace('"hash":', '"hash" :'),
        lambda s: s.replace('"v":"batch-router-audit/v1","job_id"', '"job_id"'),
    ],
)
def test_a_malformed_line_is_named(edit: Any) -> None:
    rows = lines()
    rows[1] = edit(rows[1])
    assert "(seq 1, line 2): not a well-formed record" in problem(rows)


def test_any_single_character_change_is_detected() -> None:
    rows = lines(part_table(3))
    anchored = build_chain(part_table(3), PID).anchor
    for n, row in enumerate(rows):
        for i in range(0, len(row), 5):
            other = "A" if row[i] != "A" else "B"
            flipped = [*rows[:n], row[:i] + other + row[i + 1 :], *rows[n + 1 :]]
            assert check_chain(flipped, PID, anchored).problem is not None, (n, i)


def test_result_rows_must_match_the_records() -> None:
    ids: list[str | None] = ["a", "b", None]
    assert check_rows(PID, ids, ["a", "b", None]) is None
    assert str(check_rows(PID, ids, ["a", "x", None])) == (
        "part-c000003-fast (seq 1): prompt_id 'b' but result row 1 is 'x'"
    )
    assert "(seq 3): 3 audit records for 4 result rows" in str(check_rows(PID, ids, [*ids, "d"]))


# ---------------------------------------------------------------- manifest anchors


def test_the_manifest_section_round_trips_and_its_digest_covers_every_anchor() -> None:
    anchors = {"part-c000003-fast": anchor(), "part-c000003-expert": Anchor(2, "ab" * 32)}
    section = json.loads(json.dumps(manifest_section("job-1", anchors)))
    assert read_section(section) == (anchors, anchors_digest("job-1", anchors))
    changed = {**anchors, "part-c000003-expert": Anchor(1, "ab" * 32)}
    assert anchors_digest("job-1", changed) != anchors_digest("job-1", anchors)
    dropped = {"part-c000003-fast": anchor()}
    assert anchors_digest("job-1", dropped) != anchors_digest("job-1", anchors)
    assert anchors_digest("job-2", anchors) != anchors_digest("job-1", anchors)


def test_a_malformed_manifest_section_is_an_audit_error() -> None:
    with pytest.raises(AuditError, match="malformed audit section"):
        read_section({"objects": {"part-c000003-fast": {"records": "x"}}})
