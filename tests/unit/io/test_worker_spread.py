"""Spreading a trusted source's requests over the SIP workers by Call-ID (io.worker_link)."""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Address, ip_address
from pathlib import Path

import pytest

from rtc64.errors import RemoteProtocolError
from rtc64.io.worker_link import WorkerLink
from rtc64.io.worker_owners import call_id_owner
from rtc64.net.address import IPAddress
from rtc64.net.endpoint import Flow, Transport
from rtc64.sip.framing import parse_datagram
from rtc64.sip.message import Message
from tests.unit.io.test_worker_link import FakeLayer, _until, two_links

TRUNK = (IPv4Address("192.0.2.10"), 5060)
PHONE = (IPv4Address("198.51.100.7"), 40000)
SHARED = (IPv4Address("192.0.2.1"), 5060)
PRIVATE = {(Transport.UDP, 41000): 0, (Transport.UDP, 41001): 1}


def invite(call_id: bytes, extra: bytes = b"") -> bytes:
    return (
        b"INVITE sip:bob@example.net SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-" + call_id.split(b"@")[0] + b"\r\n"
        b"From: <sip:a@x>;tag=1\r\nTo: <sip:bob@example.net>\r\n"
        b"Call-ID: " + call_id + b"\r\nCSeq: 1 INVITE\r\n" + extra + b"Content-Length: 0\r\n\r\n"
    )


def call_id_for(owner: int) -> bytes:
    """A Call-ID that CRC-32 puts on ``owner`` of two workers."""
    n = 0
    while call_id_owner(b"c%d@x" % n, 2) != owner:
        n += 1
    return b"c%d@x" % n


class SpreadLayer(FakeLayer):
    """Also what the owner does with a RAW hand-over: deliver (parsed) or a 400."""

    def __init__(self, link_of: list[WorkerLink], k: int) -> None:
        super().__init__()
        self.link_of, self.k = link_of, k
        self.delivered: list[tuple[Message, Flow, bool]] = []
        self.bad: list[bytes] = []

    def deliver(self, msg: Message, flow: Flow, *, counted: bool = False) -> None:
        self.delivered.append((msg, flow, counted))
        self.link_of[self.k].on_message(msg, flow)  # as the transport layer calls the link

    def bad_message(self, data: bytes, error: RemoteProtocolError, flow: Flow) -> None:
        self.bad.append(data)


def run_pair(tmp_path: Path, body, trusted=(TRUNK[0],)) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        with two_links(tmp_path, PRIVATE) as links:
            layers = [SpreadLayer(links, k) for k in (0, 1)]
            got: list[list[Message]] = [[], []]
            admitted: list[list[bytes]] = [[], []]

            def spread(source: IPAddress) -> bool:
                return source in trusted

            for k, link in enumerate(links):
                link.attach(layers[k], lambda m, f, k=k: got[k].append(m))  # type: ignore[arg-type]
                link.owners.spread = spread
                link.on_raw_admit = lambda d, f, k=k: bool(admitted[k].append(d))
            await body(links, layers, got, admitted)

    asyncio.run(main())


def test_a_trusted_sources_requests_go_to_the_worker_their_call_id_names(tmp_path: Path) -> None:
    async def body(links, layers, got, admitted) -> None:  # type: ignore[no-untyped-def]
        flow = Flow(Transport.UDP, SHARED, TRUNK)
        mine, theirs = invite(call_id_for(0)), invite(call_id_for(1))
        assert links[0].on_raw_request(mine, flow) is False  # its own: parsed here
        assert admitted[0] == [mine], "this worker's own look (overload) still applies"
        assert links[0].on_raw_request(theirs, flow) is True  # handed over unparsed
        await _until(lambda: len(layers[1].delivered) == 1)
        msg, seen, counted = layers[1].delivered[0]
        assert msg.wire == theirs and seen == flow and counted
        assert admitted[1] == [theirs], "the owner looks at it before parsing"
        assert [m.wire for m in got[1]] == [theirs] and not got[0]
        assert links[0].spread_out == 1 and links[1].taken == 1

    run_pair(tmp_path, body)


