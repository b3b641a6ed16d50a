"""DNS (RFC 3263 over a real unbound), NAT64/DNS64 (tayga + unbound dns64), PREF64 (RFC 8781).

Real servers in network namespaces (see ``nat64lab.py``); as root these run, never skip.
PREF64: the issue asks for radvd's ``nat64prefix``, but Debian's radvd 2.19 does not
support it, so scapy sends the Router Advertisement with the PREF64 option (LAB-NOTES).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.interop.lab import V4_HOST, V6_GW, Host, lab, require_lab
from tests.interop.nat64lab import (
    NAT64_PREFIX,
    PYTHON,
    ROOT,
    RTC64,
    V4ONLY_NAME,
    V4ONLY_SYNTH,
    Nat64Lab,
    Unbound,
    in_ns,
    wait_for,
    zone,
)

pytestmark = pytest.mark.interop

SIP_ZONE = zone(
    "example.test",
    """\
@ NAPTR 10 10 "s" "SIP+D2T" "" _sip._tcp.example.test.
@ NAPTR 20 10 "s" "SIP+D2U" "" _sip._udp.example.test.
@ NAPTR 5 10 "s" "SIP+D2S" "" _sip._sctp.example.test.
_sip._tcp SRV 10 0 5062 pbx1
_sip._tcp SRV 20 0 5062 pbx2
_sip._udp SRV 10 0 5060 pbx1
pbx1 AAAA fd00:64:6::10
pbx1 AAAA fd00:64:6::11
pbx1 A 10.64.4.10
pbx2 A 10.64.4.20
srv AAAA fd00:64:6::30
_sips._tcp.srv SRV 0 0 5061 tls.srv
tls.srv AAAA fd00:64:6::31
tls.srv A 10.64.4.31
plain A 10.64.4.40
plain AAAA fd00:64:6::40
""",
)


def targets(host: Host, uri: str, server: str, timeout: float = 2.0) -> object:
    """``Resolver.targets(uri)`` run inside ``host``'s namespace: a list, or the error."""
    return json.loads(in_ns(host, "targets", uri, "--server", server, "--timeout", str(timeout)))


def test_rfc3263_targets_from_a_real_unbound(tmp_path: Path) -> None:
    require_lab("unbound", "unbound-checkconf", "ss")
    with lab() as net:
        dns = Unbound(net.gw, tmp_path / "unbound", {"example.test": SIP_ZONE})
        # NAPTR order (SCTP skipped), SRV priority, each host IPv6 first then alternating.
        assert targets(net.v6, "sip:alice@example.test", dns.server) == [
            ["tcp", "fd00:64:6::10", 5062, "pbx1.example.test"],
            ["tcp", "10.64.4.10", 5062, "pbx1.example.test"],
            ["tcp", "fd00:64:6::11", 5062, "pbx1.example.test"],
            ["tcp", "10.64.4.20", 5062, "pbx2.example.test"],
            ["udp", "fd00:64:6::10", 5060, "pbx1.example.test"],
            ["udp", "10.64.4.10", 5060, "pbx1.example.test"],
            ["udp", "fd00:64:6::11", 5060, "pbx1.example.test"],
        ]
        # No NAPTR: SRV for the supported transports (only _sips._tcp exists here).
        assert targets(net.v6, "sip:srv.example.test", dns.server) == [
            ["tls", "fd00:64:6::31", 5061, "tls.srv.example.test"],
            ["tls", "10.64.4.31", 5061, "tls.srv.example.test"],
        ]
        # Neither NAPTR nor SRV: A/AAAA on the default port; explicit transport and port.
        assert targets(net.v6, "sip:plain.example.test", dns.server) == [
            ["udp", "fd00:64:6::40", 5060, "plain.example.test"],
            ["udp", "10.64.4.40", 5060, "plain.example.test"],
        ]
        assert targets(net.v6, "sip:pbx2.example.test:5070;transport=tcp", dns.server) == [
            ["tcp", "10.64.4.20", 5070, "pbx2.example.test"],
        ]
        assert targets(net.v6, "sip:nowhere.example.test", dns.server) == {
            "status": 404,
            "reason": "Not Found: nowhere.example.test does not exist",
        }


