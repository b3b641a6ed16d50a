"""Rewriting primitives: addresses, ports, candidates, direction, hold, family rewrite."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest

from rtc64.errors import LocalProtocolError
from rtc64.net.address import Family, IPAddress
from rtc64.sdp import parse, serialize
from rtc64.sdp.addresses import AddressSource, addresses, families
from rtc64.sdp.ice import Candidate, CandidateType, make_candidate, media_candidates
from rtc64.sdp.model import Attribute, Connection, Direction, Rtcp, SessionDescription
from rtc64.sdp.rewrite import (
    add_candidates,
    hold,
    is_held,
    is_rfc2543_hold,
    map_addresses,
    replace_candidates,
    resume,
    rewrite_to_family,
    set_connection_address,
    set_direction,
    set_media_address,
    set_media_port,
    set_origin_address,
    strip_candidates,
    uses_ice,
)

from .samples import (
    BARESIP_V4,
    BARESIP_V6,
    CHROMIUM_OFFER,
    HOLD_2543_V4,
    HOLD_2543_V6,
    MULTICAST,
    crlf,
    rfc5118_body,
)

RELAY4 = IPv4Address("203.0.113.50")
RELAY6 = IPv6Address("2001:db8:ffff::50")

TWO_MEDIA = crlf("""
v=0
o=- 1 1 IN IP4 192.0.2.1
s=-
c=IN IP4 192.0.2.1
t=0 0
m=audio 4000 RTP/AVP 0
m=video 5000 RTP/AVP 96
a=rtpmap:96 VP8/90000
""")


def _ips_in_text(body: bytes) -> list[IPv4Address | IPv6Address]:
    """Every token of the serialized SDP that reads as an IP address."""
    out = []
    for line in body.decode().split("\r\n"):
        for token in line[2:].replace("/", " ").split(" "):
            try:
                out.append(ip_address(token))
            except ValueError:
                continue
    return out


def test_set_origin_address_switches_addrtype() -> None:
    sd = set_origin_address(parse(BARESIP_V6), RELAY4)
    assert (sd.origin.nettype, sd.origin.addrtype, sd.origin.address) == ("IN", "IP4", RELAY4)
    assert sd.origin.session_id == "1860529718"
    assert b"o=- 1860529718 1477474046 IN IP4 203.0.113.50\r\n" in serialize(sd)


def test_set_connection_address_everywhere_switches_family() -> None:
    sd = set_connection_address(parse(BARESIP_V6), RELAY4)
    assert sd.connection == Connection.of(RELAY4)
    assert sd.connection.addrtype == "IP4"
    assert sd.media[0].connections == ()
    assert sd.media[0].rtcp == Rtcp(10121, Connection.of(RELAY4))
    assert b"a=rtcp:10121 IN IP4 203.0.113.50\r\n" in serialize(sd)


def test_set_connection_address_only_media_keeps_session() -> None:
    sd = set_connection_address(parse(TWO_MEDIA), RELAY6, media=[1], session=False)
    assert sd.connection == Connection.of(IPv4Address("192.0.2.1"))
    assert sd.media[0].connections == ()
    assert sd.media[1].connections == (Connection.of(RELAY6),)
    assert families(sd) == {Family.INET, Family.INET6}


def test_set_session_address_copies_old_one_to_untargeted_media() -> None:
    sd = set_connection_address(parse(TWO_MEDIA), RELAY6, media=[0])
    assert sd.connection == Connection.of(RELAY6)
    assert sd.media[0].connections == ()
    assert sd.media[1].connections == (Connection.of(IPv4Address("192.0.2.1")),)
    assert sd.media_connections(0) == (Connection.of(RELAY6),)


def test_set_connection_without_session_c_adds_media_c() -> None:
    sd = parse(rfc5118_body("mult-ip-in-sdp"))
    out = set_connection_address(sd, RELAY4, session=False)
    assert out.connection is None
    assert [m.connections for m in out.media] == [(Connection.of(RELAY4),)] * 2
    out = set_connection_address(sd, RELAY4)
    assert out.connection == Connection.of(RELAY4)
    assert [m.connections for m in out.media] == [(Connection.of(RELAY4),)] * 2


def test_layered_multicast_collapses_to_one_unicast_connection() -> None:
    sd = set_connection_address(parse(MULTICAST), RELAY4)
    assert sd.connection == Connection.of(RELAY4)
    assert sd.media[1].connections == (Connection.of(RELAY4),)
    assert sd.media[1].port_count == 2
    assert b"/127" not in serialize(sd)


def test_set_media_port_rtcp_follows() -> None:
    sd = set_media_port(parse(BARESIP_V4), 0, 40000)
    assert sd.media[0].port == 40000
    assert sd.media[0].rtcp is not None
    assert sd.media[0].rtcp.port == 40001
    sd = set_media_port(parse(BARESIP_V4), 0, 40000, rtcp_port=40010)
    assert sd.media[0].rtcp is not None
    assert sd.media[0].rtcp.port == 40010


def test_set_media_port_rtcp_mux_uses_rtp_port() -> None:
    sd = set_media_port(parse(CHROMIUM_OFFER), 0, 40000)
    assert sd.media[0].port == 40000
    assert sd.media[0].rtcp == Rtcp(40000, Connection.of(IPv4Address(0)))
    assert sd.media[1].port == 54400


def test_set_media_port_adds_rtcp_only_when_not_implied() -> None:
    sd = set_media_port(parse(TWO_MEDIA), 0, 40000)
    assert sd.media[0].rtcp is None
    sd = set_media_port(parse(TWO_MEDIA), 0, 40000, rtcp_port=40001)
    assert sd.media[0].rtcp is None
    sd = set_media_port(parse(TWO_MEDIA), 0, 40000, rtcp_port=41000)
    assert sd.media[0].rtcp == Rtcp(41000)
    assert b"a=rtcp:41000\r\n" in serialize(sd)


def test_set_media_port_without_room_for_rtcp() -> None:
    with pytest.raises(LocalProtocolError):
        set_media_port(parse(BARESIP_V4), 0, 65535)
    out = set_media_port(parse(BARESIP_V4), 0, 65535, rtcp_port=65534)
    assert out.media[0].rtcp is not None
    assert out.media[0].rtcp.port == 65534
    assert set_media_port(parse(CHROMIUM_OFFER), 0, 65535).media[0].port == 65535


def test_strip_candidates_with_host_name_related_address() -> None:
    body = crlf("""