def test_untrusted_sources_private_ports_and_credentials_are_not_spread_raw(
    tmp_path: Path,
) -> None:
    """A phone stays on the worker the kernel picked (its request rate and 401 counts are
    per worker); a private port is that worker's; credentials are decided on the parsed
    message. A Route naming no worker's port falls through to the Call-ID, raw or
    parsed."""

    async def body(links, layers, got, admitted) -> None:  # type: ignore[no-untyped-def]
        theirs = call_id_for(1)
        assert not links[0].on_raw_request(invite(theirs), Flow(Transport.UDP, SHARED, PHONE))
        private = Flow(Transport.UDP, (SHARED[0], 41000), TRUNK)
        assert not links[0].on_raw_request(invite(theirs), private)
        creds = invite(theirs, b'Authorization: Digest username="a"\r\n')
        assert not links[0].on_raw_request(creds, Flow(Transport.UDP, SHARED, TRUNK))
        assert links[0].spread_out == 0 and len(admitted[0]) == 3
        routed = invite(theirs, b"Route: <sip:192.0.2.1:5060;lr>\r\n")
        assert links[0].on_raw_request(routed, Flow(Transport.UDP, SHARED, TRUNK))
        await _until(lambda: len(got[1]) == 1)
        # parsed, the routed one (no worker's port in its Route) follows its Call-ID too
        links[0].on_message(parse_datagram(routed), Flow(Transport.UDP, SHARED, TRUNK))
        await _until(lambda: len(got[1]) == 2)
        # a phone's parsed request stays; so does a TCP request from the trunk
        links[0].on_message(parse_datagram(invite(theirs)), Flow(Transport.UDP, SHARED, PHONE))
        tcp = Flow(Transport.TCP, SHARED, TRUNK, 7)
        links[0].on_message(parse_datagram(invite(theirs)), tcp)
        assert len(got[0]) == 2 and len(got[1]) == 2

    run_pair(tmp_path, body)


def test_retransmissions_cancel_and_ack_follow_the_invite(tmp_path: Path) -> None:
    async def body(links, layers, got, admitted) -> None:  # type: ignore[no-untyped-def]
        cid = call_id_for(1)
        flow = Flow(Transport.UDP, SHARED, TRUNK)
        first = invite(cid)
        cancel = first.replace(b"INVITE sip", b"CANCEL sip").replace(b"1 INVITE", b"1 CANCEL")
        ack = first.replace(b"INVITE sip", b"ACK sip").replace(b"1 INVITE", b"1 ACK")
        ack = ack.replace(b"To: <sip:bob@example.net>", b"To: <sip:bob@example.net>;tag=9")
        folded = first.replace(b"Call-ID: ", b"Call-ID:\r\n  ")
        for data in (first, first, cancel, ack):
            assert links[0].on_raw_request(data, flow)
        await _until(lambda: len(got[1]) == 4)
        # a folded Call-ID is not read raw: parsed, it still reaches the same worker
        assert not links[0].on_raw_request(folded, flow)
        links[0].on_message(parse_datagram(folded), flow)
        await _until(lambda: len(got[1]) == 5)
        assert not got[0]

    run_pair(tmp_path, body)


def test_a_malformed_spread_request_is_answered_by_its_owner(tmp_path: Path) -> None:
    async def body(links, layers, got, admitted) -> None:  # type: ignore[no-untyped-def]
        bad = invite(call_id_for(1)).replace(b"CSeq: 1 INVITE", b"CSeq: x INVITE")
        assert links[0].on_raw_request(bad, Flow(Transport.UDP, SHARED, TRUNK))
        await _until(lambda: layers[1].bad == [bad])
        assert not got[1] and links[1].dropped == 0

    run_pair(tmp_path, body)


def test_call_id_owner_ignores_surrounding_whitespace() -> None:
    assert call_id_owner(b" abc@x ", 4) == call_id_owner(b"abc@x", 4)
    assert {call_id_owner(b"%d" % n, 3) for n in range(50)} == {0, 1, 2}
    assert ip_address("192.0.2.10") == TRUNK[0]


