"""SDP of the other family than the leg it is sent to (issue 8): with both signalling legs on
one family, ``auto`` relays media whose SDP names only the other family, in offers and in
answers (late relay); IPv4-mapped addresses count as IPv4 and reach the relay as IPv4."""

from __future__ import annotations

import logging
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest

from rtc64.gateway import media
from rtc64.gateway.media import MediaBridge, unmapped_sdp
from rtc64.net.address import Family
from rtc64.relay.engine import MediaRelay
from rtc64.relay.options import RelaySettings
from rtc64.sdp import parse
from rtc64.sdp.addresses import media_family, needs_other_family, stream_families

from ..relay.helpers import V4, V6, Clock, FakeForwarder
from .test_media import CID, make, req, resp, sdp

CALLER6 = ip_address("2001:db8:aaaa::10")
CALLEE6 = ip_address("2001:db8:bbbb::20")
CALLER4 = ip_address("198.51.100.10")
CALLEE4 = ip_address("203.0.113.50")
MAPPED = "::ffff:192.0.2.2"


def mapped_sdp() -> bytes:
    return sdp("2001:db8:aaaa::10").replace(b"c=IN IP6 2001:db8:aaaa::10", b"c=IN IP6 " + (
        MAPPED.encode()
    ))  # fmt: skip


# -- what an SDP needs -----------------------------------------------------------------------


def test_media_family_counts_mapped_addresses_as_ipv4() -> None:
    assert media_family(IPv6Address(MAPPED)) is Family.INET
    assert media_family(IPv6Address("2001:db8::1")) is Family.INET6
    assert media_family(IPv4Address("192.0.2.1")) is Family.INET


@pytest.mark.parametrize(
    ("body", "leg", "needs"),
    [
        (sdp("192.0.2.1"), Family.INET6, True),
        (sdp("192.0.2.1"), Family.INET, False),
        (sdp("2001:db8::5"), Family.INET, True),
        (sdp("2001:db8::5"), Family.INET6, False),
        (mapped_sdp(), Family.INET6, True),
        (mapped_sdp(), Family.INET, False),
        # A hold names no family: never a reason to relay.
        (
            sdp("192.0.2.1").replace(b"c=IN IP4 192.0.2.1", b"c=IN IP4 0.0.0.0"),
            Family.INET6,
            False,
        ),
        # ICE with a candidate of the leg's family: the peer can use it.
        (
            sdp("192.0.2.1") + b"a=candidate:1 1 UDP 2130706431 2001:db8::5 4000 typ host\r\n",
            Family.INET6,
            False,
        ),
        # A rejected stream needs nothing.
        (sdp("192.0.2.1", port=0), Family.INET6, False),
    ],
)
def test_needs_other_family(body: bytes, leg: Family, needs: bool) -> None:
    assert needs_other_family(parse(body), leg) is needs


def test_stream_families_use_the_session_connection_when_a_section_has_none() -> None:
    body = sdp("192.0.2.1") + b"m=video 4002 RTP/AVP 96\r\nc=IN IP6 2001:db8::7\r\n"
    assert stream_families(parse(body)) == [{Family.INET}, {Family.INET6}]


def test_unmapped_sdp_writes_mapped_addresses_as_ipv4() -> None:
    out = unmapped_sdp(mapped_sdp())
    assert b"c=IN IP4 192.0.2.2\r\n" in out and b"::ffff" not in out
    plain = sdp("2001:db8::5")
    assert unmapped_sdp(plain) is plain
    assert unmapped_sdp(b"garbage") == b"garbage"


