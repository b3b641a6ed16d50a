"""Hosts, hostports and addresses: RFC 3261 §25.1, RFC 5118 §4, RFC 5952, RFC 4007."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtc64.errors import LocalProtocolError, RemoteProtocolError
from rtc64.net.address import (
    Family,
    HostPort,
    family_of,
    format_host,
    format_hostport,
    format_sdp_address,
    from_sockaddr,
    parse_host,
    parse_hostport,
    parse_ip,
    parse_port,
    to_sockaddr,
    unmap,
    without_scope,
)

from .strategies import any_address, domains, ipv4s, ipv6s, ports, special_addresses

V6 = IPv6Address
V4 = IPv4Address
CORPUS = Path(__file__).parents[2] / "conformance" / "corpus" / "rfc5118"


# --- Accepted forms --------------------------------------------------------------------

GOOD_HOSTPORTS = [
    # RFC 5118 §4.4 / §4.3: port outside the brackets, and a last group that looks like one.
    ("[2001:db8::10]:5070", HostPort(V6("2001:db8::10"), 5070)),
    ("[2001:db8::10:5070]", HostPort(V6("2001:db8::10:5070"))),
    ("[2001:db8::10]", HostPort(V6("2001:db8::10"))),
    # RFC 5118 §4.10: embedded IPv4, and the tolerated extra colon.
    ("[2001:db8::192.0.2.1]", HostPort(V6("2001:db8::c000:201"))),
    ("[2001:db8:::192.0.2.1]", HostPort(V6("2001:db8::192.0.2.1"))),
    ("[:::192.0.2.1]:7", HostPort(V6("::192.0.2.1"), 7)),
    # RFC 5118 §4.9: IPv4-mapped.
    ("[::ffff:192.0.2.10]:19823", HostPort(V6("::ffff:192.0.2.10"), 19823)),
    ("[::ffff:192.0.2.2]", HostPort(V6("::ffff:c000:202"))),
    ("[::1]", HostPort(V6("::1"))),
    ("[::]:0", HostPort(V6("::"), 0)),
    ("[FE80::A]:65535", HostPort(V6("fe80::a"), 65535)),
    ("192.0.2.1", HostPort(V4("192.0.2.1"))),
    ("192.0.2.1:5060", HostPort(V4("192.0.2.1"), 5060)),
    ("0.0.0.0:05060", HostPort(V4("0.0.0.0"), 5060)),
    ("Example.COM", HostPort("example.com")),
    ("example.com.:5061", HostPort("example.com.", 5061)),
    ("a", HostPort("a")),
    ("lab1.east.example.com", HostPort("lab1.east.example.com")),
    ("1.2.3.4.example:1", HostPort("1.2.3.4.example", 1)),
    ("x-1.a--b.c0m", HostPort("x-1.a--b.c0m")),
    ("9a.b", HostPort("9a.b")),
    (b"[2001:db8::1]:5060", HostPort(V6("2001:db8::1"), 5060)),
]


@pytest.mark.parametrize(("text", "expected"), GOOD_HOSTPORTS)
def test_parse_hostport_accepts(text: str | bytes, expected: HostPort) -> None:
    assert parse_hostport(text) == expected


def test_parse_hostport_keeps_mapped_as_ipv6() -> None:
    hp = parse_hostport("[::ffff:192.0.2.1]")
    assert isinstance(hp.host, IPv6Address)
    assert hp.host.ipv4_mapped == V4("192.0.2.1")
    assert unmap(hp.host) == V4("192.0.2.1")


# Request-URI hostports of the RFC 5118 corpus (userinfo stripped), and what they mean.
CORPUS_URIS = {
    "ipv6-good": HostPort(V6("2001:db8::10")),
    "port-ambiguous": HostPort(V6("2001:db8::10:5070")),
    "port-unambiguous": HostPort(V6("2001:db8::10"), 5070),
    "ipv6-bug-abnf-3-colons": HostPort(V6("2001:db8::192.0.2.1")),
    "ipv6-correct-abnf-2-colons": HostPort(V6("2001:db8::192.0.2.1")),
    "ipv6-in-sdp": HostPort(V6("2001:db8::10")),
    "mult-ip-in-header": HostPort("host.example.net"),
    "ipv4-mapped-ipv6": HostPort("example.com"),
}


def _request_uri_hostport(name: str) -> bytes:
    first = (CORPUS / f"{name}.dat").read_bytes().split(b"\r\n", 1)[0]
    uri = first.split(b" ")[1]
    assert uri.startswith(b"sip:")
    return uri[4:].rpartition(b"@")[2]


@pytest.mark.parametrize(("name", "expected"), sorted(CORPUS_URIS.items()))
def test_rfc5118_corpus_request_uris(name: str, expected: HostPort) -> None:
    assert parse_hostport(_request_uri_hostport(name)) == expected


def test_rfc5118_ipv6_bad_is_rejected() -> None:
    hostport = _request_uri_hostport("ipv6-bad")
    assert hostport == b"2001:db8::10"
    with pytest.raises(RemoteProtocolError) as info:
        parse_hostport(hostport)
    assert info.value.status == 400
    assert "2001:db8::10" in str(info.value)
    assert "brackets" in str(info.value)


@pytest.mark.parametrize("text", ["2001:db8::9:255", "[2001:db8::9:255]"])
def test_parse_ip_accepts_via_received_both_ways(text: str) -> None:
    # RFC 5118 §4.5: received= with and without brackets.
    assert parse_ip(text) == V6("2001:db8::9:255")


def test_parse_ip_forms() -> None:
    assert parse_ip("192.0.2.1") == V4("192.0.2.1")
    assert parse_ip(b"::ffff:192.0.2.2") == V6("::ffff:c000:202")
    assert parse_ip("[2001:db8:::192.0.2.1]") == V6("2001:db8::c000:201")
    scoped = parse_ip("fe80::1%eth0", scope=True)
    assert isinstance(scoped, IPv6Address)
    assert scoped.scope_id == "eth0"
    assert parse_ip("[fe80::1%2]", scope=True) == V6("fe80::1%2")


def test_parse_port() -> None:
    assert parse_port("0") == 0
    assert parse_port(b"65535") == 65535
    assert parse_port("0000005060") == 5060


# --- Rejected forms ----------------------------------------------------------------------

BAD_HOSTPORTS = [
    "",
    "2001:db8::10",  # RFC 5118 §4.2: bare IPv6
    "::1",
    "2001:db8::10:5070",
    "[2001:db8::10",
    "[2001:db8::10]5070",
    "[2001:db8::10]:",
    "[2001:db8::10]:65536",
    "[2001:db8::10]:-1",
    "[2001:db8::10]:+5",
    "[192.0.2.1]",
    "[]",
    "[example.com]",
    "[fe80::1%eth0]",  # SIP has no zone ids
    "[fe80::1%25eth0]",
    "[1::2:::3]",  # three colons only before an embedded IPv4
    "[2001:db8::::192.0.2.1]",
    "[2001:db8:::1]",
    "192.0.2.256",
    "192.0.2",
    "010.0.0.1",  # leading zeros are octal elsewhere: refused
    "192.0.2.1:",
    "192.0.2.1:5060:1",
    "example.com:5060\n",
    "example.com\n",
    "example.com:\u0665\u0660\u0666\u0660",  # Arabic-Indic digits are not DIGIT
    "example.com:\u00b9",
    "example\u212a.com",  # KELVIN SIGN, lower()s to "k"
    "ex\u00e4mple.com",
    "example.123",  # top label must start with a letter
    "example.1com",
    "-example.com",
    "example-.com",
    "example..com",
    ".example.com",
    "example.com..",
    "ex ample.com",
    "ex_ample.com",
    "example.com:5060;transport=udp",
    "user@example.com",
]


@pytest.mark.parametrize("text", BAD_HOSTPORTS)
def test_parse_hostport_rejects(text: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_hostport(text)
    assert info.value.status == 400
    assert info.value.reason.startswith("Bad Request")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("2001:db8::10", "'2001:db8::10'"),
        ("exa mple.com", "'exa mple.com'"),
        ("example.com:99999", "'99999'"),
        ("[fe80::1%eth0]", "'[fe80::1%eth0]'"),
        ("192.0.2.300", "'192.0.2.300'"),
        ("example.com\r\nX: y", "'example.com\\r\\nX'"),
        ("example\u212a.com", "'example\\u212a.com'"),
    ],
)
def test_errors_name_the_bad_value_safely(text: str, shown: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_hostport(text)
    assert shown in info.value.reason
    # The reason may become a SIP reason phrase: never raw CR/LF or non-ASCII.
    assert info.value.reason.isascii()
    assert "\r" not in info.value.reason
    assert "\n" not in info.value.reason


def test_error_bounds_long_input() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_host("a" * 10_000 + "!")
    assert len(info.value.reason) < 200
    assert "10001 chars" in info.value.reason


@pytest.mark.parametrize("text", ["::1%eth0", "fe80::1%", "[fe80::1%]", "fe80::1%a b", "x"])
def test_parse_ip_rejects(text: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_ip(text, scope=text != "::1%eth0")
    assert repr(text)[1:-1] in info.value.reason or text in info.value.reason


@pytest.mark.parametrize("text", ["", "65536", "5060 ", " 5060", "0x10", "\u0665", "1" * 11])
def test_parse_port_rejects(text: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_port(text)
    assert ascii(text) in info.value.reason


# --- Formatting ------------------------------------------------------------------------


def test_format_host() -> None:
    assert format_host(V6("2001:DB8:0:0:0:0:0:1")) == "[2001:db8::1]"
    assert format_host(V6("::ffff:192.0.2.1")) == "[::ffff:192.0.2.1]"
    assert format_host(V6("fe80::1%eth0")) == "[fe80::1]"
    assert format_host(V4("192.0.2.1")) == "192.0.2.1"
    assert format_host("example.com") == "example.com"
    assert format_hostport(V6("2001:db8::10"), 5070) == "[2001:db8::10]:5070"
    assert format_hostport(V6("2001:db8::10:5070"), None) == "[2001:db8::10:5070]"
    assert str(HostPort(V6("::1"), 5060)) == "[::1]:5060"
    # RFC 5952 §4.2.2: one zero group is not shortened.
    assert format_host(V6("2001:db8:0:1:1:1:1:1")) == "[2001:db8:0:1:1:1:1:1]"


def test_format_sdp_address_is_bare() -> None:
    assert format_sdp_address(V6("2001:db8::20")) == "2001:db8::20"
    assert format_sdp_address(V6("::ffff:192.0.2.2")) == "::ffff:192.0.2.2"
    assert format_sdp_address(V6("fe80::1%eth0")) == "fe80::1"
    assert format_sdp_address(V4("192.0.2.1")) == "192.0.2.1"


@pytest.mark.parametrize("host", ["2001:db8::1", "", "[::1]"])
def test_format_host_refuses_address_text(host: str) -> None:
    with pytest.raises(LocalProtocolError) as info:
        format_host(host)
    assert repr(host) in str(info.value)


@pytest.mark.parametrize("port", [-1, 65536])
def test_format_hostport_refuses_bad_port(port: int) -> None:
    with pytest.raises(LocalProtocolError) as info:
        format_hostport(V4("192.0.2.1"), port)
    assert str(port) in str(info.value)


# --- Families and sockets --------------------------------------------------------------


def test_family() -> None:
    assert family_of(V4("192.0.2.1")) is Family.INET
    assert family_of(V6("::ffff:192.0.2.1")) is Family.INET6
    assert Family.INET.sdp == "IP4"
    assert Family.INET6.sdp == "IP6"
    assert Family.INET6.label == "IPv6"
    assert unmap(V6("2001:db8::1")) == V6("2001:db8::1")
    assert unmap(V4("192.0.2.1")) == V4("192.0.2.1")


def test_from_sockaddr_keeps_scope() -> None:
    addr, port = from_sockaddr(("fe80::1%eth0", 5060, 0, 2))
    assert isinstance(addr, IPv6Address)
    assert addr.scope_id == "eth0"
    assert port == 5060
    addr, _ = from_sockaddr(("fe80::1", 5060, 0, 3))
    assert isinstance(addr, IPv6Address)
    assert addr.scope_id == "3"
    assert without_scope(addr) == V6("fe80::1")
    assert to_sockaddr(addr, 5060) == ("fe80::1%3", 5060)
    addr, _ = from_sockaddr(("2001:db8::1", 5060, 0, 0))
    assert addr == V6("2001:db8::1")
    assert from_sockaddr(("192.0.2.1", 5060)) == (V4("192.0.2.1"), 5060)
    assert from_sockaddr(("::ffff:192.0.2.1", 1, 0, 0)) == (V6("::ffff:192.0.2.1"), 1)


@pytest.mark.parametrize(
    "sockaddr", [("192.0.2.1",), ("192.0.2.1", "5060"), ("192.0.2.1", True), (1, 2)]
)
def test_from_sockaddr_rejects(sockaddr: tuple[object, ...]) -> None:
    with pytest.raises(TypeError):
        from_sockaddr(sockaddr)


# --- Properties ------------------------------------------------------------------------


@given(st.one_of(ipv4s, ipv6s, special_addresses), st.one_of(st.none(), ports))
def test_hostport_round_trip_addresses(addr: IPv4Address | IPv6Address, port: int | None) -> None:
    text = format_hostport(addr, port)
    assert parse_hostport(text) == HostPort(addr, port)
    assert parse_hostport(text.encode()) == HostPort(addr, port)
    assert str(HostPort(addr, port)) == text
    if isinstance(addr, IPv6Address):
        assert text.startswith("[")
    if port is None:
        assert parse_host(text) == addr


@given(domains(), st.one_of(st.none(), ports))
def test_hostport_round_trip_domains(name: str, port: int | None) -> None:
    text = format_hostport(name, port)
    assert parse_hostport(text) == HostPort(name, port)
    assert parse_hostport(text.upper()) == HostPort(name, port)


@given(any_address)
def test_sdp_round_trip(addr: IPv4Address | IPv6Address) -> None:
    text = format_sdp_address(addr)
    assert "[" not in text
    assert parse_ip(text) == addr


@given(ipv6s)
def test_bare_ipv6_never_a_sip_host(addr: IPv6Address) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_hostport(addr.compressed)
    with pytest.raises(RemoteProtocolError):
        parse_host(addr.exploded)


@given(ipv6s, ports)
def test_sockaddr_round_trip(addr: IPv6Address, port: int) -> None:
    assert from_sockaddr((*to_sockaddr(addr, port), 0, 0)) == (addr, port)


@given(st.text(max_size=40))
def test_parse_hostport_only_raises_remote_protocol_error(text: str) -> None:
    try:
        hp = parse_hostport(text)
    except RemoteProtocolError as exc:
        assert exc.reason.isascii()
        return
    # Whatever parses writes back in a form that parses to the same value.
    assert parse_hostport(str(hp)) == hp
