"""``rtc64 tunnel`` between real namespaces (issue 16).

    client (IPv4 only) == nat (nftables masquerade) == server (dual stack) == peer (IPv6 only)
    10.16.1.2           10.16.1.1 | 10.16.2.1         10.16.2.2 | fd00:16:6::1  fd00:16:6::2

The client gets PREFIX | 10.16.2.1 | NAT port | 1 on its TUN device, pings the IPv6-only
peer, places a SIPp call over IPv6 to the IPv6-only SIPp; a spoofed inner source is dropped
and counted; the server restarted between two pings loses nothing (no per-client state).
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from pathlib import Path

import pytest

from tests.interop.lab import Host, require_lab, sh, stop
from tests.interop.peers import SCENARIOS

PREFIX = IPv6Network("fd00:64::/64")
NAT_PUBLIC = IPv4Address("10.16.2.1")
SERVER_V4 = "10.16.2.2"
PEER_V6 = IPv6Address("fd00:16:6::2")
NAT_PORTS = (20000, 20099)  # the NAT rewrites source ports into this range
NAT_PORTS_LATER = (21000, 21099)  # ... and into this one after its "reboot"
KEEPALIVE = 2


@dataclass
class Tunnel:
    client: Host
    nat: Host
    server: Host
    peer: Host
    work: Path
    server_stats: Path
    client_stats: Path

    def start_server(self) -> None:
        self.server_stats.unlink(missing_ok=True)
        # the [tunnel] section of --config, one key overridden by its flag
        config = self.work / "tunnel.toml"
        config.write_text(
            f'[tunnel]\nlisten = "udp:{SERVER_V4}:3653"\nprefix = "{PREFIX}"\nkeepalive = 600\n'
        )
        argv = [sys.executable, "-m", "rtc64.cli", "tunnel", "serve", "--log-level", "debug"]
        argv += ["--config", str(config), "--keepalive", str(KEEPALIVE)]
        argv += ["--stats", str(self.server_stats)]
        self.server_proc = self.server.popen(argv, log=self.work / "server.log")
        _wait(self.server_stats.exists, "server stats", self.work / "server.log")

    def stats(self, path: Path) -> dict[str, object]:
        data: dict[str, object] = json.loads(path.read_text())
        return data


def _wait(cond: object, what: str, log: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():  # type: ignore[operator]
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    text = log.read_text(errors="replace") if log.exists() else "(no log)"
    raise AssertionError(f"{what} not ready after {timeout} s:\n{text}")


def _veth(a: Host, a_if: str, b: Host, b_if: str) -> None:
    sh("ip", "link", "add", a_if, "netns", a.ns, "type", "veth", "peer", b_if, "netns", b.ns)


def build_hosts(prefix: str, hosts: list[Host]) -> None:
    """The four namespaces, wired and addressed, put in ``hosts`` first (the caller
    removes them with ``remove_hosts``, even when this fails half-way)."""
    tag = uuid.uuid4().hex[:6]
    hosts += [Host(f"{prefix}{name}-{tag}") for name in ("c", "n", "s", "p")]
    client, nat, server, peer = hosts
    for h in hosts:
        sh("ip", "netns", "add", h.ns)
        h.run("ip", "link", "set", "lo", "up")
    _veth(client, "c0", nat, "n0")
    _veth(nat, "n1", server, "s0")
    _veth(server, "s1", peer, "p0")
    # the client's network is IPv4-only (its TUN is its only IPv6)
    client.run("sysctl", "-qw", "net.ipv6.conf.c0.disable_ipv6=1")
    client.run("ip", "addr", "add", "10.16.1.2/24", "dev", "c0")
    client.run("ip", "link", "set", "c0", "up")
    client.run("ip", "route", "add", "default", "via", "10.16.1.1")
    for cmd in (
        ("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"),
        ("sysctl", "-qw", "net.ipv4.ip_forward=1"),
        ("ip", "addr", "add", "10.16.1.1/24", "dev", "n0"),
        ("ip", "addr", "add", f"{NAT_PUBLIC}/24", "dev", "n1"),
        ("ip", "link", "set", "n0", "up"),
        ("ip", "link", "set", "n1", "up"),
        ("nft", "add", "table", "ip", "nat"),
        ("nft", "add chain ip nat post { type nat hook postrouting priority 100 ; }"),
        (
            "nft",
            "add rule ip nat post oifname n1 meta l4proto udp masquerade to :"
            + "-".join(map(str, NAT_PORTS)),
        ),
    ):
        nat.run(*cmd)
    for cmd in (
        ("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"),
        ("ip", "addr", "add", f"{SERVER_V4}/24", "dev", "s0"),
        ("ip", "-6", "addr", "add", "fd00:16:6::1/64", "dev", "s1", "nodad"),
        ("ip", "link", "set", "s0", "up"),
        ("ip", "link", "set", "s1", "up"),
    ):
        server.run(*cmd)
    for cmd in (
        ("ip", "addr", "del", "127.0.0.1/8", "dev", "lo"),
        ("ip", "-6", "addr", "add", f"{PEER_V6}/64", "dev", "p0", "nodad"),
        ("ip", "link", "set", "p0", "up"),
        ("ip", "-6", "route", "add", "default", "via", "fd00:16:6::1"),
    ):
        peer.run(*cmd)


def remove_hosts(hosts: list[Host]) -> None:
    for h in reversed(hosts):
        h.stop_all()
    for h in hosts:
        sh("ip", "netns", "del", h.ns, check=False)


def connect_client(t: Tunnel) -> None:
    argv = [sys.executable, "-m", "rtc64.cli", "tunnel", "connect", SERVER_V4]
    argv += ["--stats", str(t.client_stats)]
    t.client_proc = t.client.popen(argv, log=t.work / "client.log")  # type: ignore[attr-defined]
    _wait(lambda: t.stats(t.client_stats).get("address"), "client address", t.work / "client.log")


@pytest.fixture(scope="module")
def tunnel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tunnel]:
    require_lab("nft", "sipp", "ping")
    hosts: list[Host] = []
    work = tmp_path_factory.mktemp("tunnel")
    try:
        build_hosts("t16", hosts)
        t = Tunnel(*hosts, work, work / "server.json", work / "client.json")
        t.start_server()
        connect_client(t)
        yield t
    finally:
        remove_hosts(hosts)


def _address(t: Tunnel) -> IPv6Address:
    return IPv6Address(str(t.stats(t.client_stats)["address"]))


def _ping(t: Tunnel) -> bool:
    proc = t.client.run("ping", "-6", "-c", "1", "-W", "3", str(PEER_V6), check=False)
    return proc.returncode == 0


def test_address_embeds_nat_and_ping(tunnel: Tunnel) -> None:
    address = _address(tunnel)
    value = int(address)
    assert address in PREFIX
    assert IPv4Address(value >> 32 & 0xFFFFFFFF) == NAT_PUBLIC  # the NAT's, not 10.16.1.2
    port = value >> 16 & 0xFFFF
    assert NAT_PORTS[0] <= port <= NAT_PORTS[1]  # the NAT's port, not the client's own
    assert _ping(tunnel), (tunnel.work / "client.log").read_text()
    addrs = tunnel.client.run("ip", "-6", "addr", "show", "dev", "tsp0").stdout
    assert (
        str(address) in addrs
        and "mtu 1280" in tunnel.client.run("ip", "link", "show", "tsp0").stdout
    )


def host_pings_client(t: Tunnel) -> None:
    """The server host's own packets (source prefix::1, the address on its device) reach
    a client and the replies come back to the host (a gateway on the same host)."""
    ping = t.server.run("ping", "-6", "-c", "1", "-W", "3", str(_address(t)), check=False)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert f"from {_address(t)}" in ping.stdout


def test_the_host_itself_reaches_a_client(tunnel: Tunnel) -> None:
    host_pings_client(tunnel)


def test_sipp_call_over_ipv6(tunnel: Tunnel) -> None:
    address = _address(tunnel)
    common = ["-m", "1", "-nostdin", "-timeout", "30", "-timeout_error"]
    uas_argv = ["sipp", "-sf", str(SCENARIOS / "uas.xml"), "-i", str(PEER_V6), "-p", "5060"]
    uas = tunnel.peer.popen([*uas_argv, *common], log=tunnel.work / "uas.log", cwd=tunnel.work)
    time.sleep(0.5)
    uac_argv = ["sipp", f"[{PEER_V6}]:5060", "-sf", str(SCENARIOS / "uac.xml")]
    uac_argv += ["-i", str(address), "-p", "5070", "-s", "peer"]
    uac_argv += ["-key", "target", f"[{PEER_V6}]:5060"]
    uac = tunnel.client.popen([*uac_argv, *common], log=tunnel.work / "uac.log", cwd=tunnel.work)
    try:
        assert uac.wait(40) == 0, (tunnel.work / "uac.log").read_text(errors="replace")[-3000:]
        assert uas.wait(40) == 0, (tunnel.work / "uas.log").read_text(errors="replace")[-3000:]
    finally:
        stop(uac)
        stop(uas)


SPOOF_SCRIPT = """
import socket, struct, sys
src, dst = bytes.fromhex(sys.argv[1]), bytes.fromhex(sys.argv[2])
body = struct.pack("!BBHHH", 128, 0, 0, 1, 1) + b"spoof"
head = struct.pack("!IHBB", 6 << 28, len(body), 58, 64)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(head + src + dst + body, ("%s", 3653))
"""


def test_spoofed_inner_source_dropped_and_counted(tunnel: Tunnel) -> None:
    before = int(str(tunnel.stats(tunnel.server_stats)["dropped_spoofed"]))
    echoes = _peer_echoes(tunnel)
    spoofed = IPv6Address("fd00:16:6::99")  # claims to be a host on the IPv6 side
    script = SPOOF_SCRIPT % SERVER_V4
    tunnel.client.run(sys.executable, "-c", script, spoofed.packed.hex(), PEER_V6.packed.hex())
    _wait(
        lambda: int(str(tunnel.stats(tunnel.server_stats)["dropped_spoofed"])) == before + 1,
        "spoofed packet counted",
        tunnel.work / "server.log",
    )
    assert _peer_echoes(tunnel) == echoes  # the echo request never reached the peer


def _peer_echoes(t: Tunnel) -> int:
    """Echo Requests the peer's kernel received (Icmp6InEchos)."""
    for line in t.peer.run("cat", "/proc/net/snmp6").stdout.splitlines():
        name, _, value = line.partition(" ")
        if name == "Icmp6InEchos":
            return int(value)
    raise AssertionError("no Icmp6InEchos in /proc/net/snmp6")


