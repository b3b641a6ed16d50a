"""Keepalives through real stateful firewalls: a phone registered behind a router whose
UDP conntrack entries expire after a few seconds gets its incoming call only while rtc64
keeps the pinhole open (RFC 5626 §3.5.1, §4.4.1; issue 11 "Keepalives").

Topology (own namespaces, removed afterwards)::

    gateway ==veth== router ==veth== phone
    rtc64 + SIPp UAC  nftables:      SIPp (REGISTER, then UAS on the same port)
                      IPv6: stateful filter (established,related in; new inbound dropped)
                      IPv4: masquerade + new inbound dropped
                      UDP conntrack timeouts: CT_TIMEOUT seconds

The phone registers, stays silent for several conntrack timeouts, then a SIPp UAC calls it
through rtc64. With keepalives off the INVITE dies at the router (the drop rule's counter
moves, the phone never sees it); with keepalives on (every KEEPALIVE seconds) the call
completes. Nothing is asserted about timing.
"""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path

import pytest

from tests.interop.lab import Host, require_lab, sh
from tests.interop.peers import Gateway, Sipp, report, sipp_received

pytestmark = pytest.mark.interop

CT_TIMEOUT = 2  # seconds a UDP conntrack entry lives without traffic
KEEPALIVE = "0.5"  # seconds between rtc64's pinhole keepalives
QUIET = 4 * CT_TIMEOUT  # seconds the phone stays silent before the call
PHONE_PORT = 5070
# The lab shares two cores with other work: a lagging moment must not shed the INVITE
# (503), which would also leave the firewall with nothing to drop.
NO_SHEDDING = "[sip]\noverload_lag = 0\n"


@dataclass
class Net:
    gw: Host
    router: Host
    phone: Host
    gw_ip: IPv4Address | IPv6Address
    phone_ip: IPv4Address | IPv6Address
    trusted: tuple[str, ...]
    chain: tuple[str, ...]
    """The nftables chain holding the counted drop rule."""

    def dropped(self) -> int:
        """Packets the router's drop-new-inbound rule has dropped."""
        out = self.router.run("nft", "list", "chain", *self.chain).stdout
        found = re.search(r"counter packets (\d+)", out)
        assert found, out
        return int(found.group(1))


def _veth(a: Host, a_if: str, b: Host, b_if: str) -> None:
    sh("ip", "link", "add", a_if, "netns", a.ns, "type", "veth", "peer", b_if, "netns", b.ns)
    a.run("ip", "link", "set", a_if, "up")
    b.run("ip", "link", "set", b_if, "up")


def _wait_ping(host: Host, target: str) -> None:
    deadline = time.monotonic() + 10
    while host.run("ping", "-c1", "-W1", target, check=False).returncode != 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{host.ns} cannot reach {target}")
        time.sleep(0.1)


IPV6_RULES = """
table inet r64fw {
  chain forward {
    type filter hook forward priority 0; policy accept;
    ct state established,related accept
    iifname "OUT" ct state new counter drop
  }
}
"""

IPV4_RULES = """
table ip r64nat {
  chain postrouting {
    type nat hook postrouting priority 100; policy accept;
    oifname "OUT" masquerade
  }
}
table inet r64fw {
  chain input {
    type filter hook input priority 0; policy accept;
    iifname "OUT" meta l4proto udp ct state new counter drop
  }
  chain forward {
    type filter hook forward priority 0; policy accept;
    ct state established,related accept
    iifname "OUT" ct state new drop
  }
}
"""


