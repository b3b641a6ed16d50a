"""Requests for the gateway itself and responses to itself (issue 8): OPTIONS to a served
domain without user part is answered by the gateway (no authentication, like Kamailio's
options module); a response whose destination is one of our own sockets (Via sent-by
naming us without rport on a wildcard listener, or a spoofed source) is dropped and
counted instead of sent to ourselves."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path

import pytest

from rtc64.errors import RemoteProtocolError
from rtc64.gateway.identity import Identity, Listener
from rtc64.net.endpoint import ListenSpec, Transport

from .test_identity import listener, no_source
from .test_proxy import (
    CALLEE,
    CALLER,
    STRANGER,
    V4,
    V6,
    Harness,
    one,
    only,
    request,
    run,
    udp_flow,
)

# -- OPTIONS to the served domain ------------------------------------------------------------


@pytest.mark.parametrize(
    "uri", [b"sip:example.net", b"sip:EXAMPLE.net:5060;transport=udp", b"sips:example.net"]
)
def test_options_to_the_served_domain_is_answered_without_authentication(
    tmp_path: Path, uri: bytes
) -> None:
    async def body(h: Harness) -> None:
        out = await h.feed(request(b"OPTIONS", uri, STRANGER), STRANGER)
        resp = one(out, STRANGER).response
        assert resp.status == 200
        assert b"INVITE" in (resp.get(b"allow") or b"")
        assert resp.get(b"accept") == b"application/sdp"
        assert b"path" in (resp.get(b"supported") or b"")
        assert h.proxy.stats.auth_challenges == 0

    run(tmp_path, body)


def test_other_requests_to_the_bare_domain_keep_their_answers(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        # An untrusted INVITE to the bare domain is still challenged ...
        out = await h.feed(request(b"INVITE", b"sip:example.net", STRANGER), STRANGER)
        assert [s.status for s in out] == [100, 407]
        # ... a trusted MESSAGE still finds nobody there ...
        msg = request(b"MESSAGE", b"sip:example.net", CALLER, branch=b"z9hG4bKm1")
        assert [s.status for s in await h.feed(msg, CALLER)] == [404]
        # ... an OPTIONS to a user of the domain is not for the gateway ...
        ping = request(b"OPTIONS", b"sip:alice@example.net", STRANGER, branch=b"z9hG4bKo2")
        assert [s.status for s in await h.feed(ping, STRANGER)] == [407]
        # ... and an OPTIONS to a foreign host is forwarded there.
        away = request(b"OPTIONS", b"sip:192.0.2.50", CALLER, branch=b"z9hG4bKo3")
        assert one(await h.feed(away, CALLER), CALLEE).request.method == b"OPTIONS"

    run(tmp_path, body)


# -- response loop guard ---------------------------------------------------------------------

ANY6 = Listener(ListenSpec(Transport.UDP, IPv6Address("::"), 5060), 5060)
ANY4 = Listener(ListenSpec(Transport.UDP, IPv4Address("0.0.0.0"), 5060), 5060)


def wildcard() -> Identity:
    return Identity([ANY6, ANY4], host_addresses=(V6, V4), domains=("example.net",),
                    source_for=no_source)  # fmt: skip


@pytest.mark.parametrize(
    ("transport", "address", "port", "own"),
    [
        (Transport.UDP, "2001:db8::1", 5060, True),
        (Transport.UDP, "192.0.2.1", 5060, True),
        (Transport.UDP, "::ffff:192.0.2.1", 5060, True),
        (Transport.UDP, "::1", 5060, True),
        (Transport.UDP, "127.0.0.1", 5060, True),
        (Transport.UDP, "::", 5060, True),
        (Transport.UDP, "0.0.0.0", 5060, True),
        (Transport.UDP, "2001:db8::1", 5070, False),  # another element on our host
        (Transport.UDP, "2001:db8::99", 5060, False),
        (Transport.TCP, "2001:db8::1", 5060, False),  # no TCP listener
    ],
)
def test_is_own_socket_on_wildcards(
    transport: Transport, address: str, port: int, own: bool
) -> None:
    assert wildcard().is_own_socket(transport, ip_address(address), port) is own


def test_is_own_socket_on_a_specific_address() -> None:
    i = Identity([listener("udp:192.0.2.1:5060")], source_for=no_source)
    assert i.is_own_socket(Transport.UDP, ip_address("192.0.2.1"), 5060)
    assert not i.is_own_socket(Transport.UDP, ip_address("127.0.0.1"), 5060)
    assert not i.is_own_socket(Transport.UDP, ip_address("192.0.2.2"), 5060)


def on_wildcards(h: Harness) -> None:
    h.rebuild(identity=wildcard())


@pytest.mark.parametrize(
    ("source", "via"),
    [
        # Our own address as sent-by and no rport: §18.2.2 sends to the sent-by port.
        (("2001:db8::1", 40000), b"Via: SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bKl1"),
        (("192.0.2.1", 40000), b"Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKl1"),
        # A spoofed source that is our own socket, with rport.
        (("2001:db8::1", 5060), b"Via: SIP/2.0/UDP [2001:db8::9]:5060;branch=z9hG4bKl1;rport"),
    ],
)
def test_a_response_to_our_own_socket_is_dropped_and_counted(
    tmp_path: Path, source: tuple[str, int], via: bytes
) -> None:
    async def body(h: Harness) -> None:
        on_wildcards(h)
        for i, method in enumerate((b"OPTIONS", b"INVITE")):
            data = request(method, b"sip:example.net", source, branch=b"z9hG4bKl%d" % i)
            lines = [via if line.startswith(b"Via:") else line for line in data.split(b"\r\n")]
            out = await h.feed(b"\r\n".join(lines).replace(b"z9hG4bKl1", b"z9hG4bKl%d" % i), source)
            assert not only(out, ("2001:db8::1", 5060)) and not only(out, ("192.0.2.1", 5060))
            assert not [s for s in out if s.data.startswith(b"SIP/2.0")], out
        # OPTIONS: 200; INVITE: 100 and 407.
        assert h.proxy.stats.response_loops == 3
        # A malformed request from our own socket gets no 400 either.
        bad = request(b"INVITE", b"sip:example.net", ("2001:db8::1", 5060), branch=b"z9hG4bKb")
        bad = bad.replace(b"Max-Forwards: 70", b"Max-Forwards: many")
        sent = len(h.sender.sent)
        error = RemoteProtocolError("Bad Request: bad Via", 400)
        h.proxy.on_bad_datagram(bad, error, udp_flow(("2001:db8::1", 5060)))
        assert h.proxy.stats.response_loops == 4 and len(h.sender.sent) == sent

    run(tmp_path, body)


def test_ordinary_responses_still_go_out_on_wildcards(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        on_wildcards(h)
        out = await h.feed(request(b"OPTIONS", b"sip:example.net", CALLER), CALLER)
        assert one(out, CALLER).response.status == 200
        assert h.proxy.stats.response_loops == 0

    run(tmp_path, body)


def test_an_ipv6_address_with_our_ipv4_addresss_integer_is_not_us() -> None:
    """Addresses are looked up as integers per family: ``::c000:201`` (the integer of
    192.0.2.1, not its mapped form) is neither our host nor our socket; ``::1`` as an
    integer is ``0.0.0.1`` and ``::`` is ``0.0.0.0``, neither makes an IPv4-only
    gateway's socket."""
    i = Identity([listener("udp:192.0.2.1:5060")], source_for=no_source)
    same_int = IPv6Address(int(IPv4Address("192.0.2.1")))
    assert i.is_our_host(IPv4Address("192.0.2.1"))
    assert i.is_our_host(IPv6Address("::ffff:192.0.2.1"))
    assert not i.is_our_host(same_int)
    assert not i.is_own_socket(Transport.UDP, same_int, 5060)
    assert not i.is_own_socket(Transport.UDP, IPv4Address("0.0.0.1"), 5060)
    assert i.is_own_socket(Transport.UDP, IPv4Address("0.0.0.0"), 5060)
    assert not i.is_own_socket(Transport.UDP, IPv6Address("::"), 5060)  # no IPv6 listener