def test_servfail_and_timeout_give_503_with_the_reason(tmp_path: Path) -> None:
    require_lab("unbound", "unbound-checkconf", "ss")
    with lab() as net:
        # broken.test is an auth-zone whose primary never answers: unbound says SERVFAIL.
        extra = (
            "auth-zone:\n  name: broken.test\n  primary: fd00:64:6::99\n"
            "  for-downstream: yes\n  fallback-enabled: no\n"
        )
        dns = Unbound(net.gw, tmp_path / "unbound", {"example.test": SIP_ZONE}, extra=extra)
        assert targets(net.v6, "sip:broken.test", dns.server) == {
            "status": 503,
            "reason": "Service Unavailable: DNS server failure (SERVFAIL) for broken.test NAPTR",
        }
        assert targets(net.v6, "sip:pbx.broken.test;transport=tcp", dns.server) == {
            "status": 503,
            "reason": "Service Unavailable: DNS server failure (SERVFAIL) for "
            "_sip._tcp.pbx.broken.test SRV",
        }
        # A server that never answers (an on-link address nobody has): a timeout, bounded.
        silent = "[fd00:64:6::99]:53"
        started = time.monotonic()
        assert targets(net.v6, "sip:example.test", silent, timeout=1.0) == {
            "status": 503,
            "reason": "Service Unavailable: DNS timeout for example.test NAPTR",
        }
        assert time.monotonic() - started < 15


def test_nat64_lab_rfc7050_discovery_and_udp_through_tayga() -> None:
    require_lab("tayga", "unbound", "unbound-checkconf", "ss")
    with Nat64Lab() as net:
        assert net.dns is not None
        proc = net.v6.run(
            RTC64, "nat64", "discover", "--timeout", "0", "--dns-server", net.dns.server
        )
        lines = proc.stdout.splitlines()
        assert lines[0].startswith(f"{NAT64_PREFIX}  source=rfc7050  ttl=")
        assert any(
            line.startswith("DNS64: yes: ipv4only.arpa AAAA fd64:64:64::c000:aa") for line in lines
        ), proc.stdout
        # The DNS64 synthesises the IPv4-only host's address under the prefix ...
        found = in_ns(net.v6, "targets", f"sip:{V4ONLY_NAME}:5060", "--server", net.dns.server)
        assert ["udp", str(V4ONLY_SYNTH), 5060, V4ONLY_NAME] in json.loads(found)
        # ... and a datagram to it reaches the IPv4-only host through tayga, and back.
        echo = net.v4.popen(
            [PYTHON, "-m", "tests.interop.nat64lab", "udp-echo", str(V4_HOST), "9999"],
            log=net.workdir / "echo.log",
            cwd=ROOT,
        )
        wait_for("udp echo", lambda: "ready" in (net.workdir / "echo.log").read_text())
        reply = json.loads(in_ns(net.v6, "udp-send", str(V4ONLY_SYNTH), "9999", "hello"))
        assert reply == {"data": "echo:hello", "from": str(V4ONLY_SYNTH)}
        echo.wait(5)
        # The IPv4-only host saw tayga's pool address, not the IPv6 host.
        assert "got hello from 192.168.255." in (net.workdir / "echo.log").read_text()


def test_pref64_from_a_router_advertisement() -> None:
    require_lab()
    with lab() as net:
        h6 = f"h6{net._tag}"
        g6 = f"g6{net._tag}"
        net.v6.run("sysctl", "-qw", f"net.ipv6.conf.{h6}.accept_ra=2")
        # The kernel's own solicitations stop, so the RA answers the one rtc64 sends.
        net.v6.run("sysctl", "-qw", f"net.ipv6.conf.{h6}.router_solicitations=0")
        log = Path(f"/tmp/r64ra-{net._tag}.log")
        try:
            responder = net.gw.popen(
                [PYTHON, "-m", "tests.interop.nat64lab", "ra-responder", "--iface", g6,
                 "--prefix", str(NAT64_PREFIX), "--lifetime", "600"],
                log=log,
                cwd=ROOT,
            )  # fmt: skip

            def ready() -> bool:
                if responder.poll() is not None:
                    raise RuntimeError(f"RA responder exited: {log.read_text()}")
                return "ready" in log.read_text()

            wait_for("the RA responder", ready, timeout=20)
            # Nothing listens on the gateway's port 53: DNS64 is "unknown", PREF64 decides.
            proc = net.v6.run(
                RTC64, "nat64", "discover", "--timeout", "3", "--dns-server", f"[{V6_GW}]"
            )
            assert f"{NAT64_PREFIX}  source=pref64  lifetime=600s  interface={h6}" in (
                proc.stdout.splitlines()
            ), proc.stdout + log.read_text()
            assert f"solicited on {h6}" in proc.stdout
            assert "RS from " in log.read_text() and "RA sent" in log.read_text()
        finally:
            log.unlink(missing_ok=True)