def test_server_restart_loses_nothing(tunnel: Tunnel) -> None:
    assert _ping(tunnel)
    restarts = tunnel.stats(tunnel.client_stats)["restarts"]
    stop(tunnel.server_proc)  # type: ignore[attr-defined]
    tunnel.start_server()
    assert _ping(tunnel), (tunnel.work / "server.log").read_text()
    # the client did not re-run the exchange: the new instance knew the mapping already
    assert tunnel.stats(tunnel.client_stats)["restarts"] == restarts
    assert int(str(tunnel.stats(tunnel.server_stats)["tunnels_created"])) == 0


def _counter(t: Tunnel, name: str) -> int:
    return int(str(t.stats(t.server_stats)[name]))


def test_packet_too_big_from_the_server(tunnel: Tunnel) -> None:
    before = _counter(tunnel, "dropped_too_big")
    address = str(_address(tunnel))
    ping = tunnel.peer.run(
        "ping", "-6", "-M", "do", "-s", "1300", "-c", "1", "-W", "3", address, check=False
    )
    assert ping.returncode != 0
    assert "mtu=1280" in ping.stdout.replace(" ", ""), ping.stdout + ping.stderr
    log = tunnel.work / "server.log"  # counters are written every second
    _wait(lambda: _counter(tunnel, "dropped_too_big") >= before + 1, "too big counted", log)
    # the same ping within the tunnel MTU goes through
    ok = tunnel.peer.run("ping", "-6", "-s", "1200", "-c", "1", "-W", "3", address, check=False)
    assert ok.returncode == 0, ok.stdout


