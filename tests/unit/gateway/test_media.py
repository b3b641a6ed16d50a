"""The proxy's media bridge (gateway/media.py) on a fake relay that records every call:
the relay decision per policy, where offers and answers travel (INVITE/18x/2xx,
2xx/ACK, re-INVITEs from either side), forking to both families, and teardown."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from ipaddress import IPv6Address, ip_address, ip_network

import pytest

from rtc64.gateway.media import MediaBridge, has_sdp
from rtc64.net.address import Family, IPAddress
from rtc64.sip.framing import parse_datagram
from rtc64.sip.message import Request, Response

CALLER6 = ip_address("2001:db8:aaaa::10")
CALLEE4 = ip_address("203.0.113.50")
CALLEE6 = ip_address("2001:db8:bbbb::20")
CALLER4 = ip_address("198.51.100.10")
CID = b"call1@test"


@dataclass
class FakeRelay:
    """Records offer/answer/delete; returns a marker body naming the call and family."""

    log: list[tuple[object, ...]] = field(default_factory=list)
    fail_delete: bool = False

    def offer(
        self,
        call_id: bytes,
        from_tag: bytes,
        sdp: bytes,
        *,
        to_family: Family,
        from_source: IPAddress | None,
    ) -> bytes:
        self.log.append(("offer", call_id, from_tag, sdp, to_family, from_source))
        return b"offer via relay " + call_id

    def answer(
        self,
        call_id: bytes,
        from_tag: bytes,
        to_tag: bytes,
        sdp: bytes,
        *,
        to_family: Family,
        from_source: IPAddress | None,
    ) -> bytes:
        self.log.append(("answer", call_id, from_tag, to_tag, sdp, to_family, from_source))
        return b"answer via relay " + call_id

    def delete(self, call_id: bytes) -> object:
        self.log.append(("delete", call_id))
        if self.fail_delete:
            raise RuntimeError("relay gone")
        return None

    def ops(self) -> list[tuple[str, bytes]]:
        """(operation, session) in order."""
        return [(str(entry[0]), entry[1]) for entry in self.log]  # type: ignore[misc]


def sdp(address: str, port: int = 4000, direction: str = "") -> bytes:
    fam = "IP6" if ":" in address else "IP4"
    extra = f"a={direction}\r\n" if direction else ""
    return (
        f"v=0\r\no=- 1 1 IN {fam} {address}\r\ns=-\r\nc=IN {fam} {address}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n{extra}"
    ).encode()


def make(policy: str = "auto") -> tuple[MediaBridge, FakeRelay]:
    relay = FakeRelay()
    return MediaBridge(relay, policy, logging.getLogger("test.media")), relay


def _headers(method: bytes, cseq: int, to_tag: bytes | None, from_tag: bytes) -> list[bytes]:
    to = b"<sip:bob@example.net>" + (b";tag=" + to_tag if to_tag else b"")
    return [
        b"Via: SIP/2.0/UDP [2001:db8:aaaa::10]:5060;branch=z9hG4bKx%d" % cseq,
        b"From: <sip:alice@example.net>;tag=" + from_tag,
        b"To: " + to,
        b"Call-ID: " + CID,
        b"CSeq: %d %s" % (cseq, method),
        b"Max-Forwards: 70",
    ]


def _with_body(lines: list[bytes], body: bytes, ctype: bytes = b"application/sdp") -> bytes:
    if body:
        lines = [*lines, b"Content-Type: " + ctype]
    lines = [*lines, b"Content-Length: %d" % len(body)]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def req(
    method: bytes,
    body: bytes = b"",
    *,
    cseq: int = 1,
    to_tag: bytes | None = None,
    from_tag: bytes = b"alice",
    ctype: bytes = b"application/sdp",
) -> Request:
    lines = [b"%s sip:bob@example.net SIP/2.0" % method]
    lines += _headers(method, cseq, to_tag, from_tag)
    msg = parse_datagram(_with_body(lines, body, ctype))
    assert isinstance(msg, Request)
    return msg


def resp(
    status: int,
    body: bytes = b"",
    *,
    method: bytes = b"INVITE",
    cseq: int = 1,
    to_tag: bytes = b"bob",
    from_tag: bytes = b"alice",
) -> Response:
    lines = [b"SIP/2.0 %d Whatever" % status, *_headers(method, cseq, to_tag, from_tag)]
    msg = parse_datagram(_with_body(lines, body))
    assert isinstance(msg, Response)
    return msg


# -- the relay decision ----------------------------------------------------------------------


def test_auto_relays_when_the_families_differ() -> None:
    bridge, relay = make()
    out = bridge.offer(CID, b"alice", sdp("2001:db8:aaaa::10"), offerer=CALLER6, answerer=CALLEE4)
    assert out == b"offer via relay call1@test;f=4"
    assert relay.log == [
        ("offer", CID + b";f=4", b"alice", sdp("2001:db8:aaaa::10"), Family.INET, CALLER6)
    ]
    assert bridge.relayed_offers == 1 and bridge.active_calls() == 1


@pytest.mark.parametrize(
    ("address", "offerer", "answerer"),
    [
        ("10.1.2.3", CALLER4, CALLEE4),  # RFC 1918 behind a NAT
        ("192.0.0.2", CALLER4, CALLEE4),  # CLAT: an IPv4 socket on an IPv6-only phone
        ("100.64.7.7", CALLER4, CALLEE4),  # CGNAT
        ("fd00:1::5", CALLER6, CALLEE6),  # ULA
        ("fe80::1", CALLER6, CALLEE6),  # link-local
    ],
)
def test_auto_relays_same_family_calls_with_unusable_sdp_addresses(
    address: str, offerer: IPAddress, answerer: IPAddress
) -> None:
    bridge, relay = make()
    out = bridge.offer(CID, b"alice", sdp(address), offerer=offerer, answerer=answerer)
    suffix = b";f=4" if answerer.version == 4 else b";f=6"
    assert out == b"offer via relay " + CID + suffix
    assert relay.ops() == [("offer", CID + suffix)]


@pytest.mark.parametrize(
    ("address", "offerer", "answerer", "answered"),
    [
        ("198.51.100.10", CALLER4, CALLEE4, "203.0.113.50"),
        ("2001:db8:aaaa::10", CALLER6, CALLEE6, "2001:db8:bbbb::20"),
    ],
)
def test_auto_leaves_public_same_family_calls_alone(
    address: str, offerer: IPAddress, answerer: IPAddress, answered: str
) -> None:
    bridge, relay = make()
    assert bridge.offer(CID, b"alice", sdp(address), offerer=offerer, answerer=answerer) is None
    assert relay.log == []
    assert bridge.passed_offers == 1 and bridge.active_calls() == 0
    # ... and so is the answer, and the end of the call.
    answer = bridge.answer(
        CID, b"bob", sdp(answered), answerer=answerer, offerer=offerer, final=True
    )
    assert answer is None
    bridge.end(CID)
    assert relay.log == []


def test_auto_does_not_relay_an_old_style_hold_of_a_public_call() -> None:
    """``c=IN IP4 0.0.0.0`` (RFC 2543 hold) says "send nothing", not "unreachable"."""
    bridge, relay = make()
    held = sdp("198.51.100.10").replace(b"c=IN IP4 198.51.100.10", b"c=IN IP4 0.0.0.0")
    assert bridge.offer(CID, b"alice", held, offerer=CALLER4, answerer=CALLEE4) is None
    assert relay.log == []


def test_unparsable_sdp_of_a_same_family_call_passes_untouched() -> None:
    bridge, relay = make()
    assert bridge.offer(CID, b"a", b"not sdp at all", offerer=CALLER4, answerer=CALLEE4) is None
    assert relay.log == []


def test_always_relays_public_same_family_calls() -> None:
    bridge, relay = make("always")
    out = bridge.offer(CID, b"alice", sdp("198.51.100.10"), offerer=CALLER4, answerer=CALLEE4)
    assert out == b"offer via relay call1@test;f=4"
    assert relay.ops() == [("offer", CID + b";f=4")]


def test_never_passes_even_cross_family_sdp_untouched() -> None:
    bridge, relay = make("never")
    invite = req(b"INVITE", sdp("2001:db8:aaaa::10"))
    assert bridge.request_body(invite, CALLER6, CALLEE4) is None
    ok = resp(200, sdp("203.0.113.50"))
    assert bridge.response_body(invite, ok, CALLEE4, CALLER6) is None
    assert relay.log == [] and bridge.passed_offers == 1


def test_no_relay_means_never_and_an_unknown_policy_means_auto() -> None:
    assert MediaBridge(None, "always", logging.getLogger("t")).policy == "never"
    bridge = MediaBridge(FakeRelay(), "sometimes", logging.getLogger("t"))
    assert bridge.policy == "auto"


# -- offer/answer placement --------------------------------------------------------------------


def test_offer_in_invite_answer_in_183_then_200_binds() -> None:
    bridge, relay = make()
    invite = req(b"INVITE", sdp("2001:db8:aaaa::10"))
    assert bridge.request_body(invite, CALLER6, CALLEE4) == b"offer via relay call1@test;f=4"
    early = resp(183, sdp("203.0.113.50"))
    out = bridge.response_body(invite, early, CALLEE4, CALLER6)
    assert out == b"answer via relay call1@test;f=4"
    assert relay.log[-1] == (
        "answer", CID + b";f=4", b"alice", b"bob", sdp("203.0.113.50"), Family.INET6, CALLEE4
    )  # fmt: skip
    # A 183 is a (provisional) answer: the same session answers again in the 200.
    ok = resp(200, sdp("203.0.113.50"))
    assert bridge.response_body(invite, ok, CALLEE4, CALLER6) == b"answer via relay call1@test;f=4"
    assert relay.ops() == [
        ("offer", CID + b";f=4"),
        ("answer", CID + b";f=4"),
        ("answer", CID + b";f=4"),
    ]
    # 18x/2xx without SDP, and a 200 without SDP: nothing to rewrite.
    assert bridge.response_body(invite, resp(180), CALLEE4, CALLER6) is None
    assert bridge.request_body(req(b"ACK", to_tag=b"bob"), CALLER6, CALLEE4) is None
    assert len(relay.log) == 3


def test_offer_in_200_answer_in_ack() -> None:
    """An INVITE without SDP: the callee offers in the 200, the caller answers in the ACK."""
    bridge, relay = make()
    invite = req(b"INVITE")
    assert bridge.request_body(invite, CALLER6, CALLEE4) is None
    assert relay.log == []
    ok = resp(200, sdp("203.0.113.50"), to_tag=b"bob")
    assert bridge.response_body(invite, ok, CALLEE4, CALLER6) == b"offer via relay call1@test;f=6"
    assert relay.log == [
        ("offer", CID + b";f=6", b"bob", sdp("203.0.113.50"), Family.INET6, CALLEE4)
    ]
    ack = req(b"ACK", sdp("2001:db8:aaaa::10"), to_tag=b"bob")
    assert bridge.request_body(ack, CALLER6, CALLEE4) == b"answer via relay call1@test;f=6"
    assert relay.log[-1] == (
        "answer", CID + b";f=6", b"bob", b"alice", sdp("2001:db8:aaaa::10"), Family.INET, CALLER6
    )  # fmt: skip
    # The ACK's answer was final: a re-INVITE from the callee reuses the bound session.
    reinvite = req(b"INVITE", sdp("203.0.113.50", 4002), cseq=7, from_tag=b"bob", to_tag=b"alice")
    assert bridge.request_body(reinvite, CALLEE4, CALLER6) == b"offer via relay call1@test;f=6"


def test_offer_in_reliable_183_answer_in_prack() -> None:
    bridge, relay = make()
    invite = req(b"INVITE")
    early = resp(183, sdp("203.0.113.50"))
    assert bridge.response_body(invite, early, CALLEE4, CALLER6) == b"offer via relay " + (
        CID + b";f=6"
    )
    prack = req(b"PRACK", sdp("2001:db8:aaaa::10"), cseq=2, to_tag=b"bob")
    assert bridge.request_body(prack, CALLER6, CALLEE4) == b"answer via relay call1@test;f=6"
    assert relay.ops() == [("offer", CID + b";f=6"), ("answer", CID + b";f=6")]


def _answered_call(bridge: MediaBridge) -> None:
    invite = req(b"INVITE", sdp("2001:db8:aaaa::10"))
    assert bridge.request_body(invite, CALLER6, CALLEE4) is not None
    assert bridge.response_body(invite, resp(200, sdp("203.0.113.50")), CALLEE4, CALLER6)


def test_reinvite_from_the_caller_reuses_the_bound_session() -> None:
    bridge, relay = make()
    _answered_call(bridge)
    hold = req(b"INVITE", sdp("2001:db8:aaaa::10", direction="sendonly"), cseq=2, to_tag=b"bob")
    assert bridge.request_body(hold, CALLER6, CALLEE4) == b"offer via relay call1@test;f=4"
    assert relay.log[-1][:3] == ("offer", CID + b";f=4", b"alice")
    held = resp(200, sdp("203.0.113.50", direction="recvonly"), cseq=2)
    assert bridge.response_body(hold, held, CALLEE4, CALLER6) == b"answer via relay call1@test;f=4"
    assert relay.log[-1][:4] == ("answer", CID + b";f=4", b"alice", b"bob")
    assert {entry[1] for entry in relay.log} == {CID + b";f=4"}


def test_reinvite_from_the_callee_reuses_the_bound_session_in_the_other_direction() -> None:
    bridge, relay = make()
    _answered_call(bridge)
    reinvite = req(b"INVITE", sdp("203.0.113.50", 4002), cseq=1, from_tag=b"bob", to_tag=b"alice")
    assert bridge.request_body(reinvite, CALLEE4, CALLER6) == b"offer via relay call1@test;f=4"
    assert relay.log[-1] == (
        "offer", CID + b";f=4", b"bob", sdp("203.0.113.50", 4002), Family.INET6, CALLEE4
    )  # fmt: skip
    ok = resp(200, sdp("2001:db8:aaaa::10"), from_tag=b"bob", to_tag=b"alice")
    assert bridge.response_body(reinvite, ok, CALLER6, CALLEE4) == b"answer via relay " + (
        CID + b";f=4"
    )
    assert relay.log[-1][:4] == ("answer", CID + b";f=4", b"bob", b"alice")
    assert relay.log[-1][5:] == (Family.INET, CALLER6)
    assert not [e for e in relay.log if e[0] == "delete"]


def test_a_public_same_family_reinvite_of_a_relayed_call_stays_relayed() -> None:
    """Once relayed, always relayed: the phones only know the relay's addresses."""
    bridge, relay = make()
    _answered_call(bridge)
    # The caller moved to IPv4 (a dual-stack phone): the call keeps its session.
    moved = req(b"INVITE", sdp("198.51.100.10"), cseq=2, to_tag=b"bob")
    assert bridge.request_body(moved, CALLER4, CALLEE4) == b"offer via relay call1@test;f=4"
    assert relay.log[-1][4:] == (Family.INET, CALLER4)
    ok = resp(200, sdp("203.0.113.50"), cseq=2)
    assert bridge.response_body(moved, ok, CALLEE4, CALLER4) == b"answer via relay " + (
        CID + b";f=4"
    )
    assert relay.log[-1][5:] == (Family.INET, CALLEE4)


