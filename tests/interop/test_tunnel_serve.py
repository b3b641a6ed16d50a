"""``rtc64 serve`` with two SIP workers and ``[tunnel]`` enabled: the tunnel server runs
once, in the supervisor (like TURN), answers the TSP exchange, and its sink link is
removed when the gateway stops. One network namespace of its own (root)."""

from __future__ import annotations

import signal
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop.lab import Host, require_lab, sh, stop

CLIENT_V4 = "10.16.9.1"  # on the namespace's loopback: a routable source
EXCHANGE = """
import socket, sys
from rtc64.tunnel import tsp
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 0))
s.settimeout(5)
s.sendto(tsp.Header(1, 0).encode() + tsp.pad(b"VERSION=2.0.0\\r\\n"), ("127.0.0.1", 13653))
print(s.recv(2048)[8:].split(b"\\r\\n")[0].decode())
"""
CONFIG = """
[general]
services = ["sip", "tunnel"]
data_dir = "{data}"

[sip]
workers = 2
listen = ["udp:127.0.0.1:15060"]

[web]
enabled = false

[tunnel]
enabled = true
listen = "udp:127.0.0.1:13653"
server_ipv4 = "192.0.2.1"
prefix = "fd00:64:9::/64"
backend = "routed"
device = "tsp9"
"""


@pytest.fixture
def host() -> Iterator[Host]:
    require_lab("ip")
    h = Host(f"t16w-{uuid.uuid4().hex[:6]}")
    try:
        sh("ip", "netns", "add", h.ns)
        h.run("ip", "link", "set", "lo", "up")
        h.run("ip", "addr", "add", f"{CLIENT_V4}/32", "dev", "lo")
        yield h
    finally:
        h.stop_all()
        sh("ip", "netns", "del", h.ns, check=False)


def _wait_for(path: Path, text: str, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in path.read_text(errors="replace"):
            return True
        time.sleep(0.1)
    return False


def test_tunnel_runs_once_in_the_supervisor(host: Host, tmp_path: Path) -> None:
    config = tmp_path / "gw.toml"
    config.write_text(CONFIG.format(data=tmp_path / "data"))
    log = tmp_path / "serve.log"
    argv = [sys.executable, "-m", "rtc64.cli", "serve", "--config", str(config)]
    proc = host.popen(argv, log=log)
    try:
        assert _wait_for(log, "gateway ready: 2 SIP workers"), log.read_text()
        assert _wait_for(log, "the tunnel server runs in the supervisor"), log.read_text()
        assert log.read_text().count("tunnel server on 127.0.0.1:13653") == 1
        details = host.run("ip", "-d", "link", "show", "tsp9").stdout
        assert "ifb" in details or "dummy" in details, details
        answer = host.run(sys.executable, "-c", EXCHANGE, CLIENT_V4).stdout.strip()
        assert answer.startswith("CAPABILITY TUNNEL=V6UDPV4"), answer
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()
    finally:
        stop(proc)
    assert host.run("ip", "link", "show", "tsp9", check=False).returncode != 0
