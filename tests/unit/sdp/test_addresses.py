"""Address inventory: families, mixed family, private/unusable addresses."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address

from rtc64.net.address import Family
from rtc64.sdp import parse
from rtc64.sdp.addresses import (
    MEDIA_SOURCES,
    AddressSource,
    AddressUse,
    addresses,
    families,
    is_mixed_family,
    unusable_addresses,
)

from .samples import BARESIP_V4, BARESIP_V6, CHROMIUM_OFFER, crlf, rfc5118_body

S = AddressSource


def test_baresip_addresses() -> None:
    uses = addresses(parse(BARESIP_V6))
    v6 = IPv6Address("2001:db8:1::10")
    assert uses == [
        AddressUse(v6, S.ORIGIN, Family.INET6),
        AddressUse(v6, S.SESSION_CONNECTION, Family.INET6),
        AddressUse(v6, S.RTCP, Family.INET6, media=0, port=10121),
    ]
    assert families(parse(BARESIP_V6)) == {Family.INET6}
    assert families(parse(BARESIP_V4)) == {Family.INET}
    assert not is_mixed_family(parse(BARESIP_V4))


def test_chromium_addresses_every_source() -> None:
    sd = parse(CHROMIUM_OFFER)
    uses = addresses(sd)
    sources = [u.source for u in uses if u.media == 0]
    assert sources == [
        S.MEDIA_CONNECTION,
        S.RTCP,
        S.CANDIDATE,
        S.CANDIDATE,
        S.CANDIDATE,
        S.CANDIDATE_RELATED,
        S.CANDIDATE,
        S.CANDIDATE,
        S.CANDIDATE_RELATED,
        S.CANDIDATE,
    ]
    assert uses[0] == AddressUse(IPv4Address("127.0.0.1"), S.ORIGIN, Family.INET)
    mdns = [u for u in uses if isinstance(u.address, str)]
    assert mdns[0].family is None
    assert mdns[0].ip is None
    assert uses[0].ip == IPv4Address("127.0.0.1")
    assert families(sd) == {Family.INET, Family.INET6}
    assert is_mixed_family(sd)


def test_rfc5118_families() -> None:
    assert is_mixed_family(parse(rfc5118_body("mult-ip-in-sdp")))
    assert families(parse(rfc5118_body("ipv6-in-sdp"))) == {Family.INET6}
    # An IPv4-mapped address is IPv6 on the wire (RFC 5118 §4.9).
    assert families(parse(rfc5118_body("ipv4-mapped-ipv6"))) == {Family.INET6}
    # The origin of §4.8 is a host name with IN IP4: its family is the addrtype's.
    assert families(parse(rfc5118_body("mult-ip-in-sdp")), include_origin=True) == {
        Family.INET,
        Family.INET6,
    }


def test_origin_is_not_a_media_family() -> None:
    sd = parse(crlf("v=0\no=- 1 1 IN IP6 2001:db8::1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0"))
    assert families(sd) == {Family.INET}
    assert families(sd, include_origin=True) == {Family.INET, Family.INET6}
    assert not is_mixed_family(sd)


def test_unusable_addresses_clat_private_cgnat() -> None:
    body = crlf("""
v=0
o=- 1 1 IN IP4 192.0.0.2
s=-
c=IN IP4 100.64.1.2
t=0 0
m=audio 4000 RTP/AVP 0
a=rtcp:4001 IN IP4 10.1.2.3
a=candidate:1 1 udp 1 198.51.100.20 4000 typ srflx raddr 172.16.0.5 rport 4000
a=candidate:2 1 udp 1 fe80::1 4000 typ host
a=candidate:3 1 udp 1 2001:db8::1 4000 typ host
a=candidate:4 1 udp 1 abc.local 4000 typ host
""")
    sd = parse(body)
    bad = unusable_addresses(sd)
    assert [(u.source, u.address) for u in bad] == [
        (S.ORIGIN, IPv4Address("192.0.0.2")),
        (S.SESSION_CONNECTION, IPv4Address("100.64.1.2")),
        (S.RTCP, IPv4Address("10.1.2.3")),
        (S.CANDIDATE_RELATED, IPv4Address("172.16.0.5")),
        (S.CANDIDATE, IPv6Address("fe80::1")),
    ]
    media_only = unusable_addresses(sd, sources=MEDIA_SOURCES)
    assert [u.address for u in media_only] == [
        ip_address("100.64.1.2"),
        ip_address("10.1.2.3"),
        ip_address("fe80::1"),
    ]


def test_public_sdp_has_no_unusable_address() -> None:
    sd = parse(crlf("v=0\no=- 1 1 IN IP4 198.51.100.1\ns=-\nc=IN IP4 198.51.100.1\nt=0 0"))
    assert unusable_addresses(sd) == []


def test_remote_candidates_and_altc_are_listed() -> None:
    body = crlf("""
v=0
o=- 1 1 IN IP4 198.51.100.1
s=-
t=0 0
m=audio 4000 RTP/AVP 0
c=IN IP4 198.51.100.1
a=altc:1 IP4 198.51.100.1 4000
a=altc:2 IP6 2001:db8::1 4000 4001
a=altc:3 IP6 bad!addr 4000
a=remote-candidates:1 2001:db8::2 5000 2 2001:db8::2 5001 3 bad!addr 1
""")
    uses = [u for u in addresses(parse(body)) if u.source in (S.ALTERNATE, S.REMOTE_CANDIDATE)]
    assert [(u.source, u.address, u.port) for u in uses] == [
        (S.ALTERNATE, IPv4Address("198.51.100.1"), 4000),
        (S.ALTERNATE, IPv6Address("2001:db8::1"), 4000),
        (S.REMOTE_CANDIDATE, IPv6Address("2001:db8::2"), 5000),
        (S.REMOTE_CANDIDATE, IPv6Address("2001:db8::2"), 5001),
    ]
    assert is_mixed_family(parse(body))
