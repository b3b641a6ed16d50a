"""The tunnel server inside ``rtc64 serve`` with the routed-prefix backend (issue 16).

The same four namespaces as ``test_tunnel_lab`` (IPv4-only client behind a NAT, server,
IPv6-only peer), but the server is ``rtc64 serve --config`` with a ``[tunnel]`` section
(``backend = "routed"``: no TUN device, the prefix routed to a sink link, a packet tap
and a raw socket), and its counters are read from /metrics and /api/tunnel on the
gateway's web port inside the server's namespace after real tunnel traffic.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from ipaddress import IPv6Address
from pathlib import Path

import pytest

from tests.interop.lab import Host, require_lab, sh, stop
from tests.interop.test_tunnel_lab import (
    PEER_V6,
    PREFIX,
    SERVER_V4,
    SPOOF_SCRIPT,
    Tunnel,
    _address,
    _peer_echoes,
    _ping,
    _wait,
    build_hosts,
    connect_client,
    host_pings_client,
    remove_hosts,
)
from tests.interop.test_tunnel_lab import test_sipp_call_over_ipv6 as sipp_call

WEB = "127.0.0.1:18164"  # inside the server's namespace; not the default port
# clients miss three keepalives before they re-run the exchange: 90 s, far longer than a
# restart of the gateway even on a loaded machine (no NAT-change test here)
DEVICE = "tsp0"

CONFIG = f"""
[general]
services = ["tunnel"]
data_dir = "{{data}}"
log_level = "debug"

[web]
listen = "{WEB}"

[tunnel]
enabled = true
listen = "udp:{SERVER_V4}:3653"
prefix = "{PREFIX}"
backend = "routed"
device = "{DEVICE}"
keepalive = 30
"""


class Gateway:
    """``rtc64 serve`` in the server's namespace, and its web port."""

    def __init__(self, host: Host, work: Path) -> None:
        self.host = host
        self.work = work
        self.config = work / "gateway.toml"
        self.config.write_text(CONFIG.format(data=work / "data"))
        self.log = work / "gateway.log"

    def start(self) -> None:
        argv = [sys.executable, "-m", "rtc64.cli", "serve", "--config", str(self.config)]
        self.proc = self.host.popen(argv, log=self.log)
        _wait(lambda: self.api()["enabled"], "gateway web and tunnel", self.log)

    def get(self, path: str) -> str:
        url = f"http://{WEB}{path}"
        out = self.host.run("curl", "-sf", "--max-time", "5", url, check=False)
        if out.returncode != 0:
            raise OSError(f"curl {url}: exit {out.returncode}")  # _wait retries on OSError
        return out.stdout

    def api(self) -> dict[str, object]:
        data: dict[str, object] = json.loads(self.get("/api/tunnel"))
        return data

    def metrics(self) -> dict[str, float]:
        """``name{labels}`` -> value of every rtc64_tunnel_ sample."""
        samples: dict[str, float] = {}
        for line in self.get("/metrics").splitlines():
            if line.startswith("rtc64_tunnel_"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples

    def counter(self, sample: str) -> float:
        return self.metrics().get(sample, 0.0)


@pytest.fixture(scope="module")
def routed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Tunnel, Gateway]]:
    require_lab("nft", "sipp", "ping", "curl")
    hosts: list[Host] = []
    work = tmp_path_factory.mktemp("tunnel-routed")
    try:
        build_hosts("t16r", hosts)
        t = Tunnel(*hosts, work, work / "unused.json", work / "client.json")
        gateway = Gateway(t.server, work)
        gateway.start()
        connect_client(t)
        yield t, gateway
    finally:
        remove_hosts(hosts)


def test_no_tun_the_prefix_is_routed_to_a_sink(routed: tuple[Tunnel, Gateway]) -> None:
    t, gateway = routed
    details = t.server.run("ip", "-d", "link", "show", DEVICE).stdout
    assert " tun " not in details and ("dummy" in details or "ifb" in details), details
    route = t.server.run("ip", "-6", "route", "show", str(PREFIX)).stdout
    assert f"dev {DEVICE}" in route
    view = gateway.api()
    assert (view["backend"], view["prefix"], view["device"]) == ("routed", str(PREFIX), DEVICE)
    status = json.loads(gateway.get("/api/status"))
    assert status["tunnel"] == [f"udp:{SERVER_V4}:3653 {PREFIX} routed ({DEVICE})"]
    assert "tunnel" in status["services"]
    argv = [sys.executable, "-m", "rtc64.cli", "--config", str(gateway.config), "ctl", "tunnel"]
    ctl = t.server.run(*argv).stdout
    assert f"{SERVER_V4}:3653 {PREFIX} routed ({DEVICE})" in ctl and "upstream" in ctl


