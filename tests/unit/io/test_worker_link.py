"""The worker channel: connection ownership announcements, hand-offs, bad datagrams."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator, Mapping
from ipaddress import IPv6Address
from pathlib import Path

from rtc64.io.sip_transport import SendFailure
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
        self.handles: list[object] = []
        self.pings: list[tuple[Transport, object, bytes]] = []
        self.conns: set[tuple[Transport, object, int]] = set()
        self.failures: list[SendFailure] = []

    def send(self, data: bytes, transport: Transport, address: object, port: int, *,
             flow: Flow | None = None, server_name: str | None = None,
             handle: object = None, own_port: bool = False) -> bool:  # fmt: skip
        self.sent.append((data, transport, address, port, flow))
        self.handles.append(handle)
        return True

    def keepalive(self, transport: Transport, listener: str, remote: object,
                  payload: bytes) -> bool:  # fmt: skip
        self.pings.append((transport, remote, payload))
        return True

    def has_connection(
        self, transport: Transport, address: object, port: int, server_name: str | None = None
    ) -> bool:
        return (transport, address, port) in self.conns

    def report_failure(self, transport: Transport, remote: object, why: str,
                       handle: object) -> bool:  # fmt: skip
        self.failures.append(SendFailure(transport, remote, why, handle))  # type: ignore[arg-type]
        return False

    def connection(self, cid: int) -> None:
        return None

    def connections(self) -> list[object]:
        return []

    def aliases(self) -> dict[tuple[str, int], int]:
        return {}

    def watch_aliases(self, callback: object) -> None:
        pass


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
            out = chans[0].ends[1]  # worker 0's end of the pair (as the supervisor holds it)
            assert out is not None
            out.send(_HEAD.pack(RESET, 0, 0, 0))
            await _until(lambda: not links[1].has_connection(Transport.TCP, *PHONE))
            # garbage on the channel is dropped and counted, the link keeps serving
            for junk in (b"", b"X", _HEAD.pack(b"Z", 0, 1, 0), _HEAD.pack(OPEN, 0, 1, 0) + b"\1",
                         _HEAD.pack(b"D", 0, 1, 5) + _addr(LOCAL) + _addr(PHONE) + b"garbage",
                         _HEAD.pack(CLOSE, 0, 99, 0)):  # fmt: skip
                out.send(junk)
            await _until(lambda: links[1].dropped == 6)
            assert not got[1][1:]
        finally:
            for link in links:
                link.close()
            for c in chans:
                c.close()

    asyncio.run(main())


@contextlib.contextmanager
def two_links(
    directory: Path, private: Mapping[tuple[Transport, int], int]
) -> Iterator[list[WorkerLink]]:
    """Two workers' links on channels bound in ``directory``, closed afterwards."""
    chans = bind_channels(str(directory), 2)
    names = [channel_name(str(directory), k) for k in range(2)]
    links = [WorkerLink(k, chans[k], names, private, logging.getLogger("t")) for k in (0, 1)]
    try:
        yield links
    finally:
        for link in links:
            link.close()
        for c in chans:
            c.close()


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


def test_a_send_the_owner_cannot_make_is_reported_to_the_sender(tmp_path: Path) -> None:
    """Worker 1 hands an INVITE to worker 0's connection; worker 0's transport layer
    reports the send failed (the connection closed meanwhile): worker 1's transaction
    hears of it with its own handle, at once. Worker 0's own failures stay with it."""

    async def main() -> None:
        chans = bind_channels(str(tmp_path), 2)
        names = [channel_name(str(tmp_path), k) for k in range(2)]
        layers = [FakeLayer(), FakeLayer()]
        links = [WorkerLink(k, chans[k], names, {}, logging.getLogger("t")) for k in (0, 1)]
        failed: list[list[SendFailure]] = [[], []]
        for k, link in enumerate(links):
            link.attach(layers[k], lambda m, f: None)  # type: ignore[arg-type]
            link.on_send_error = failed[k].append
        try:
            flow = Flow(Transport.TCP, LOCAL, PHONE, 7)  # worker 0's connection id 7
            handle = object()
            assert links[1].send(b"INVITE...", Transport.TCP, *PHONE, flow=flow, handle=handle)
            await _until(lambda: bool(layers[0].sent))
            ticket = layers[0].handles[0]
            assert ticket is not None and ticket is not handle
            links[0].send_error(SendFailure(Transport.TCP, PHONE, "connection #7 closed", ticket))
            await _until(lambda: bool(failed[1]))
            assert failed[1][0].handle is handle and "#7 closed" in failed[1][0].reason
            assert failed[1][0].remote == PHONE and not failed[0]
            # a second report of the same ticket finds nothing (the handle was used)
            links[0].send_error(SendFailure(Transport.TCP, PHONE, "again", ticket))
            own = SendFailure(Transport.TCP, PHONE, "mine", "handle-0")
            links[0].send_error(own)
            assert failed[0] == [own]
            await asyncio.sleep(0.05)
            assert len(failed[1]) == 1
            # a send without a handle (an ACK) carries no ticket
            links[1].send(b"ACK...", Transport.TCP, *PHONE, flow=flow)
            await _until(lambda: len(layers[0].sent) == 2)
            assert layers[0].handles[1] is None and layers[0].sent[1][0] == b"ACK..."
        finally:
            for link in links:
                link.close()
            for c in chans:
                c.close()

    asyncio.run(main())


