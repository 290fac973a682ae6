"""Offline evaluation of a router on labelled prompts (pure: frames and arrays in, numbers out).

A labels frame is long: one row per (prompt, model) with ``prompt_id, prompt, model, quality,
cost_usd, input_tokens`` (the format of ``../shared/data/labels/*.parquet``). A router is a
score per prompt, higher meaning "needs the strong model". Sweeping a threshold over the
scores routes 0 % … 100 % of prompts to the strong model and traces the **frontier**; the
metrics summarise it (each is defined on its function and in ``docs/evaluation.md``):

- :func:`~routing.evaluation.metrics.apgr` — average performance gap recovered (RouteLLM),
- :func:`~routing.evaluation.metrics.cpt` — call-performance threshold, CPT(50 %) and
  CPT(80 %) (RouteLLM),
- :func:`~routing.evaluation.metrics.aiq` — average improvement in quality over the cost
  range (RouterBench),
- :func:`~routing.evaluation.metrics.saving_at` — cost saving at 95 % of the strong model's
  quality,
- :func:`~routing.evaluation.decision.decide` — one operating point: quality, cost, confusion
  matrix, regret.

Ties in the scores are broken at random *in expectation*: inside a group of equal scores the
frontier is the straight line between the group's ends. So a constant score is exactly the
random router (APGR 0.5), and every number is deterministic.

The modules, in the order a result is built:

- :mod:`~routing.evaluation.labels` — the labels frame checked and pivoted to a weak/strong
  :class:`~routing.evaluation.labels.Pair`, and which model is the cheapest adequate one;
- :mod:`~routing.evaluation.curve` — the frontier of a score-ranked router;
- :mod:`~routing.evaluation.metrics` — PGR, APGR, CPT, AIQ, saving at 95 %, AUC;
- :mod:`~routing.evaluation.decision` — one operating point and its confusion matrix;
- :mod:`~routing.evaluation.baselines` — the oracle, length-only and random routers;
- :mod:`~routing.evaluation.scorecard` — a router and the baselines scored alike
  (:func:`~routing.evaluation.scorecard.evaluate`);
- :mod:`~routing.evaluation.multitier` — every model of a file, for more than two tiers.
"""