def test_ping_and_sipp_call_through_the_routed_prefix(routed: tuple[Tunnel, Gateway]) -> None:
    t, gateway = routed
    before = gateway.metrics()
    assert _ping(t), (t.work / "client.log").read_text()
    sipp_call(t)
    after = gateway.metrics()
    for direction in ("upstream", "downstream"):
        for what in ("packets", "bytes"):
            sample = f'rtc64_tunnel_{what}_total{{direction="{direction}"}}'
            assert after[sample] > before.get(sample, 0.0), (sample, after)
    assert after["rtc64_tunnel_signalling_total"] >= 3  # version, authenticate, create
    assert after["rtc64_tunnel_created_total"] >= 1
    assert after['rtc64_tunnel_info{backend="routed",prefix="fd00:64::/64"}'] == 1
    view = gateway.api()
    upstream = view["upstream"]
    assert isinstance(upstream, dict) and upstream["packets"] >= 1


def test_the_host_itself_reaches_a_client(routed: tuple[Tunnel, Gateway]) -> None:
    """A gateway on the server host (locally generated packets) reaches tunnel clients:
    the route to the sink carries them into the tap too."""
    host_pings_client(routed[0])


def test_hop_limit_exceeded_in_the_server(routed: tuple[Tunnel, Gateway]) -> None:
    """Without the kernel forwarding upstream packets, the core is the router hop."""
    t, gateway = routed
    sample = 'rtc64_tunnel_dropped_total{reason="hop_limit"}'
    before = gateway.counter(sample)
    ping = t.client.run("ping", "-6", "-t", "1", "-c", "1", "-W", "3", str(PEER_V6), check=False)
    assert ping.returncode != 0
    assert "time exceeded" in ping.stdout.lower(), ping.stdout
    assert gateway.counter(sample) == before + 1
    # with two hops left the packet crosses the server (one hop) and reaches the peer
    ok = t.client.run("ping", "-6", "-t", "2", "-c", "1", "-W", "3", str(PEER_V6), check=False)
    assert ok.returncode == 0, ok.stdout


def test_egress_filter_and_errors_counted(routed: tuple[Tunnel, Gateway]) -> None:
    t, gateway = routed
    spoofed = 'rtc64_tunnel_dropped_total{reason="egress_filter"}'
    too_big = 'rtc64_tunnel_dropped_total{reason="too_big"}'
    before = gateway.metrics()
    echoes = _peer_echoes(t)
    script = SPOOF_SCRIPT % SERVER_V4
    source = IPv6Address("fd00:16:6::99")
    t.client.run(sys.executable, "-c", script, source.packed.hex(), PEER_V6.packed.hex())
    _wait(lambda: gateway.counter(spoofed) == before.get(spoofed, 0) + 1, "spoof", gateway.log)
    assert _peer_echoes(t) == echoes
    big = t.peer.run(
        "ping", "-6", "-M", "do", "-s", "1300", "-c", "1", "-W", "3", str(_address(t)), check=False
    )
    assert "mtu=1280" in big.stdout.replace(" ", ""), big.stdout + big.stderr
    assert gateway.counter(too_big) == before.get(too_big, 0) + 1
    assert gateway.counter("rtc64_tunnel_icmp_sent_total") > before.get(
        "rtc64_tunnel_icmp_sent_total", 0
    )


def test_restart_loses_nothing_and_removes_the_sink(routed: tuple[Tunnel, Gateway]) -> None:
    t, gateway = routed
    restarts = t.stats(t.client_stats)["restarts"]
    stop(gateway.proc)
    assert t.server.run("ip", "link", "show", DEVICE, check=False).returncode != 0
    assert t.server.run("ip", "-6", "route", "show", str(PREFIX)).stdout.strip() == ""
    gateway.start()
    assert _ping(t), gateway.log.read_text()
    assert t.stats(t.client_stats)["restarts"] == restarts
    assert gateway.counter("rtc64_tunnel_created_total") == 0


CONSOLE_SCRIPT = """
import json, sys
from playwright.sync_api import sync_playwright
flags = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
with sync_playwright() as pw:
    browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=flags)
    page = browser.new_page()
    page.goto(sys.argv[1] + "/#tunnel")
    page.wait_for_selector("#page-tunnel:not([hidden])")
    page.wait_for_selector("#tunnel-traffic tbody tr")
    page.screenshot(path=sys.argv[2])
    print(json.dumps({
        "facts": page.inner_text("#tunnel-facts"),
        "traffic": page.inner_text("#tunnel-traffic"),
        "drops": page.inner_text("#tunnel-drops"),
    }))
    browser.close()
"""


