"""The labelled files of ``batch-router train``: a SPEC (``PATH:weak,strong[,more…]``), its
prompts with a quality for every model (:class:`LabelSet`), and feedback files."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import polars as pl

from routing.errors import InputError
from routing.tokens import count_tokens

REQUIRED = ("prompt_id", "prompt", "model", "quality")


@dataclass(frozen=True)
class Spec:
    """A labels file and the models to learn from, cheapest first."""

    path: Path
    models: tuple[str, ...]


def parse_spec(text: str, min_models: int = 2) -> Spec:
    """``PATH:m1,m2[,…]`` → :class:`Spec`; the file must exist."""
    path, sep, names = str(text).rpartition(":")
    models = tuple(m.strip() for m in names.split(",") if m.strip()) if sep else ()
    if not sep or not path:
        raise InputError(f"SPEC {text!r}: expected PATH:weak,strong[,more…]")
    if len(models) < min_models:
        raise InputError(f"SPEC {text!r}: name at least {min_models} models, cheapest first")
    if len(set(models)) != len(models):
        raise InputError(f"SPEC {text!r}: a model is listed twice")
    if not Path(path).is_file():
        raise InputError(f"SPEC {text!r}: no such file {path}")
    return Spec(Path(path), models)


@dataclass(frozen=True)
class LabelSet:
    """One file's prompts labelled for every model of a spec (``quality``: prompts × models)."""

    name: str
    models: tuple[str, ...]
    rows: pl.DataFrame  # the long rows used: prompt_id, prompt, model, quality, cost_usd, …
    prompt_ids: list[str]
    prompts: list[str]
    input_tokens: np.ndarray
    quality: np.ndarray
    answers: list[str] | None = None  # the cheapest model's answer per prompt (--responses)

    @property
    def n(self) -> int:
        return len(self.prompts)

    def take(self, idx: np.ndarray) -> LabelSet:
        ids = [self.prompt_ids[i] for i in idx]
        return replace(
            self,
            rows=self.rows.filter(pl.col("prompt_id").is_in(ids)),
            prompt_ids=ids,
            prompts=[self.prompts[i] for i in idx],
            input_tokens=self.input_tokens[idx],
            quality=self.quality[idx],
            answers=None if self.answers is None else [self.answers[i] for i in idx],
        )


def _read(path: Path, required: Sequence[str] = REQUIRED, what: str = "") -> pl.DataFrame:
    name = f"{what}{path}"
    if not path.is_file():
        raise InputError(f"{name}: no such file")
    try:
        frame = pl.read_parquet(path)
    except Exception as exc:
        raise InputError(f"{name}: not a readable Parquet file ({exc})") from exc
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise InputError(f"{name}: missing column(s) {missing}; need {list(required)}")
    return frame


def load_labels(spec: Spec) -> LabelSet:
    """Read a spec's file: the prompts with a quality for every one of its models."""
    frame = _read(spec.path)
    present = sorted(frame.get_column("model").drop_nulls().unique().to_list())
    unknown = [m for m in spec.models if m not in present]
    if unknown:
        raise InputError(f"{spec.path}: unknown model(s) {unknown}; the file has {present}")
    rows = (
        frame.filter(pl.col("model").is_in(spec.models))
        .drop_nulls(["prompt_id", "quality"])
        .with_columns(pl.col("prompt_id").cast(pl.String))
    )
    if rows.select(pl.struct("prompt_id", "model").is_duplicated().any()).item():
        raise InputError(f"{spec.path}: more than one row for the same (prompt_id, model)")
    complete = pl.col("model").n_unique().over("prompt_id") == len(spec.models)
    rows = rows.filter(complete).sort("prompt_id", maintain_order=True)
    if "cost_usd" not in rows.columns:
        rows = rows.with_columns(cost_usd=pl.lit(0.0))
    if "input_tokens" not in rows.columns:
        tokens = count_tokens(rows.get_column("prompt").to_list())
        rows = rows.with_columns(input_tokens=pl.Series(tokens))
    rows = rows.with_columns(pl.col("cost_usd").fill_null(0.0), pl.col("prompt").fill_null(""))
    wide = rows.pivot(on="model", index="prompt_id", values="quality", sort_columns=False)
    first = rows.unique("prompt_id", keep="first", maintain_order=True)
    wide = first.select("prompt_id", "prompt", "input_tokens").join(wide, on="prompt_id")
    if wide.height == 0:
        raise InputError(f"{spec.path}: no prompt is labelled for all of {list(spec.models)}")
    name = spec.path.stem
    if "dataset" in rows.columns and rows.get_column("dataset").n_unique() == 1:
        name = str(rows.get_column("dataset")[0])
    return LabelSet(
        name=name,
        models=spec.models,
        rows=rows,
        prompt_ids=wide.get_column("prompt_id").cast(pl.String).to_list(),
        prompts=wide.get_column("prompt").to_list(),
        input_tokens=wide.get_column("input_tokens").cast(pl.Int64).to_numpy(),
        quality=wide.select(spec.models).cast(pl.Float64).to_numpy(),
    )