def test_update_is_an_offer_too() -> None:
    bridge, relay = make()
    _answered_call(bridge)
    update = req(b"UPDATE", sdp("2001:db8:aaaa::10", 4010), cseq=3, to_tag=b"bob")
    assert bridge.request_body(update, CALLER6, CALLEE4) == b"offer via relay call1@test;f=4"
    ok = resp(200, sdp("203.0.113.50"), method=b"UPDATE", cseq=3)
    assert bridge.response_body(update, ok, CALLEE4, CALLER6) is not None
    assert relay.ops()[-2:] == [("offer", CID + b";f=4"), ("answer", CID + b";f=4")]


def test_bodies_that_are_not_sdp_or_not_offer_answer_are_left_alone() -> None:
    bridge, relay = make()
    _answered_call(bridge)
    n = len(relay.log)
    info = req(b"INFO", b"Signal=5\r\n", cseq=4, to_tag=b"bob", ctype=b"application/dtmf-relay")
    assert bridge.request_body(info, CALLER6, CALLEE4) is None
    message = req(b"MESSAGE", sdp("2001:db8:aaaa::10"), cseq=5, to_tag=b"bob")
    assert bridge.request_body(message, CALLER6, CALLEE4) is None
    bye_ok = resp(200, sdp("203.0.113.50"), method=b"BYE", cseq=6)
    assert bridge.response_body(req(b"BYE", cseq=6), bye_ok, CALLEE4, CALLER6) is None
    assert len(relay.log) == n


