"""The providers' official SDK clients pointed at a simulated provider (no retries: a test
sees every status the simulator answers)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import anthropic
import openai

from workers.sim.server import SimServer


@contextmanager
def openai_client(server: SimServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as client:
        yield client


@contextmanager
def anthropic_client(server: SimServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=server.url, api_key="k", max_retries=0) as client:
        yield client