v=0
o=- 1 1 IN IP4 192.0.2.1
s=-
t=0 0
m=audio 4000 RTP/AVP 0
a=candidate:1 1 udp 1 198.51.100.9 3478 typ srflx raddr abc.local rport 5000
""")
    assert len(strip_candidates(parse(body), Family.INET6).media[0].candidates) == 1
    assert strip_candidates(parse(body), Family.INET6, hostnames=True).media[0].candidates == ()


def test_set_media_port_keeps_or_changes_port_count() -> None:
    sd = parse(MULTICAST)
    assert set_media_port(sd, 1, 40000).media[1].port_count == 2
    assert set_media_port(sd, 1, 40000, port_count=1).media[1].port_count is None
    out = set_media_port(sd, 1, 40000, port_count=4)
    assert b"m=video 40000/4 RTP/AVP 99\r\n" in serialize(out)


def test_set_media_address() -> None:
    sd = set_media_address(parse(BARESIP_V6), 0, RELAY4, 40000)
    m = sd.media[0]
    assert m.connections == (Connection.of(RELAY4),)
    assert m.port == 40000
    assert m.rtcp == Rtcp(40001, Connection.of(RELAY4))
    assert sd.connection == Connection.of(IPv6Address("2001:db8:1::10"))


def test_bad_media_index() -> None:
    with pytest.raises(LocalProtocolError):
        set_connection_address(parse(TWO_MEDIA), RELAY4, media=[2])
    with pytest.raises(LocalProtocolError):
        set_direction(parse(TWO_MEDIA), Direction.INACTIVE, media=[-1])
    with pytest.raises(LocalProtocolError):
        set_media_port(parse(TWO_MEDIA), 2, 4000)
    with pytest.raises(LocalProtocolError):
        add_candidates(parse(TWO_MEDIA), 5, ())
    with pytest.raises(LocalProtocolError):
        rewrite_to_family(parse(BARESIP_V4), RELAY6, [40000, 40002])
    with pytest.raises(LocalProtocolError):
        Connection.of(IPv6Address("ff15::101"), ttl=127)


# --- candidates ----------------------------------------------------------------


def test_strip_candidates_of_one_family() -> None:
    sd = parse(CHROMIUM_OFFER)
    no6 = strip_candidates(sd, Family.INET6)
    assert all(c.family is not Family.INET6 for m in no6.media for c in m.candidates)
    assert len(no6.media[0].candidates) == 5  # the mDNS one stays
    assert no6.media[1].end_of_candidates
    no4 = strip_candidates(sd, Family.INET, hostnames=True)
    assert [c.address for c in no4.media[0].candidates] == [
        IPv6Address("2001:db8:85a3::8a2e:370:7334")
    ]
    # Everything else is untouched, in order.
    others = [a for a in sd.media[0].attributes if not isinstance(a, Candidate)]
    assert [a for a in no4.media[0].attributes if not isinstance(a, Candidate)] == others


def test_strip_candidates_by_related_address() -> None:
    body = crlf("""
