"""The bounded caches behind ``from_sockaddr``, ``to_sockaddr`` and the address writers: the
same answers as computing afresh, zones never leaking between cached forms, errors never
cached, bounded, emptied by ``clear_caches`` (also through ``rtc64.sip.uri.clear_caches``)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest

from rtc64.net import address
from rtc64.net.address import (
    format_host,
    format_sdp_address,
    from_sockaddr,
    to_sockaddr,
)
from rtc64.sip.uri import clear_caches as clear_sip_caches

ADDRESSES = [
    "192.0.2.1",
    "2001:db8::1",
    "2001:0db8:0000:0000:0000:0000:0000:0001",
    "::ffff:192.0.2.7",
    "fe80::1%7",
    "::1",
]


@pytest.fixture(autouse=True)
def _empty() -> None:
    address.clear_caches()


@pytest.mark.parametrize("text", ADDRESSES)
def test_cached_answers_equal_fresh_ones(text: str) -> None:
    ip = ip_address(text)
    fresh_sdp = format_sdp_address(ip)
    fresh_host = format_host(ip)
    fresh_sock = to_sockaddr(ip, 5060)
    for _ in range(2):  # miss, then hit
        assert format_sdp_address(ip) == fresh_sdp
        assert format_host(ip) == fresh_host
        assert to_sockaddr(ip, 5061) == (fresh_sock[0], 5061)
    if isinstance(ip, IPv6Address):
        assert fresh_host == f"[{fresh_sdp}]"


def test_zone_kept_for_sockets_never_written_in_text() -> None:
    scoped = IPv6Address("fe80::1%7")
    plain = IPv6Address("fe80::1")
    assert to_sockaddr(scoped, 1) == ("fe80::1%7", 1)
    assert to_sockaddr(plain, 1) == ("fe80::1", 1)  # not the scoped entry
    assert format_sdp_address(scoped) == format_sdp_address(plain) == "fe80::1"
    assert format_host(scoped) == "[fe80::1]"


def test_from_sockaddr_repeats_and_keeps_the_scope() -> None:
    a = from_sockaddr(("2001:db8::1", 5060, 0, 0))
    b = from_sockaddr(("2001:db8::1", 5062, 0, 0))
    assert a == (IPv6Address("2001:db8::1"), 5060) and b[1] == 5062
    assert a[0] is b[0]
    scoped = from_sockaddr(("fe80::1", 5060, 0, 3))
    assert scoped[0] == IPv6Address("fe80::1%3") and scoped[0] != a[0]
    assert from_sockaddr(("fe80::1", 5060, 0, 0))[0].scope_id is None
    assert from_sockaddr(("192.0.2.1", 9)) == (IPv4Address("192.0.2.1"), 9)


def test_bad_socket_addresses_raise_every_time() -> None:
    for _ in range(2):
        with pytest.raises(ValueError):
            from_sockaddr(("not an address", 1))
    assert "not an address" not in address._ADDRESS_OF
    with pytest.raises(TypeError):
        from_sockaddr(("192.0.2.1",))


def test_bounded() -> None:
    for i in range(address._CACHE_MAX + 10):
        ip = IPv4Address(0x0A000000 + i)
        from_sockaddr((str(ip), 1))
        to_sockaddr(ip, 1)
        format_sdp_address(ip)
    for cache in (address._ADDRESS_OF, address._SOCKET_TEXT_OF, address._TEXT_OF):
        assert 0 < len(cache) <= address._CACHE_MAX


def test_sip_clear_caches_empties_them() -> None:
    ip = IPv4Address("192.0.2.1")
    from_sockaddr(("192.0.2.1", 1))
    to_sockaddr(ip, 1)
    format_host(ip)
    clear_sip_caches()
    assert not address._ADDRESS_OF and not address._SOCKET_TEXT_OF and not address._TEXT_OF


def test_families_with_equal_integers_never_share_an_entry() -> None:
    """The caches key addresses by integer (IPv4 ``n``, IPv6 ``-1 - n``): ``0.0.0.1`` and
    ``::1``, ``192.0.2.7`` and ``::c000:207`` or its mapped form keep their own text, in
    either order of first use."""
    pairs = [
        (IPv4Address("0.0.0.1"), IPv6Address("::1")),
        (IPv4Address("192.0.2.7"), IPv6Address("::c000:207")),
        (IPv4Address("192.0.2.7"), IPv6Address("::ffff:192.0.2.7")),
        (IPv4Address("0.0.0.0"), IPv6Address("::")),
    ]
    for first_v4 in (True, False):
        for v4, v6 in pairs:
            address.clear_caches()
            order = (v4, v6) if first_v4 else (v6, v4)
            for ip in (*order, *order):
                want = f"[{ip.compressed}]" if ip.version == 6 else str(ip)
                if ip == IPv6Address("::ffff:192.0.2.7"):
                    want = "[::ffff:192.0.2.7]"
                assert format_host(ip) == want
                assert to_sockaddr(ip, 5) == (str(ip), 5)


def test_scoped_addresses_keep_their_own_socket_text() -> None:
    """Socket text keeps the zone: two zones of one address are two entries."""
    for _ in range(2):
        assert to_sockaddr(IPv6Address("fe80::1%7"), 5) == ("fe80::1%7", 5)
        assert to_sockaddr(IPv6Address("fe80::1%8"), 5) == ("fe80::1%8", 5)
        assert to_sockaddr(IPv6Address("fe80::1"), 5) == ("fe80::1", 5)
        assert format_sdp_address(IPv6Address("fe80::1%8")) == "fe80::1"
