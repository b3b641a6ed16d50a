"""Helpers shared by the gateway tests: free ports, a Redis server handle, store runner."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from rtc64.gateway.location.backends import open_store
from rtc64.gateway.location.store import Store

T = TypeVar("T")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def redis_command(port: int, command: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(command + b"\r\n")
        return s.recv(256)


@dataclass(frozen=True)
class RedisServer:
    port: int
    directory: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def flush(self) -> None:
        assert redis_command(self.port, b"FLUSHALL").startswith(b"+OK")


@dataclass(frozen=True)
class StoreSpec:
    """How to open a store for one test: the URL and the data dir."""

    backend: str
    url: str
    data_dir: Path

    def run(self, body: Callable[[Store], Awaitable[T]]) -> T:
        """Open the store, run ``body`` on it in a fresh event loop, close it."""

        async def main() -> T:
            store = await open_store(self.url, self.data_dir)
            try:
                return await body(store)
            finally:
                await store.close()

        return asyncio.run(main())
