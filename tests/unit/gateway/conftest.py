"""Fixtures for the gateway tests: a real redis-server, and stores on every backend.

The Redis server is the Debian ``redis-server`` started on a free loopback port in a
temporary directory (no persistence) and stopped at teardown. Without it the Redis tests
skip, except as root (CI), where its absence is a failure.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from rtc64.gateway.store import Store, open_store

T = TypeVar("T")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _redis_command(port: int, command: bytes) -> bytes:
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
        assert _redis_command(self.port, b"FLUSHALL").startswith(b"+OK")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    exe = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
    )
    if exe is None:
        reason = "redis-server is not installed (apt-get install redis-server)"
        if os.geteuid() == 0:
            pytest.fail(f"{reason}; running as root (CI), where it is required")
        pytest.skip(reason)
    directory = tmp_path_factory.mktemp("redis")
    port = _free_port()
    proc = subprocess.Popen(
        [
            exe,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--dir", str(directory),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--logfile", str(directory / "redis.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                log = (directory / "redis.log").read_text(errors="replace")[-2000:]
                pytest.fail(f"redis-server exited with {proc.returncode}: {log}")
            try:
                if _redis_command(port, b"PING").startswith(b"+PONG"):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("redis-server did not answer PING within 10 s")
            time.sleep(0.05)
        yield RedisServer(port, directory)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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


@pytest.fixture(params=["sqlite", "redis"])
def store_spec(request: pytest.FixtureRequest, tmp_path: Path) -> StoreSpec:
    """One store per backend, empty at the start of the test."""
    if request.param == "sqlite":
        return StoreSpec("sqlite", "sqlite", tmp_path / "data")
    server: RedisServer = request.getfixturevalue("redis_server")
    server.flush()
    return StoreSpec("redis", server.url, tmp_path / "data")
