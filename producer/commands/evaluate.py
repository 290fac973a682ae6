"""``batch-router eval``: a router against the baselines on a labels file.

The command glue around :mod:`routing.evaluation`: read the labels, score the prompts with the
heuristic or a trained router, print the metrics (or one JSON object), and optionally write
the scores and a self-contained HTML frontier plot. Register it in ``producer/cli.py`` as::

    batch-router eval LABELS --weak W --strong S --router heuristic|PATH
                      [--responses FILE…] [--json] [--scores-out FILE] [--html FILE]

With ``--responses`` (the models' answer texts, joined on ``prompt_id`` and ``model``) only
the prompts the weak model answered are evaluated; a verifier (``train --verifier``) needs
them and is evaluated as a **cascade**: the weak model answers every prompt, the verifier
reads that answer, and the prompts it sends on are answered by the strong model too — so
the cost of "strong" is the weak call plus the strong call, on the curve and the baselines.

Example::

    batch-router eval ../shared/data/labels/gsm8k.parquet \\
        --weak mixtral-8x7b-instruct-v0.1 --strong gpt-4-1106-preview \\
        --router heuristic --scores-out scores.parquet --html frontier.html
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from rich.console import Console
from rich.table import Table

from routing.classify import HeuristicScorer, Scorer
from routing.errors import ConfigError, InputError
from routing.evaluation.labels import Pair
from routing.evaluation.multitier import MultiTier, multi_tier
from routing.evaluation.scorecard import FRONTIER_SHARES, Evaluation, evaluate
from routing.features import compute_features
from routing.tokens import count_tokens

SCORE_FORMATS = (".parquet", ".csv")


def run_eval(
    labels: Path,
    weak: str,
    strong: str,
    router: str,
    as_json: bool,
    scores_out: Path | None,
    html_out: Path | None,
    console: Console,
    *,
    share: float | None = None,
    threshold: float | None = None,
    responses: Sequence[Path] = (),
) -> dict[str, Any]:
    """Evaluate ``router`` (``heuristic`` or a trained model file) on ``labels`` for the
    ``weak``/``strong`` pair; print a report (or JSON) on ``console``; return the result.

    ``share`` is the operating point for the confusion matrix and regret (default: the
    oracle's share of prompts that need the strong model); ``threshold`` the quality that
    counts as adequate (default: 1 for 0/1 labels, else the strong model's own quality).
    ``responses``: answer files; see the module doc (cascade evaluation of a verifier).
    """
    if scores_out is not None and scores_out.suffix.lower() not in SCORE_FORMATS:
        raise ConfigError(f"--scores-out {scores_out}: use a .parquet or .csv file name")
    scorer = load_router(router)
    cascade = bool(getattr(scorer, "verifier", False))
    if cascade and not responses:
        raise InputError(
            f"router {router!r} is a verifier: it reads the weak model's answers; give "
            "--responses FILE (prompt_id, model, response)"
        )
    frame = read_labels(labels)
    answers: dict[str, str] | None = None
    if responses:
        answers, frame = _answered(frame, weak, responses)
    pair = Pair.from_labels(frame, weak, strong)
    weak_answers = None if answers is None else [answers[str(i)] for i in pair.prompt_ids]
    scores = score_prompts(scorer, pair.prompts, weak_answers if cascade else None)
    if cascade:  # the weak call is paid on every prompt; "strong" means both calls
        pair = replace(pair, c_strong=pair.c_weak + pair.c_strong)
    name = "heuristic" if router == "heuristic" else Path(router).name
    result = evaluate(pair, scores, name=name, share=share, threshold=threshold)
    tiers = None
    if frame.get_column("model").n_unique() > 2:
        tiers = multi_tier(frame, reference=strong, threshold=threshold)
    out = {
        "labels": str(labels),
        "router_version": scorer.version,
        "cascade": cascade,
        "responses": [str(p) for p in responses],
        **result.to_dict(),
    }
    if tiers is not None:
        out["multi_tier"] = tiers.to_dict()
    if scores_out is not None:
        write_scores(scores_out, pair.prompt_ids, scores)
    if html_out is not None:
        html_out.write_text(render_html(result, labels.name))
    if as_json:
        console.print_json(json.dumps(out))
    else:
        print_report(console, result, tiers, labels.name)
    return out


def read_labels(path: Path) -> pl.DataFrame:
    if not path.is_file():
        raise InputError(f"labels file not found: {path}")
    try:
        return pl.read_parquet(path)
    except Exception as exc:  # polars raises several kinds for a bad file
        raise InputError(f"{path}: not a readable Parquet labels file: {exc}") from exc


def _answered(
    frame: pl.DataFrame, weak: str, responses: Sequence[Path]
) -> tuple[dict[str, str], pl.DataFrame]:
    """The weak model's answer per prompt id, and the labels of the prompts it answered."""
    from routing.learned.labels import load_responses

    found = load_responses(responses).filter(pl.col("model") == weak)
    answers = dict(found.select("prompt_id", "response").iter_rows())
    if not answers:
        raise InputError(f"--responses hold no answer of the weak model {weak!r}")
    kept = frame.filter(pl.col("prompt_id").cast(pl.String).is_in(list(answers)))
    if kept.height == 0:
        raise InputError(f"--responses: no answer of {weak!r} matches a prompt_id in the labels")
    return answers, kept


def load_router(router: str) -> Scorer:
    """``heuristic``, or a trained router artifact loaded by ``routing.learned``."""
    if router == "heuristic":
        return HeuristicScorer()
    path = Path(router)
    if not path.exists():
        raise ConfigError(
            f"router {router!r}: no such file; give 'heuristic' or a model file written by "
            "`batch-router train`"
        )
    try:
        from routing.learned.artifact import load_scorer
    except ImportError as exc:
        raise ConfigError(
            f"router {router!r}: trained routers are not available in this build "
            f"(routing.learned: {exc})"
        ) from exc
    scorer: Scorer = load_scorer(path)
    return scorer


def score_prompts(
    scorer: Scorer, prompts: pl.Series, answers: Sequence[str] | None = None
) -> np.ndarray:
    """Scores as the router computes them: features and o200k tokens of each prompt (and,
    for a verifier, the weak model's ``answers``)."""
    texts = prompts.cast(pl.String).to_list()
    features = compute_features(pl.Series("prompt", texts, dtype=pl.String))
    tokens = count_tokens(texts)
    score_texts = getattr(scorer, "score_texts", None)
    if answers is not None and score_texts is not None:
        from routing.learned.answer import answer_frame

        frame = answer_frame(texts, list(answers))
        return np.asarray(score_texts(texts, features, tokens, frame), dtype=np.float64)
    if score_texts is not None:  # the learned scorer reads the text too (n-grams)
        return np.asarray(score_texts(texts, features, tokens), dtype=np.float64)
    return np.asarray(scorer.score(features, tokens), dtype=np.float64)


def write_scores(path: Path, prompt_ids: pl.Series, scores: np.ndarray) -> None:
    frame = pl.DataFrame({"prompt_id": prompt_ids, "score": scores})
    if path.suffix.lower() == ".csv":
        frame.write_csv(path)
    else:
        frame.write_parquet(path)


# --- terminal report ---------------------------------------------------------------------


def _f(value: float | None, pct: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value:.1%}" if pct else f"{value:.3f}"


def print_report(console: Console, result: Evaluation, tiers: MultiTier | None, title: str) -> None:
    p = result.pair
    console.print(
        f"[bold]{title}[/]: {p.n:,} prompts; weak {p.weak} quality {p.q_weak.mean():.3f}, "
        f"strong {p.strong} quality {p.q_strong.mean():.3f}, "
        f"all-weak cost {p.c_weak.mean() / p.c_strong.mean():.3f}x all-strong",
        highlight=False,
    )
    rows = (result.router, *result.baselines)
    metrics = Table(title="router vs baselines", title_justify="left")
    for col in ("router", "APGR", "CPT(50%)", "CPT(80%)", "AIQ", "saving@95%", "AUC"):
        metrics.add_column(col, justify="left" if col == "router" else "right")
    for r in rows:
        metrics.add_row(
            r.name,
            _f(r.apgr),
            _f(r.cpt50, True),
            _f(r.cpt80, True),
            _f(r.aiq),
            _f(r.saving_at_95, True),
            _f(r.auc),
        )
    console.print(metrics)
    console.print(_operating_table(result))
    console.print(_frontier_table(result))
    if tiers is not None:
        console.print(_tiers_table(tiers))


def _operating_table(result: Evaluation) -> Table:
    table = Table(
        title=f"at {result.share:.1%} of prompts to the strong model "
        "(confusion: cheapest adequate → chosen)",
        title_justify="left",
    )
    cols = ("router", "strong", "quality", "PGR", "cost", "regret")
    for col in (*cols, "weak→weak", "weak→strong", "strong→weak", "strong→strong"):
        table.add_column(col, justify="left" if col == "router" else "right")
    for r in (result.router, *result.baselines):
        d, c = r.decision, r.decision.confusion
        table.add_row(
            r.name,
            _f(d.strong_share, True),
            _f(d.quality),
            _f(d.pgr),
            f"{d.cost_ratio:.3f}x",
            _f(d.regret),
            *(f"{v:,.0f}" for v in (c.weak_to_weak, c.weak_to_strong, c.strong_to_weak)),
            f"{c.strong_to_strong:,.0f}",
        )
    return table


def _frontier_table(result: Evaluation) -> Table:
    curves = [r for r in (result.router, *result.baselines) if r.curve is not None]
    table = Table(title="frontier: quality (cost vs all-strong)", title_justify="left")
    table.add_column("to strong", justify="right")
    for r in curves:
        table.add_column(r.name, justify="right")
    all_strong = float(result.pair.c_strong.mean())
    for x in FRONTIER_SHARES:
        cells = []
        for r in curves:
            assert r.curve is not None
            q, c = r.curve.at(x)
            cells.append(f"{q:.3f} ({c / all_strong:.2f}x)")
        table.add_row(f"{x:.0%}", *cells)
    return table


def _tiers_table(tiers: MultiTier) -> Table:
    table = Table(
        title=f"all models on {tiers.prompts:,} prompts labelled for each (cheapest first; "
        f"adequate = as good as {tiers.reference})",
        title_justify="left",
    )
    for col in ("model", "quality", "cost / prompt", "cheapest adequate"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for row in tiers.rows:
        table.add_row(
            row.model,
            f"{row.quality:.3f}",
            f"${row.cost:.6f}",
            f"{row.cheapest_adequate_share:.1%}",
        )
    table.add_section()
    table.add_row(
        "oracle (best per prompt)", f"{tiers.oracle_quality:.3f}", f"${tiers.oracle_cost:.6f}", ""
    )
    table.add_row(
        "cheapest adequate", f"{tiers.adequate_quality:.3f}", f"${tiers.adequate_cost:.6f}", ""
    )
    return table


# --- HTML frontier plot ------------------------------------------------------------------

_COLORS = {"random": "#999999", "length-only": "#e69f00", "oracle": "#009e73"}
_ROUTER_COLOR = "#0072b2"
_W, _H, _PAD = 460, 320, 48


def render_html(result: Evaluation, title: str) -> str:
    """A self-contained page: the two frontier plots (inline SVG) and the metrics table."""
    p = result.pair
    all_strong = float(p.c_strong.mean())
    curves = [r for r in (result.router, *result.baselines) if r.curve is not None]
    by_share, by_cost = [], []
    for r in curves:
        assert r.curve is not None
        idx = np.unique(np.linspace(0, len(r.curve.share) - 1, 400).astype(int))
        color = _COLORS.get(r.name, _ROUTER_COLOR)
        q = r.curve.quality[idx]
        by_share.append((r.name, color, r.curve.share[idx] * 100, q))
        by_cost.append((r.name, color, r.curve.cost[idx] / all_strong, q))
    refs = [(f"{p.weak} (all weak)", float(p.q_weak.mean())), (p.strong, float(p.q_strong.mean()))]
    rows = "".join(
        f"<tr><td>{html.escape(r.name)}</td><td>{_f(r.apgr)}</td><td>{_f(r.cpt50, True)}</td>"
        f"<td>{_f(r.cpt80, True)}</td><td>{_f(r.aiq)}</td><td>{_f(r.saving_at_95, True)}</td>"
        f"<td>{_f(r.auc)}</td></tr>"
        for r in (result.router, *result.baselines)
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>batch-router eval: {html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:2px 10px;text-align:right}}
td:first-child,th:first-child{{text-align:left}}svg{{margin-right:1em}}</style></head><body>
<h1>{html.escape(title)}: {html.escape(result.router.name)}</h1>
<p>{p.n:,} prompts; weak {html.escape(p.weak)}, strong {html.escape(p.strong)}.</p>
{_svg(by_share, refs, "calls to the strong model (%)", (0.0, 100.0))}
{_svg(by_cost, refs, "cost (x all-strong)", None)}
<table><tr><th>router</th><th>APGR</th><th>CPT(50%)</th><th>CPT(80%)</th><th>AIQ</th>
<th>saving@95%</th><th>AUC</th></tr>{rows}</table></body></html>
"""


Series = tuple[str, str, np.ndarray, np.ndarray]


def _svg(
    series: list[Series], refs: list[tuple[str, float]], xlabel: str, xr: tuple[float, float] | None
) -> str:
    x0, x1 = xr or (0.0, max(1.0, max(float(s[2].max()) for s in series)))
    ys = [y for s in series for y in (float(s[3].min()), float(s[3].max()))]
    y0, y1 = min(*ys, *(v for _, v in refs)), max(*ys, *(v for _, v in refs))
    y0, y1 = y0 - 0.02, y1 + 0.02

    def sx(x: float) -> float:
        return _PAD + (x - x0) / (x1 - x0) * (_W - 2 * _PAD)

    def sy(y: float) -> float:
        return _H - _PAD - (y - y0) / (y1 - y0) * (_H - 2 * _PAD)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H + 20}">']
    parts.append(
        f'<rect x="{_PAD}" y="{_PAD}" width="{_W - 2 * _PAD}" height="{_H - 2 * _PAD}" '
        'fill="none" stroke="#ccc"/>'
    )
    for t in np.linspace(x0, x1, 6):
        parts.append(
            f'<text x="{sx(t):.1f}" y="{_H - _PAD + 14}" font-size="10" '
            f'text-anchor="middle">{t:.3g}</text>'
        )
    for t in np.linspace(y0, y1, 6):
        parts.append(
            f'<text x="{_PAD - 4}" y="{sy(t) + 3:.1f}" font-size="10" '
            f'text-anchor="end">{t:.2f}</text>'
        )
    for name, value in refs:
        parts.append(
            f'<line x1="{_PAD}" x2="{_W - _PAD}" y1="{sy(value):.1f}" y2="{sy(value):.1f}" '
            f'stroke="#d55e00" stroke-dasharray="4 3"><title>{html.escape(name)}</title></line>'
        )
    for i, (name, color, xs, qs) in enumerate(series):
        pts = " ".join(
            f"{sx(float(a)):.1f},{sy(float(b)):.1f}" for a, b in zip(xs, qs, strict=True)
        )
        parts.append(
            f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2">'
            f"<title>{html.escape(name)}</title></polyline>"
        )
        legend_y = _H - _PAD - 8 - 13 * (len(series) - 1 - i)  # bottom right: below the curves
        parts.append(
            f'<text x="{_W - _PAD - 6}" y="{legend_y}" font-size="11" text-anchor="end" '
            f'fill="{color}">{html.escape(name)}</text>'
        )
    parts.append(
        f'<text x="{_W / 2}" y="{_H - 8}" font-size="12" text-anchor="middle">'
        f"{html.escape(xlabel)}</text>"
    )
    parts.append(
        f'<text x="12" y="{_H / 2}" font-size="12" text-anchor="middle" '
        f'transform="rotate(-90 12 {_H / 2})">mean quality</text></svg>'
    )
    return "\n".join(parts)