@contextlib.contextmanager
def firewall_lab(version: int) -> Iterator[Net]:
    tag = uuid.uuid4().hex[:6]
    gw, router, phone = (Host(f"r64ka{n}-{tag}") for n in ("g", "r", "p"))
    made: list[Host] = []
    try:
        for host in (gw, router, phone):
            sh("ip", "netns", "add", host.ns)
            made.append(host)
            host.run("ip", "link", "set", "lo", "up")
        out, inside = f"ko{tag}", f"ki{tag}"
        _veth(gw, f"kg{tag}", router, out)
        _veth(router, inside, phone, f"kp{tag}")
        router.run(
            "sysctl",
            "-qw",
            f"net.netfilter.nf_conntrack_udp_timeout={CT_TIMEOUT}",
            f"net.netfilter.nf_conntrack_udp_timeout_stream={CT_TIMEOUT}",
        )
        if version == 6:
            gw_ip, phone_ip = ip_address("fd00:6b:1::1"), ip_address("fd00:6b:2::10")
            phone.run("ip", "-4", "addr", "flush", "dev", "lo")  # IPv6-only phone host
            router.run("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
            gw.run("ip", "-6", "addr", "add", f"{gw_ip}/64", "dev", f"kg{tag}", "nodad")
            router.run("ip", "-6", "addr", "add", "fd00:6b:1::2/64", "dev", out, "nodad")
            router.run("ip", "-6", "addr", "add", "fd00:6b:2::1/64", "dev", inside, "nodad")
            phone.run("ip", "-6", "addr", "add", f"{phone_ip}/64", "dev", f"kp{tag}", "nodad")
            gw.run("ip", "-6", "route", "add", "fd00:6b:2::/64", "via", "fd00:6b:1::2")
            phone.run("ip", "-6", "route", "add", "default", "via", "fd00:6b:2::1")
            rules, chain = IPV6_RULES, ("inet", "r64fw", "forward")
            trusted = ("fd00:6b:1::/64", "fd00:6b:2::/64")
        else:
            gw_ip, phone_ip = ip_address("10.107.1.1"), ip_address("10.107.2.10")
            router.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
            gw.run("ip", "-4", "addr", "add", f"{gw_ip}/24", "dev", f"kg{tag}")
            router.run("ip", "-4", "addr", "add", "10.107.1.2/24", "dev", out)
            router.run("ip", "-4", "addr", "add", "10.107.2.1/24", "dev", inside)
            phone.run("ip", "-4", "addr", "add", f"{phone_ip}/24", "dev", f"kp{tag}")
            phone.run("ip", "-4", "route", "add", "default", "via", "10.107.2.1")
            # the gateway has no route to the phone's network: only the NAT's address
            rules, chain = IPV4_RULES, ("inet", "r64fw", "input")
            trusted = ("10.107.1.0/24",)
        rules_file = Path(f"/tmp/r64ka-{tag}.nft")
        rules_file.write_text(rules.replace("OUT", out))
        try:
            router.run("nft", "-f", str(rules_file))
        finally:
            rules_file.unlink()
        _wait_ping(phone, str(gw_ip))
        yield Net(gw, router, phone, gw_ip, phone_ip, trusted, chain)
    finally:
        for host in made:
            host.stop_all()
        for host in reversed(made):
            sh("ip", "netns", "del", host.ns, check=False)


def _bracket(ip: IPv4Address | IPv6Address) -> str:
    return f"[{ip}]" if ip.version == 6 else str(ip)


def _call_after_quiet(net: Net, work: Path, keepalive: bool) -> tuple[bool, int, str]:
    """Register the phone, wait QUIET seconds, call it. Returns (the call completed,
    packets the firewall dropped meanwhile, the failure report)."""
    listen = f"udp:{_bracket(net.gw_ip)}:5060"
    args = ["--sip-listen", listen, "--media-policy", "never", "--domain", "keepalive.test"]
    for network in net.trusted:
        args += ["--trusted-network", network]
    args += ["--keepalive", "true" if keepalive else "false"]
    args += ["--keepalive-interval", KEEPALIVE, "--keepalive-options-interval", "0"]
    gateway = Gateway(net.gw, work, args, config=NO_SHEDDING)
    domain = _bracket(net.gw_ip)
    remote = f"{domain}:5060"
    reg = Sipp(
        net.phone,
        work,
        "register",
        "register.xml",
        local=str(net.phone_ip),
        port=PHONE_PORT,
        remote=remote,
        keys={"domain": domain, "expires": "300"},
        extra=["-s", "alice"],
    )
    assert reg.wait() == 0, report(gateway, reg)
    uas = Sipp(net.phone, work, "uas", "uas.xml", local=str(net.phone_ip), port=PHONE_PORT)
    time.sleep(QUIET)  # several conntrack lifetimes without a packet from the phone
    before = net.dropped()
    uac = Sipp(
        net.gw,
        work,
        "uac",
        "uac.xml",
        local=str(net.gw_ip),
        port=5080,
        remote=remote,
        keys={"target": domain},
        extra=["-s", "alice", "-timeout", "8"],
    )
    completed = uac.wait() == 0
    invites = [m for m in sipp_received(work, "INVITE ") if "alice" in m.split("\n", 1)[0]]
    dropped = net.dropped() - before
    text = report(gateway, reg, uas, uac)
    assert not (completed and not invites), text
    return completed, dropped, text


@pytest.fixture(params=[6, 4], ids=["ipv6-firewall", "ipv4-masquerade"])
def firewalled(request: pytest.FixtureRequest) -> Iterator[Net]:
    require_lab("sipp", "nft")
    with firewall_lab(request.param) as net:
        yield net


def test_without_keepalives_the_incoming_invite_dies_at_the_firewall(
    firewalled: Net, tmp_path: Path
) -> None:
    completed, dropped, text = _call_after_quiet(firewalled, tmp_path, keepalive=False)
    assert not completed, text
    assert sipp_received(tmp_path, "INVITE ") == [], text
    assert dropped > 0, text  # the router's drop rule took the INVITE (and retransmissions)


def test_with_keepalives_the_incoming_invite_arrives(firewalled: Net, tmp_path: Path) -> None:
    completed, dropped, text = _call_after_quiet(firewalled, tmp_path, keepalive=True)
    assert completed, text
    assert dropped == 0, text
    log = (tmp_path / "rtc64.log").read_text(errors="replace")
    assert "keepalives every 0.5s" in log, text