def test_destination_unreachable_no_reflection(tunnel: Tunnel) -> None:
    before = _counter(tunnel, "dropped_unroutable")
    loopback = int(PREFIX.network_address) | 0x7F000001 << 32 | 53 << 16 | 1
    ping = tunnel.peer.run(
        "ping", "-6", "-c", "1", "-W", "3", str(IPv6Address(loopback)), check=False
    )
    assert ping.returncode != 0
    assert "unreachable" in ping.stdout.lower(), ping.stdout
    log = tunnel.work / "server.log"
    _wait(lambda: _counter(tunnel, "dropped_unroutable") == before + 1, "unroutable counted", log)


FLUSH_CONNTRACK = """
import socket, struct
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)  # NETLINK_NETFILTER
body = struct.pack("!BBH", socket.AF_INET, 0, 0)  # nfgenmsg
msg_type = (1 << 8) | 2  # NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_DELETE: flush the table
s.send(struct.pack("=LHHLL", 16 + len(body), msg_type, 0x1 | 0x4, 1, 0) + body)
data = s.recv(4096)
assert struct.unpack_from("=i", data, 16)[0] == 0, data
"""


def test_nat_mapping_change_reruns_the_exchange(tunnel: Tunnel) -> None:
    before = _address(tunnel)
    # the NAT "reboots": new port range, its mappings forgotten
    tunnel.nat.run("nft", "flush", "chain", "ip", "nat", "post")
    tunnel.nat.run(
        "nft",
        "add rule ip nat post oifname n1 meta l4proto udp masquerade to :"
        + "-".join(map(str, NAT_PORTS_LATER)),
    )
    tunnel.nat.run(sys.executable, "-c", FLUSH_CONNTRACK)
    _wait(lambda: _address(tunnel) != before, "new address", tunnel.work / "client.log")
    after = _address(tunnel)
    port = int(after) >> 16 & 0xFFFF
    assert NAT_PORTS_LATER[0] <= port <= NAT_PORTS_LATER[1]
    assert int(str(tunnel.stats(tunnel.client_stats)["restarts"])) >= 1
    addrs = tunnel.client.run("ip", "-6", "addr", "show", "dev", "tsp0").stdout
    assert str(after) in addrs and str(before) not in addrs
    assert _ping(tunnel)