def test_a_register_goes_to_the_worker_keeping_its_aor_alive(tmp_path: Path) -> None:
    """A trunk's REGISTERs are spread by AOR, not Call-ID: the worker storing it is the
    one ``gateway.keepalive`` makes its keepalive owner (no store re-read elsewhere)."""
    from rtc64.gateway.keepalive.service import owner_of  # noqa: PLC0415

    async def body(links, layers, got, admitted) -> None:  # type: ignore[no-untyped-def]
        flow = Flow(Transport.UDP, SHARED, TRUNK)
        for n in range(12):
            aor = f"sip:u{n}@example.net"
            data = (
                invite(b"r%d" % n)
                .replace(b"INVITE sip:bob@example.net", b"REGISTER sip:example.net")
                .replace(b"1 INVITE", b"1 REGISTER")
                .replace(b"To: <sip:bob@example.net>", b"To: <sip:U%d@Example.net>" % n)
            )
            want = owner_of(aor, 2)
            taken = links[0].on_raw_request(data, flow)
            assert taken == (want == 1)
            parsed = parse_datagram(data)
            assert links[1 - want].owners.spread_owner(parsed, flow) == want  # type: ignore[union-attr, arg-type]
        await _until(
            lambda: len(got[1]) == sum(owner_of(f"sip:u{n}@example.net", 2) for n in range(12))
        )

    run_pair(tmp_path, body)


SHARED_ENTRY = b"<sip:192.0.2.1:5060;lr;r2=on;r64=1.abc>"


@pytest.mark.parametrize(
    ("route", "source", "owner"),
    [
        # a trunk's in-dialog request: the caller-facing entry names the shared port, the
        # next one worker 1's private port
        (b"Route: %s, <sip:192.0.2.1:41001;lr;r2=on>\r\n" % SHARED_ENTRY, TRUNK, 1),
        (b"Route: %s\r\nRoute: <sip:192.0.2.1:41001;lr>\r\n" % SHARED_ENTRY, TRUNK, 1),
        # the shared port named for a worker (TLS alias entries carry ``r64w``)
        (b"Route: <sip:192.0.2.1:5060;lr;r64w=41001>\r\n", TRUNK, 1),
        # an untrusted phone's: the Route rule holds for every source
        (b"Route: <sip:192.0.2.1:41001;lr>\r\n", PHONE, 1),
        (b"Route: <sip:192.0.2.1:41000;lr>\r\n", TRUNK, 0),
        # a third entry is not looked at; another transport's port is not this one's
        (b"Route: %s, <sip:x;lr>, <sip:192.0.2.1:41001;lr>\r\n" % SHARED_ENTRY, PHONE, 0),
        (b"Route: <sip:192.0.2.1:41001;transport=tcp;lr>\r\n", PHONE, 0),
        # a Route set that does not parse names no worker (the parsed rule agrees)
        (b"Route: <sip:192.0.2.1:41001;lr>, junk\r\n", PHONE, 0),
        # a forged r64w is no worker's port
        (b"Route: <sip:192.0.2.1:5060;lr;r64w=999999>\r\n", PHONE, 0),
    ],
    ids=["two-entries", "two-lines", "r64w", "untrusted", "own", "third", "tcp", "junk",
         "bad-r64w"],
)  # fmt: skip
def test_the_route_rule_is_decided_on_raw_bytes_as_on_the_parsed_message(
    tmp_path: Path, route: bytes, source: tuple[IPAddress, int], owner: int
) -> None:
    async def body(links, layers, got, admitted) -> None:  # type: ignore[no-untyped-def]
        flow = Flow(Transport.UDP, SHARED, source)
        data = invite(call_id_for(0), route).replace(
            b"To: <sip:bob@example.net>", b"To: <sip:bob@example.net>;tag=9"
        )
        parsed = parse_datagram(data)
        assert links[0].owners.of(parsed, flow) in (owner, None if owner == 0 else owner)  # type: ignore[arg-type]
        assert links[0].on_raw_request(data, flow) is (owner == 1)
        if owner == 1:
            await _until(lambda: len(got[1]) == 1)
            assert links[1].taken == 1 and got[1][0].wire == data
        else:
            assert admitted[0] == [data]

    run_pair(tmp_path, body)


def test_a_folded_route_is_decided_once_parsed(tmp_path: Path) -> None:
    async def body(links, layers, got, admitted) -> None:  # type: ignore[no-untyped-def]
        flow = Flow(Transport.UDP, SHARED, TRUNK)
        folded = invite(call_id_for(0), b"Route: <sip:192.0.2.1:41001;lr>,\r\n <sip:x;lr>\r\n")
        assert not links[0].on_raw_request(folded, flow)
        assert admitted[0] == [folded]
        links[0].on_message(parse_datagram(folded), flow)
        await _until(lambda: len(got[1]) == 1)

    run_pair(tmp_path, body)
