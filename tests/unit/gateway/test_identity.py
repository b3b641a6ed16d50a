"""Who the gateway is: listeners, addresses, domains, and how it names itself."""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from rtc64.gateway.identity import Identity, Listener, uri_transport
from rtc64.net.address import HostPort, IPAddress
from rtc64.net.endpoint import ListenSpec, Transport, parse_listen
from rtc64.sip.uri import SipUri, parse_uri

HOST4 = IPv4Address("192.0.2.1")
HOST4B = IPv4Address("192.0.2.2")
HOST6 = IPv6Address("2001:db8::1")


def listener(text: str, port: int | None = None) -> Listener:
    spec = parse_listen(text)
    return Listener(spec, spec.port if port is None else port)


def uri(text: bytes) -> SipUri:
    u = parse_uri(text)
    assert isinstance(u, SipUri)
    return u


def no_source(_ip: IPAddress) -> IPAddress | None:
    return None


def plain() -> Identity:
    return Identity(
        [listener("udp:192.0.2.1:5060"), listener("udp:[2001:db8::1]:5060")],
        domains=("Example.NET.",),
        source_for=no_source,
    )


def test_is_us_by_address_and_port() -> None:
    ident = plain()
    assert ident.is_us(uri(b"sip:192.0.2.1"))
    assert ident.is_us(uri(b"sip:192.0.2.1:5060;lr"))
    assert ident.is_us(uri(b"sip:[2001:db8::1]:5060"))
    assert ident.is_us(uri(b"sip:[::ffff:192.0.2.1]:5060"))
    assert not ident.is_us(uri(b"sip:192.0.2.1:5070"))  # another element on our host
    assert not ident.is_us(uri(b"sips:192.0.2.1"))  # default 5061: no listener there
    assert not ident.is_us(uri(b"sip:192.0.2.9"))
    assert not ident.is_us(uri(b"sip:example.net"))  # a domain, not a host name of ours


def test_local_domains() -> None:
    ident = plain()
    assert ident.is_local_uri(uri(b"sip:bob@example.net"))
    assert ident.is_local_uri(uri(b"sip:bob@192.0.2.1"))
    assert not ident.is_local_uri(uri(b"sip:bob@192.0.2.1:5070"))
    assert not ident.is_local_uri(uri(b"sip:bob@example.org"))
    assert ident.is_local_domain("example.net")
    assert ident.is_local_domain(HOST6)
    assert not ident.is_local_domain("example.org")


def test_wildcard_listeners_take_the_host_addresses() -> None:
    ident = Identity(
        [listener("udp:0.0.0.0:5060"), listener("tcp:[::]:0", port=40000)],
        host_addresses=(HOST4, HOST4B, HOST6),
        hostnames=("GW.example.net",),
        source_for=no_source,
    )
    assert ident.addresses == {HOST4, HOST4B, HOST6}
    assert ident.ports == {5060, 40000}
    assert ident.is_us(uri(b"sip:192.0.2.2"))
    assert ident.is_us(uri(b"sip:[2001:db8::1]:40000;transport=tcp"))
    assert ident.is_us(uri(b"sip:gw.example.net"))
    assert ident.is_our_host("gw.example.net")


def test_wildcard_addresses_by_family() -> None:
    ident = Identity(
        [listener("udp:[::]:5060")], host_addresses=(HOST4, HOST6), source_for=no_source
    )
    assert ident.addresses == {HOST6}


def test_advertised_address_and_name() -> None:
    spec = ListenSpec(
        Transport.UDP, IPv4Address("10.0.0.5"), 5060, HostPort(IPv4Address("203.0.113.5"), 5080)
    )
    named = ListenSpec(Transport.TLS, HOST6, 5061, HostPort("sip.example.net", None))
    ident = Identity([Listener(spec, 5060), Listener(named, 5061)], source_for=no_source)
    assert ident.is_us(uri(b"sip:203.0.113.5:5080"))
    assert ident.is_us(uri(b"sip:10.0.0.5"))
    assert ident.is_us(uri(b"sips:sip.example.net"))
    first, second = ident.listeners
    assert ident.address_of(first, IPv4Address("198.51.100.7")) == (
        IPv4Address("203.0.113.5"),
        5080,
    )
    assert ident.hostport_of(first, None) == "203.0.113.5:5080"
    assert ident.address_of(second, HOST6) == ("sip.example.net", 5061)


