"""The worker channel: connection ownership announcements, hand-offs, bad datagrams."""

from __future__ import annotations

import asyncio
import logging
import socket
from ipaddress import IPv6Address
from pathlib import Path

from rtc64.io.worker_link import (
    _HEAD,
    CLOSE,
    CONNECTION_ID_SPAN,
    OPEN,
    RESET,
    WorkerLink,
    _addr,
    bind_channels,
    channel_name,
    owner_of,
)
from rtc64.net.endpoint import Flow, Transport
from rtc64.sip.framing import parse_datagram
from rtc64.sip.message import Message

PHONE = (IPv6Address("2001:db8::7"), 40000)
LOCAL = (IPv6Address("2001:db8::1"), 5060)
RESPONSE = (
    b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP [2001:db8::1]:41001;branch=z9hG4bK-1\r\n"
    b"From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>;tag=2\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n"
    b"Content-Length: 0\r\n\r\n"
)


class FakeLayer:
    """The SipTransportLayer side: what was sent and which connections exist."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Transport, object, int, Flow | None]] = []
        self.conns: set[tuple[Transport, object, int]] = set()

    def send(self, data: bytes, transport: Transport, address: object, port: int, *,
             flow: Flow | None = None, server_name: str | None = None,
             handle: object = None, own_port: bool = False) -> bool:  # fmt: skip
        self.sent.append((data, transport, address, port, flow))
        return True

    def has_connection(self, transport: Transport, address: object, port: int) -> bool:
        return (transport, address, port) in self.conns


def test_connection_ids_name_their_worker() -> None:
    assert owner_of(1) == 0
    assert owner_of(CONNECTION_ID_SPAN) == 0
    assert owner_of(CONNECTION_ID_SPAN + 1) == 1
    assert owner_of(3 * CONNECTION_ID_SPAN + 17) == 3


def test_two_workers_hand_messages_to_each_other(tmp_path: Path) -> None:
    async def main() -> None:
        tag = str(tmp_path)
        chans = bind_channels(tag, 2)
        names = [channel_name(tag, k) for k in range(2)]
        private = {(Transport.TCP, 41000): 0, (Transport.TCP, 41001): 1}
        layers = [FakeLayer(), FakeLayer()]
        got: list[list[tuple[Message, Flow]]] = [[], []]
        links = [WorkerLink(k, chans[k], names, private, logging.getLogger("t")) for k in (0, 1)]
        for k, link in enumerate(links):
            link.attach(layers[k], lambda m, f, k=k: got[k].append((m, f)))  # type: ignore[arg-type]
        try:
            # worker 0 accepted the phone's connection and says so
            layers[0].conns.add((Transport.TCP, PHONE[0], PHONE[1]))
            links[0].connection_changed(Transport.TCP, PHONE, 5, True)
            await _until(lambda: links[1].has_connection(Transport.TCP, *PHONE))
            # worker 1 sends to the phone: worker 0 writes it
            assert links[1].send(b"INVITE...", Transport.TCP, *PHONE)
            await _until(lambda: bool(layers[0].sent))
            assert layers[0].sent[0][:4] == (b"INVITE...", Transport.TCP, PHONE[0], PHONE[1])
            assert not layers[1].sent
            # the phone answers on worker 0's connection, Via naming worker 1's port
            flow = Flow(Transport.TCP, LOCAL, PHONE, 5)
            links[0].on_message(parse_datagram(RESPONSE), flow)
            await _until(lambda: bool(got[1]))
            assert not got[0]
            msg, seen = got[1][0]
            assert seen == flow and msg.wire == RESPONSE
            # a reply over a flow of worker 0's connection, from worker 1
            links[1].send(b"ACK...", Transport.TCP, *PHONE, flow=flow)
            await _until(lambda: len(layers[0].sent) == 2)
            assert layers[0].sent[1][4] is not None and layers[0].sent[1][4].connection_id == 5
            # closed: worker 1 forgets it; a RESET forgets everything of that worker
            links[0].connection_changed(Transport.TCP, PHONE, 5, False)
            await _until(lambda: not links[1].has_connection(Transport.TCP, *PHONE))
            links[0].connection_changed(Transport.TCP, PHONE, 6, True)
            await _until(lambda: links[1].has_connection(Transport.TCP, *PHONE))
            out = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            out.sendto(_HEAD.pack(RESET, 0, 0, 0), names[1])
            await _until(lambda: not links[1].has_connection(Transport.TCP, *PHONE))
            # garbage on the channel is dropped and counted, the link keeps serving
            for junk in (b"", b"X", _HEAD.pack(b"Z", 0, 1, 0), _HEAD.pack(OPEN, 0, 1, 0) + b"\1",
                         _HEAD.pack(b"D", 0, 1, 5) + _addr(LOCAL) + _addr(PHONE) + b"garbage",
                         _HEAD.pack(CLOSE, 0, 99, 0)):  # fmt: skip
                out.sendto(junk, names[1])
            await _until(lambda: links[1].dropped == 6)
            assert not got[1][1:]
            out.close()
        finally:
            for link in links:
                link.close()
            for c in chans:
                c.close()

    asyncio.run(main())


async def _until(check: object, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():  # type: ignore[operator]
        assert loop.time() < deadline, "condition not met"
        await asyncio.sleep(0.01)


def test_auth_failures_are_counted_by_every_worker(tmp_path: Path) -> None:
    """Two failures seen by worker 0 and two by worker 1 (max 4): both block the source
    and the (user, source) pair, as if each had seen all four."""
    from rtc64.gateway.ratelimit import AuthFailureTracker  # noqa: PLC0415

    async def main() -> list[AuthFailureTracker]:
        chans = bind_channels(str(tmp_path), 2)
        names = [channel_name(str(tmp_path), k) for k in range(2)]
        links = [WorkerLink(k, chans[k], names, {}, logging.getLogger("t")) for k in (0, 1)]
        trackers = [AuthFailureTracker(4, window=300, block_seconds=300) for _ in (0, 1)]
        for link, tracker in zip(links, trackers, strict=True):
            link.attach(FakeLayer(), lambda m, f: None)  # type: ignore[arg-type]
            link.share_failures(tracker)
        try:
            source = IPv6Address("2001:db8:1:2::99")
            for n in range(4):
                tracker = trackers[n % 2]
                tracker.record_failure(source, 1000.0 + n)
                tracker.record_failure(("bob", source), 1000.0 + n)
            await _until(lambda: all(t.failures == 8 for t in trackers))
            return trackers
        finally:
            for link in links:
                link.close()
            for c in chans:
                c.close()

    for tracker in asyncio.run(main()):
        assert tracker.is_blocked(IPv6Address("2001:db8:1:2::1"), 1004.0)  # same /64
        assert tracker.is_blocked(("bob", IPv6Address("2001:db8:1:2::5")), 1004.0)
        assert tracker.is_blocked(IPv6Address("2001:db8:1:3::1"), 1004.0) is None


def test_udp_response_on_the_shared_port_goes_to_the_worker_its_via_names(
    tmp_path: Path,
) -> None:
    """Workers send UDP from the shared port (NAT pinholes), so a UA honouring ``rport``
    answers there and the kernel may pick any worker: the Via port names the owner."""

    async def main() -> None:
        chans = bind_channels(str(tmp_path), 2)
        names = [channel_name(str(tmp_path), k) for k in range(2)]
        private = {(Transport.UDP, 41001): 1, (Transport.UDP, 41000): 0}
        got: list[list[Flow]] = [[], []]
        links = [WorkerLink(k, chans[k], names, private, logging.getLogger("t")) for k in (0, 1)]
        for k, link in enumerate(links):
            link.attach(FakeLayer(), lambda m, f, k=k: got[k].append(f))  # type: ignore[arg-type]
        try:
            udp = RESPONSE.replace(
                b"SIP/2.0/TCP [2001:db8::1]:41001", b"SIP/2.0/UDP [2001:db8::1]:41001"
            )
            flow = Flow(Transport.UDP, LOCAL, PHONE)
            links[0].on_message(parse_datagram(udp), flow)  # worker 1's Via
            links[1].on_message(parse_datagram(udp), flow)  # its own: kept
            await _until(lambda: len(got[1]) == 2)
            assert got[1] == [flow, flow] and not got[0]
        finally:
            for link in links:
                link.close()
            for c in chans:
                c.close()

    asyncio.run(main())