def load_feedback(path: Path | str, specs: Sequence[Spec]) -> LabelSet:
    """A feedback file, ``FILE`` or ``FILE:models``; bare, it must hold one SPEC's models."""
    text = str(path)
    if not Path(text).is_file() and ":" in text:
        return load_labels(parse_spec(text))
    if not Path(text).is_file():
        raise InputError(f"--feedback {text}: no such file")
    present = set(_read(Path(text)).get_column("model").drop_nulls().unique().to_list())
    for spec in specs:
        if set(spec.models) <= present:
            return load_labels(Spec(Path(text), spec.models))
    wanted = " or ".join(str(list(s.models)) for s in specs)
    raise InputError(
        f"--feedback {text}: holds models {sorted(present)}, not the SPEC models {wanted}; "
        "name them: --feedback FILE:weak,strong"
    )


RESPONSE_COLUMNS = ("prompt_id", "model", "response")


def load_responses(paths: Sequence[Path | str]) -> pl.DataFrame:
    """The models' answer texts (``prompt_id, model, response``, as in
    ``../shared/data/labels/responses/``) of every file; one answer per (prompt_id, model)."""
    frames = []
    for path in paths:
        frame = _read(Path(path), RESPONSE_COLUMNS, "--responses ")
        frames.append(
            frame.select(
                pl.col("prompt_id").cast(pl.String),
                pl.col("model").cast(pl.String),
                pl.col("response").cast(pl.String),
            ).drop_nulls()
        )
    out = (
        pl.concat(frames)
        if frames
        else pl.DataFrame(schema=dict.fromkeys(RESPONSE_COLUMNS, pl.String))
    )
    if out.select(pl.struct("prompt_id", "model").is_duplicated().any()).item():
        raise InputError("--responses: more than one answer for the same (prompt_id, model)")
    return out


def with_answers(labels: LabelSet, responses: pl.DataFrame) -> LabelSet:
    """``labels`` restricted to the prompts the cheapest model has an answer for, with it:
    from the labels file's own ``response`` column when it has one (exploration labels),
    else from ``responses`` (``--responses``)."""
    weak = labels.models[0]
    own = labels.rows
    if "response" in own.columns:
        own = own.filter(pl.col("model") == weak).select("prompt_id", "response").drop_nulls()
        responses = pl.concat(
            [responses.filter(pl.col("model") == weak).select("prompt_id", "response"), own]
        ).unique("prompt_id", keep="last")
    else:
        responses = responses.filter(pl.col("model") == weak).select("prompt_id", "response")
    by_id = dict(responses.iter_rows())
    keep = np.array([i for i, p in enumerate(labels.prompt_ids) if p in by_id], dtype=np.int64)
    if len(keep) == 0:
        raise InputError(
            f"{labels.name}: no answer of {weak!r} for its prompts — give --responses FILE "
            "(prompt_id, model, response; joined on prompt_id and model)"
        )
    out = labels.take(keep)
    return replace(out, answers=[by_id[p] for p in out.prompt_ids])
