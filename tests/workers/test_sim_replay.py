"""The simulated provider as an LLM judge and in replay mode, over real HTTP on 127.0.0.1:
recorded answers served by prompt text and model (OpenAI chat, Anthropic Messages, both
batch APIs), misses as permanent 404s, judge requests graded by the labels or by the
difficulty rule, the counters, and the CLI refusing bad replay files before it binds."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import polars as pl
import pytest

from routing.judge import JUDGE_SYSTEM, MAX_JUDGED_CHARS, judge_messages, parse_reply, reply
from routing.tokens import count_tokens, encoding
from tests import data
from tests.cli import CliRunner, assert_clean_error
from tests.workers.sdk import anthropic_client, openai_client
from workers.provider import ChatRequest, Endpoint, call_once, make_client
from workers.sim.config import SimConfig
from workers.sim.judge import FAIL_QUALITY, difficulty, draw, rule_quality
from workers.sim.replay import Replay
from workers.sim.server import SimServer

HEADERS = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
A, B = "model-a", "Mixtral-8x7B-Instruct-v0.1"
Q1 = "What is 2 + 2? Answer briefly."
Q2 = "Name a primary colour."
Q_LONG = "Summarise: " + "lorem ipsum dolor sit amet " * 1200  # over MAX_JUDGED_CHARS
ANSWER_A1 = "2 + 2 = 4. Ünïcode ✓ and an emoji 🚀 stay byte-identical."
ANSWER_B1 = "It is 5."
ANSWER_A2 = "Red is a primary colour in the RYB model; so are yellow and blue. " * 3
ANSWER_LONG = "The text repeats a Latin filler phrase."
LABELS = [  # prompt_id, prompt, model, quality
    ("q1", Q1, A, 1.0),
    ("q1", Q1, B, 0.3),
    ("q2", Q2, A, 0.7),
    ("q2", Q2, B, 0.9),  # labelled, but no recorded response: a miss
    ("q1-again", Q1, A, 0.0),  # the same text under a later id: never served
    ("long", Q_LONG, A, 0.6),
]
RESPONSES = [  # prompt_id, model, response
    ("q1", A, ANSWER_A1),
    ("q1", B, ANSWER_B1),
    ("q2", A, ANSWER_A2),
    ("q1-again", A, "the later id's answer"),
    ("long", A, ANSWER_LONG),
    ("unlabelled", A, "a response with no label row"),
]
MORE_RESPONSES = [("q1", A, "a second file's answer: the first file wins")]


def tokens(text: str) -> int:
    return int(count_tokens([text])[0])


def write_labels(path: Path, rows: list[tuple[str, str, str, float]]) -> Path:
    columns = ["prompt_id", "prompt", "model", "quality"]
    frame = pl.DataFrame(rows, schema=columns, orient="row").with_columns(
        dataset=pl.lit("synthetic"), input_tokens=pl.lit(1), cost_usd=pl.lit(0.0)
    )
    frame.write_parquet(path)
    return path


def write_responses(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    pl.DataFrame(rows, schema=["prompt_id", "model", "response"], orient="row").write_parquet(path)
    return path


@pytest.fixture(scope="module")
def replay_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    folder = tmp_path_factory.mktemp("replay")
    labels = write_labels(folder / "labels.parquet", LABELS)
    first = write_responses(folder / "responses.parquet", RESPONSES)
    second = write_responses(folder / "more.parquet", MORE_RESPONSES)
    return labels, [first, second]


@pytest.fixture(scope="module")
def replay_server(replay_files: tuple[Path, list[Path]]) -> Iterator[SimServer]:
    labels, responses = replay_files
    with SimServer(SimConfig(seed=3), replay=Replay.load(labels, responses)) as server:
        yield server


@pytest.fixture
def replayed(replay_server: SimServer) -> Iterator[SimServer]:
    """The replay-mode server, its config and counters reset around the test."""
    replay_server.configure(**SimConfig(seed=3).as_dict())
    replay_server.reset()
    yield replay_server
    replay_server.configure(**SimConfig(seed=3).as_dict())


@pytest.fixture
def oai(replayed: SimServer) -> Iterator[openai.OpenAI]:
    with openai_client(replayed) as client:
        yield client


@pytest.fixture
def claude(replayed: SimServer) -> Iterator[anthropic.Anthropic]:
    with anthropic_client(replayed) as client:
        yield client


def post(server: SimServer, path: str, body: Any, headers: dict[str, str] | None = None) -> Any:
    """(status, JSON body) of a POST."""
    req = urllib.request.Request(
        server.url + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def chat(client: openai.OpenAI, model: str, prompt: str, **kwargs: Any) -> Any:
    messages = [{"role": "system", "content": "Be helpful."}, {"role": "user", "content": prompt}]
    return client.chat.completions.create(model=model, messages=messages, **kwargs)


def judge(client: openai.OpenAI, question: str, answer: str, model: str = "judge-1") -> Any:
    messages: Any = judge_messages(question, answer)
    return client.chat.completions.create(model=model, messages=messages)


# ---------------------------------------------------------------- loading


def test_load_keys_answers_by_prompt_text_and_model(replay_files: Any) -> None:
    replay = Replay.load(*replay_files)
    assert replay.recorded(A, Q1) == ANSWER_A1  # the first prompt_id and the first file win
    assert replay.recorded(B, Q1) == ANSWER_B1
    assert replay.recorded(B, Q2) is None  # labelled, not recorded
    assert replay.recorded(A, "not a recorded prompt") is None
    assert replay.recorded("model-A", Q1) is None  # names match exactly
    assert replay.quality(Q1, ANSWER_B1) == 0.3
    assert replay.quality(Q1, "the later id's answer") == 0.0  # judged under its own id
    assert replay.describe() == "3 prompts, 5 recorded answers of 2 models"


def test_load_skips_null_rows_and_casts_ids(tmp_path: Path) -> None:
    labels = pl.DataFrame(
        {"prompt_id": [1, 2], "prompt": ["P1", None], "model": [A, A], "quality": [1, 0]}
    )
    labels.write_parquet(tmp_path / "l.parquet")
    responses = pl.DataFrame({"prompt_id": [1, 2], "model": [A, A], "response": [None, "R2"]})
    responses.write_parquet(tmp_path / "r.parquet")
    replay = Replay.load(tmp_path / "l.parquet", [tmp_path / "r.parquet"])
    assert replay.prompt_ids == {"P1": "1"} and replay.responses == {}


@pytest.mark.parametrize(
    ("labels_columns", "responses_columns", "needle"),
    [
        (["prompt_id", "prompt", "model"], ["prompt_id", "model", "response"], "'quality'"),
        (["prompt_id", "prompt", "model", "quality"], ["prompt_id", "model"], "'response'"),
    ],
)
def test_load_names_the_missing_column(
    tmp_path: Path, labels_columns: list[str], responses_columns: list[str], needle: str
) -> None:
    from routing.errors import InputError

    columns = {c: [0.5 if c == "quality" else "x"] for c in labels_columns}
    pl.DataFrame(columns).write_parquet(tmp_path / "l.parquet")
    pl.DataFrame({c: ["x"] for c in responses_columns}).write_parquet(tmp_path / "r.parquet")
    with pytest.raises(InputError, match=f"has no column {needle}"):
        Replay.load(tmp_path / "l.parquet", [tmp_path / "r.parquet"])


def test_load_refuses_text_grades_in_one_line(tmp_path: Path) -> None:
    from routing.errors import InputError

    columns = {"prompt_id": ["a"], "prompt": ["p"], "model": ["m"], "quality": ["good"]}
    pl.DataFrame(columns).write_parquet(tmp_path / "l.parquet")
    write_responses(tmp_path / "r.parquet", [("a", "m", "r")])
    with pytest.raises(InputError, match="column 'quality' must hold numbers") as refused:
        Replay.load(tmp_path / "l.parquet", [tmp_path / "r.parquet"])
    assert "\n" not in str(refused.value)


# ---------------------------------------------------------------- realtime, OpenAI


def test_hit_serves_the_recording_with_o200k_usage(replayed: SimServer, oai: Any) -> None:
    resp = chat(oai, A, Q1)
    [choice] = resp.choices
    assert choice.message.content == ANSWER_A1 and choice.finish_reason == "stop"
    assert resp.model == A
    assert resp.usage.prompt_tokens == tokens("Be helpful.") + tokens(Q1)
    assert resp.usage.completion_tokens == tokens(ANSWER_A1)
    assert chat(oai, B, Q1).choices[0].message.content == ANSWER_B1
    # only the last user message is matched: a conversation ending in the prompt hits too
    turns: Any = [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "hi"},
        {"role": "user", "content": [{"type": "text", "text": Q2}]},
    ]
    again = oai.chat.completions.create(model=A, messages=turns)
    assert again.choices[0].message.content == ANSWER_A2
    assert replayed.stats()["replay"] == {"hits": 3}


def test_token_limit_cuts_the_recording(oai: Any) -> None:
    resp = chat(oai, A, Q2, max_tokens=5, logprobs=True)
    [choice] = resp.choices
    ids = encoding().encode_ordinary(ANSWER_A2)[:5]
    assert choice.finish_reason == "length" and resp.usage.completion_tokens == 5
    assert choice.message.content == encoding().decode(ids)
    assert ANSWER_A2.startswith(choice.message.content)
    assert len(choice.logprobs.content) == 5


def test_miss_is_a_permanent_404(replayed: SimServer) -> None:
    body = {"model": B, "messages": [{"role": "user", "content": Q2}]}
    status, error = post(replayed, "/v1/chat/completions", body)
    assert status == 404
    assert error["error"]["message"] == f"replay: no recorded answer of {B} for this prompt"
    assert (error["error"]["type"], error["error"]["code"]) == (
        "invalid_request_error",
        "replay_miss",
    )
    status, _ = post(
        replayed,
        "/v1/chat/completions",
        {**body, "messages": [{"role": "user", "content": "unknown"}]},
    )
    assert status == 404

    async def router_call() -> Any:
        client = make_client(Endpoint("sim", replayed.base_url, "k", 5.0), "aiohttp")
        try:
            return await call_once(client, B, ChatRequest(Q2, "Be brief.", 256))
        finally:
            await client.close()

    done = asyncio.run(router_call())
    assert not done.ok and done.status == 404 and not done.retryable
    assert "replay: no recorded answer" in (done.error or "")
    stats = replayed.stats()
    assert stats["replay"] == {"misses": 3} and stats["completions"] == 0
    assert stats["requests_by_model"] == {B: 3}  # one request each: nothing retried


def test_judge_grades_a_recorded_answer_by_its_label(replayed: SimServer, oai: Any) -> None:
    assert judge(oai, Q1, ANSWER_A1).choices[0].message.content == "SCORE: 10"
    resp = judge(oai, Q1, ANSWER_B1)
    assert resp.choices[0].message.content == reply(0.3) == "SCORE: 3"
    assert parse_reply(resp.choices[0].message.content) == pytest.approx(0.3)
    messages = judge_messages(Q1, ANSWER_B1)
    assert resp.usage.prompt_tokens == sum(tokens(m["content"]) for m in messages)
    assert resp.usage.completion_tokens == tokens("SCORE: 3")
    # a prompt longer than a judge request carries is matched as judge_messages cuts it
    assert len(Q_LONG) > MAX_JUDGED_CHARS
    assert judge(oai, Q_LONG, ANSWER_LONG).choices[0].message.content == "SCORE: 6"
    assert replayed.stats()["judge"] == {"requests": 3, "recorded": 3}


def test_judge_falls_back_to_the_difficulty_rule(replayed: SimServer, oai: Any) -> None:
    answers = [f"Answer number {i}." for i in range(40)]
    got = [judge(oai, Q1, a).choices[0].message.content for a in answers]
    assert got == [reply(rule_quality(Q1, a)) for a in answers]
    assert set(got) == {"SCORE: 10", "SCORE: 2"}  # P(pass) = 1 - difficulty(Q1)
    assert judge(oai, Q2, ANSWER_B1).choices[0].message.content == reply(
        rule_quality(Q2, ANSWER_B1)
    )  # a recorded answer, but to another prompt
    assert replayed.stats()["judge"] == {"requests": 41, "rule": 41}
    assert "replay" not in replayed.stats()  # a judge request is never a hit or a miss


# ---------------------------------------------------------------- realtime, Anthropic


def test_anthropic_hit_miss_and_judge(replayed: SimServer, claude: anthropic.Anthropic) -> None:
    msg = claude.messages.create(
        model=A, max_tokens=1000, system="Be helpful.", messages=[{"role": "user", "content": Q1}]
    )
    assert msg.content[0].text == ANSWER_A1 and msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens == tokens("Be helpful.") + tokens(Q1)
    assert msg.usage.output_tokens == tokens(ANSWER_A1)
    cut = claude.messages.create(model=A, max_tokens=4, messages=[{"role": "user", "content": Q2}])
    assert cut.stop_reason == "max_tokens" and cut.usage.output_tokens == 4
    with pytest.raises(anthropic.NotFoundError) as missed:
        claude.messages.create(model=B, max_tokens=99, messages=[{"role": "user", "content": Q2}])
    assert missed.value.status_code == 404
    assert missed.value.body["error"] == {
        "type": "not_found_error",
        "message": f"replay: no recorded answer of {B} for this prompt",
    }
    user = judge_messages(Q1, ANSWER_B1)[1]["content"]
    graded = claude.messages.create(
        model="claude-judge",
        max_tokens=16,
        system=JUDGE_SYSTEM,
        messages=[{"role": "user", "content": user}],
    )
    assert graded.content[0].text == "SCORE: 3"
    stats = replayed.stats()
    assert stats["replay"] == {"hits": 2, "misses": 1}
    assert stats["judge"] == {"requests": 1, "recorded": 1}


# ---------------------------------------------------------------- batch APIs


def chat_line(custom_id: str, model: str, messages: list[Any]) -> dict[str, Any]:
    body = {"model": model, "messages": messages, "max_tokens": 4096}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}


def test_openai_batch_lines_are_answered_from_the_replay(replayed: SimServer, oai: Any) -> None:
    lines = [
        chat_line("hit", A, [{"role": "user", "content": Q1}]),
        chat_line("miss", B, [{"role": "user", "content": Q2}]),
        chat_line("judge", "judge-1", judge_messages(Q1, ANSWER_B1)),
    ]
    data = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    upload = oai.files.create(file=("in.jsonl", io.BytesIO(data)), purpose="batch")
    batch = oai.batches.create(
        input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    ended = oai.batches.retrieve(batch.id)
    assert ended.status == "completed"
    assert (ended.request_counts.completed, ended.request_counts.failed) == (2, 1)
    output = {
        row["custom_id"]: row
        for row in map(json.loads, oai.files.content(ended.output_file_id).content.splitlines())
    }
    hit = output["hit"]["response"]
    assert hit["status_code"] == 200
    assert hit["body"]["choices"][0]["message"]["content"] == ANSWER_A1
    assert hit["body"]["usage"]["completion_tokens"] == tokens(ANSWER_A1)
    assert output["judge"]["response"]["body"]["choices"][0]["message"]["content"] == "SCORE: 3"
    [missed] = map(json.loads, oai.files.content(ended.error_file_id).content.splitlines())
    assert missed["custom_id"] == "miss" and missed["response"]["status_code"] == 404
    assert missed["response"]["body"]["error"]["code"] == "replay_miss"
    stats = replayed.stats()
    assert stats["replay"] == {"hits": 1, "misses": 1}
    assert stats["judge"] == {"requests": 1, "recorded": 1}


def test_anthropic_batch_is_answered_from_the_replay(
    replayed: SimServer, claude: anthropic.Anthropic
) -> None:
    def request(custom_id: str, model: str, prompt: str) -> Any:
        messages = [{"role": "user", "content": prompt}]
        return {
            "custom_id": custom_id,
            "params": {"model": model, "max_tokens": 999, "messages": messages},
        }

    batch = claude.messages.batches.create(requests=[request("hit", B, Q1), request("miss", B, Q2)])
    ended = claude.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended"
    assert (ended.request_counts.succeeded, ended.request_counts.errored) == (1, 1)
    results = {r.custom_id: r.result for r in claude.messages.batches.results(batch.id)}
    assert results["hit"].type == "succeeded"
    assert results["hit"].message.content[0].text == ANSWER_B1
    assert results["miss"].type == "errored"
    error = results["miss"].error.error
    assert error.type == "not_found_error" and "replay: no recorded answer" in error.message
    assert replayed.stats()["replay"] == {"hits": 1, "misses": 1}


# ---------------------------------------------------------------- the real recordings


def test_a_real_mixtral_answer_comes_back_byte_identical() -> None:
    labels = data.require(data.LABELS / "arena_bench_v1.parquet")
    responses = data.require(data.LABELS / "responses" / "arena_bench_v1.parquet")
    rows = pl.read_parquet(responses).filter(pl.col("model") == B)
    prompts = pl.read_parquet(labels).select("prompt_id", "prompt").unique("prompt_id")
    # a long answer with non-ASCII text, so the bytes are checked where they can differ
    joined = rows.join(prompts, on="prompt_id").sort(pl.col("response").str.len_chars())
    row = joined.filter(~pl.col("response").str.contains(r"^[\x00-\x7f]*$")).row(-1, named=True)
    replay = Replay.load(labels, [responses])
    with (
        SimServer(replay=replay) as server,
        openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as client,
    ):
        resp = chat(client, B, row["prompt"])
        text = resp.choices[0].message.content
        assert text.encode() == row["response"].encode()
        assert resp.usage.completion_tokens == tokens(row["response"])
        label = pl.read_parquet(labels).filter(
            (pl.col("prompt_id") == row["prompt_id"]) & (pl.col("model") == B)
        )
        graded = judge(client, row["prompt"], text).choices[0].message.content
        assert graded == reply(label["quality"][0])
        with pytest.raises(openai.NotFoundError):
            chat(client, "gpt-4-turbo", row["prompt"])  # labelled, its answer not kept


# ---------------------------------------------------------------- the judge without replay


def test_the_judge_is_deterministic_and_gives_both_grades(sim: SimServer) -> None:
    with openai.OpenAI(base_url=sim.base_url, api_key="k", max_retries=0) as client:
        first = judge(client, Q1, ANSWER_B1).choices[0].message.content
        assert judge(client, Q1, ANSWER_B1, model="other").choices[0].message.content == first
        assert first == reply(rule_quality(Q1, ANSWER_B1))
        grades = [judge(client, f"Question {i}?", "An answer.") for i in range(60)]
    scores = [g.choices[0].message.content for g in grades]
    assert set(scores) == {"SCORE: 10", "SCORE: 2"}
    assert scores == [reply(rule_quality(f"Question {i}?", "An answer.")) for i in range(60)]
    assert grades[0].usage.completion_tokens == tokens(scores[0])
    assert sim.stats()["judge"] == {"requests": 62, "rule": 62}
    assert "replay" not in sim.stats()


def test_a_harder_question_fails_more_answers() -> None:
    questions = [f"Question {i}?" for i in range(400)]
    easy = [q for q in questions if difficulty(q) < 0.25]
    hard = [q for q in questions if difficulty(q) > 0.75]
    answers = [f"Answer {j}." for j in range(20)]

    def pass_rate(group: list[str]) -> float:
        passed = sum(rule_quality(q, a) == 1.0 for q in group for a in answers)
        return passed / (len(group) * len(answers))

    assert easy and hard and pass_rate(easy) > 0.7 > 0.3 > pass_rate(hard)
    assert all(0.0 <= draw(a) < 1.0 for a in answers)
    assert rule_quality("q", "a") in (1.0, FAIL_QUALITY)


def test_anthropic_judge_without_replay(sim: SimServer) -> None:
    user = judge_messages(Q2, ANSWER_A2)[1]["content"]
    body = {
        "model": "claude-judge",
        "max_tokens": 8,
        "system": JUDGE_SYSTEM,
        "messages": [{"role": "user", "content": user}],
    }
    status, msg = post(sim, "/v1/messages", body, HEADERS)
    assert status == 200 and msg["content"][0]["text"] == reply(rule_quality(Q2, ANSWER_A2))
    # not a judge request: another system prompt gets the simulator's generated answer
    status, msg = post(sim, "/v1/messages", {**body, "system": "Be brief."}, HEADERS)
    assert status == 200 and not msg["content"][0]["text"].startswith("SCORE:")


# ---------------------------------------------------------------- the command line


def free_port_held() -> socket.socket:
    """A listening socket on a free loopback port: a server that binds it first fails."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (
            ["--replay", "bad.parquet", "--responses", "x.parquet"],
            ["labels file bad.parquet has no column 'quality'", "needs prompt_id"],
        ),
        (["--replay", "absent.parquet", "--responses", "x.parquet"], ["not found: absent"]),
        (["--replay", "bad.parquet"], ["--replay LABELS and --responses FILE go together"]),
        (["--replay", "good.parquet", "--responses", "x.parquet"], ["not found: x.parquet"]),
    ],
)
def test_cli_refuses_bad_replay_files_before_binding(
    cli: CliRunner, tmp_path: Path, args: list[str], needles: list[str]
) -> None:
    pl.DataFrame({"prompt_id": ["a"], "prompt": ["p"], "model": ["m"]}).write_parquet(
        tmp_path / "bad.parquet"
    )
    write_labels(tmp_path / "good.parquet", LABELS[:1])
    with free_port_held() as held:
        port = str(held.getsockname()[1])
        proc = cli("sim-provider", "--port", port, *args)
    assert_clean_error(proc, *needles, max_lines=2)
    assert "listening" not in proc.stdout + proc.stderr


def test_cli_reports_a_taken_port_in_one_line(cli: CliRunner) -> None:
    with free_port_held() as held:
        port = str(held.getsockname()[1])
        proc = cli("sim-provider", "--port", port)
    assert_clean_error(proc, f"cannot listen on 127.0.0.1:{port}", max_lines=3)


def test_python_m_workers_sim_refuses_a_bad_replay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from workers.sim.cli import main

    write_labels(tmp_path / "l.parquet", LABELS[:1])
    with pytest.raises(SystemExit) as exited:
        main(["--replay", str(tmp_path / "l.parquet")])
    assert exited.value.code == 2
    assert "--replay LABELS and --responses FILE go together" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--replay", str(tmp_path / "l.parquet"), "--responses", str(tmp_path / "no")])
    assert "replay: responses file not found" in capsys.readouterr().err
