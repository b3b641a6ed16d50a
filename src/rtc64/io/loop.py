"""Event loop runner: uvloop when installed (the relay's per-packet cost depends on it),
asyncio's default loop otherwise; SIGINT/SIGTERM end the main coroutine cleanly."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop  # noqa: PLC0415 - optional accelerator, imported only when running
    except ImportError:
        return None
    return uvloop.new_event_loop


def loop_name() -> str:
    """``uvloop`` or ``asyncio``: which loop ``run`` will use."""
    return "asyncio" if _loop_factory() is None else "uvloop"


def run(main: Callable[[asyncio.Event], Awaitable[T]]) -> T:
    """Run ``main(stop)`` to completion; ``stop`` is set on SIGINT or SIGTERM."""

    async def wrapper() -> T:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await main(stop)

    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(wrapper())


def run_once(main: Callable[[], Awaitable[T]]) -> T:
    """Run a one-shot job (CLI commands) on the same kind of loop as ``run``."""

    async def wrapper() -> T:
        return await main()

    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(wrapper())