def test_listener_for_by_transport_and_family() -> None:
    u4, u6 = listener("udp:192.0.2.1:5060"), listener("udp:[2001:db8::1]:5060")
    t6, w4 = listener("tcp:[2001:db8::1]:5060"), listener("wss:192.0.2.1:443")
    ident = Identity([u4, u6, t6, w4], source_for=no_source)
    assert ident.listener_for(Transport.UDP, IPv4Address("198.51.100.7")) is u4
    assert ident.listener_for(Transport.UDP, IPv6Address("2001:db8::99")) is u6
    assert ident.listener_for(Transport.TCP, IPv6Address("2001:db8::99")) is t6
    assert ident.listener_for(Transport.TCP, IPv4Address("198.51.100.7")) is None
    assert ident.listener_for(Transport.WS, IPv4Address("198.51.100.7")) is w4  # WSS for WS
    assert ident.listener_for(Transport.TLS, IPv6Address("2001:db8::99")) is None
    # IPv4-mapped destinations count as IPv6 sockets' family.
    assert ident.listener_for(Transport.UDP, IPv6Address("::ffff:198.51.100.7")) in (u4, u6)


def test_address_of_plain_listener() -> None:
    ident = plain()
    l4, l6 = ident.listeners
    assert ident.address_of(l4, IPv4Address("198.51.100.7")) == (HOST4, 5060)
    assert ident.hostport_of(l6, IPv6Address("2001:db8::99")) == "[2001:db8::1]:5060"


def test_address_of_wildcard_uses_source_for() -> None:
    asked: list[IPAddress] = []

    def source_for(dest: IPAddress) -> IPAddress | None:
        asked.append(dest)
        return HOST4B if dest.version == 4 else None

    w4 = listener("udp:0.0.0.0:5060")
    w6 = listener("udp:[::]:5060")
    ident = Identity([w4, w6], host_addresses=(HOST4, HOST4B, HOST6), source_for=source_for)
    assert ident.address_of(w4, IPv4Address("198.51.100.7")) == (HOST4B, 5060)
    assert asked == [IPv4Address("198.51.100.7")]
    # No answer: the first address of the family (sorted), never another family's.
    assert ident.address_of(w6, IPv6Address("2001:db8::99")) == (HOST6, 5060)
    assert ident.address_of(w4, None) == (HOST4, 5060)


def test_address_of_wildcard_rejects_other_family_source() -> None:
    ident = Identity(
        [listener("udp:[::]:5060")],
        host_addresses=(HOST6,),
        source_for=lambda _d: HOST4,
    )
    assert ident.address_of(ident.listeners[0], IPv6Address("2001:db8::99")) == (HOST6, 5060)


def test_wildcard_without_addresses_falls_back_to_the_bind_address() -> None:
    ident = Identity([listener("udp:0.0.0.0:5060")], source_for=no_source)
    assert ident.address_of(ident.listeners[0], None) == (IPv4Address("0.0.0.0"), 5060)


def test_listener_name() -> None:
    assert listener("udp:[2001:db8::1]:5060").name() == "udp:[2001:db8::1]:5060"
    assert listener("tcp:0.0.0.0:0", port=40000).name() == "tcp:0.0.0.0:40000"


def test_uri_transport() -> None:
    assert uri_transport(uri(b"sip:a@b")) is Transport.UDP
    assert uri_transport(uri(b"sip:a@b;transport=TCP")) is Transport.TCP
    assert uri_transport(uri(b"sips:a@b")) is Transport.TLS
    assert uri_transport(uri(b"sip:a@b;transport=ws")) is Transport.WS
    assert uri_transport(uri(b"sip:a@b;transport=sctp")) is Transport.UDP


