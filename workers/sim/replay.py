"""Replay mode: the simulator answers with real models' recorded answers.

``batch-router sim-provider --replay LABELS --responses FILE [--responses FILE …]`` (or
``SimServer(replay=Replay.load(...))``) loads, once at start:

- LABELS, a labels Parquet in the long format of ``../shared/data/labels/``: one row per
  (prompt, model) with at least ``prompt_id``, ``prompt``, ``model`` and ``quality`` (in
  [0, 1]); other columns are ignored;
- each FILE, a responses Parquet (``../shared/data/labels/responses/``): ``prompt_id``,
  ``model``, ``response``, joined to the labels on (``prompt_id``, ``model``); the first
  file that has a pair wins.

A missing file or column, or an unreadable file, is an :class:`~routing.errors.InputError`
naming the file and the column. Rows with a null in a needed column are skipped.

Serving (:func:`source`, used by every endpoint, realtime and batch):

- a chat request for model M whose **last user message** is exactly a recorded prompt text
  P (the first ``prompt_id`` with that text, in the labels' order) is answered with the
  recorded response of (that prompt_id, M) — model names must equal the labels' exactly
  (``gpt-4-0314``, ``Mixtral-8x7B-Instruct-v0.1``). Usage as for any answer: the prompt
  tokens of all message texts, the completion tokens the o200k count of the response; a
  token limit below that cuts it as the simulator cuts its own answers (``length``);
- a request with no such recording is a **miss**: 404 with OpenAI's error body
  ``{"error": {"message": "replay: no recorded answer of M for this prompt", "type":
  "invalid_request_error", "code": "replay_miss"}}`` (Anthropic: ``not_found_error``) — a
  permanent error, which the router does not retry; in a batch, that request's error line;
- a **judge request** (workers/sim/judge.py) whose question is a recorded prompt text and
  whose answer is a recorded response to it is graded with that label row's quality
  (``reply(quality)``); any other judge request falls back to the difficulty rule. Both
  texts are compared as :func:`routing.judge.judge_messages` sends them (each cut to
  :data:`~routing.judge.MAX_JUDGED_CHARS`), so a long prompt still matches.

Counters (``/_sim/stats``): ``replay: {hits, misses}`` and ``judge: {requests, recorded,
rule}`` (the latter in every mode).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from routing.errors import InputError
from routing.judge import MAX_JUDGED_CHARS
from routing.judge import reply as judge_reply
from workers.sim.judge import rule_quality
from workers.sim.prompt import Prompt

__all__ = [
    "GENERATED",
    "HIT",
    "JUDGE_RECORDED",
    "JUDGE_RULE",
    "LABEL_COLUMNS",
    "MISS",
    "RESPONSE_COLUMNS",
    "Replay",
    "miss_message",
    "source",
]

LABEL_COLUMNS = ("prompt_id", "prompt", "model", "quality")
RESPONSE_COLUMNS = ("prompt_id", "model", "response")
# Where an answer comes from (:func:`source`).
GENERATED, HIT, MISS = "generated", "hit", "miss"
JUDGE_RECORDED, JUDGE_RULE = "judge_recorded", "judge_rule"


def _line(exc: Exception) -> str:
    """The first line of an error's text (polars adds multi-line context)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _read(path: Path, columns: Sequence[str], what: str) -> Any:
    """The ``columns`` of a Parquet file as a polars frame; InputError names what is wrong."""
    import polars as pl

    if not path.is_file():
        raise InputError(f"replay: {what} file not found: {path}")
    try:
        schema = pl.read_parquet_schema(path)
    except Exception as exc:  # polars raises several kinds for a file that is not Parquet
        raise InputError(
            f"replay: cannot read {what} file {path} as Parquet: {_line(exc)}"
        ) from exc
    missing = [c for c in columns if c not in schema]
    if missing:
        raise InputError(
            f"replay: {what} file {path} has no column {', '.join(map(repr, missing))} "
            f"(needs {', '.join(columns)}; has {', '.join(schema) or 'none'})"
        )
    if "quality" in columns and not schema["quality"].is_numeric():
        raise InputError(
            f"replay: {what} file {path}: column 'quality' must hold numbers in [0, 1], "
            f"not {schema['quality']}"
        )
    try:
        frame = pl.read_parquet(path, columns=list(columns))
        cast = [pl.col(c).cast(pl.Float64 if c == "quality" else pl.String) for c in columns]
        return frame.select(cast).drop_nulls()
    except Exception as exc:
        raise InputError(f"replay: cannot read {what} file {path}: {_line(exc)}") from exc


