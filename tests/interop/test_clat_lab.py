"""``rtc64 clat`` in network namespaces: real tayga as CLAT and PLAT, unbound DNS64.

    v6 host (IPv6 only; rtc64 clat run)  ==  gateway (tayga PLAT, unbound DNS64)  ==  v4 host
                                                 fd64:64:64::/96

- RFC 7050 only: the CLAT comes up from DNS64; an IPv4 literal answers ICMP, UDP, TCP and a
  1400-byte UDP datagram (fragmented at the CLAT's 1260 MTU); a SIPp call from an IPv4
  socket on the v6 host reaches an IPv4-only SIPp; kill -9 then ``clat cleanup`` leaves no
  namespace, link, address or route.
- PREF64 from RAs (scapy): the CLAT follows a changed prefix, goes away at lifetime 0, goes
  away when IPv4 appears on the link; two uplinks give two instances.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.interop.clatlab import CLIENT, ECHO, ClatLab, in_v4
from tests.interop.lab import V4_HOST, require_lab, sh
from tests.interop.nat64lab import NAT64_PREFIX, PYTHON, ROOT

pytestmark = pytest.mark.timeout(120)
OTHER_PREFIX = "fd64:99:99::/96"


def test_rfc7050_clat_carries_icmp_udp_tcp_large_udp_and_sip(clat: ClatLab) -> None:
    require_lab("tayga", "unbound", "sipp")
    assert clat.lab.dns is not None
    clat.start("--dns-server", clat.lab.dns.server)
    clat.wait("the CLAT up from RFC 7050", lambda: bool(clat.running()))
    (link,) = clat.running()
    assert link["prefix"] == str(NAT64_PREFIX) and link["prefix_source"] == "rfc7050"
    assert link["ipv4"] == "192.0.0.1" and link["engine"] == "tayga"
    assert link["clat_ipv6"].startswith("fd00:64:6:0:")  # a dedicated address on the /64
    v6 = clat.lab.v6
    clat.wait(
        "ICMP through CLAT and PLAT",
        lambda: v6.run("ping", "-c1", "-W1", str(V4_HOST), check=False).returncode == 0,
    )
    in_v4(clat, ECHO.format(a=V4_HOST))
    clat.wait("the v4 echo server", lambda: "7001" in clat.lab.v4.run("ss", "-Hltn").stdout)
    out = v6.run(PYTHON, "-c", CLIENT.format(a=V4_HOST)).stdout.split("\n")
    # the server sees the PLAT's pool address; the full 1400 bytes arrived (fragmented)
    assert out[0].startswith("udp 20 from 192.168.255.")
    assert out[1].startswith("udp 1400 from 192.168.255.")
    assert out[2] == "tcp:hi 192.0.0.1"
    uas = clat.lab.v4.popen(
        ["sipp", "-sn", "uas", "-i", str(V4_HOST), "-p", "5060", "-nostdin", "-bg"],
        log=clat.lab.workdir / "uas.log",
    )
    uas.wait(10)
    uac = v6.run(
        "timeout",
        "30",
        "sipp",
        "-sn",
        "uac",
        "-i",
        "192.0.0.1",
        "-p",
        "5070",
        "-m",
        "1",
        "-nostdin",
        "-timeout",
        "20",
        "-trace_err",
        f"{V4_HOST}:5060",
        check=False,
    )
    assert uac.returncode == 0, uac.stdout[-2000:] + uac.stderr
    status = clat.status()["links"][0]
    assert status["counters"]["to_clat_packets"] > 0 and status["counters"]["from_clat_packets"] > 0
    # kill -9: everything stays behind until cleanup removes it all
    assert clat.proc is not None
    clat.proc.send_signal(signal.SIGKILL)
    clat.proc.wait(5)
    assert clat.namespaces()
    assert clat.status() == {"running": False, "links": []}
    out = clat.rtc64(
        "clat", "cleanup", "--netns-prefix", clat.ns_prefix, "--state-dir", str(clat.state)
    ).stdout
    assert f"namespace {clat.ns_prefix}0" in out
    assert clat.namespaces() == []
    assert not [n for n in os.listdir("/run/netns") if n.startswith(clat.ns_prefix)]
    links = v6.run("ip", "-o", "link").stdout
    assert "r64clat" not in links
    assert v6.run("ip", "-4", "addr").stdout.strip() == ""
    assert v6.run("ip", "-4", "route").stdout.strip() == ""
    assert not (clat.state / "status.json").exists()
    # no translator left running either (it would live on in a nameless namespace)
    left = [
        p.name
        for p in Path("/proc").iterdir()
        if p.name.isdigit()
        and _cmdline(p).startswith(b"tayga")
        and str(clat.state).encode() in _cmdline(p)
    ]
    assert left == [], left


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""


def send_ra(c: ClatLab, iface: str, prefix: str, lifetime: int) -> None:
    code = (
        "from scapy.layers.inet6 import IPv6, ICMPv6ND_RA, ICMPv6NDOptPREF64\n"
        "from scapy.sendrecv import send\n"
        f"send(IPv6(src='fe80::64', dst='ff02::1', hlim=255) / ICMPv6ND_RA(routerlifetime=0)"
        f" / ICMPv6NDOptPREF64(scaledlifetime={lifetime // 8}, plc=0,"
        f" prefix='{prefix.split('/', maxsplit=1)[0]}'), iface='{iface}', verbose=False)\n"
    )
    c.lab.gw.run(PYTHON, "-c", code)


def test_pref64_follows_changes_ipv4_turns_off_and_two_uplinks(clat: ClatLab) -> None:
    tag = clat.lab._tag
    gw_if, host_if = f"g6{tag}", f"h6{tag}"
    # PREF64 comes in answer to a Router Solicitation (the daemon repeats its RS at start)
    clat.start("--no-dns64")
    clat.wait("the daemon's status", lambda: bool(clat.status().get("links")))
    log = clat.lab.workdir / "ra.log"
    clat.lab.gw.popen(
        [PYTHON, "-m", "tests.interop.nat64lab", "ra-responder", "--iface", gw_if,
         "--prefix", str(NAT64_PREFIX)],
        log=log, env={"PYTHONPATH": str(ROOT)},
    )  # fmt: skip

    def prefix_is(p: str) -> bool:
        return [x["prefix"] for x in clat.running()] == [p]

    clat.wait("the CLAT up from a solicited PREF64", lambda: prefix_is(str(NAT64_PREFIX)))
    assert clat.running()[0]["prefix_source"] == "pref64"
    assert "RS from fe80::" in log.read_text()
    send_ra(clat, gw_if, OTHER_PREFIX, 1800)
    clat.wait("the CLAT on the new PREF64", lambda: prefix_is(OTHER_PREFIX))
    send_ra(clat, gw_if, OTHER_PREFIX, 0)  # withdrawn: back to the other, still valid one
    clat.wait("the CLAT back on the first PREF64", lambda: prefix_is(str(NAT64_PREFIX)))
    send_ra(clat, gw_if, str(NAT64_PREFIX), 0)
    clat.wait("the CLAT gone at lifetime 0", lambda: clat.running() == [])
    assert clat.namespaces() == []
    # IPv4 appears on the link: the CLAT goes away; it goes again: the CLAT is back
    send_ra(clat, gw_if, str(NAT64_PREFIX), 1800)
    clat.wait("the CLAT up again", lambda: len(clat.running()) == 1)
    v6 = clat.lab.v6
    v6.run("ip", "-4", "addr", "add", "10.99.0.2/24", "dev", host_if)
    clat.wait("the CLAT off with IPv4 present", lambda: clat.running() == [])
    assert "IPv4 present" in clat.status()["links"][0]["reason"]
    v6.run("ip", "-4", "addr", "del", "10.99.0.2/24", "dev", host_if)
    clat.wait("the CLAT back without IPv4", lambda: len(clat.running()) == 1)
    # a NetworkManager-style CLAT address on the link: deferred to, reported
    v6.run("ip", "-4", "addr", "add", "192.0.0.5/32", "dev", host_if)
    clat.wait("deference to another CLAT", lambda: clat.running() == [])
    assert "192.0.0.5" in clat.status()["links"][0]["detail"]
    v6.run("ip", "-4", "addr", "del", "192.0.0.5/32", "dev", host_if)
    clat.wait("the CLAT back on its own", lambda: len(clat.running()) == 1)
    # a second uplink with its own router and PREF64: a second instance, another slot
    gw2, host2 = f"g7{tag}", f"h7{tag}"
    sh(
        "ip",
        "link",
        "add",
        gw2,
        "netns",
        clat.lab.gw.ns,
        "type",
        "veth",
        "peer",
        host2,
        "netns",
        v6.ns,
    )
    clat.lab.gw.run("ip", "link", "set", gw2, "up")
    clat.lab.gw.run("ip", "-6", "addr", "add", "fd00:64:7::1/64", "dev", gw2, "nodad")
    v6.run("ip", "link", "set", host2, "up")
    v6.run("ip", "-6", "addr", "add", "fd00:64:7::2/64", "dev", host2, "nodad")
    v6.run(
        "ip", "-6", "route", "add", "default", "via", "fd00:64:7::1", "dev", host2, "metric", "2000"
    )
    send_ra(clat, gw2, OTHER_PREFIX, 1800)
    clat.wait("two instances", lambda: len(clat.running()) == 2)
    by_if = {x["interface"]: x for x in clat.running()}
    assert by_if[host_if]["ipv4"] == "192.0.0.1" and by_if[host2]["ipv4"] == "192.0.0.3"
    assert by_if[host2]["prefix"] == OTHER_PREFIX
    assert sorted(clat.namespaces()) == [f"{clat.ns_prefix}0", f"{clat.ns_prefix}1"]
    # SIGTERM: the daemon removes everything it made
    assert clat.proc is not None
    clat.proc.send_signal(signal.SIGTERM)
    clat.proc.wait(30)
    assert clat.namespaces() == []
    assert "r64clat" not in v6.run("ip", "-o", "link").stdout
    assert v6.run("ip", "-4", "route").stdout.strip() == ""