def test_a_send_the_channel_refuses_fails_through_the_transport_layer(tmp_path: Path) -> None:
    """Worker 1 is gone (its channel unbound): a send for its connection fails at once,
    reported by this worker's transport layer with the caller's handle (logged and handed
    to ``on_send_error`` as any failed send)."""

    async def main() -> None:
        chans = bind_channels(str(tmp_path), 2)
        names = [channel_name(str(tmp_path), k) for k in range(2)]
        chans[1].close()
        layer = FakeLayer()
        link = WorkerLink(0, chans[0], names, {}, logging.getLogger("t"))
        link.attach(layer, lambda m, f: None)  # type: ignore[arg-type]
        try:
            flow = Flow(Transport.TCP, LOCAL, PHONE, CONNECTION_ID_SPAN + 3)  # worker 1's
            handle = object()
            assert not link.send(b"BYE...", Transport.TCP, *PHONE, flow=flow, handle=handle)
            (failure,) = layer.failures
            assert failure.handle is handle and failure.remote == PHONE
            assert "worker 1's channel refused" in failure.reason
            assert not layer.sent and link.dropped == 1
        finally:
            link.close()
            chans[0].close()

    asyncio.run(main())


def test_keepalive_notices_and_pings_cross_to_the_owner(tmp_path: Path) -> None:
    async def main() -> None:
        chans = bind_channels(str(tmp_path), 2)
        names = [channel_name(str(tmp_path), k) for k in range(2)]
        layers = [FakeLayer(), FakeLayer()]
        links = [WorkerLink(k, chans[k], names, {}, logging.getLogger("t")) for k in (0, 1)]
        changed: list[str] = []
        delivered: list[tuple[Message, Flow]] = []
        links[0].attach(layers[0], lambda m, f: delivered.append((m, f)))  # type: ignore[arg-type]
        links[1].attach(layers[1], lambda m, f: None)  # type: ignore[arg-type]
        links[0].on_keepalive_changed = changed.append
        try:
            assert links[0].count == 2
            links[1].keepalive_changed(0, "sip:b\u00f6b@example.net")
            await _until(lambda: bool(changed))
            assert changed == ["sip:b\u00f6b@example.net"]
            # worker 0 holds the phone's connection: worker 1's ping is written there
            layers[0].conns.add((Transport.TCP, PHONE[0], PHONE[1]))
            links[0].connection_changed(Transport.TCP, PHONE, 5, True)
            await _until(lambda: links[1].has_connection(Transport.TCP, *PHONE))
            assert links[1].keepalive(Transport.TCP, "tcp:[::]:5060", PHONE, b"\r\n\r\n")
            await _until(lambda: bool(layers[0].pings))
            assert layers[0].pings == [(Transport.TCP, PHONE, b"\r\n\r\n")] and not layers[1].pings
            # UDP pings leave from the worker's own shared socket
            links[1].keepalive(Transport.UDP, "udp:[::]:5060", PHONE, b"\r\n\r\n")
            assert layers[1].pings == [(Transport.UDP, PHONE, b"\r\n\r\n")]
            # an OPTIONS answer handed over arrives parsed, with its flow
            flow = Flow(Transport.UDP, LOCAL, PHONE)
            links[1].keepalive_answer(0, RESPONSE, flow)
            await _until(lambda: bool(delivered))
            assert delivered[0][0].wire == RESPONSE and delivered[0][1] == flow
        finally:
            for link in links:
                link.close()
            for c in chans:
                c.close()

    asyncio.run(main())


def test_credentials_go_to_the_worker_whose_nonce_they_answer(tmp_path: Path) -> None:
    """Its nonce-count table holds the counts: a replay through another worker is seen."""
    from rtc64.sip.digest import NonceFactory  # noqa: PLC0415

    async def main() -> None:
        chans = bind_channels(str(tmp_path), 2)
        names = [channel_name(str(tmp_path), k) for k in range(2)]
        got: list[list[Message]] = [[], []]
        links = [WorkerLink(k, chans[k], names, {}, logging.getLogger("t")) for k in (0, 1)]
        for k, link in enumerate(links):
            link.attach(FakeLayer(), lambda m, f, k=k: got[k].append(m))  # type: ignore[arg-type]
        try:
            flow = Flow(Transport.UDP, LOCAL, PHONE)
            for origin, header in ((1, b"Authorization"), (0, b"Proxy-Authorization")):
                nonce = NonceFactory(b"s" * 32, origin=origin).issue(1000.0).encode()
                request = (
                    b"REGISTER sip:x SIP/2.0\r\n"
                    b"Via: SIP/2.0/UDP [2001:db8::7]:40000;branch=z9hG4bK-%d\r\n"
                    b"From: <sip:a@x>;tag=1\r\nTo: <sip:a@x>\r\nCall-ID: c%d\r\n"
                    b'CSeq: 2 REGISTER\r\n%s: Digest username="a", realm="x", '
                    b'nonce="%s", uri="sip:x", response="00"\r\n'
                    b"Content-Length: 0\r\n\r\n" % (origin, origin, header, nonce)
                )
                links[0].on_message(parse_datagram(request), flow)
            await _until(lambda: len(got[1]) == 1)
            assert b"c1" in (got[1][0].wire or b"") and len(got[0]) == 1
            assert b"c0" in (got[0][0].wire or b"")
            # a nonce naming a worker that does not exist, or no nonce at all: kept here
            bogus = NonceFactory(b"s" * 32, origin=9).issue(1000.0).encode()
            plain = request.replace(nonce, bogus)
            links[1].on_message(parse_datagram(plain), flow)
            assert len(got[1]) == 2
        finally:
            for link in links:
                link.close()
            for c in chans:
                c.close()

    asyncio.run(main())


