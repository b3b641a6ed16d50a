"""ICE candidate attribute (RFC 8839 §5.1) and priorities (RFC 8445 §5.1.2)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest

from rtc64.errors import RemoteProtocolError
from rtc64.net.address import Family
from rtc64.sdp.ice import (
    Candidate,
    CandidateType,
    candidate_priority,
    decode_candidate,
    make_candidate,
    media_candidates,
    parse_candidate,
)

LINES = [
    "1467250027 1 udp 2122260223 192.168.1.20 54400 typ host generation 0 network-id 1",
    "3365372215 1 udp 2122262783 2001:db8:85a3::8a2e:370:7334 54401 typ host generation 0",
    "2109578331 1 udp 1686052607 203.0.113.7 54400 typ srflx raddr 192.168.1.20 rport 54400",
    "1854284532 1 tcp 1518280447 192.168.1.20 9 typ host tcptype active generation 0",
    "842163049 2 UDP 41885438 2001:db8::9 3478 typ relay raddr 2001:db8::7 rport 5000",
    "3576598346 1 udp 2122194687 5f8c4d2e-1b3a-4c7d-9e8f-0a1b2c3d4e5f.local 54402 typ host",
    "4 1 udp 1 198.51.100.1 5000 typ srflx raddr 0.0.0.0 rport 0",
    "a+/Z 1 udp 1 198.51.100.1 5000 typ x-future",
]


@pytest.mark.parametrize("value", LINES)
def test_candidate_values_round_trip(value: str) -> None:
    c = decode_candidate(value)
    assert c.value == value
    assert decode_candidate(c.value) == c


def test_fields() -> None:
    c = decode_candidate(LINES[4])
    assert c == Candidate(
        foundation="842163049",
        component=2,
        transport="UDP",
        priority=41885438,
        address=IPv6Address("2001:db8::9"),
        port=3478,
        typ=CandidateType.RELAY,
        related_address=IPv6Address("2001:db8::7"),
        related_port=5000,
    )
    assert c.family is Family.INET6
    assert c.related_family is Family.INET6
    assert c.typ == "relay"
    mdns = decode_candidate(LINES[5])
    assert mdns.family is None
    assert mdns.related_family is None
    assert decode_candidate(LINES[7]).typ == "x-future"
    assert decode_candidate(LINES[0]).extension("network-id") == "1"
    assert decode_candidate(LINES[0]).extension("nope") is None


def test_raddr_after_extensions_is_read_and_written_in_grammar_order() -> None:
    c = decode_candidate("1 1 udp 1 192.0.2.1 5000 typ srflx generation 0 raddr 10.0.0.1 rport 9")
    assert c.related_address == IPv4Address("10.0.0.1")
    assert c.value == "1 1 udp 1 192.0.2.1 5000 typ srflx raddr 10.0.0.1 rport 9 generation 0"


def test_parse_candidate_accepts_trickle_forms() -> None:
    a = parse_candidate("candidate:" + LINES[0])
    assert parse_candidate(b"a=candidate:" + LINES[0].encode() + b"\r\n") == a


@pytest.mark.parametrize(
    "text",
    [
        "ice-ufrag:abc",
        "candidate:1 1 udp 1 192.0.2.1 5000",
        "candidate:1 1 udp 1 192.0.2.1 5000 type host",
        "candidate:1 x udp 1 192.0.2.1 5000 typ host",
        "candidate:1 1 udp -1 192.0.2.1 5000 typ host",
        "candidate:1 1 udp 1 192.0.2.1 65536 typ host",
        "candidate:1 1 udp 1 not..valid 5000 typ host",
        "candidate:1 1 udp 1 192.0.2.1 5000 typ host generation",
        "candidate:1 1 udp 1 192.0.2.1 5000 typ srflx raddr bad!addr rport 1",
    ],
)
def test_bad_candidates(text: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_candidate(text)
    assert info.value.status == 400
    assert info.value.reason.startswith("Bad Request: ")


def test_priority_formula() -> None:
    # RFC 8445 §5.1.2.1 with the recommended preferences.
    assert candidate_priority(CandidateType.HOST, 1) == (126 << 24) + (65535 << 8) + 255
    assert candidate_priority(CandidateType.HOST, 1) == 2130706431
    assert candidate_priority(CandidateType.RELAY, 2) == (65535 << 8) + 254
    assert candidate_priority("srflx", 1, local_preference=0) == (100 << 24) + 255


def test_make_candidate_is_deterministic() -> None:
    a = make_candidate(IPv4Address("203.0.113.50"), 40000, typ=CandidateType.RELAY)
    b = make_candidate(IPv4Address("203.0.113.50"), 40002, typ=CandidateType.RELAY)
    assert a.foundation == b.foundation
    assert a.priority == candidate_priority(CandidateType.RELAY)
    assert make_candidate(IPv4Address("203.0.113.51"), 40000).foundation != a.foundation
    assert decode_candidate(a.value) == a
    related = make_candidate(
        IPv6Address("2001:db8::50"), 1, typ="srflx", related=(IPv6Address("fd00::1"), 2)
    )
    assert related.value.endswith("typ srflx raddr fd00::1 rport 2")


def test_media_candidates() -> None:
    (rtp,) = media_candidates(IPv4Address("203.0.113.50"), 40000)
    assert (rtp.component, rtp.port, rtp.typ) == (1, 40000, CandidateType.HOST)
    rtp, rtcp = media_candidates(
        IPv4Address("203.0.113.50"), 40000, rtcp_port=40001, typ=CandidateType.RELAY
    )
    assert (rtcp.component, rtcp.port) == (2, 40001)
    assert rtcp.foundation == rtp.foundation
    assert rtcp.priority == rtp.priority - 1