def test_has_sdp() -> None:
    assert has_sdp(req(b"INVITE", sdp("10.0.0.1"), ctype=b"Application/SDP ; charset=x"))
    assert not has_sdp(req(b"INVITE", sdp("10.0.0.1"), ctype=b"text/plain"))
    assert not has_sdp(req(b"INVITE"))


def test_an_answer_with_no_relayed_offer_is_left_alone() -> None:
    bridge, relay = make()
    out = bridge.answer(CID, b"bob", sdp("203.0.113.50"), answerer=CALLEE4, offerer=CALLER6,
                        final=True)  # fmt: skip
    assert out is None and relay.log == []


# -- forking ---------------------------------------------------------------------------------


def _fork(bridge: MediaBridge) -> Request:
    """One INVITE from an IPv6 caller forked to an IPv4 and an IPv6 contact."""
    invite = req(b"INVITE", sdp("fd00:1::10"))
    assert bridge.request_body(invite, CALLER6, CALLEE4) == b"offer via relay call1@test;f=4"
    assert bridge.request_body(invite, CALLER6, CALLEE6) == b"offer via relay call1@test;f=6"
    return invite


def test_fork_to_both_families_keeps_the_answering_session() -> None:
    bridge, relay = make()
    invite = _fork(bridge)
    assert relay.ops() == [("offer", CID + b";f=4"), ("offer", CID + b";f=6")]
    # The IPv4 phone rings with early media, the IPv6 phone answers.
    early = resp(183, sdp("203.0.113.50"), to_tag=b"bob4")
    assert bridge.response_body(invite, early, CALLEE4, CALLER6) == b"answer via relay " + (
        CID + b";f=4"
    )
    ok = resp(200, sdp("2001:db8:bbbb::20"), to_tag=b"bob6")
    assert bridge.response_body(invite, ok, CALLEE6, CALLER6) == b"answer via relay " + (
        CID + b";f=6"
    )
    assert relay.log[-2][:4] == ("answer", CID + b";f=6", b"alice", b"bob6")
    assert relay.log[-1] == ("delete", CID + b";f=4")
    # The dialog lives on the IPv6 session; the end deletes it.
    reinvite = req(b"INVITE", sdp("fd00:1::10", 4002), cseq=2, to_tag=b"bob6")
    assert bridge.request_body(reinvite, CALLER6, CALLEE6) == b"offer via relay call1@test;f=6"
    bridge.end(CID)
    assert relay.log[-1] == ("delete", CID + b";f=6")
    assert bridge.active_calls() == 0


