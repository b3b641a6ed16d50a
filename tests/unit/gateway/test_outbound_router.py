"""Router, RFC 5626 §7 / RFC 5627: one live flow per instance, failover, 430, GRUUs."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from ipaddress import IPv6Address

from rtc64.gateway.location import gruu
from rtc64.gateway.location.bindings import Binding
from rtc64.gateway.proxy.router import Authenticate, Forward, Lookup, Reply, Router
from rtc64.net.address import IPAddress
from rtc64.net.endpoint import Transport
from rtc64.sip.uri import SipUri, parse_uri

from .test_router import IDENTITY, SECRET, req

AOR = "sip:bob@example.net"
INSTANCE = b'"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"'
URN = b"urn:uuid:00000000-0000-1000-8000-000A95A0E128"
PHONE = IPv6Address("2001:db8:aaaa::10")


def flow(reg_id: int | None, port: int, at: float | None, *, instance: bytes = INSTANCE) -> Binding:
    return Binding(
        aor=AOR,
        contact=b"sip:bob@[2001:db8:aaaa::10]:%d;transport=tcp;ob" % port,
        expires_at=2e9,
        call_id=b"r%d" % port,
        cseq=1,
        transport="tcp",
        listener="tcp:[2001:db8::1]:5060",
        received_ip=PHONE,
        received_port=port,
        instance=instance,
        reg_id=reg_id,
        registered_at=at,
    )


def router(open_ports: Iterable[int]) -> Router:
    ports = set(open_ports)

    def connected(transport: Transport, ip: IPAddress, port: int) -> bool:
        return transport is Transport.UDP or (ip == PHONE and port in ports)

    return Router(IDENTITY, secret=SECRET, upstream=None, connected=connected)


def lookup(r: Router, uri: bytes = b"sip:bob@example.net") -> Lookup:
    first = r.route(req(uri=uri), trusted=True)
    assert isinstance(first, Authenticate)
    found = r.after_auth(first)
    assert isinstance(found, Lookup)
    return found


def ports(decision: object) -> list[int | None]:
    assert isinstance(decision, Forward), decision
    return [t.hop.port for t in decision.targets]


def test_one_flow_per_instance_the_most_recent_live_one() -> None:
    older, newer = flow(1, 40001, 100.0), flow(2, 40002, 200.0)
    r = router({40001, 40002})
    assert ports(r.bound(lookup(r), [older, newer])) == [40002]
    # Failover: the newest flow's connection closed, the older one takes the request.
    r = router({40001})
    assert ports(r.bound(lookup(r), [older, newer])) == [40001]


def test_430_when_every_flow_is_gone() -> None:
    r = router(set())
    decision = r.bound(lookup(r), [flow(1, 40001, 100.0), flow(2, 40002, 200.0)])
    assert decision == Reply(430, "Flow Failed: no registered flow is open")


def test_plain_bindings_fork_beside_flows_and_outlive_dead_ones() -> None:
    plain = Binding(
        aor=AOR, contact=b"sip:bob@192.0.2.9", expires_at=2e9, call_id=b"p", cseq=1,
        transport="udp", listener="udp:192.0.2.1:5060",
    )  # fmt: skip
    other = flow(1, 40005, 50.0, instance=b'"<urn:uuid:other>"')
    r = router({40005})
    decision = r.bound(lookup(r), [plain, flow(1, 40001, 100.0), other])
    assert isinstance(decision, Forward)
    hosts = sorted(str(t.hop.host) for t in decision.targets)
    assert hosts == sorted(["192.0.2.9", str(PHONE)])
    assert ports(decision).count(40005) == 1


def test_flows_without_registered_at_sort_last() -> None:
    legacy, fresh = flow(1, 40001, None), flow(2, 40002, 10.0)
    r = router({40001, 40002})
    assert ports(r.bound(lookup(r), [legacy, fresh])) == [40002]


def test_public_gruu_reaches_only_its_instance() -> None:
    other = flow(1, 40005, 500.0, instance=b'"<urn:uuid:other>"')
    r = router({40001, 40005})
    found = lookup(r, b"sip:bob@example.net;gr=" + URN)
    assert found.instance == URN and found.keys[0] == AOR
    assert ports(r.bound(found, [flow(1, 40001, 100.0), other])) == [40001]
    # The instance has no binding (any more): 480, not the other devices.
    assert r.bound(found, [other]) == Reply(
        480, "Temporarily Unavailable: that device is not registered"
    )


def test_temporary_gruu_is_resolved_without_storage() -> None:
    temp = gruu.temp_gruu(SECRET, AOR, INSTANCE, b"r40001")
    assert temp is not None
    r = router({40001})
    found = lookup(r, temp)
    assert (found.keys, found.instance) == ((AOR, AOR), URN)
    assert ports(r.bound(found, [flow(1, 40001, 100.0)])) == [40001]  # Call-ID r40001
    # The phone rebooted and registered with a new Call-ID: the old temporary GRUU is
    # dead (RFC 5627), the public GRUU still works.
    rebooted = dataclasses.replace(flow(1, 40001, 300.0), call_id=b"after-reboot")
    assert r.bound(found, [rebooted]) == Reply(
        480, "Temporarily Unavailable: that device is not registered"
    )
    public = lookup(r, b"sip:bob@example.net;gr=" + URN)
    assert ports(r.bound(public, [rebooted])) == [40001]


def test_forged_temporary_gruus_are_refused() -> None:
    temp = gruu.temp_gruu(SECRET, AOR, INSTANCE, b"r40001")
    assert temp is not None
    uri = parse_uri(temp)
    assert isinstance(uri, SipUri) and uri.user is not None
    # Another gateway's secret, a flipped character, a truncated token, garbage.
    assert gruu.open_temp_gruu(b"x" * 32, uri.user) is None
    flipped = uri.user[:-3] + (b"a" if uri.user[-3:-2] != b"a" else b"b") + uri.user[-2:]
    assert gruu.open_temp_gruu(SECRET, flipped) is None
    assert gruu.open_temp_gruu(SECRET, uri.user[:20]) is None
    assert gruu.open_temp_gruu(SECRET, b"tgruu.!!!!") is None
    assert gruu.open_temp_gruu(SECRET, b"tgruu." + b"a" * 5000) is None
    assert gruu.open_temp_gruu(SECRET, b"bob") is None
    # A forged temporary GRUU is looked up as the user it names: nobody (404 later).
    r = router({40001})
    found = lookup(r, b"sip:" + flipped + b"@example.net;gr")
    assert found.instance is None


def test_longest_instance_still_gets_a_temporary_gruu() -> None:
    instance = b'"<urn:' + b"x" * 248 + b'>"'  # 256 bytes: the registrar's limit
    temp = gruu.temp_gruu(SECRET, AOR, instance, b"c")
    assert temp is not None
    uri = parse_uri(temp)
    assert isinstance(uri, SipUri) and uri.user is not None
    assert gruu.open_temp_gruu(SECRET, uri.user) == gruu.GruuTarget(
        AOR, instance[2:-2], gruu.call_tag(b"c")
    )
    assert gruu.temp_gruu(SECRET, AOR, b"x" * 700, b"c") is None


def test_public_gruu_escapes_odd_instance_characters() -> None:
    value = gruu.public_gruu(AOR, b'"<urn:x:a b;c>"')
    assert value == b"sip:bob@example.net;gr=urn:x:a%20b%3Bc"
    assert gruu.public_gruu(AOR, b'"<>"') is None


def test_in_dialog_toward_a_dead_outbound_tcp_flow_is_430() -> None:
    from rtc64.gateway.proxy import hops  # noqa: PLC0415
    from rtc64.gateway.proxy.router import Admit  # noqa: PLC0415

    from .test_router import FLOW, ours  # noqa: PLC0415

    token = hops.FlowToken(Transport.TCP, PHONE, 40001)
    for target, gone in ((b"sip:bob@[2001:db8:aaaa::10]:5060;transport=tcp;ob", 430), (
        b"sip:bob@[2001:db8:aaaa::10]:5060;transport=tcp", None,
    )):  # fmt: skip
        bye = req(b"BYE", target, to_tag=b"t", lines=(b"Route: " + ours(flow=token),))
        live = router({40001})
        admit = live.route(bye, trusted=True)
        assert isinstance(admit, Admit)
        decision = live.in_dialog(admit, FLOW)
        assert isinstance(decision, Forward) and decision.targets[0].hop == token.uri()
        dead = router(set()).in_dialog(admit, FLOW)
        if gone:
            # RFC 5626 §5.3: an outbound UA's flow is gone: no new connection to it.
            assert dead == Reply(430, "Flow Failed: the client's connection is closed")
        else:
            # A server behind its own ephemeral port: reached on its Contact again.
            assert isinstance(dead, Forward) and dead.targets[0].hop.port == 5060
