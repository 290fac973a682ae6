"""The simulated LLM provider: a real aiohttp HTTP server speaking a subset of OpenAI's Chat
Completions protocol (``POST /v1/chat/completions``) and of Anthropic's Messages protocol
(``POST /v1/messages``), with configurable latency, errors, 429s, hangs and counters.

It also answers the project's LLM-judge requests itself (workers/sim/judge.py), and with
``--replay LABELS --responses FILE`` serves real models' recorded answers
(workers/sim/replay.py).

Demos, tests and benchmarks point an OpenAI-compatible client (``base_url=".../v1"``) or an
Anthropic client (``base_url`` the server root) at it. It is never used silently in place of a
configured provider. Run it with ``batch-router sim-provider`` or ``python -m workers.sim``.

Modules, one noun each; each imports only modules above it in this list:

- :mod:`~workers.sim.config` — ``SimConfig``, the behaviour (rates, latency, seed, outages);
- :mod:`~workers.sim.errors` — a bad request, a simulated fault, each protocol's error body;
- :mod:`~workers.sim.prompt` — ``Prompt``, a request as every protocol parses it, and its
  fingerprint;
- :mod:`~workers.sim.judge` — the grade of a judge request (:mod:`routing.judge`): a
  question's difficulty and an answer's draw, both from blake2b;
- :mod:`~workers.sim.replay` — replay mode: recorded answers (a labels and a responses
  Parquet) served by prompt text and model, their labels grading judge requests, and where
  each answer comes from (``source``);
- :mod:`~workers.sim.answer` — the deterministic answer to a prompt (generated, a judge's
  grade or a recording), its o200k usage (counted by :mod:`routing.tokens`) and logprobs;
- :mod:`~workers.sim.stats` — the counters of ``GET /_sim/stats``;
- :mod:`~workers.sim.state` — one app's mutable state (config, random source, counters, ids);
- :mod:`~workers.sim.faults` — the configured faults and delays, drawn per request;
- :mod:`~workers.sim.openai_chat` — ``POST /v1/chat/completions``;
- :mod:`~workers.sim.anthropic_messages` — ``POST /v1/messages``;
- :mod:`~workers.sim.batch_core` — a provider batch's life shared by both batch APIs
  (requests decided at creation, ended at the first retrieve ``batch_processing_s`` later,
  duplicate-request counting) and ``POST /_sim/batches/{id}/expire``;
- :mod:`~workers.sim.openai_batch_lines` — OpenAI batch input lines parsed, output and error
  lines written;
- :mod:`~workers.sim.openai_batches` — OpenAI Files (``/v1/files``) and Batches
  (``/v1/batches``: create, retrieve, cancel, list);
- :mod:`~workers.sim.anthropic_batches` — Anthropic Message Batches
  (``/v1/messages/batches``: create, retrieve, results, cancel, list);
- :mod:`~workers.sim.control` — ``/_sim/config``, ``/_sim/stats``, ``/_sim/reset``,
  ``/healthz``;
- :mod:`~workers.sim.app` — ``make_app``: the state and every endpoint module's routes;
- :mod:`~workers.sim.server` — ``serve`` (blocking, until a signal) and ``SimServer`` (a
  background thread, for tests);
- :mod:`~workers.sim.cli` — the ``python -m workers.sim`` command line.

Adding a protocol is a new module with an ``install(app)`` that adds its routes and, under an
``web.AppKey`` of its own, any state of its own (files, batches), plus its line in
:data:`workers.sim.app.ENDPOINTS`. It answers each request with :func:`workers.sim.answer.answer`
on a prompt parsed by :func:`workers.sim.openai_chat.parse` or
:func:`workers.sim.anthropic_messages.parse`, draws from the app's random source
(``SimState.roll``), and counts in a section of its own of the shared counters
(``SimState.stats.section(name)``: shown in ``/_sim/stats``, zeroed by ``/_sim/reset``).
"""