def test_fork_where_the_ipv4_branch_answers() -> None:
    bridge, relay = make()
    invite = _fork(bridge)
    ok = resp(200, sdp("203.0.113.50"), to_tag=b"bob4")
    assert bridge.response_body(invite, ok, CALLEE4, CALLER6) == b"answer via relay " + (
        CID + b";f=4"
    )
    assert relay.ops()[-2:] == [("answer", CID + b";f=4"), ("delete", CID + b";f=6")]


def test_fork_answered_by_a_branch_whose_offer_was_not_relayed() -> None:
    """Public IPv6 caller forked to a public IPv6 contact (offer passed untouched) and then
    to an IPv4 contact (relayed): the IPv6 phone's answer is not the relay's business, and
    the IPv4 branch's session goes once that answer is final."""
    bridge, relay = make()
    invite = req(b"INVITE", sdp("2001:db8:aaaa::10"))
    assert bridge.request_body(invite, CALLER6, CALLEE6) is None
    assert bridge.request_body(invite, CALLER6, CALLEE4) == b"offer via relay call1@test;f=4"
    early = resp(183, sdp("2001:db8:bbbb::20"), to_tag=b"bob6")
    assert bridge.response_body(invite, early, CALLEE6, CALLER6) is None
    ok = resp(200, sdp("2001:db8:bbbb::20"), to_tag=b"bob6")
    assert bridge.response_body(invite, ok, CALLEE6, CALLER6) is None
    assert relay.ops() == [("offer", CID + b";f=4"), ("delete", CID + b";f=4")]
    assert bridge.active_calls() == 0