AMPLIFY_SCRIPT = """
import socket, struct, sys
doc = b'<tunnel action="create" type="v6udpv4"></tunnel>\\r\\n'
create = b"Content-length: %d\\r\\n" % len(doc) + doc
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
for padded in (False, True):
    body = create + b"\\x00" * (640 - len(create)) if padded else create
    request = struct.pack("!II", 0xF0000001, 0) + body
    s.sendto(request, (sys.argv[1], 3653))
    try:
        reply = s.recv(4096)
        print(padded, len(request), len(reply), reply[8:].split(b"\\r\\n")[1].decode())
    except TimeoutError:
        print(padded, len(request), "none")
"""


def test_signalling_never_amplifies_on_the_wire(tunnel: Tunnel) -> None:
    before = _counter(tunnel, "amplification_refused")
    out = tunnel.client.run(sys.executable, "-c", AMPLIFY_SCRIPT, SERVER_V4).stdout.split("\n")
    unpadded, padded = out[0].split(), out[1].split()
    assert unpadded[0] == "False" and unpadded[2] == "none"  # bigger answer: not sent
    assert padded[0] == "True" and padded[3] == "200"
    assert int(padded[2]) <= int(padded[1])
    log = tunnel.work / "server.log"
    _wait(lambda: _counter(tunnel, "amplification_refused") == before + 1, "refused", log)


def test_client_restores_on_exit(tunnel: Tunnel) -> None:
    stop(tunnel.client_proc)  # type: ignore[attr-defined]
    assert tunnel.client_proc.returncode == 0  # type: ignore[attr-defined]
    assert tunnel.client.run("ip", "link", "show", "tsp0", check=False).returncode != 0
    assert tunnel.client.run("ip", "-6", "route", "show", "default").stdout.strip() == ""