# -- offers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "offerer", "answerer", "suffix"),
    [
        (sdp("192.0.2.1"), CALLER6, CALLEE6, b";f=6"),  # IPv4 SDP, both legs IPv6
        (mapped_sdp(), CALLER6, CALLEE6, b";f=6"),  # IPv4-mapped counts as IPv4
        (sdp("2001:db8::5"), CALLER4, CALLEE4, b";f=4"),  # the mirror case
    ],
)
def test_auto_relays_an_offer_of_the_other_family_than_the_receiving_leg(
    body: bytes, offerer: IPv4Address | IPv6Address, answerer: IPv4Address | IPv6Address,
    suffix: bytes,
) -> None:  # fmt: skip
    bridge, relay = make()
    out = bridge.offer(CID, b"alice", body, offerer=offerer, answerer=answerer)
    assert out == b"offer via relay " + CID + suffix
    (entry,) = relay.log
    assert entry[0] == "offer"
    assert entry[3] == unmapped_sdp(body)  # the relay sees IPv4 as IPv4
    assert entry[4] is (Family.INET6 if answerer.version == 6 else Family.INET)


def test_never_keeps_passing_other_family_sdp() -> None:
    bridge, relay = make("never")
    assert bridge.offer(CID, b"a", sdp("192.0.2.1"), offerer=CALLER6, answerer=CALLEE6) is None
    assert bridge.answer(CID, b"b", sdp("192.0.2.9"), answerer=CALLEE6, offerer=CALLER6,
                         final=True) is None  # fmt: skip
    assert relay.log == []


# -- answers: late relay ---------------------------------------------------------------------


def test_an_ipv4_answer_toward_an_ipv6_caller_is_relayed() -> None:
    bridge, relay = make()
    invite = req(b"INVITE", sdp("2001:db8:aaaa::10"))
    assert bridge.request_body(invite, CALLER6, CALLEE6) is None  # usable as written
    early = resp(183, sdp("192.0.2.9"))
    out = bridge.response_body(invite, early, CALLEE6, CALLER6)
    assert out == b"answer via relay call1@test;f=6"
    # The relay learnt the kept offer (its answerer-facing side IPv4, like the answer)
    # and then the answer, rewritten for the IPv6 caller.
    assert relay.log[0] == (
        "offer", CID + b";f=6", b"alice", sdp("2001:db8:aaaa::10"), Family.INET, CALLER6
    )  # fmt: skip
    assert relay.log[1] == (
        "answer", CID + b";f=6", b"alice", b"bob", sdp("192.0.2.9"), Family.INET6, CALLEE6
    )  # fmt: skip
    # The 200 answers again on the same session; the call stays relayed.
    ok = resp(200, sdp("192.0.2.9"))
    assert bridge.response_body(invite, ok, CALLEE6, CALLER6) == b"answer via relay " + (
        CID + b";f=6"
    )
    assert relay.ops()[2:] == [("answer", CID + b";f=6")]
    assert bridge.late_relays == 1 and bridge.active_calls() == 1
    bridge.end(CID)
    assert relay.ops()[-1] == ("delete", CID + b";f=6")


def test_a_mapped_answer_in_the_ack_is_relayed() -> None:
    """Offer in the 200 (IPv6 callee), answer in the ACK with an IPv4-mapped address."""
    bridge, relay = make()
    invite = req(b"INVITE")
    ok = resp(200, sdp("2001:db8:bbbb::20"))
    assert bridge.response_body(invite, ok, CALLEE6, CALLER6) is None
    ack = req(b"ACK", mapped_sdp(), to_tag=b"bob")
    assert bridge.request_body(ack, CALLER6, CALLEE6) == b"answer via relay call1@test;f=6"
    assert relay.log[0][:3] == ("offer", CID + b";f=6", b"bob")
    assert relay.log[1][4] == unmapped_sdp(mapped_sdp())


def test_a_same_family_answer_leaves_the_call_alone_and_forgets_the_offer() -> None:
    bridge, relay = make()
    invite = req(b"INVITE", sdp("2001:db8:aaaa::10"))
    assert bridge.request_body(invite, CALLER6, CALLEE6) is None
    ok = resp(200, sdp("2001:db8:bbbb::20"))
    assert bridge.response_body(invite, ok, CALLEE6, CALLER6) is None
    # A later stray answer of the other family has no kept offer to relay.
    again = resp(200, sdp("192.0.2.9"))
    assert bridge.response_body(invite, again, CALLEE6, CALLER6) is None
    assert relay.log == [] and bridge.active_calls() == 0