v=0
o=- 1 1 IN IP4 192.0.2.1
s=-
t=0 0
m=audio 4000 RTP/AVP 0
a=candidate:1 1 udp 1 198.51.100.9 3478 typ relay raddr 2001:db8::7 rport 5000
a=candidate:2 1 udp 1 198.51.100.9 3479 typ relay raddr 192.0.2.7 rport 5000
""")
    out = strip_candidates(parse(body), Family.INET6)
    assert [c.foundation for c in out.media[0].candidates] == ["2"]


def test_strip_all_candidates_one_section() -> None:
    sd = parse(CHROMIUM_OFFER)
    out = strip_candidates(sd, media=[1])
    assert out.media[0] == sd.media[0]
    assert out.media[1].candidates == ()
    assert out.media[1].end_of_candidates
    assert strip_candidates(sd).media[0].candidates == ()


def test_add_candidates_after_last_or_before_end_of_candidates() -> None:
    sd = parse(CHROMIUM_OFFER)
    new = media_candidates(RELAY4, 40000, typ=CandidateType.RELAY)
    out = add_candidates(sd, 0, new)
    assert out.media[0].candidates[-1] == new[0]
    stripped = strip_candidates(sd)
    out = add_candidates(stripped, 1, new)
    attrs = out.media[1].attributes
    index = attrs.index(new[0])
    assert attrs[index + 1] == Attribute("end-of-candidates")
    out = add_candidates(parse(TWO_MEDIA), 0, new)
    assert out.media[0].attributes == new


def test_replace_candidates_in_place() -> None:
    sd = parse(CHROMIUM_OFFER)
    new = (make_candidate(RELAY6, 40000, typ=CandidateType.RELAY),)
    out = replace_candidates(sd, 0, new)
    assert out.media[0].candidates == new
    first = next(i for i, a in enumerate(sd.media[0].attributes) if isinstance(a, Candidate))
    assert out.media[0].attributes[first] == new[0]
    assert out.media[1] == sd.media[1]
    out = replace_candidates(strip_candidates(sd), 1, new)
    attrs = out.media[1].attributes
    at = attrs.index(new[0])
    assert attrs[at - 1 : at + 2] == (sd.media[1].rtcp, new[0], Attribute("end-of-candidates"))


# --- direction and hold ------------------------------------------------------------


def test_set_direction_replaces_in_place() -> None:
    sd = parse(BARESIP_V4)
    out = set_direction(sd, Direction.SENDONLY)
    before = list(sd.media[0].attributes)
    after = list(out.media[0].attributes)
    i = before.index(Attribute("sendrecv"))
    assert after[i] == Attribute("sendonly")
    assert len(after) == len(before)
    assert b"a=sendonly\r\n" in serialize(out)


def test_set_direction_moves_session_level_down() -> None:
    sd = parse(MULTICAST)
    assert sd.direction is Direction.RECVONLY
    out = set_direction(sd, Direction.INACTIVE)
    assert out.direction is None
    assert [m.direction for m in out.media] == [Direction.INACTIVE] * 3
    partial = set_direction(sd, Direction.INACTIVE, media=[0])
    assert partial.direction is Direction.RECVONLY
    assert [partial.media_direction(i) for i in range(3)] == [
        Direction.INACTIVE,
        Direction.RECVONLY,
        Direction.RECVONLY,
    ]


def test_hold_and_resume_rfc3264() -> None:
    sd = parse(BARESIP_V4)
    held = hold(sd)
    assert held.media_direction(0) is Direction.SENDONLY
    assert is_held(held, 0)
    assert not is_held(sd, 0)
    assert resume(held).media_direction(0) is Direction.SENDRECV
    recvonly = set_direction(sd, Direction.RECVONLY)
    assert hold(recvonly).media_direction(0) is Direction.INACTIVE
    assert resume(hold(recvonly)).media_direction(0) is Direction.RECVONLY
    # No direction written at all: sendrecv by default.
    assert hold(parse(TWO_MEDIA), media=[1]).media_direction(1) is Direction.SENDONLY


@pytest.mark.parametrize("body", [HOLD_2543_V4, HOLD_2543_V6])
def test_rfc2543_hold_recognised(body: bytes) -> None:
    sd = parse(body)
    assert is_rfc2543_hold(sd, 0)
    assert is_held(sd, 0)
    assert sd.media_direction(0) is Direction.SENDRECV


def test_ice_placeholder_is_not_hold() -> None:
    sd = parse(CHROMIUM_OFFER)
    sd = set_connection_address(sd, IPv4Address(0))
    assert uses_ice(sd, 0)
    assert not is_rfc2543_hold(sd, 0)
    assert not is_held(sd, 0)
    # An ICE placeholder is rewritten like any address.
    assert set_connection_address(sd, RELAY4).media[0].connections == (Connection.of(RELAY4),)


@pytest.mark.parametrize(
    ("body", "relay", "unspecified"),
    [(HOLD_2543_V6, RELAY4, "0.0.0.0"), (HOLD_2543_V4, RELAY6, "::")],
)
def test_family_rewrite_keeps_rfc2543_hold(
    body: bytes, relay: IPv4Address, unspecified: str
) -> None:
    out = rewrite_to_family(parse(body), relay, [40000])
    assert out.connection == Connection.of(ip_address(unspecified))
    assert is_rfc2543_hold(out, 0)
    assert out.origin.address == relay
    no_keep = set_connection_address(parse(body), relay, keep_hold=False)
    assert no_keep.connection == Connection.of(relay)


# --- whole-description family rewrite -------------------------------------------------


def _assert_single_family(sd: SessionDescription, family: Family) -> None:
    for use in addresses(sd):
        assert use.family is family, use
        assert not isinstance(use.address, str), use


def test_full_v6_to_v4_rewrite_leaves_no_ipv6() -> None:
    sd = parse(BARESIP_V6)
    out = rewrite_to_family(sd, RELAY4, [40000])
    _assert_single_family(out, Family.INET)
    body = serialize(out)
    assert all(ip.version == 4 for ip in _ips_in_text(body))
    assert body == crlf("""