def test_end_deletes_every_session_and_forgets_the_call() -> None:
    bridge, relay = make()
    _fork(bridge)
    bridge.end(CID)
    assert sorted(relay.ops()[2:]) == [("delete", CID + b";f=4"), ("delete", CID + b";f=6")]
    assert bridge.active_calls() == 0
    bridge.end(CID)  # twice (BYE, then the error to a pending INVITE): harmless
    assert len(relay.log) == 4


def test_a_failing_delete_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    bridge, relay = make()
    relay.fail_delete = True
    _fork(bridge)
    bridge.end(CID)
    assert bridge.active_calls() == 0
    assert "deleting session" in caplog.text


def test_call_of_strips_the_family_suffix_only() -> None:
    assert MediaBridge.call_of(b"abc@host;f=4") == b"abc@host"
    assert MediaBridge.call_of(b"abc@host;f=6") == b"abc@host"
    assert MediaBridge.call_of(b"abc@host") == b"abc@host"
    assert MediaBridge.call_of(b"abc;f=5") == b"abc;f=5"
    assert MediaBridge.call_of(b"a;f=4;f=6") == b"a;f=4"


# -- policy nat64: SDP from a party behind the NAT64 gets synthesised IPv6 addresses ----------

NAT64 = ip_network("64:ff9b::/96")
VIA_NAT64 = ip_address("64:ff9b::cb00:7132")  # 203.0.113.50, the IPv4-only callee
PHONE6 = ip_address("2001:db8:aaaa::10")
V4_SDP = (
    b"v=0\r\no=- 7 7 IN IP4 203.0.113.50\r\ns=-\r\nc=IN IP4 203.0.113.50\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 0\r\nc=IN IP4 198.51.100.7\r\na=rtcp:4001 IN IP4 198.51.100.8\r\n"
    b"a=candidate:1 1 UDP 2130706431 198.51.100.7 4000 typ host\r\n"
    b"a=candidate:2 1 UDP 1694498815 192.0.2.9 5000 typ srflx raddr 198.51.100.7 rport 4000\r\n"
    b"m=video 4002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
)