def test_an_in_dialog_request_follows_the_second_route_to_its_worker(tmp_path: Path) -> None:
    """The caller-facing Record-Route entry names the shared port (5060), the next one
    worker 1's own port: a BYE from a caller whose source changed, hashed to worker 0,
    is handed to worker 1. A Route naming no private port stays where it landed."""

    async def main() -> None:
        chans = bind_channels(str(tmp_path), 2)
        names = [channel_name(str(tmp_path), k) for k in range(2)]
        private = {(Transport.UDP, 41000): 0, (Transport.UDP, 41001): 1}
        got: list[list[Message]] = [[], []]
        links = [WorkerLink(k, chans[k], names, private, logging.getLogger("t")) for k in (0, 1)]
        for k, link in enumerate(links):
            link.attach(FakeLayer(), lambda m, f, k=k: got[k].append(m))  # type: ignore[arg-type]
        try:
            bye = (
                b"BYE sip:b@[2001:db8::9] SIP/2.0\r\n"
                b"Via: SIP/2.0/UDP [2001:db8::7]:40000;branch=z9hG4bK-9\r\n"
                b"Route: <sip:[2001:db8::1]:5060;lr;r2=on>, <sip:192.0.2.1:41001;lr;r2=on>\r\n"
                b"From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>;tag=2\r\nCall-ID: d1\r\n"
                b"CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
            )
            flow = Flow(Transport.UDP, LOCAL, PHONE)
            links[0].on_message(parse_datagram(bye), flow)
            await _until(lambda: len(got[1]) == 1)
            assert not got[0]
            foreign = bye.replace(b"192.0.2.1:41001", b"192.0.2.1:5070")
            links[0].on_message(parse_datagram(foreign), flow)
            assert len(got[0]) == 1 and len(got[1]) == 1
        finally:
            for link in links:
                link.close()
            for c in chans:
                c.close()

    asyncio.run(main())


def test_happy_eyeballs_memory_is_the_gateways(tmp_path: Path) -> None:
    """A family worker 0 finds silent for a destination is tried second by worker 1 too
    (one fallback per destination in all, not one per worker); worker 1 finding it works
    again lifts worker 0's penalty; what a worker is told is not echoed back; a malformed
    HEALTH datagram is dropped and counted."""
    from rtc64.io.worker_link import HEALTH  # noqa: PLC0415
    from rtc64.net.address import Family  # noqa: PLC0415
    from rtc64.net.eyeballs import HealthCache  # noqa: PLC0415

    async def main() -> None:
        with two_links(tmp_path, {}) as links:
            caches = [HealthCache(penalty=600.0), HealthCache(penalty=600.0)]
            for link, cache in zip(links, caches, strict=True):
                link.attach(FakeLayer(), lambda m, f: None)  # type: ignore[arg-type]
                link.share_health(cache, lambda: 100.0)
            caches[0].record_failure("pbx.example", Family.INET6, 99.0)
            await _until(lambda: bool(caches[1].penalised("pbx.example", 100.0)))
            assert caches[1].penalised("pbx.example", 100.0) == {Family.INET6: 100.0}
            caches[1].record_success("pbx.example", Family.INET6, 101.0)
            await _until(lambda: not caches[0].penalised("pbx.example", 101.0))
            await asyncio.sleep(0.05)  # nothing echoed back to worker 1
            assert caches[1].penalised("pbx.example", 101.0) == {}
            out = links[0]._channel.ends[1]
            assert out is not None
            for junk in (
                _HEAD.pack(HEALTH, 0, 0, 0) + b"\x07\x00pbx",  # no such family
                _HEAD.pack(HEALTH, 0, 0, 0) + b"\x0a\x00\xff\xfe",  # not UTF-8
                _HEAD.pack(HEALTH, 0, 0, 0) + b"\x0a",  # cut short
            ):
                out.send(junk)
            await _until(lambda: links[1].dropped == 3)
            assert len(caches[1]) == 0

    asyncio.run(main())