def _rows(frame: Any, *columns: str) -> Iterator[tuple[Any, ...]]:
    return zip(*(frame[c].to_list() for c in columns), strict=True)


@dataclass
class Replay:
    """Recorded answers and their grades, looked up by prompt text, model and answer."""

    prompt_ids: dict[str, str] = field(default_factory=dict)  # prompt text → first prompt_id
    responses: dict[tuple[str, str], str] = field(default_factory=dict)  # (id, model) → text
    grades: dict[tuple[str, str], float] = field(default_factory=dict)  # (question, answer)
    models: frozenset[str] = frozenset()

    @classmethod
    def load(cls, labels: Path | str, responses: Sequence[Path | str]) -> Replay:
        """Read the labels and responses files once (InputError when one is unusable)."""
        if not responses:
            raise InputError("replay: no responses file given (--responses FILE)")
        label_frame = _read(Path(labels), LABEL_COLUMNS, "labels")
        answer_frames = [_read(Path(p), RESPONSE_COLUMNS, "responses") for p in responses]
        return cls.build(
            _rows(label_frame, *LABEL_COLUMNS),
            (row for frame in answer_frames for row in _rows(frame, *RESPONSE_COLUMNS)),
        )

    @classmethod
    def build(
        cls,
        labels: Iterable[tuple[str, str, str, float]],
        responses: Iterable[tuple[str, str, str]],
    ) -> Replay:
        """From (prompt_id, prompt, model, quality) and (prompt_id, model, response) rows."""
        replay = cls()
        label_rows = list(labels)
        for prompt_id, prompt, _, _ in label_rows:
            replay.prompt_ids.setdefault(prompt, prompt_id)
        known = {(prompt_id, model) for prompt_id, _, model, _ in label_rows}
        for prompt_id, model, response in responses:
            if (prompt_id, model) in known:
                replay.responses.setdefault((prompt_id, model), response)
        for prompt_id, prompt, model, quality in label_rows:
            answer = replay.responses.get((prompt_id, model))
            if answer is not None:
                key = (prompt[:MAX_JUDGED_CHARS], answer[:MAX_JUDGED_CHARS])
                replay.grades.setdefault(key, float(quality))
        replay.models = frozenset(model for _, model in replay.responses)
        return replay

    def recorded(self, model: str, prompt: str | None) -> str | None:
        """The recorded response of ``model`` to the prompt text ``prompt``, if any."""
        prompt_id = None if prompt is None else self.prompt_ids.get(prompt)
        return None if prompt_id is None else self.responses.get((prompt_id, model))

    def quality(self, question: str, answer: str) -> float | None:
        """The labelled quality of a recorded ``answer`` to the recorded prompt ``question``."""
        return self.grades.get((question, answer))

    def describe(self) -> str:
        return (
            f"{len(self.prompt_ids)} prompts, {len(self.responses)} recorded answers "
            f"of {len(self.models)} models"
        )


def miss_message(model: str) -> str:
    return f"replay: no recorded answer of {model} for this prompt"


def source(prompt: Prompt, replay: Replay | None) -> tuple[str, str | None]:
    """Where the answer to ``prompt`` comes from, and its text unless the simulator generates
    it: a judge request's grade (recorded, else by rule), a recorded answer (HIT), none
    (MISS, replay mode), or GENERATED (workers/sim/answer.py)."""
    if prompt.judge is not None:
        question, answer = prompt.judge
        grade = None if replay is None else replay.quality(question, answer)
        if grade is not None:
            return JUDGE_RECORDED, judge_reply(grade)
        return JUDGE_RULE, judge_reply(rule_quality(question, answer))
    if replay is None:
        return GENERATED, None
    text = replay.recorded(prompt.model, prompt.user)
    return (MISS, None) if text is None else (HIT, text)