def make_nat64(relay: FakeRelay | None = None) -> MediaBridge:
    return MediaBridge(
        relay if relay is not None else FakeRelay(), "nat64", logging.getLogger("t"), nat64=NAT64
    )


def test_nat64_answer_from_the_ipv4_peer_is_synthesised_and_the_offer_passes() -> None:
    relay = FakeRelay()
    bridge = make_nat64(relay)
    invite = req(b"INVITE", sdp("2001:db8:aaaa::10"))
    # Toward the peer behind the NAT64: untouched (it answers by symmetric RTP).
    assert bridge.request_body(invite, PHONE6, VIA_NAT64) is None
    ok = resp(200, V4_SDP)
    out = bridge.response_body(invite, ok, VIA_NAT64, PHONE6)
    assert out is not None
    text = out.decode()
    assert "o=- 7 7 IN IP6 64:ff9b::cb00:7132\r\n" in text
    assert "c=IN IP6 64:ff9b::cb00:7132\r\n" in text  # session c=
    assert "c=IN IP6 64:ff9b::c633:6407\r\n" in text  # media c= (198.51.100.7)
    assert "a=rtcp:4001 IN IP6 64:ff9b::c633:6408\r\n" in text
    assert "a=candidate:1 1 UDP 2130706431 64:ff9b::c633:6407 4000 typ host\r\n" in text
    assert "64:ff9b::c000:209 5000 typ srflx raddr 64:ff9b::c633:6407 rport 4000" in text
    assert "IP4" not in text and "m=video 4002 RTP/AVP 96\r\n" in text
    # No relay session anywhere, and the ACK has no SDP business with the NAT64 either.
    assert relay.log == [] and bridge.active_calls() == 0
    assert bridge.request_body(req(b"ACK", to_tag=b"bob"), PHONE6, VIA_NAT64) is None
    assert bridge.translated == 1 and bridge.passed_offers == 1


def test_nat64_offers_from_the_ipv4_peer_are_synthesised_answers_to_it_are_not() -> None:
    """Delayed offer: the IPv4 peer offers in the 200, the IPv6 caller answers in the ACK;
    then a re-INVITE from the IPv4 peer."""
    relay = FakeRelay()
    bridge = make_nat64(relay)
    invite = req(b"INVITE")
    out = bridge.response_body(invite, resp(200, sdp("203.0.113.50")), VIA_NAT64, PHONE6)
    assert out == sdp("64:ff9b::cb00:7132")
    ack = req(b"ACK", sdp("2001:db8:aaaa::10"), to_tag=b"bob")
    assert bridge.request_body(ack, PHONE6, VIA_NAT64) is None
    reinvite = req(b"INVITE", sdp("203.0.113.50", 4002), cseq=2, from_tag=b"bob", to_tag=b"alice")
    assert bridge.request_body(reinvite, VIA_NAT64, PHONE6) == sdp("64:ff9b::cb00:7132", 4002)
    assert relay.log == []


