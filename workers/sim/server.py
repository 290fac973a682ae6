"""Running the simulator: ``serve`` in the foreground until a signal, or ``SimServer`` on
127.0.0.1 in a background thread (tests, the local executor)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from workers.sim.app import make_app
from workers.sim.config import SimConfig
from workers.sim.replay import Replay
from workers.sim.state import STATE, SimState

__all__ = ["SimServer", "serve"]

_T = TypeVar("_T")


async def _start_site(
    app: web.Application, host: str, port: int, shutdown_timeout: float
) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, runner.addresses[0][1]


async def _serve_until_signal(
    host: str, port: int, config: SimConfig, replay: Replay | None
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Not possible outside the main thread or on platforms without signal support.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    runner, bound = await _start_site(make_app(config, replay), host, port, shutdown_timeout=5.0)
    print(f"sim-provider listening on http://{host}:{bound}/v1", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def serve(host: str, port: int, config: SimConfig, replay: Replay | None = None) -> None:
    """Serve on ``host:port`` until SIGINT/SIGTERM (blocking); port 0 picks a free port;
    ``replay``: serve recorded answers (workers/sim/replay.py)."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_until_signal(host, port, config, replay))


class SimServer:
    """The simulated provider on 127.0.0.1 in a background thread with its own event loop.

    >>> with SimServer(SimConfig(latency_ms_mean=5)) as sim:
    ...     client = openai.OpenAI(base_url=sim.base_url, api_key="x", max_retries=0)

    ``replay=Replay.load(labels, [responses])`` serves recorded answers instead.
    """

    def __init__(
        self,
        config: SimConfig | None = None,
        port: int = 0,
        host: str = "127.0.0.1",
        replay: Replay | None = None,
    ) -> None:
        self.config = config or SimConfig()
        self.replay = replay
        self.host = host
        self.port = port
        self._app: web.Application | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def start(self, timeout: float = 10.0) -> SimServer:
        if self._thread is not None:
            raise RuntimeError("SimServer already started")
        self._thread = threading.Thread(target=self._run, name="sim-provider", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("simulated provider did not start in time")
        if self._error is not None:
            self._thread.join()
            self._thread = None
            raise RuntimeError("simulated provider failed to start") from self._error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None:
            return
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        thread.join(timeout)
        self._thread = None

    def configure(self, **changes: Any) -> SimConfig:
        """Change the running server's config (same as ``POST /_sim/config``)."""
        return self._call(lambda state: state.configure(changes))

    def stats(self) -> dict[str, Any]:
        """The counters (same as ``GET /_sim/stats``)."""
        return self._call(lambda state: state.stats.as_dict())

    def reset(self) -> None:
        """Zero the counters (same as ``POST /_sim/reset``)."""
        self._call(lambda state: state.reset_stats())

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _call(self, fn: Callable[[SimState], _T]) -> _T:
        if self._loop is None or self._app is None or self._thread is None:
            raise RuntimeError("SimServer is not running")
        app = self._app

        async def run() -> _T:
            return fn(app[STATE])

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # reported to start()
            self._error = exc
        finally:
            self._ready.set()
            loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        self._app = make_app(self.config, self.replay)
        runner, self.port = await _start_site(self._app, self.host, self.port, shutdown_timeout=1.0)
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()