v=0
o=- 1860529718 1477474046 IN IP4 203.0.113.50
s=-
c=IN IP4 203.0.113.50
t=0 0
m=audio 40000 RTP/AVP 0 8 101
b=AS:80
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=rtcp:40001 IN IP4 203.0.113.50
a=sendrecv
a=label:1
a=ssrc:1298465411 cname:sip:alice@example.com
a=rtcp-rsize
a=ptime:20
""")
    assert parse(body) == out


def test_full_rewrite_of_webrtc_offer_both_ways() -> None:
    sd = parse(CHROMIUM_OFFER)
    to4 = rewrite_to_family(sd, RELAY4, [40000, None])
    _assert_single_family(to4, Family.INET)
    assert all(ip.version == 4 for ip in _ips_in_text(serialize(to4)))
    assert to4.media[0].port == 40000
    assert to4.media[1].port == 54400
    assert to4.media[0].rtcp == Rtcp(40000, Connection.of(RELAY4))
    assert to4.media[1].end_of_candidates
    assert len(to4.media[0].candidates) == 4  # IPv4 ones; IPv6 and mDNS gone

    to6 = rewrite_to_family(sd, RELAY6, [40000, 40002], strip_all_candidates=True)
    _assert_single_family(to6, Family.INET6)
    assert all(ip.version == 6 for ip in _ips_in_text(serialize(to6)))
    assert all(m.candidates == () for m in to6.media)
    with_relay = add_candidates(to6, 0, media_candidates(RELAY6, 40000, typ="relay"))
    assert [c.address for c in with_relay.media[0].candidates] == [RELAY6]


def test_full_rewrite_of_rfc5118_bodies() -> None:
    for name in ("ipv6-in-sdp", "mult-ip-in-sdp", "ipv4-mapped-ipv6"):
        out = rewrite_to_family(parse(rfc5118_body(name)), RELAY4, [40000, 40002])
        _assert_single_family(out, Family.INET)
        assert all(ip.version == 4 for ip in _ips_in_text(serialize(out)))
        assert [m.port for m in out.media] == [40000, 40002]


def test_full_rewrite_drops_altc_and_remote_candidates() -> None:
    body = crlf("""
