"""What the UDP socket options of io.sockets do on the wire, seen with a packet socket in
two fresh network namespaces joined by a veth pair (MTU 1500): a 3000-byte IPv6 datagram
leaves in fragments of at most 1280 bytes with the option (at most 1500 without it), an
IPv4 datagram without DF when asked.

Linux has no IPV6_USE_MIN_MTU: the per-socket IPV6_MTU cap applies when the kernel
fragments, i.e. to datagrams larger than the route's MTU; one between 1280 bytes and the
link MTU leaves whole (what the second test shows too). README: an anycast set-up that
needs every datagram above 1280 fragmented sets the route's MTU (``ip -6 route ... mtu
1280``)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from tests.interop.lab import require_lab, sh

pytestmark = pytest.mark.interop

PROBE = r"""
import json, socket, struct, sys
from ipaddress import ip_address
from rtc64.io import sockets

ETH_P_ALL = 3
DEST6, DEST4 = sys.argv[1], sys.argv[2]
def capture(send):
    cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    cap.bind(("mtu0", 0))
    cap.settimeout(0.5)
    send()
    seen = []
    while True:
        try:
            frame, meta = cap.recvfrom(70000)
        except TimeoutError:
            break
        if meta[2] != socket.PACKET_OUTGOING:
            continue  # what we sent, not neighbour discovery or the peer's replies
        seen.append(frame[14:])
    cap.close()
    return seen

def v6(min_mtu, size):
    sock = sockets.udp_socket(ip_address("::"), 0, 0, ipv6_min_mtu=min_mtu)
    pkts = capture(lambda: sock.sendto(b"x" * size, (DEST6, 9)))
    out = []
    for p in pkts:
        if p[0] >> 4 != 6 or p[6] not in (17, 44):
            continue  # neighbour discovery, MLD
        out.append({"len": 40 + struct.unpack_from("!H", p, 4)[0], "next": p[6]})
    return out

def v4(no_df):
    sock = sockets.udp_socket(ip_address("0.0.0.0"), 0, 0, ipv4_no_df=no_df)
    pkts = capture(lambda: sock.sendto(b"x" * 1000, (DEST4, 9)))
    return [{"len": struct.unpack_from("!H", p, 2)[0], "df": bool(p[6] & 0x40)}
            for p in pkts if p[0] >> 4 == 4 and p[9] == 17]

print(json.dumps({"v6_min": v6(True, 3000), "v6_plain": v6(False, 3000),
                  "v6_mid": v6(True, 1400), "v4_nodf": v4(True), "v4_plain": v4(False)}))
"""


@pytest.fixture(scope="module")
def netns() -> Iterator[str]:
    """The sender's namespace; its veth peer (fd00:128::2, 10.128.0.2) in another one."""
    require_lab()
    tag = uuid.uuid4().hex[:8]
    a, b = f"rtc64-mtu-a-{tag}", f"rtc64-mtu-b-{tag}"
    sh("ip", "netns", "add", a)
    try:
        sh("ip", "netns", "add", b)
        sh("ip", "-n", a, "link", "add", "mtu0", "type", "veth", "peer", "name", "mtu1", "netns", b)
        for ns, dev, n in ((a, "mtu0", 1), (b, "mtu1", 2)):
            sh("ip", "-n", ns, "link", "set", dev, "mtu", "1500", "up")
            sh("ip", "-n", ns, "addr", "add", f"fd00:128::{n}/64", "dev", dev, "nodad")
            sh("ip", "-n", ns, "addr", "add", f"10.128.0.{n}/24", "dev", dev)
        yield a
    finally:
        sh("ip", "netns", "delete", a, check=False)
        sh("ip", "netns", "delete", b, check=False)


@pytest.fixture(scope="module")
def wire(netns: str) -> dict[str, list[dict[str, int]]]:
    proc = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", PROBE, "fd00:128::2", "10.128.0.2"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result: dict[str, list[dict[str, int]]] = json.loads(proc.stdout)
    return result


def test_ipv6_fragments_at_the_minimum_mtu(wire: dict[str, list[dict[str, int]]]) -> None:
    packets = wire["v6_min"]
    assert len(packets) == 3, packets  # 3000 bytes in 1280-byte fragments
    assert all(p["next"] == 44 for p in packets), packets  # each has a Fragment header
    assert max(p["len"] for p in packets) <= 1280, packets


def test_ipv6_without_the_option_uses_the_link_mtu(wire: dict[str, list[dict[str, int]]]) -> None:
    packets = wire["v6_plain"]
    assert len(packets) == 3 and max(p["len"] for p in packets) > 1280, packets
    # Linux limit: a datagram below the link MTU is never fragmented by the cap.
    assert [p["len"] for p in wire["v6_mid"]] == [40 + 8 + 1400], wire["v6_mid"]


def test_ipv4_df_bit_follows_the_option(wire: dict[str, list[dict[str, int]]]) -> None:
    assert [p["df"] for p in wire["v4_nodf"]] == [False], wire["v4_nodf"]
    assert [p["df"] for p in wire["v4_plain"]] == [True], wire["v4_plain"]