def test_nat64_hold_stays_a_hold_and_ipv6_sdp_is_left_alone() -> None:
    bridge = make_nat64()
    held = sdp("203.0.113.50").replace(b"c=IN IP4 203.0.113.50", b"c=IN IP4 0.0.0.0")
    out = bridge.offer(CID, b"bob", held, offerer=VIA_NAT64, answerer=PHONE6)
    assert out is not None and b"c=IN IP6 ::\r\n" in out
    assert b"o=- 1 1 IN IP6 64:ff9b::cb00:7132\r\n" in out
    # A dual-stack peer behind the NAT64 that writes IPv6 already: nothing to change.
    assert (
        bridge.offer(CID, b"bob", sdp("2001:db8:cc::1"), offerer=VIA_NAT64, answerer=PHONE6) is None
    )
    # Unparsable SDP passes untouched.
    assert bridge.offer(CID, b"bob", b"not sdp", offerer=VIA_NAT64, answerer=PHONE6) is None


def test_nat64_calls_without_a_nat64_party_follow_auto() -> None:
    relay = FakeRelay()
    bridge = make_nat64(relay)
    # Cross-family: relayed as under auto.
    out = bridge.offer(CID, b"alice", sdp("2001:db8:aaaa::10"), offerer=CALLER6, answerer=CALLEE4)
    assert out == b"offer via relay call1@test;f=4"
    # Public same-family: untouched.
    other = b"other@test"
    assert (
        bridge.offer(other, b"a", sdp("2001:db8:aaaa::10"), offerer=CALLER6, answerer=CALLEE6)
        is None
    )
    # A relayed call stays relayed even when a NAT64 party joins (once relayed, always).
    assert bridge.offer(CID, b"alice", sdp("2001:db8:aaaa::10"), offerer=CALLER6,
                        answerer=VIA_NAT64) == b"offer via relay call1@test;f=6"  # fmt: skip
    assert bridge.translated == 0


def test_nat64_needs_a_prefix_and_the_policy() -> None:
    # Without a prefix, nat64 is auto: nothing is synthesised.
    relay = FakeRelay()
    bridge = MediaBridge(relay, "nat64", logging.getLogger("t"))
    assert bridge.policy == "nat64" and not bridge.through_nat64(VIA_NAT64)
    out = bridge.offer(CID, b"b", sdp("203.0.113.50"), offerer=VIA_NAT64, answerer=CALLER6)
    # Not synthesised: auto relays IPv4 SDP toward the IPv6 leg instead.
    assert out == b"offer via relay call1@test;f=6" and bridge.translated == 0
    # Under auto the prefix changes nothing.
    auto = MediaBridge(FakeRelay(), "auto", logging.getLogger("t"), nat64=NAT64)
    assert not auto.through_nat64(VIA_NAT64)
    # nat64 translation needs no relay; the other policies become never without one.
    alone = MediaBridge(None, "nat64", logging.getLogger("t"), nat64=NAT64)
    assert alone.policy == "nat64"
    assert alone.offer(CID, b"b", sdp("203.0.113.50"), offerer=VIA_NAT64, answerer=PHONE6) == (
        sdp("64:ff9b::cb00:7132")
    )
    assert not alone.through_nat64(ip_address("2001:db8::1"))
    assert not alone.through_nat64(ip_address("203.0.113.50"))


def test_addresses_learnt_from_rtc64_clat_make_a_same_family_call_relayed() -> None:
    """A dedicated CLAT IPv6 address is a GUA (public by range) but only the PLAT can
    reach it: the gateway learns it from ``rtc64 clat`` and relays such an SDP."""
    learnt = {IPv6Address("2001:db8:aaaa::64")}
    relay = FakeRelay()
    bridge = MediaBridge(relay, "auto", logging.getLogger("t"), unusable=lambda: learnt)
    out = bridge.offer(CID, b"alice", sdp("2001:db8:aaaa::64"), offerer=CALLER6, answerer=CALLEE6)
    assert out == b"offer via relay " + CID + b";f=6"
    assert bridge.offer(b"other", b"a", sdp("2001:db8:aaaa::10"), offerer=CALLER6,
                        answerer=CALLEE6) is None  # fmt: skip
