"""Two gateways of one domain behind DNS SRV, sharing one Redis location store (issue 12).

Topology (tests/interop/lab.py with the dual-stack host; IPv4 forwarding on in A's
namespace, as two edge nodes of one provider reach the same phones):

- gateway A in the gateway namespace (10.64.4.1 toward the phones, 10.64.5.1 toward B),
  gateway B in the dual-stack host's namespace (10.64.5.2:5062); both serve
  ``example.net`` with the default number of SIP workers (one per core) and relay media;
- one Debian redis-server (A's namespace, 10.64.5.1) holds both gateways' registrations;
- unbound (B's namespace, 10.64.5.2:5353) serves ``_sip._udp.example.net`` SRV: A at
  priority 10, B at priority 20;
- a third rtc64, the caller's outbound proxy (domain ``caller.test``, one process, no
  media), resolves ``example.net`` by RFC 3263 through that unbound;
- bob's phone (SIPp on the v4 host) registers through A; the caller is SIPp next to B.

With both gateways up the caller's proxy picks A (SRV priority); with A stopped it fails
over to B, which finds bob in Redis (registered through A) and relays the call's media
itself.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.interop.lab import V4_DS, V4_DS_GW, V4_GW, V4_HOST, V6_GW, Lab
from tests.interop.nat64lab import Unbound, zone
from tests.interop.peers import Gateway, Sipp, report, wait_port
from tests.interop.test_scaleout_redis import STORE, TRUSTED, redis

pytestmark = pytest.mark.interop
LAB_TOOLS = ("sipp", "ss", "redis-server", "redis-cli", "unbound", "unbound-checkconf")
LAB_DUAL_STACK = True
__all__ = ["redis"]  # the fixture, used by name

DNS_PORT = 5353
SRV_ZONE = zone(
    "example.net",
    f"""\
_sip._udp SRV 10 0 5060 a
_sip._udp SRV 20 0 5062 b
a A {V4_DS_GW}
b A {V4_DS}
""",
)
A_ARGS = [
    "--sip-listen", f"udp:[{V6_GW}]:5060", "--sip-listen", f"udp:{V4_GW}:5060",
    "--sip-listen", f"udp:{V4_DS_GW}:5060", "--store", STORE, "--media-policy", "always",
    *TRUSTED,
]  # fmt: skip
B_ARGS = [
    "--sip-listen", f"udp:{V4_DS}:5062", "--store", STORE, "--media-policy", "always",
    *TRUSTED,
]  # fmt: skip
GATEWAY = '[sip]\ndomains = ["example.net"]\noverload_lag = 0\n[turn]\nenabled = false\n'
CALLER_PROXY = (
    '[sip]\ndomains = ["caller.test"]\nworkers = 1\n'
    f'[dns]\nservers = ["{V4_DS}:{DNS_PORT}"]\n[web]\nenabled = false\n'
)
C_ARGS = [
    "--sip-listen", f"udp:{V4_DS}:5070", "--only", "sip", "--media-policy", "never",
    "--trusted-network", "10.64.5.0/24",
]  # fmt: skip


def _dir(work: Path, name: str) -> Path:
    d = work / name
    d.mkdir()
    return d


def _call(net: Lab, work: Path, name: str) -> str:
    """A call from next to B, through the caller's proxy, to sip:bob@example.net; returns
    the INVITE bob received."""
    uas = Sipp(net.v4, _dir(work, f"{name}-uas"), f"{name}-uas", "uas.xml",
               local=str(V4_HOST), port=5060)  # fmt: skip
    wait_port(net.v4, "udp", 5060)
    uac = Sipp(
        net.dual, _dir(work, f"{name}-uac"), f"{name}-uac", "uac.xml", local=str(V4_DS),
        port=5080, remote=f"{V4_DS}:5070", keys={"target": "example.net"}, extra=["-s", "bob"],
    )  # fmt: skip
    assert uac.wait() == 0, report(uac, uas)
    assert uas.wait() == 0, report(uac, uas)
    return uas.messages()


def test_srv_failover_between_gateways_sharing_redis(net: Lab, work: Path, redis: str) -> None:
    Unbound(net.dual, work / "unbound", {"example.net": SRV_ZONE}, listen=(V4_DS,),
            port=DNS_PORT)  # fmt: skip
    wait_port(net.dual, "udp", DNS_PORT)
    gw_a = Gateway(net.gw, _dir(work, "a"), A_ARGS, config=GATEWAY)
    gw_b = Gateway(net.dual, _dir(work, "b"), B_ARGS, config=GATEWAY)
    proxy = Gateway(net.dual, _dir(work, "c"), C_ARGS, config=CALLER_PROXY)
    try:
        for gw in (gw_a, gw_b):  # the default: one SIP worker per core
            assert re.search(r"gateway ready: \d+ SIP workers", gw.text()), gw.text()[-3000:]
        reg = Sipp(
            net.v4, _dir(work, "reg"), "reg", "register.xml", local=str(V4_HOST), port=5060,
            remote=f"{V4_GW}:5060", keys={"domain": "example.net", "expires": "300"},
            extra=["-s", "bob"],
        )  # fmt: skip
        assert reg.wait() == 0, report(gw_a, reg)
        # both up: SRV priority 10 is A; A relays the media (its address in bob's SDP)
        invite = _call(net, work, "both-up")
        assert re.search(rf"Via: SIP/2.0/UDP {V4_GW}:\d+;branch=", invite), invite
        assert f"c=IN IP4 {V4_GW}" in invite, invite
        assert "INVITE sip:bob" not in gw_b.text()
        # A down: the caller's proxy goes on to B (priority 20), which finds bob in Redis
        # (registered through A) and relays the media itself
        assert gw_a.stop() == 0, gw_a.text()[-3000:]
        invite = _call(net, work, "a-down")
        assert re.search(rf"Via: SIP/2.0/UDP {V4_DS}:\d+;branch=", invite), invite
        assert f"c=IN IP4 {V4_DS}" in invite, invite
        assert f"c=IN IP4 {V4_GW}" not in invite
        assert "Traceback" not in gw_b.text() + proxy.text()
    finally:
        proxy.stop()
        gw_b.stop()
        gw_a.stop()
