"""Fixtures for the gateway tests: a real redis-server, and stores on every backend.

The Redis server is the Debian ``redis-server`` started on a free loopback port in a
temporary directory (no persistence) and stopped at teardown. Without it the Redis tests
skip, except as root (CI), where its absence is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from tests.unit.gateway.support import RedisServer, StoreSpec, free_port, redis_command

T = TypeVar("T")


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
    port = free_port()
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
                if redis_command(port, b"PING").startswith(b"+PONG"):
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


@pytest.fixture(params=["sqlite", "redis"])
def store_spec(request: pytest.FixtureRequest, tmp_path: Path) -> StoreSpec:
    """One store per backend, empty at the start of the test."""
    if request.param == "sqlite":
        return StoreSpec("sqlite", "sqlite", tmp_path / "data")
    server: RedisServer = request.getfixturevalue("redis_server")
    server.flush()
    return StoreSpec("redis", server.url, tmp_path / "data")
