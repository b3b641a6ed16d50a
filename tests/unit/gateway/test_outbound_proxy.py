"""The proxy in-process (test_proxy's harness): RFC 3261 §18.1.1 large requests over TCP
with UDP fallback, and RFC 5626 flows from REGISTER to INVITE (failover, 430)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path

from rtc64.gateway.identity import Identity, Listener
from rtc64.net.endpoint import Flow, ListenSpec, Transport
from rtc64.sip.framing import parse_datagram
from rtc64.sip.transaction import ClientTransaction

from .test_proxy import CALLER, LISTEN4, LISTEN6, REALM, Harness, Sent, invite, run, statuses
from .test_transport_failed import HandleSender

V4 = IPv4Address("192.0.2.1")
V6 = IPv6Address("2001:db8::1")
TCP4 = Listener(ListenSpec(Transport.TCP, V4, 5060), 5060)
TCP6 = Listener(ListenSpec(Transport.TCP, V6, 5060), 5060)
SDP = b"v=0\r\no=- 1 1 IN IP6 2001:db8:aaaa::10\r\ns=-\r\nc=IN IP6 2001:db8:aaaa::10\r\nt=0 0\r\n"


def big_invite(uri: bytes, size: int = 3000, n: int = 1) -> bytes:
    filler = b"".join(b"a=x-pad:%04d%s\r\n" % (i, b"p" * 60) for i in range(size // 70))
    body = SDP + b"m=audio 4000 RTP/AVP 0\r\n" + filler
    data = invite(
        uri,
        headers=(b"Content-Type: application/sdp",),
        branch=b"z9hG4bKbig%d" % n,
        call_id=b"big%d@test" % n,
    )
    data = data.replace(b"Content-Length: 0\r\n\r\n", b"Content-Length: %d\r\n\r\n" % len(body))
    return data + body


def setup(h: Harness, *, tcp: bool = True) -> HandleSender:
    sender = HandleSender()
    listeners = [LISTEN4, LISTEN6, *((TCP4, TCP6) if tcp else ())]
    h.rebuild(
        identity=Identity(listeners, domains=(REALM,), source_for=lambda _ip: None), sender=sender
    )
    return sender


def invites(sent: list[Sent]) -> list[Sent]:
    return [s for s in sent if s.data.startswith(b"INVITE ")]


def test_large_request_goes_over_tcp_with_a_tcp_via(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        setup(h)
        data = big_invite(b"sip:bob@192.0.2.50")
        assert len(data) > 3000
        (out,) = invites(await h.feed(data, CALLER))
        assert out.transport is Transport.TCP and (out.ip, out.port) == (
            ip_address("192.0.2.50"),
            5060,
        )
        assert out.request.vias[0].transport == b"TCP"
        assert h.proxy.stats.tcp_upgrades == 1

    run(tmp_path, body)


def test_small_or_pinned_or_no_tcp_listener_stays_on_udp(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        setup(h)
        (small,) = invites(await h.feed(invite(b"sip:bob@192.0.2.50"), CALLER))
        assert small.transport is Transport.UDP
        pinned = big_invite(b"sip:bob@192.0.2.51;transport=udp", n=2)
        (out,) = invites(await h.feed(pinned, CALLER))
        assert out.transport is Transport.UDP and out.request.vias[0].transport == b"UDP"
        setup(h, tcp=False)
        no_tcp = big_invite(b"sip:bob@192.0.2.52", n=3)
        (out,) = invites(await h.feed(no_tcp, CALLER))
        assert out.transport is Transport.UDP
        assert h.proxy.stats.tcp_upgrades == 0

    run(tmp_path, body)


def test_failed_tcp_connection_falls_back_to_udp(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        sender = setup(h)
        (tcp,) = invites(await h.feed(big_invite(b"sip:bob@192.0.2.50"), CALLER))
        handle = sender.handles[sender.sent.index(tcp)]
        assert isinstance(handle, ClientTransaction)
        before = len(sender.sent)
        h.proxy.transport_failed(handle, "tcp connection to 192.0.2.50:5060 failed: refused")
        await h.drain()
        after = sender.sent[before:]
        (udp,) = invites(after)
        assert udp.transport is Transport.UDP and udp.request.vias[0].transport == b"UDP"
        assert statuses(after, CALLER) == []  # no 503 to the caller
        assert h.proxy.stats.tcp_upgrade_fallbacks == 1
        # The UDP copy's failure is the branch's: 503 upstream, no third attempt.
        handle = sender.handles[sender.sent.index(udp)]
        before = len(sender.sent)
        h.proxy.transport_failed(handle, "the UDP socket refused it")
        await h.drain()
        assert invites(sender.sent[before:]) == []
        assert statuses(sender.sent[before:], CALLER) == [503]

    run(tmp_path, body)


PHONE = "2001:db8:aaaa::77"
INSTANCE = b'"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"'


def tcp_flow(port: int, conn: int) -> Flow:
    return Flow(Transport.TCP, (V6, 5060), (ip_address(PHONE), port), connection_id=conn)


def ob_register(port: int, reg_id: int) -> bytes:
    lines = [
        b"REGISTER sip:example.net SIP/2.0",
        b"Via: SIP/2.0/TCP [%s]:%d;branch=z9hG4bKreg%d;rport" % (PHONE.encode(), port, reg_id),
        b"Max-Forwards: 70",
        b"From: <sip:carol@example.net>;tag=r%d" % reg_id,
        b"To: <sip:carol@example.net>",
        b"Call-ID: reg%d@phone" % reg_id,
        b"CSeq: 1 REGISTER",
        b"Supported: outbound, path",
        b"Contact: <sip:carol@[%s]:%d;transport=tcp;ob>;+sip.instance=%s;reg-id=%d"
        % (PHONE.encode(), port, INSTANCE, reg_id),
        b"Expires: 600",
        b"Content-Length: 0",
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def test_flows_from_register_to_invite_failover_and_430(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        sender = setup(h)
        for reg_id, port in ((1, 40001), (2, 40002)):
            h.wall.now += 1  # reg-id 2 registers last
            before = len(sender.sent)
            h.proxy.on_message(parse_datagram(ob_register(port, reg_id)), tcp_flow(port, reg_id))
            await h.drain()
            (ok,) = sender.sent[before:]
            assert ok.status == 200, ok.data
            assert ok.response.get(b"require") == b"outbound"
            assert ok.response.get(b"flow-timer") == b"120"

        async def call(n: int) -> list[Sent]:
            data = invite(
                b"sip:carol@example.net", branch=b"z9hG4bKc%d" % n, call_id=b"c%d@test" % n
            )
            return await h.feed(data, CALLER)

        (first,) = invites(await call(1))
        assert (first.transport, first.port) == (Transport.TCP, 40002)
        sender.closed.add((Transport.TCP, ip_address(PHONE), 40002))
        (second,) = invites(await call(2))
        assert second.port == 40001
        sender.closed.add((Transport.TCP, ip_address(PHONE), 40001))
        out = await call(3)
        assert invites(out) == [] and statuses(out, CALLER) == [100, 430]

    run(tmp_path, body)


def test_path_gets_ob_only_for_a_direct_outbound_register() -> None:
    from rtc64.gateway.proxy import hops, splice  # noqa: PLC0415
    from rtc64.sip.message import Request  # noqa: PLC0415

    def parsed(data: bytes) -> Request:
        msg = parse_datagram(data)
        assert isinstance(msg, Request)
        return msg

    direct = parsed(ob_register(40001, 1))
    assert splice.outbound_register(direct)
    relayed = parsed(
        ob_register(40001, 1).replace(
            b"Max-Forwards", b"Via: SIP/2.0/UDP [2001:db8::9];branch=z9hG4bKx\r\nMax-Forwards"
        )
    )
    assert not splice.outbound_register(relayed)
    plain = parsed(ob_register(40001, 1).replace(b";reg-id=1", b""))
    assert not splice.outbound_register(plain)
    identity = Identity([LISTEN4, LISTEN6], domains=(REALM,), source_for=lambda _ip: None)
    make = splice.path_for(identity, tcp_flow(40001, 1), ob=True)
    value = make(LISTEN4, ip_address("198.51.100.99"))
    assert value.endswith(b";ob>") and b"received=sip:[2001:db8:aaaa::77]:40001" in value
    assert b";ob" not in splice.path_for(identity, tcp_flow(40001, 1))(LISTEN4, V4)
    # UDP flow tokens: a party whose Contact is not its source address (NAT, firewall).
    nat = hops.flow_token(Transport.UDP, ip_address(PHONE), 40001, None)
    assert nat is not None and nat.encode() == b"udp:[2001:db8:aaaa::77]:40001"
    assert hops.FlowToken.decode(nat.encode()) == nat
    # Not toward a proxy in between (it may not record-route): UDP only for the UA itself.
    assert hops.flow_token(Transport.UDP, ip_address(PHONE), 40001, None, direct=False) is None
    tcp = hops.flow_token(Transport.TCP, ip_address(PHONE), 40001, None, direct=False)
    assert tcp is not None  # connections: as before
    from rtc64.sip.uri import SipUri  # noqa: PLC0415

    itself = SipUri(host=ip_address(PHONE), port=40001, user=b"carol")
    assert hops.flow_token(Transport.UDP, ip_address(PHONE), 40001, itself) is None


NATTED = ("2001:db8:aaaa::55", 61000)  # its Contact names [fd00::5]:5060 (behind a NAT66)


def test_udp_phone_behind_nat_gets_in_dialog_requests_on_its_pinhole(tmp_path: Path) -> None:
    from .test_proxy import answer, one, register, request  # noqa: PLC0415

    async def body(h: Harness) -> None:
        reg = register(b"dan", NATTED, call_id=b"r@nat", branch=b"z9hG4bKnat")
        reg = reg.replace(b"sip:dan@[2001:db8:aaaa::55]:61000", b"sip:dan@[fd00::5]:5060")
        assert one(await h.feed(reg, NATTED), NATTED).status == 200
        invite_data = invite(b"sip:dan@example.net", branch=b"z9hG4bKdan", call_id=b"dan@t")
        sent_down = one(await h.feed(invite_data, CALLER), NATTED)
        down = sent_down.request
        # The entry facing dan names his pinhole; the one facing the caller (its Contact
        # is its source address) names nothing.
        toward_dan, toward_caller = down.values(b"record-route")
        assert b";r64f=udp:[2001:db8:aaaa::55]:61000" in toward_dan, toward_dan
        assert b"r64f" not in toward_caller, toward_caller
        await h.feed(answer(sent_down.data, 200), NATTED)
        bye = request(
            b"BYE", b"sip:dan@[fd00::5]:5060", CALLER, branch=b"z9hG4bKbye2", cseq=2,
            call_id=b"dan@t", to_tag=b"callee", to=b"sip:dan@example.net",
            headers=(b"Route: " + toward_caller + b", " + toward_dan,),
        )  # fmt: skip
        sent = one(await h.feed(bye, CALLER), NATTED).request  # the pinhole, not [fd00::5]
        assert sent.method == b"BYE"

    run(tmp_path, body)


def test_udp_caller_behind_another_proxy_gets_no_flow_token(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        data = invite(b"sip:bob@192.0.2.50", branch=b"z9hG4bKvia2", call_id=b"via2@t")
        second_via = b"Via: SIP/2.0/UDP [2001:db8:aaaa::99];branch=z9hG4bKp\r\n"
        data = data.replace(b"Max-Forwards", second_via + b"Max-Forwards")
        data = data.replace(b"<sip:alice@[2001:db8:aaaa::10]:5062>", b"<sip:a@[2001:db8:5::1]>")
        (out,) = invites(await h.feed(data, CALLER))
        rr = out.request.values(b"record-route")
        assert all(b"r64f" not in r for r in rr), rr

    run(tmp_path, body)