def test_a_relayed_offer_is_not_answered_from_a_stale_kept_offer() -> None:
    """A kept offer belongs to its branch's family: the relayed IPv4 branch of a fork
    answers on its own session."""
    bridge, relay = make()
    invite = req(b"INVITE", sdp("2001:db8:aaaa::10"))
    assert bridge.request_body(invite, CALLER6, CALLEE6) is None
    assert bridge.request_body(invite, CALLER6, CALLEE4) == b"offer via relay call1@test;f=4"
    ok = resp(200, sdp("203.0.113.50"), to_tag=b"bob4")
    assert bridge.response_body(invite, ok, CALLEE4, CALLER6) == b"answer via relay " + (
        CID + b";f=4"
    )
    assert relay.ops() == [("offer", CID + b";f=4"), ("answer", CID + b";f=4")]


def test_the_fork_branch_that_passed_untouched_is_relayed_late() -> None:
    bridge, relay = make()
    invite = req(b"INVITE", sdp("2001:db8:aaaa::10"))
    assert bridge.request_body(invite, CALLER6, CALLEE6) is None
    assert bridge.request_body(invite, CALLER6, CALLEE4) is not None
    ok = resp(200, sdp("192.0.2.9"), to_tag=b"bob6")
    assert bridge.response_body(invite, ok, CALLEE6, CALLER6) == b"answer via relay " + (
        CID + b";f=6"
    )
    assert relay.ops() == [
        ("offer", CID + b";f=4"),
        ("offer", CID + b";f=6"),
        ("answer", CID + b";f=6"),
        ("delete", CID + b";f=4"),
    ]


def test_kept_offers_are_bounded_and_forgotten_at_the_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bridge, _ = make()
    for i in range(3):
        bridge.offer(b"c%d" % i, b"a", sdp("2001:db8::5"), offerer=CALLER6, answerer=CALLEE6)
    assert len(bridge._passed) == 3
    bridge.end(b"c1")
    assert (b"c1", Family.INET6) not in bridge._passed
    monkeypatch.setattr(media, "MAX_PASSED", 2)
    bridge.offer(b"c9", b"a", sdp("2001:db8::5"), offerer=CALLER6, answerer=CALLEE6)
    assert list(bridge._passed) == [(b"c2", Family.INET6), (b"c9", Family.INET6)]


# -- with the real relay engine --------------------------------------------------------------


def engine_bridge() -> tuple[MediaBridge, FakeForwarder]:
    fwd = FakeForwarder()
    settings = RelaySettings(addresses=(V4, V6), ports=(30000, 30099))
    relay = MediaRelay(settings, fwd, clock=Clock())
    return MediaBridge(relay, "auto", logging.getLogger("test.media")), fwd


def test_engine_offer_of_mapped_sdp_reaches_the_ipv6_callee_as_the_relay_ipv6_address() -> None:
    bridge, fwd = engine_bridge()
    invite = req(b"INVITE", mapped_sdp())
    out = bridge.request_body(invite, CALLER6, CALLEE6)
    assert out is not None
    assert f"c=IN IP6 {V6}".encode() in out and b"IP4" not in out and b"ffff" not in out
    # The relay sends to the caller's IPv4 address from an IPv4 port, never to ::ffff:.
    remotes = {spec.remote[0] for spec in fwd.legs.values() if spec.remote is not None}
    assert remotes == {ip_address("192.0.2.2")}
    assert {p[0] for p in fwd.ports} == {V4, V6}


def test_engine_late_relay_gives_the_ipv6_caller_the_relay_ipv6_address() -> None:
    bridge, fwd = engine_bridge()
    invite = req(b"INVITE", sdp("2001:db8:aaaa::10"))
    assert bridge.request_body(invite, CALLER6, CALLEE6) is None
    out = bridge.response_body(invite, resp(200, sdp("192.0.2.9")), CALLEE6, CALLER6)
    assert out is not None
    assert f"c=IN IP6 {V6}".encode() in out and b"IP4" not in out
    remotes = {spec.remote[0] for spec in fwd.legs.values() if spec.remote is not None}
    assert remotes == {ip_address("2001:db8:aaaa::10"), ip_address("192.0.2.9")}
