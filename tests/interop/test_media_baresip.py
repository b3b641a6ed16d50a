"""Audio between two real softphones through rtc64: baresip on the IPv6-only host and
baresip on the IPv4-only host register with the gateway and call each other both ways.

Without a bridge this call fails (baresip answers 488 "SDP offer AF not available"); with
rtc64 the SDP is rewritten per family and RTP flows through the relay, counted with
tcpdump at each phone.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop.lab import V4_GW, V4_HOST, V6_GW, V6_HOST, Lab, lab, require_lab
from tests.interop.peers import Baresip, Capture, Gateway

pytestmark = pytest.mark.interop

CONFIG = """
[sip]
domains = ["example.net"]
[auth]
realm = "example.net"
algorithms = ["MD5"]
users = [{name = "alice", password = "al1ce-secret"}, {name = "bob", password = "b0b-secret"}]
"""
LISTEN = ["--sip-listen", f"udp:[{V6_GW}]:5060", "--sip-listen", f"udp:{V4_GW}:5060"]
MIN_PACKETS = 50  # ~1 s of 20 ms G.711 packets


@pytest.fixture(scope="module")
def net() -> Iterator[Lab]:
    require_lab("baresip", "tcpdump", "ss")
    with lab() as topology:
        yield topology


def _phones(net: Lab, work: Path) -> tuple[Gateway, Baresip, Baresip]:
    gw = Gateway(net.gw, work, LISTEN, config=CONFIG)
    alice = Baresip(
        net.v6, work / "alice", address=str(V6_HOST),
        account=f'<sip:alice@example.net>;auth_pass=al1ce-secret;outbound="sip:[{V6_GW}]:5060";'
        "regint=600;answermode=auto;audio_codecs=PCMU",
    )  # fmt: skip
    bob = Baresip(
        net.v4, work / "bob", address=str(V4_HOST),
        account=f'<sip:bob@example.net>;auth_pass=b0b-secret;outbound="sip:{V4_GW}:5060";'
        "regint=600;answermode=auto;audio_codecs=PCMU",
    )  # fmt: skip
    for phone in (alice, bob):
        assert phone.wait_for("200 OK"), phone.text()[-3000:] + gw.text()[-3000:]
    return gw, alice, bob


def _talk(net: Lab, work: Path, caller: Baresip, callee: Baresip, target: str) -> None:
    to_v6 = Capture(net.v6, work, f"to-v6-{target}", str(V6_HOST), Baresip.RTP_PORTS)
    to_v4 = Capture(net.v4, work, f"to-v4-{target}", str(V4_HOST), Baresip.RTP_PORTS)
    caller.command("dial", f"sip:{target}@example.net")
    assert caller.wait_for("Call established"), caller.text()[-4000:]
    assert callee.wait_for("Call established"), callee.text()[-4000:]
    time.sleep(3)
    caller.command("hangup")
    at_v6, at_v4 = to_v6.count(), to_v4.count()
    assert at_v6 >= MIN_PACKETS, f"RTP reaching the IPv6 phone: {at_v6}"
    assert at_v4 >= MIN_PACKETS, f"RTP reaching the IPv4 phone: {at_v4}"


def test_ipv6_phone_calls_ipv4_phone_with_audio_both_ways(net: Lab, tmp_path: Path) -> None:
    gw, alice, bob = _phones(net, tmp_path)
    try:
        _talk(net, tmp_path, alice, bob, "bob")
        assert bob.wait_for("Call closed") or bob.wait_for("terminated")
    finally:
        for host in net.hosts:
            host.stop_all()
    assert "media relay on" in gw.text()


def test_ipv4_phone_calls_ipv6_phone_with_audio_both_ways(net: Lab, tmp_path: Path) -> None:
    _, alice, bob = _phones(net, tmp_path)
    try:
        _talk(net, tmp_path, bob, alice, "alice")
    finally:
        for host in net.hosts:
            host.stop_all()