def test_console_tunnel_page(routed: tuple[Tunnel, Gateway]) -> None:
    """The console's Tunnel page in headless Chromium shows the live counters."""
    require_lab("chromium")
    t, _ = routed
    assert _ping(t)
    shot = t.work / "tunnel-page.png"
    out = sh(
        "ip", "netns", "exec", t.server.ns, "env", f"HOME={t.work}", sys.executable, "-c",
        CONSOLE_SCRIPT, f"http://{WEB}", str(shot),
    )  # fmt: skip
    seen = json.loads(out.stdout)
    assert "routed (tsp0)" in seen["facts"] and str(PREFIX) in seen["facts"]
    rows = dict(line.split("\t", 1) for line in seen["traffic"].splitlines()[1:])
    upstream = rows["upstream (from clients)"].split("\t")
    assert int(upstream[0]) >= 1 and int(upstream[1]) >= 100
    assert "egress_filter" in seen["drops"] and "hop_limit" in seen["drops"]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


LOOPBACK_ATTACK = """
import socket, struct, sys
from ipaddress import IPv6Address
from rtc64.tunnel import packet as ip, tsp
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
create = tsp.Request(tsp.Kind.TUNNEL, document=tsp.TunnelDoc(action="create"))
s.sendto(tsp.Header(1, 0).encode() + tsp.pad(tsp.encode_request(create)), (sys.argv[1], 3653))
me = tsp.parse_response(tsp.split_header(s.recv(2048))[1]).document.client_ipv6
for target in sys.argv[2:]:  # our own valid source (the egress filter passes), bad target
    dst = IPv6Address(target)
    udp = struct.pack("!HHHH", 40000, 9999, 14, 0) + b"attack"
    udp = udp[:6] + struct.pack("!H", ip.checksum(me, dst, 17, udp)) + udp[8:]
    head = struct.pack("!IHBB", 6 << 28, len(udp), 17, 64) + me.packed + dst.packed
    s.sendto(head + udp, (sys.argv[1], 3653))
"""
LISTEN = """
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 9999))
s.settimeout(float(sys.argv[2]))
print("ready", flush=True)
try:
    print(s.recv(100).decode())
except TimeoutError:
    print("nothing")
"""


def test_tunnel_clients_never_reach_the_servers_loopback(routed: tuple[Tunnel, Gateway]) -> None:
    """Upstream packets leave through a raw socket: one to ::1 (or an IPv4-mapped
    loopback) would reach services bound to the server's loopback, such as its open web
    console. They are dropped and counted; the same datagram to a real address arrives."""
    t, gateway = routed
    sample = 'rtc64_tunnel_dropped_total{reason="unroutable"}'
    before = gateway.counter(sample)
    log = t.work / "loopback.log"
    listener = t.server.popen([sys.executable, "-c", LISTEN, "::1", "4"], log=log)
    _wait(lambda: "ready" in log.read_text(), "listener", log)
    t.client.run(sys.executable, "-c", LOOPBACK_ATTACK, SERVER_V4, "::1", "::ffff:127.0.0.1")
    assert listener.wait(20) == 0
    assert log.read_text().split() == ["ready", "nothing"]
    assert gateway.counter(sample) == before + 2
    # the control: the same datagram to the peer's address is delivered
    log = t.work / "peer-listen.log"
    listener = t.peer.popen([sys.executable, "-c", LISTEN, str(PEER_V6), "10"], log=log)
    _wait(lambda: "ready" in log.read_text(), "peer listener", log)
    t.client.run(sys.executable, "-c", LOOPBACK_ATTACK, SERVER_V4, str(PEER_V6))
    assert listener.wait(20) == 0
    assert log.read_text().split() == ["ready", "attack"]


SEND_SCRIPT = """
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 5099)); s.listen(1); s.settimeout(20)
c, _ = s.accept()
c.sendall(bytes(range(256)) * 1200)
c.close()
"""
RECEIVE_SCRIPT = """
import socket, sys, time
for _ in range(50):
    try:
        c = socket.create_connection((sys.argv[1], 5099), timeout=20)
        break
    except ConnectionRefusedError:
        time.sleep(0.1)
data = b""
while chunk := c.recv(65536):
    data += chunk
print(len(data), data == bytes(range(256)) * 1200)
"""


def test_tcp_transfer_downstream(routed: tuple[Tunnel, Gateway]) -> None:
    """A 300 kB TCP stream to the client: the kernel hands the tap finished checksums
    and segments (GRO-merged super-packets would exceed the tunnel MTU)."""
    t, gateway = routed
    too_big = 'rtc64_tunnel_dropped_total{reason="too_big"}'
    before = gateway.counter(too_big)
    sender = t.peer.popen([sys.executable, "-c", SEND_SCRIPT, str(PEER_V6)], log=t.work / "tx.log")
    try:
        got = t.client.run(sys.executable, "-c", RECEIVE_SCRIPT, str(PEER_V6)).stdout.split()
        assert got == [str(256 * 1200), "True"]
        assert sender.wait(20) == 0
    finally:
        stop(sender)
    assert gateway.counter(too_big) == before
