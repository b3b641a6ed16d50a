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


TAP_SCRIPT = """
import socket, subprocess
from rtc64.io.routed_prefix import ETH_P_ALL, attach_filter
tap = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
attach_filter(tap)
tap.bind(("va", ETH_P_ALL))
tap.settimeout(1)
def ping(*argv):
    subprocess.run(["ping", "-c", "1", "-W", "1", *argv], capture_output=True)
ping("-4", "10.16.8.99")  # IPv4 out of va: filtered
ping("-6", "-I", "vb", "fd00:16:8::98")  # IPv6 out of vb, into va (incoming): filtered
ping("-6", "-I", "va", "fd00:16:8::99")  # IPv6 out of va: kept
seen = []
try:
    while True:
        packet = tap.recv(2048)
        seen.append((packet[0] >> 4, socket.inet_ntop(socket.AF_INET6, packet[24:40])))
except TimeoutError:
    pass
print(seen)
"""


def test_the_tap_keeps_only_ipv6_going_out(host: Host) -> None:
    """The routed backend's BPF filter: what the host transmits on the sink, IPv6 only."""
    host.run("ip", "link", "add", "va", "type", "veth", "peer", "name", "vb")
    mac = "02:00:00:16:08:01"
    host.run("ip", "link", "set", "va", "address", mac)
    host.run("ip", "addr", "add", "10.16.8.1/24", "dev", "va")
    host.run("ip", "-6", "addr", "add", "fd00:16:8::1/64", "dev", "va", "nodad")
    host.run("ip", "-6", "addr", "add", "fd00:16:9::1/64", "dev", "vb", "nodad")
    for link in ("va", "vb"):
        host.run("ip", "link", "set", link, "up")
    host.run("ip", "-6", "route", "add", "fd00:16:8::98/128", "dev", "vb")
    for address, link, lladdr in (
        ("10.16.8.99", "va", "02:00:00:00:00:99"),
        ("fd00:16:8::99", "va", "02:00:00:00:00:99"),
        ("fd00:16:8::98", "vb", mac),  # arrives at va addressed to it: incoming
    ):
        host.run("ip", "neigh", "replace", address, "lladdr", lladdr, "dev", link)
    out = host.run(sys.executable, "-c", TAP_SCRIPT).stdout.strip()
    seen = eval(out)  # a list of (version, destination) printed by the script
    assert (6, "fd00:16:8::99") in seen, out
    assert all(version == 6 for version, _ in seen) and (6, "fd00:16:8::98") not in seen, out


def test_an_existing_link_is_never_taken_over(host: Host, tmp_path: Path) -> None:
    """A link of the sink's name (another program's, or one a killed server left) stops
    the start with one line naming it; the link is left as it was."""
    host.run("ip", "link", "add", "tsp9", "type", "veth", "peer", "name", "tsp9p")
    argv = [sys.executable, "-m", "rtc64.cli", "tunnel", "serve", "--backend", "routed"]
    argv += ["--tun", "tsp9", "--prefix", "fd00:64:9::/64", "--listen", "udp:127.0.0.1:13653"]
    out = host.run(*argv, check=False)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "link tsp9 already exists" in out.stderr, out.stderr
    assert "veth" in host.run("ip", "-d", "link", "show", "tsp9").stdout
