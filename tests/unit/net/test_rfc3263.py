"""RFC 3263 §4 target selection against table-driven fake DNS answers."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest

from rtc64.net.endpoint import Transport
from rtc64.net.rfc3263 import (
    Answer,
    Naptr,
    Query,
    RdType,
    Record,
    ResolveError,
    Srv,
    Status,
    Target,
    interleave,
    naptr_services,
    order_srv,
    run,
    select,
)
from rtc64.sip.uri import SipUri, parse_uri

ALL = (Transport.UDP, Transport.TCP, Transport.TLS, Transport.WS, Transport.WSS)
V6A, V6B = ip_address("2001:db8::a"), ip_address("2001:db8::b")
V4A, V4B = ip_address("192.0.2.10"), ip_address("192.0.2.11")


class Lowest:
    """A fake ``random.Random`` that always picks the lowest allowed value."""

    def randint(self, a: int, b: int) -> int:
        return a


class Highest:
    def randint(self, a: int, b: int) -> int:
        return b


@dataclass
class FakeDns:
    """Answers from a table: missing names are NODATA; records every batch asked."""

    table: Mapping[Query, Answer | tuple[Record, ...]]
    batches: list[tuple[Query, ...]] = field(default_factory=list)

    def answer(self, q: Query) -> Answer:
        value = self.table.get(q, Answer())
        return value if isinstance(value, Answer) else Answer(value, ttl=60)

    @property
    def asked(self) -> list[Query]:
        return [q for batch in self.batches for q in batch]


def resolve(
    uri: str,
    table: Mapping[Query, Answer | tuple[Record, ...]] | None = None,
    *,
    supported: tuple[Transport, ...] = (Transport.UDP, Transport.TCP, Transport.TLS),
    rng: object = None,
) -> tuple[list[Target], FakeDns]:
    dns = FakeDns(table or {})
    parsed = parse_uri(uri.encode())
    assert isinstance(parsed, SipUri)
    lookups = select(parsed, rng=rng or Lowest(), supported=supported)  # type: ignore[arg-type]
    try:
        batch = next(lookups)
        while True:
            dns.batches.append(batch)
            batch = lookups.send({q: dns.answer(q) for q in batch})
    except StopIteration as done:
        return done.value, dns


def q(name: str, rdtype: str) -> Query:
    return Query(name, RdType(rdtype))


def addrs(name: str, *values: IPv4Address | IPv6Address) -> dict[Query, tuple[Record, ...]]:
    v6 = tuple(a for a in values if a.version == 6)
    v4 = tuple(a for a in values if a.version == 4)
    return {q(name, "AAAA"): v6, q(name, "A"): v4}


def t(transport: Transport, address: object, port: int, host: str) -> Target:
    return Target(transport, ip_address(address), port, host)  # type: ignore[arg-type]


U, T, S = Transport.UDP, Transport.TCP, Transport.TLS

# RFC 3263 §4.1 example: TLS, then TCP, then UDP.
RFC3263_NAPTR = (
    Naptr(50, 50, "s", "SIPS+D2T", "", "_sips._tcp.example.com."),
    Naptr(90, 50, "s", "SIP+D2T", "", "_sip._tcp.example.com"),
    Naptr(100, 50, "s", "SIP+D2U", "", "_sip._udp.example.com."),
)


# ---- numeric IP and explicit port: no NAPTR, no SRV (§4.1, §4.2) -------------------------


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("sip:192.0.2.1", t(U, "192.0.2.1", 5060, "192.0.2.1")),
        ("sips:192.0.2.1", t(S, "192.0.2.1", 5061, "192.0.2.1")),
        ("sip:[2001:db8::1]:5070;transport=tcp", t(T, "2001:db8::1", 5070, "2001:db8::1")),
        ("sips:[2001:db8::1];transport=tcp", t(S, "2001:db8::1", 5061, "2001:db8::1")),
        ("sip:[2001:db8::1];transport=TLS", t(S, "2001:db8::1", 5061, "2001:db8::1")),
        ("sip:alice@example.net;maddr=192.0.2.9", t(U, "192.0.2.9", 5060, "192.0.2.9")),
    ],
)
def test_numeric_target_needs_no_dns(uri: str, expected: Target) -> None:
    targets, dns = resolve(uri)
    assert targets == [expected]
    assert dns.asked == []


def test_explicit_port_skips_naptr_and_srv_and_interleaves() -> None:
    table = addrs("example.net", V6A, V6B, V4A, V4B)
    targets, dns = resolve("sip:example.net:5080", table)
    assert [x.address for x in targets] == [V6A, V4A, V6B, V4B]
    assert {x.port for x in targets} == {5080}
    assert {x.transport for x in targets} == {U}
    assert dns.batches == [(q("example.net", "AAAA"), q("example.net", "A"))]


def test_explicit_port_sips_uses_tls() -> None:
    targets, _ = resolve("sips:example.net:5071", addrs("example.net", V4A))
    assert targets == [t(S, V4A, 5071, "example.net")]


def test_maddr_domain_replaces_the_host() -> None:
    table = {
        q("proxy.example.org", "NAPTR"): (),
        **addrs("proxy.example.org", V6A),
    }
    targets, dns = resolve("sip:bob@example.net;maddr=proxy.example.org", table)
    assert targets == [t(U, V6A, 5060, "proxy.example.org")]
    assert all("example.net" not in x.name for x in dns.asked)


# ---- explicit transport: SRV for that transport only (§4.2) ------------------------------


def test_transport_param_queries_only_its_srv() -> None:
    table = {
        q("_sip._tcp.example.net", "SRV"): (Srv(0, 0, 5062, "pbx.example.net."),),
        **addrs("pbx.example.net", V4A, V6A),
    }
    targets, dns = resolve("sip:example.net;transport=tcp", table)
    assert targets == [t(T, V6A, 5062, "pbx.example.net"), t(T, V4A, 5062, "pbx.example.net")]
    assert dns.batches[0] == (q("_sip._tcp.example.net", "SRV"),)
    assert q("example.net", "NAPTR") not in dns.asked


def test_sips_with_transport_tcp_is_tls_over_sips_srv() -> None:
    table = {
        q("_sips._tcp.example.net", "SRV"): (Srv(0, 0, 5061, "tls.example.net"),),
        **addrs("tls.example.net", V4A),
    }
    targets, _ = resolve("sips:example.net;transport=tcp", table)
    assert targets == [t(S, V4A, 5061, "tls.example.net")]


def test_transport_param_without_srv_falls_back_to_a_aaaa_default_port() -> None:
    table = {
        q("_sip._tcp.example.net", "SRV"): Answer((), Status.NXDOMAIN),
        **addrs("example.net", V4A),
    }
    targets, _ = resolve("sip:example.net;transport=tcp", table)
    assert targets == [t(T, V4A, 5060, "example.net")]


def test_websocket_has_no_srv() -> None:
    targets, dns = resolve(
        "sips:example.net;transport=ws", addrs("example.net", V6A), supported=ALL
    )
    assert targets == [t(Transport.WSS, V6A, 443, "example.net")]
    assert [x.rdtype for x in dns.asked] == [RdType.AAAA, RdType.A]


@pytest.mark.parametrize(
    ("uri", "status", "fragment"),
    [
        ("sip:example.net;transport=sctp", 503, "transport=sctp is not supported"),
        ("sip:example.net;transport=ws", 503, "transport ws is not enabled"),
        ("sips:example.net;transport=udp", 400, "sips URI cannot use transport=udp"),
        ("sip:x@example.net;maddr=%5B::1", 400, "invalid maddr"),
    ],
)
def test_bad_transport_or_maddr(uri: str, status: int, fragment: str) -> None:
    with pytest.raises(ResolveError) as info:
        resolve(uri)
    assert info.value.status == status
    assert fragment in info.value.reason


# ---- NAPTR (§4.1) ------------------------------------------------------------------------


def _rfc3263_table() -> dict[Query, Answer | tuple[Record, ...]]:
    return {
        q("example.com", "NAPTR"): RFC3263_NAPTR,
        q("_sips._tcp.example.com", "SRV"): (Srv(0, 0, 5061, "tls.example.com"),),
        q("_sip._tcp.example.com", "SRV"): (Srv(0, 0, 5060, "tcp.example.com"),),
        q("_sip._udp.example.com", "SRV"): (
            Srv(0, 1, 5060, "server1.example.com"),  # RFC 3263 §4.2 example
            Srv(0, 2, 5060, "server2.example.com"),
        ),
        **addrs("tls.example.com", V6A),
        **addrs("tcp.example.com", V4A),
        **addrs("server1.example.com", V4B),
        **addrs("server2.example.com", V6B),
    }


def test_rfc3263_section_4_1_example_order() -> None:
    targets, dns = resolve("sip:example.com", _rfc3263_table())
    assert targets == [
        t(S, V6A, 5061, "tls.example.com"),
        t(T, V4A, 5060, "tcp.example.com"),
        t(U, V4B, 5060, "server1.example.com"),
        t(U, V6B, 5060, "server2.example.com"),
    ]
    # NAPTR alone, then the three SRV names together, then every address at once.
    assert dns.batches[0] == (q("example.com", "NAPTR"),)
    assert {x.rdtype for x in dns.batches[1]} == {RdType.SRV} and len(dns.batches[1]) == 3
    assert len(dns.batches[2]) == 8 and len(dns.batches) == 3


def test_rfc3263_example_weighted_pick_can_favour_server2() -> None:
    targets, _ = resolve("sip:example.com", _rfc3263_table(), rng=Highest())
    assert [x.host for x in targets if x.transport is U] == [
        "server2.example.com",
        "server1.example.com",
    ]


def test_sips_uri_keeps_only_sips_naptr() -> None:
    targets, dns = resolve("sips:example.com", _rfc3263_table())
    assert targets == [t(S, V6A, 5061, "tls.example.com")]
    assert dns.batches[1] == (q("_sips._tcp.example.com", "SRV"),)


def test_naptr_filtered_by_supported_transports() -> None:
    targets, _ = resolve("sip:example.com", _rfc3263_table(), supported=(U,))
    assert {x.transport for x in targets} == {U}


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        (RFC3263_NAPTR, [(S, "_sips._tcp.example.com"), (T, "_sip._tcp.example.com"),
                         (U, "_sip._udp.example.com")]),
        # same order: preference decides
        ((Naptr(10, 20, "s", "SIP+D2U", "", "_sip._udp.x"),
          Naptr(10, 10, "S", "sip+d2t", "", "_sip._tcp.x")),
         [(T, "_sip._tcp.x"), (U, "_sip._udp.x")]),
        # order beats preference
        ((Naptr(20, 1, "s", "SIP+D2U", "", "_sip._udp.x"),
          Naptr(10, 99, "s", "SIP+D2T", "", "_sip._tcp.x")),
         [(T, "_sip._tcp.x"), (U, "_sip._udp.x")]),
        # not "s", a regexp, SCTP, root replacement, E2U (ENUM): all unusable
        ((Naptr(10, 10, "a", "SIP+D2U", "", "_sip._udp.x"),
          Naptr(10, 10, "s", "SIP+D2U", "!^.*$!sip:x!", ""),
          Naptr(10, 10, "s", "SIP+D2S", "", "_sip._sctp.x"),
          Naptr(10, 10, "s", "SIP+D2T", "", "."),
          Naptr(10, 10, "u", "E2U+sip", "!^.*$!sip:a@x!", ".")),
         []),
        # WebSocket services (RFC 7118) only when supported: not in the default set
        ((Naptr(1, 1, "s", "SIPS+D2W", "", "_sips._ws.x"),), []),
        # duplicates collapse
        ((Naptr(1, 1, "s", "SIP+D2U", "", "_sip._udp.x."),
          Naptr(2, 1, "s", "SIP+D2U", "", "_SIP._UDP.X")),
         [(U, "_sip._udp.x")]),
    ],
)  # fmt: skip
def test_naptr_services_table(records: tuple[Naptr, ...], expected: list[object]) -> None:
    assert naptr_services(records, secure=False, supported=(U, T, S)) == expected


def test_naptr_websocket_when_supported() -> None:
    records = (Naptr(1, 1, "s", "SIPS+D2W", "", "_sips._ws.x"),)
    assert naptr_services(records, secure=True, supported=ALL) == [(Transport.WSS, "_sips._ws.x")]


def test_naptr_without_srv_uses_a_aaaa_with_first_naptr_transport() -> None:
    table = {q("example.com", "NAPTR"): RFC3263_NAPTR, **addrs("example.com", V6A, V4A)}
    targets, _ = resolve("sip:example.com", table)
    assert targets == [t(S, V6A, 5061, "example.com"), t(S, V4A, 5061, "example.com")]


def test_naptr_nxdomain_is_404_does_not_exist() -> None:
    table = {q("nowhere.example", "NAPTR"): Answer((), Status.NXDOMAIN)}
    with pytest.raises(ResolveError) as info:
        resolve("sip:nowhere.example", table)
    assert info.value.status == 404
    assert info.value.reason == "Not Found: nowhere.example does not exist"


@pytest.mark.parametrize(
    ("status", "text"),
    [(Status.TIMEOUT, "timeout"), (Status.SERVFAIL, "server failure (SERVFAIL)")],
)
def test_naptr_failure_is_503_naming_the_query(status: Status, text: str) -> None:
    with pytest.raises(ResolveError) as info:
        resolve("sip:example.net", {q("example.net", "NAPTR"): Answer((), status)})
    assert info.value.status == 503
    assert info.value.reason == f"Service Unavailable: DNS {text} for example.net NAPTR"


# ---- SRV without NAPTR (§4.1 last paragraphs, §4.2) --------------------------------------


def test_no_naptr_queries_srv_for_each_supported_transport_in_one_batch() -> None:
    table = {
        q("_sip._tcp.example.net", "SRV"): (Srv(0, 0, 5060, "b.example.net"),),
        q("_sips._tcp.example.net", "SRV"): (Srv(0, 0, 5061, "c.example.net"),),
        **addrs("b.example.net", V4A),
        **addrs("c.example.net", V6A),
    }
    targets, dns = resolve("sip:example.net", table)
    assert dns.batches[1] == (
        q("_sip._udp.example.net", "SRV"),
        q("_sip._tcp.example.net", "SRV"),
        q("_sips._tcp.example.net", "SRV"),
    )
    assert targets == [t(T, V4A, 5060, "b.example.net"), t(S, V6A, 5061, "c.example.net")]


def test_supported_order_is_the_client_preference_among_srv() -> None:
    table = {
        q("_sip._udp.example.net", "SRV"): (Srv(0, 0, 5060, "a.example.net"),),
        q("_sip._tcp.example.net", "SRV"): (Srv(0, 0, 5060, "a.example.net"),),
        **addrs("a.example.net", V4A),
    }
    targets, _ = resolve("sip:example.net", table, supported=(T, U))
    assert [x.transport for x in targets] == [T, U]


def test_sips_without_naptr_asks_only_sips_srv() -> None:
    targets, dns = resolve("sips:example.net", addrs("example.net", V4A))
    assert dns.batches[1] == (q("_sips._tcp.example.net", "SRV"),)
    assert targets == [t(S, V4A, 5061, "example.net")]


def test_nothing_but_addresses_gives_udp_default_port() -> None:
    targets, _ = resolve("sip:example.net", addrs("example.net", V4A, V6A))
    assert targets == [t(U, V6A, 5060, "example.net"), t(U, V4A, 5060, "example.net")]


def test_srv_dot_target_means_no_service() -> None:
    table = {q("_sip._udp.example.net", "SRV"): (Srv(0, 0, 0, "."),)}
    with pytest.raises(ResolveError) as info:
        resolve("sip:example.net", table, supported=(U,))
    assert info.value.status == 404
    assert "offers no SIP service" in info.value.reason


def test_one_srv_failure_is_tolerated_when_another_answers() -> None:
    table = {
        q("_sip._udp.example.net", "SRV"): Answer((), Status.TIMEOUT),
        q("_sip._tcp.example.net", "SRV"): (Srv(0, 0, 5060, "b.example.net"),),
        **addrs("b.example.net", V4A),
    }
    targets, _ = resolve("sip:example.net", table)
    assert targets == [t(T, V4A, 5060, "b.example.net")]


def test_all_srv_failed_is_503_naming_the_first() -> None:
    table = {q("_sip._udp.example.net", "SRV"): Answer((), Status.TIMEOUT)}
    with pytest.raises(ResolveError) as info:
        resolve("sip:example.net", table, supported=(U,))
    assert info.value.status == 503
    assert info.value.reason == "Service Unavailable: DNS timeout for _sip._udp.example.net SRV"


def test_srv_targets_resolve_in_srv_order_with_each_host_interleaved() -> None:
    table = {
        q("_sip._udp.example.net", "SRV"): (
            Srv(20, 0, 5060, "backup.example.net"),
            Srv(10, 0, 5070, "main.example.net"),
        ),
        **addrs("main.example.net", V4A, V4B, V6A),
        **addrs("backup.example.net", V6B),
    }
    targets, _ = resolve("sip:example.net", table, supported=(U,))
    assert targets == [
        t(U, V6A, 5070, "main.example.net"),
        t(U, V4A, 5070, "main.example.net"),
        t(U, V4B, 5070, "main.example.net"),
        t(U, V6B, 5060, "backup.example.net"),
    ]


def test_duplicate_targets_are_dropped() -> None:
    table = {
        q("_sip._udp.example.net", "SRV"): (
            Srv(10, 0, 5060, "a.example.net"),
            Srv(20, 0, 5060, "a.example.net"),
        ),
        **addrs("a.example.net", V4A),
    }
    targets, _ = resolve("sip:example.net", table, supported=(U,))
    assert targets == [t(U, V4A, 5060, "a.example.net")]


# ---- addresses: both families always (RFC 7984), partial failures ------------------------


def test_both_families_asked_even_when_aaaa_answers() -> None:
    _, dns = resolve("sip:example.net:5060", addrs("example.net", V6A))
    assert set(dns.batches[0]) == {q("example.net", "AAAA"), q("example.net", "A")}


@pytest.mark.parametrize("failed", ["A", "AAAA"])
def test_one_family_failing_keeps_the_other(failed: str) -> None:
    table: dict[Query, Answer | tuple[Record, ...]] = dict(addrs("example.net", V6A, V4A))
    table[q("example.net", failed)] = Answer((), Status.TIMEOUT)
    targets, _ = resolve("sip:example.net:5060", table)
    assert [x.address.version for x in targets] == [4 if failed == "AAAA" else 6]


@pytest.mark.parametrize(
    ("a", "aaaa", "status", "reason"),
    [
        (Answer((), Status.NXDOMAIN), Answer((), Status.NXDOMAIN), 404,
         "Not Found: example.net does not exist"),
        (Answer(), Answer(), 404, "Not Found: example.net has no A or AAAA record"),
        (Answer((), Status.SERVFAIL), Answer(), 503,
         "Service Unavailable: DNS server failure (SERVFAIL) for example.net A"),
        (Answer((), Status.TIMEOUT), Answer((), Status.TIMEOUT), 503,
         "Service Unavailable: DNS timeout for example.net AAAA"),
    ],
)  # fmt: skip
def test_no_address(a: Answer, aaaa: Answer, status: int, reason: str) -> None:
    table = {q("example.net", "A"): a, q("example.net", "AAAA"): aaaa}
    with pytest.raises(ResolveError) as info:
        resolve("sip:example.net:5060", table)
    assert (info.value.status, info.value.reason) == (status, reason)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ([], []),
        ([V4A, V4B], [V4A, V4B]),
        ([V6A, V6B], [V6A, V6B]),
        ([V4A, V4B, V6A], [V6A, V4A, V4B]),
        ([V6A, V6B, V4A, V4B], [V6A, V4A, V6B, V4B]),
        ([V4A, V6A, V6B], [V6A, V4A, V6B]),
    ],
)
def test_interleave(given: list[IPv4Address | IPv6Address], expected: list[object]) -> None:
    assert interleave(given) == expected


# ---- RFC 2782 weighted selection ---------------------------------------------------------


def test_srv_priority_first_then_zero_weights_first_for_lowest_pick() -> None:
    records = [Srv(1, 0, 1, "z"), Srv(0, 5, 1, "a"), Srv(0, 0, 1, "b"), Srv(1, 3, 1, "y")]
    assert [r.target for r in order_srv(records, Lowest())] == ["b", "a", "z", "y"]
    assert [r.target for r in order_srv(records, Highest())] == ["a", "b", "y", "z"]


def test_srv_weights_spread_load_in_proportion() -> None:
    records = [Srv(0, 1, 1, "server1"), Srv(0, 2, 1, "server2")]
    rng = random.Random(3263)
    first = Counter(order_srv(records, rng)[0].target for _ in range(3000))
    assert 0.28 < first["server1"] / 3000 < 0.39  # expected 1/3


def test_srv_order_is_deterministic_for_a_seed() -> None:
    records = [Srv(0, w, 1, f"s{w}") for w in (1, 2, 3, 4)]
    runs = [order_srv(records, random.Random(7)) for _ in range(2)]
    assert runs[0] == runs[1]
    assert sorted(r.target for r in runs[0]) == ["s1", "s2", "s3", "s4"]


def test_run_drives_select_synchronously() -> None:
    parsed = parse_uri(b"sip:example.net:5060")
    assert isinstance(parsed, SipUri)
    table = addrs("example.net", V4A)
    targets = run(select(parsed, rng=Lowest()), lambda q: Answer(table.get(q, ())))
    assert targets == [t(U, V4A, 5060, "example.net")]
