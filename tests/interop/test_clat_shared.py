"""``rtc64 clat`` on a link that gives only a /128, and MSS clamping for forwarded TCP.

    container (IPv4, MTU 1500) == v6 host (only fd00:64:6::2/128; rtc64 clat run)
        == gateway (tayga PLAT, unbound DNS64) == v4 host

- Shared-address policy: no /64, so the CLAT shares the host's /128: the translator maps
  192.0.0.1 to an internal address that rtc64's own nftables table SNATs to the /128. An
  IPv4 literal answers ICMP, UDP and TCP; the status says "shared"; SIGTERM removes the
  table and puts the uplink's ``force_forwarding`` back.
- MSS: a "container" behind the host (masqueraded to 192.0.0.1 as Docker does, MTU 1500)
  downloads 2 MB from the IPv4 server through CLAT and PLAT; both ends see an MSS of at
  most 1260 - 40 (without the clamp the server would see the container's 1460).
"""

from __future__ import annotations

import hashlib
import signal

import pytest

from tests.interop.clatlab import CLIENT, ECHO, ClatLab, in_v4
from tests.interop.lab import V4_HOST, V6_GW, V6_HOST, require_lab, sh
from tests.interop.nat64lab import NAT64_PREFIX, PYTHON

pytestmark = pytest.mark.timeout(120)
BLOB = 2_000_000

SERVER = """
import socket, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("{a}", 7002)); s.listen()
while True:
    c, _ = s.accept()
    print("server-mss", c.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG), flush=True)
    c.sendall(bytes(range(256)) * ({n} // 256)); c.close()
"""

DOWNLOAD = """
import hashlib, socket
c = socket.create_connection(("{a}", 7002), timeout=20)
mss = c.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
data = b""
while chunk := c.recv(65536):
    data += chunk
print(mss, len(data), hashlib.sha256(data).hexdigest())
"""


def test_a_128_only_link_shares_its_address_and_forwarded_tcp_is_clamped(clat: ClatLab) -> None:
    require_lab("tayga", "unbound", "nft")
    lab, tag = clat.lab, clat.lab._tag
    v6, host_if = lab.v6, f"h6{tag}"
    # DHCPv6 IA_NA style: the host's only address is a /128, the router on-link by route
    v6.run("ip", "-6", "addr", "del", f"{V6_HOST}/64", "dev", host_if)
    v6.run("ip", "-6", "addr", "add", f"{V6_HOST}/128", "dev", host_if, "nodad")
    v6.run("ip", "-6", "route", "replace", "default", "via", str(V6_GW), "dev", host_if, "onlink")
    fwd = f"/proc/sys/net/ipv6/conf/{host_if}/force_forwarding"
    assert v6.run("cat", fwd).stdout.strip() == "0"
    clat.start("--prefix", str(NAT64_PREFIX), "--no-dns64")
    clat.wait("the shared CLAT up", lambda: bool(clat.running()))
    (link,) = clat.running()
    assert link["clat_ipv6"] == str(V6_HOST) and link["address_policy"].startswith("shared")
    table = f"{clat.ns_prefix}0"
    assert "snat to" in v6.run("nft", "list", "table", "ip6", table).stdout
    assert "r64clatv" not in v6.run("ip", "-o", "link").stdout  # no macvlan: nothing dedicated
    clat.wait(
        "ICMP through the shared CLAT",
        lambda: v6.run("ping", "-c1", "-W1", str(V4_HOST), check=False).returncode == 0,
    )
    in_v4(clat, ECHO.format(a=V4_HOST))
    server_log = lab.workdir / "blob.log"
    lab.v4.popen([PYTHON, "-c", SERVER.format(a=V4_HOST, n=BLOB)], log=server_log)
    clat.wait("the v4 servers", lambda: "7002" in lab.v4.run("ss", "-Hltn").stdout)
    out = v6.run(PYTHON, "-c", CLIENT.format(a=V4_HOST)).stdout.split("\n")
    assert out[0].startswith("udp 20 from 192.168.255.")
    assert out[1].startswith("udp 1400 from 192.168.255.")
    assert out[2] == "tcp:hi 192.0.0.1"
    # the flows went through rtc64's SNAT to the shared /128 (its rule counted them)
    rules = v6.run("nft", "list", "table", "ip6", table).stdout
    snat = next(line for line in rules.split("\n") if "snat to" in line)
    assert f"snat to {V6_HOST}" in snat and int(snat.split("packets ")[1].split()[0]) > 0
    # a container behind the host: IPv4 MTU 1500, masqueraded to the CLAT's 192.0.0.1
    ct = f"r64ct-{tag}"
    sh("ip", "netns", "add", ct)
    try:
        sh("ip", "link", "add", f"c0{tag}", "netns", ct, "type", "veth", "peer", f"c1{tag}",
           "netns", v6.ns)  # fmt: skip
        sh("ip", "netns", "exec", ct, "ip", "link", "set", "lo", "up")
        sh("ip", "netns", "exec", ct, "ip", "link", "set", f"c0{tag}", "up")
        sh("ip", "netns", "exec", ct, "ip", "addr", "add", "10.99.9.2/24", "dev", f"c0{tag}")
        sh("ip", "netns", "exec", ct, "ip", "route", "add", "default", "via", "10.99.9.1")
        v6.run("ip", "link", "set", f"c1{tag}", "up")
        v6.run("ip", "addr", "add", "10.99.9.1/24", "dev", f"c1{tag}")
        v6.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
        v6.run("nft", "add table ip ctnat")
        v6.run("nft", "add chain ip ctnat p { type nat hook postrouting priority srcnat; }")
        v6.run("nft", 'add rule ip ctnat p oifname "r64clat0" masquerade')
        got = sh(
            "ip", "netns", "exec", ct, PYTHON, "-c", DOWNLOAD.format(a=V4_HOST)
        ).stdout.split()  # fmt: skip
    finally:
        sh("ip", "netns", "delete", ct, check=False)
    expect = hashlib.sha256(bytes(range(256)) * (BLOB // 256)).hexdigest()
    assert got[1:] == [str(BLOB // 256 * 256), expect]
    assert int(got[0]) <= 1220, got  # the server's SYN-ACK MSS was clamped on the way in
    server_mss = [int(x.split()[1]) for x in server_log.read_text().split("\n") if x]
    assert server_mss and max(server_mss) <= 1220, server_mss  # and the container's SYN
    assert clat.proc is not None
    clat.proc.send_signal(signal.SIGTERM)
    clat.proc.wait(30)
    assert v6.run("nft", "list", "table", "ip6", table, check=False).returncode != 0
    assert v6.run("cat", fwd).stdout.strip() == "0"
    assert clat.namespaces() == []
    # kill -9: the table and the uplink's sysctl stay until ``clat cleanup``
    clat.start("--prefix", str(NAT64_PREFIX), "--no-dns64")
    clat.wait("the shared CLAT up again", lambda: bool(clat.running()))
    assert v6.run("cat", fwd).stdout.strip() == "1"
    clat.proc.send_signal(signal.SIGKILL)
    clat.proc.wait(5)
    done = clat.rtc64(
        "clat", "cleanup", "--netns-prefix", clat.ns_prefix, "--state-dir", str(clat.state)
    ).stdout
    assert f"nftables table ip6 {table}" in done and f"force_forwarding=0 on {host_if}" in done
    assert v6.run("nft", "list", "table", "ip6", table, check=False).returncode != 0
    assert v6.run("cat", fwd).stdout.strip() == "0"
    assert clat.namespaces() == []
