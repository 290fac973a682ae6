"""The simulator's command line: ``python -m workers.sim`` (``batch-router sim-provider`` is
the same server behind the project's CLI)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from routing.errors import InputError
from workers.sim.config import SimConfig
from workers.sim.replay import Replay
from workers.sim.server import serve

__all__ = ["build_arg_parser", "config_from_args", "main"]


def build_arg_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Add the simulator flags to ``parser`` (or a new one)."""
    p = parser or argparse.ArgumentParser(
        prog="python -m workers.sim",
        description="Simulated OpenAI-compatible LLM provider.",
        epilog="example: python -m workers.sim --port 8000 --latency-ms 200 --rate-limit-rate 0.05",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (0 picks a free one)")
    p.add_argument("--latency-ms", type=float, default=0.0, help="mean latency in ms")
    p.add_argument("--latency-jitter-ms", type=float, default=0.0, help="uniform +/- jitter, ms")
    p.add_argument("--error-rate", type=float, default=0.0, help="probability of HTTP 500")
    p.add_argument("--rate-limit-rate", type=float, default=0.0, help="probability of HTTP 429")
    p.add_argument("--retry-after", type=float, default=1.0, help="Retry-After seconds on 429")
    p.add_argument("--hang-rate", type=float, default=0.0, help="probability of hanging")
    p.add_argument("--hang-s", type=float, default=30.0, help="seconds a hang lasts")
    p.add_argument("--seed", type=int, default=0, help="seed of the random decisions")
    p.add_argument(
        "--auth-error-rate", type=float, default=0.0, help="probability of a 401 echoing the key"
    )
    p.add_argument(
        "--batch-processing-s", type=float, default=0.0, help="batch ends after this long, s"
    )
    p.add_argument(
        "--batch-error-rate", type=float, default=0.0, help="probability of a batch error line"
    )
    p.add_argument(
        "--batch-expire-rate", type=float, default=0.0, help="probability a batch request expires"
    )
    p.add_argument("--replay", metavar="LABELS", help="serve recorded answers: a labels Parquet")
    p.add_argument(
        "--responses", metavar="FILE", action="append", help="recorded answers (repeatable)"
    )
    return p


def config_from_args(args: argparse.Namespace) -> SimConfig:
    return SimConfig(
        latency_ms_mean=args.latency_ms,
        latency_ms_jitter=args.latency_jitter_ms,
        error_rate=args.error_rate,
        rate_limit_rate=args.rate_limit_rate,
        retry_after_s=args.retry_after,
        hang_rate=args.hang_rate,
        hang_s=args.hang_s,
        seed=args.seed,
        auth_error_rate=args.auth_error_rate,
        batch_processing_s=args.batch_processing_s,
        batch_error_rate=args.batch_error_rate,
        batch_expire_rate=args.batch_expire_rate,
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_arg_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    replay = None
    if args.replay or args.responses:
        if not (args.replay and args.responses):
            parser.error("--replay LABELS and --responses FILE go together")
        try:
            replay = Replay.load(args.replay, args.responses)
        except InputError as exc:
            parser.error(str(exc))
    serve(args.host, args.port, config, replay)
