"""The guards' Lua scripts (``workers/scripts/*.lua``, read by ``workers.luasource``), run
atomically by Redis on a ``redis.asyncio`` client: ``EVALSHA`` by the script's SHA-1, and on
the first ``NOSCRIPT`` (a new or restarted Redis) one ``EVAL``, which loads it for the next
calls. A :class:`Script` is not bound to a client: the guards run it on the client of the
running event loop (``workers.aio.LoopRedis``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import redis.asyncio
from redis.exceptions import NoScriptError

from workers import luasource


class Script:
    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()

    @classmethod
    def load(cls, name: str) -> Script:
        """The script of ``workers/scripts/<name>.lua``."""
        return cls(luasource.load(name))

    async def run(
        self, client: redis.asyncio.Redis, keys: Sequence[str], args: Sequence[Any] = ()
    ) -> Any:
        """The script's reply for ``keys`` and ``args`` (one round trip once loaded)."""
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await client.eval(self.text, len(keys), *keys, *args)