def test_a_via_with_alias_names_the_shared_port_not_the_workers_own() -> None:
    """SIP workers (RFC 5923): peers alias the port they dial, the SO_REUSEPORT one; our
    other Vias keep naming the worker's own port (responses find their worker by it)."""
    from rtc64.gateway.proxy import splice  # noqa: PLC0415
    from rtc64.gateway.proxy.hops import Hop  # noqa: PLC0415
    from rtc64.sip.framing import parse_datagram  # noqa: PLC0415

    own_tls, own_tcp = listener("tls:192.0.2.1:41005"), listener("tcp:192.0.2.1:41006")
    shared_tls, shared_tcp = listener("tls:192.0.2.1:5061"), listener("tcp:192.0.2.1:5060")
    shared = [shared_tls.spec, shared_tcp.spec]
    req = parse_datagram(
        b"OPTIONS sip:b@example.net SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK-1\r\n"
        b"From: <sip:a@x>;tag=1\r\nTo: <sip:b@example.net>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n"
        b"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    below = b"SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK-1"
    hop_tls = Hop(Transport.TLS, HOST4B, 5061)
    hop_tcp = Hop(Transport.TCP, HOST4B, 5060)
    for alias in (True, False):
        ident = Identity(
            [own_tls, own_tcp, shared_tls, shared_tcp],
            source_for=no_source,
            tls_alias=alias,
            shared=shared,
        )
        for _ in range(2):
            via = splice.our_via(ident, own_tls, hop_tls, req, below)  # type: ignore[arg-type]
            if alias:
                assert via.startswith(b"SIP/2.0/TLS 192.0.2.1:5061;") and via.endswith(b";alias")
            else:
                assert via.startswith(b"SIP/2.0/TLS 192.0.2.1:41005;") and b"alias" not in via
            via = splice.our_via(ident, own_tcp, hop_tcp, req, below)  # type: ignore[arg-type]
            assert via.startswith(b"SIP/2.0/TCP 192.0.2.1:41006;")
            ident.replace_listeners(ident.listeners)  # a reload keeps the shared specs
    # one process: no shared listeners, the Via names the listener as before
    single = Identity([shared_tls], source_for=no_source, tls_alias=True)
    assert single.alias_listener(shared_tls) is shared_tls


def test_a_record_route_toward_an_aliased_peer_names_the_shared_port_and_the_worker() -> None:
    """SIP workers, ``sip.tls_alias``: the entry facing a TLS peer names the shared port
    (the alias the peer keeps for our connection, so its in-dialog requests reuse it) and
    the worker's own port as ``r64w`` (so they are handed to the dialog's worker); the
    worker rule of ``io.worker_owners`` reads it back. Without the alias, and on TCP, the
    entry names the worker's own port as before."""
    from rtc64.gateway.proxy import splice  # noqa: PLC0415
    from rtc64.gateway.proxy.hops import Hop  # noqa: PLC0415
    from rtc64.io.worker_conns import SentFor  # noqa: PLC0415
    from rtc64.io.worker_owners import Owners  # noqa: PLC0415
    from rtc64.net.endpoint import Flow  # noqa: PLC0415
    from rtc64.sip.framing import parse_datagram  # noqa: PLC0415
    from rtc64.sip.message import Request  # noqa: PLC0415

    own_tls, own_tcp = listener("tls:192.0.2.1:41005"), listener("tcp:192.0.2.1:41006")
    shared_tls, shared_udp = listener("tls:192.0.2.1:5061"), listener("udp:192.0.2.1:5060")
    shared = [shared_tls.spec, shared_udp.spec]
    invite = parse_datagram(
        b"INVITE sip:b@example.net SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK-1\r\n"
        b"From: <sip:a@x>;tag=1\r\nTo: <sip:b@example.net>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n"
        b"Contact: <sip:a@192.0.2.9>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    assert isinstance(invite, Request)
    flow = Flow(Transport.UDP, (HOST4, 5060), (IPv4Address("192.0.2.9"), 5060))
    owners = Owners(5, 6, {(Transport.TLS, 41005): 5, (Transport.TCP, 41006): 5}, SentFor())

    def rr(ident: Identity, out: Listener, hop: Hop) -> bytes:
        return splice.record_route(
            ident, b"k" * 32, in_l=shared_udp, flow=flow, out_l=out, hop=hop, req=invite,
            target=invite.uri, issued=1_800_000_000,
        )  # fmt: skip

    def owner(value: bytes, transport: Transport) -> int | None:
        bye = parse_datagram(
            b"BYE sip:a@192.0.2.9 SIP/2.0\r\nVia: SIP/2.0/TLS 192.0.2.2;branch=z9hG4bK-2\r\n"
            b"Route: " + value + b"\r\nFrom: <sip:b@example.net>;tag=2\r\n"
            b"To: <sip:a@x>;tag=1\r\nCall-ID: c\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n"
        )
        assert isinstance(bye, Request)
        return owners.route_owner(bye, transport)

    aliased = Identity([own_tls, own_tcp, shared_tls, shared_udp], source_for=no_source,
                       tls_alias=True, shared=shared)  # fmt: skip
    value = rr(aliased, own_tls, Hop(Transport.TLS, HOST4B, 5061))
    top = value.split(b", ")[0]
    assert top.startswith(b"<sips:192.0.2.1:5061;transport=tls;lr;r2=on;r64w=41005;"), value
    assert b"41005" not in value.split(b", ")[1]  # the caller-facing entry: the shared UDP port
    assert owner(value, Transport.TLS) == 5  # the callee's BYE: the top entry's worker
    # a forged or odd worker parameter names no worker
    for forged in (b"r64w=5061", b"r64w=99999999", b"r64w=-1", b"r64w", b"r64w=4l005"):
        assert owner(value.replace(b"r64w=41005", forged), Transport.TLS) is None
    # TCP, and TLS without the alias: the worker's own port, no parameter
    value = rr(aliased, own_tcp, Hop(Transport.TCP, HOST4B, 5060))
    assert (
        value.startswith(b"<sip:192.0.2.1:41006;transport=tcp;lr;r2=on;") and b"r64w" not in value
    )
    assert owner(value, Transport.TCP) == 5
    plain = Identity([own_tls, shared_tls, shared_udp], source_for=no_source, shared=shared)
    value = rr(plain, own_tls, Hop(Transport.TLS, HOST4B, 5061))
    assert value.startswith(b"<sips:192.0.2.1:41005;transport=tls;") and b"r64w" not in value
    assert owner(value, Transport.TLS) == 5


def test_hostport_of_is_remembered_per_listener_and_renewed_on_reload() -> None:
    """A specific or advertised listener's host:port is worked out once; a wildcard's
    still asks the kernel's source for every hop; a reload (new advertise) writes anew;
    a listener equal to ours but not ours is worked out, not looked up."""
    asked: list[IPAddress] = []

    def source_for(dest: IPAddress) -> IPAddress | None:
        asked.append(dest)
        return HOST4B

    adv = ListenSpec(Transport.UDP, HOST4, 5070, HostPort("edge.example.net", 5080))
    plain4, wild = Listener(adv, 5070), listener("udp:0.0.0.0:5060")
    six = listener("udp:[2001:db8::1]:5062")
    ident = Identity([plain4, wild, six], host_addresses=(HOST4,), source_for=source_for)
    toward = IPv4Address("198.51.100.7")
    for _ in range(2):
        assert ident.hostport_of(plain4, toward) == "edge.example.net:5080"
        assert ident.hostport_of(six, IPv6Address("2001:db8::9")) == "[2001:db8::1]:5062"
        assert ident.hostport_of(wild, toward) == "192.0.2.2:5060"
    assert asked == [toward, toward]
    renamed = Listener(ListenSpec(Transport.UDP, HOST4, 5070, HostPort(HOST4B, None)), 5070)
    ident.replace_listeners([renamed, wild, six])
    assert ident.hostport_of(renamed, toward) == "192.0.2.2:5070"
    twin = listener("udp:[2001:db8::1]:5062")  # equal, another object
    assert twin == six and ident.hostport_of(twin, None) == "[2001:db8::1]:5062"


def test_a_reload_copies_every_attribute_a_fresh_identity_has() -> None:
    """``replace_listeners`` copies field by field (no ``__dict__`` when compiled): each
    attribute ``__init__`` sets must equal a freshly built identity's."""
    source = (Path(__file__).parents[3] / "src/rtc64/gateway/identity.py").read_text()
    init = source[source.index("    def __init__") : source.index("    def replace_listeners")]
    names = set(re.findall(r"self\.(\w+)(?::[^=\n]+)? = ", init))
    assert {"listeners", "addresses", "_by_kind", "_fixed", "local_domain"} <= names
    first = [listener("udp:192.0.2.1:5060")]
    again = [listener("udp:[2001:db8::1]:5070"), listener("tcp:0.0.0.0:5071")]
    kw: dict[str, object] = {"host_addresses": (HOST4B,), "hostnames": ("gw.example",)}
    ident = Identity(first, domains=("a.example",), source_for=no_source, **kw)  # type: ignore[arg-type]
    ident.replace_listeners(again, domains=("b.example",))
    fresh = Identity(again, domains=("b.example",), source_for=no_source, **kw)  # type: ignore[arg-type]
    for name in sorted(names):
        assert getattr(ident, name) == getattr(fresh, name), name