v=0
o=- 1 1 IN IP6 2001:db8::1
s=-
c=IN IP6 2001:db8::1
t=0 0
m=audio 4000 RTP/AVP 0
a=altc:1 IP6 2001:db8::1 4000
a=altc:2 IP4 192.0.2.1 4000
a=remote-candidates:1 2001:db8::2 5000
a=ptime:20
""")
    out = rewrite_to_family(parse(body), RELAY4)
    assert out.media[0].attributes == (Attribute("ptime", "20"),)
    assert not [u for u in addresses(out) if u.source is AddressSource.ALTERNATE]


def test_rewrites_are_pure() -> None:
    sd = parse(CHROMIUM_OFFER)
    before = serialize(sd)
    rewrite_to_family(sd, RELAY4, [1, 2])
    hold(sd)
    strip_candidates(sd)
    assert serialize(sd) == before


# --- map_addresses -------------------------------------------------------------------------


def test_map_addresses_maps_every_ip_where_it_is_written() -> None:
    text = crlf("""
v=0
o=- 1 1 IN IP4 192.0.2.1
s=-
c=IN IP4 233.252.0.1/127/2
t=0 0
m=audio 4000 RTP/AVP 0
c=IN IP4 192.0.2.2
a=rtcp:4001 IN IP4 192.0.2.3
a=candidate:1 1 UDP 2130706431 192.0.2.2 4000 typ host
a=candidate:2 1 UDP 2130706431 abc.local 4000 typ host
a=candidate:3 1 UDP 1694498815 198.51.100.1 4000 typ srflx raddr 192.0.2.2 rport 4000
a=altc:1 IP4 192.0.2.9 4000
m=audio 5000 RTP/AVP 0
c=IN IP6 2001:db8::5
""")
    sd = parse(text)

    def fn(a: IPAddress) -> IPAddress:
        return IPv6Address(int(a) | (0xFD << 120)) if isinstance(a, IPv4Address) else a

    out = serialize(map_addresses(sd, fn)).decode()
    assert "o=- 1 1 IN IP6 fd00::c000:201\r\n" in out
    assert "c=IN IP6 fd00::e9fc:1/2\r\n" in out  # TTL dropped (IPv6 has none), count kept
    assert "c=IN IP6 fd00::c000:202\r\n" in out
    assert "a=rtcp:4001 IN IP6 fd00::c000:203\r\n" in out
    assert "a=candidate:1 1 UDP 2130706431 fd00::c000:202 4000 typ host\r\n" in out
    assert "a=candidate:2 1 UDP 2130706431 abc.local 4000 typ host\r\n" in out
    assert "fd00::c633:6401 4000 typ srflx raddr fd00::c000:202 rport 4000\r\n" in out
    assert "a=altc:1 IP4 192.0.2.9 4000\r\n" in out  # alternatives are not rewritten
    assert "c=IN IP6 2001:db8::5\r\n" in out
    # The identity maps to an equal description.
    assert map_addresses(sd, lambda a: a) == sd
