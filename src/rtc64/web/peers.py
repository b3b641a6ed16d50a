# The whole gateway in one console when SIP workers run (issue 12).
#
# Rules:
# - Worker 0 serves ``web.listen``. Every other process (the other SIP workers, the
#   supervisor running TURN) serves its own ``/metrics`` and ``/api/calls`` on a Unix
#   socket in the supervisor's private directory (mode 0700: only our user reaches it),
#   rendered from its own services by the same code as the console's.
# - At each scrape (and each calls listing, TURN listing) worker 0 asks every other
#   process, at most ``PEER_TIMEOUT`` seconds each, concurrently; a process that does not
#   answer (restarting) is left out of that answer and ``rtc64_processes_reporting`` says
#   how many did.
# - Merging: ``web.merge``.
"""The other processes' stats endpoints and the merging of what they report."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from rtc64.web.app import STATE, State, calls, history, metrics, turn
from rtc64.web.views import Sources

PEER_TIMEOUT = 1.0  # seconds one process may take to answer worker 0


def endpoint_path(directory: str, name: str) -> str:
    """Where the process called ``name`` (``w1``, ``turn``) serves its stats."""
    return os.path.join(directory, f"{name}.web")


@dataclass(slots=True)
class PeerStats:
    """Worker 0's client of the other processes' endpoints (socket paths)."""

    paths: Sequence[str]
    timeout: float = PEER_TIMEOUT
    answered: int = field(default=0)

    async def fetch(self, route: str) -> list[bytes]:
        """``route`` from every process that answers in time, in path order."""
        found = await asyncio.gather(*(self._one(p, route) for p in self.paths))
        got = [body for body in found if body is not None]
        self.answered = len(got)
        return got

    async def _one(self, path: str, route: str) -> bytes | None:
        if not os.path.exists(path):
            return None
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        try:
            connector = aiohttp.UnixConnector(path=path)
            async with (
                aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
                session.get(f"http://rtc64{route}") as response,
            ):
                if response.status != 200:
                    return None
                return await response.read()
        except (aiohttp.ClientError, OSError, TimeoutError):
            return None


@dataclass(slots=True)
class RunningPeer:
    """One process's stats endpoint and its sampler (relay totals between scrapes)."""

    runner: web.AppRunner
    path: str
    sampler: asyncio.Task[None]

    async def stop(self) -> None:
        self.sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.sampler
        await self.runner.cleanup()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


async def start_peer_endpoint(path: str, sources: Sources) -> RunningPeer:
    """Serve ``/metrics``, ``/api/calls``, ``/api/turn``, ``/api/history`` of ``sources``
    on the Unix socket ``path`` (a file left by a killed predecessor is replaced)."""
    app = web.Application()
    app[STATE] = state = State(sources)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/calls", calls)
    app.router.add_get("/api/turn", turn)
    app.router.add_get("/api/history", history)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    await web.UnixSite(runner, path).start()
    return RunningPeer(runner, path, asyncio.get_running_loop().create_task(state.run()))
