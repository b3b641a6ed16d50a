"""The proxy hears of transport failures at once (RFC 3261 §16.7 step 5, §17.1.4): the
branch's client transaction ends and the caller gets 503 with the reason, not 408 after
Timer B. Uses the in-process harness of test_proxy."""

from __future__ import annotations

from pathlib import Path

from rtc64.gateway.proxy.forwarder import transport_reason
from rtc64.net.address import IPAddress
from rtc64.net.endpoint import Flow, Transport
from rtc64.sip.transaction import ClientTransaction

from .test_proxy import (
    CALLER,
    DUAL_V4,
    DUAL_V6,
    Harness,
    RecordingSender,
    Sent,
    answer,
    dual_stack_dns,
    invite,
    one,
    run,
    statuses,
)

REFUSED = "the UDP socket refused it"


class HandleSender(RecordingSender):
    """Records the handle each message was sent with."""

    def __init__(self) -> None:
        super().__init__()
        self.handles: list[object] = []

    def send(
        self,
        data: bytes,
        transport: Transport,
        address: IPAddress,
        port: int,
        *,
        flow: Flow | None = None,
        server_name: str | None = None,
        handle: object = None,
        own_port: bool = False,
    ) -> bool:
        self.handles.append(handle)
        return super().send(data, transport, address, port, flow=flow, own_port=own_port)


def _install(h: Harness) -> HandleSender:
    sender = HandleSender()
    h.rebuild(sender=sender)
    return sender


def _finals(sent: list[Sent]) -> list[Sent]:
    return [s for s in sent if s.data.startswith(b"SIP/2.0") and s.status >= 200]


def test_transport_failure_answers_503_with_the_reason_at_once(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        sender = _install(h)
        sent = await h.feed(invite(b"sip:bob@192.0.2.50:5999"), CALLER)
        forwarded = [s for s in sent if s.data.startswith(b"INVITE")]
        assert len(forwarded) == 1 and forwarded[0].transport is Transport.UDP
        handle = sender.handles[sender.sent.index(forwarded[0])]
        assert isinstance(handle, ClientTransaction)
        before = len(sender.sent)
        h.proxy.transport_failed(handle, REFUSED)
        (final,) = _finals(sender.sent[before:])
        assert final.status == 503
        assert final.response.reason == b"Service Unavailable: " + REFUSED.encode()
        assert final.ip.compressed == CALLER[0]
        # no 408 when Timer B would have fired: only the 503 again (Timer G, no ACK here)
        later = _finals(await h.advance(40.0))
        assert {s.data for s in later} <= {final.data}
        assert h.layer.client_count == 0
        # a late or repeated report is harmless
        h.proxy.transport_failed(handle, REFUSED)
        h.proxy.transport_failed(object(), REFUSED)

    run(tmp_path, body)


def test_responses_are_sent_with_their_server_transaction(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        sender = _install(h)
        sent = await h.feed(invite(b"sip:bob@192.0.2.50:5999"), CALLER)
        trying = [s for s in sent if s.data.startswith(b"SIP/2.0 100")]
        assert trying
        handle = sender.handles[sender.sent.index(trying[0])]
        assert handle is not None and not isinstance(handle, ClientTransaction)

    run(tmp_path, body)


def test_a_failed_attempt_moves_the_race_to_the_next_address_at_once(tmp_path: Path) -> None:
    """RFC 3261 §16.7 / RFC 8305: the IPv6 attempt fails in the transport; the IPv4 one
    starts without waiting for the attempt delay, and the caller sees no 503."""

    async def body(h: Harness) -> None:
        sender = _install(h)
        out = await h.feed(invite(b"sip:bob@dual.example.net"), CALLER)
        first = one(out, DUAL_V6)
        handle = sender.handles[sender.sent.index(first)]
        assert isinstance(handle, ClientTransaction)
        before = len(sender.sent)
        h.proxy.transport_failed(handle, "no route to host")
        now = sender.sent[before:]
        second = one(now, DUAL_V4)
        assert second.request.method == b"INVITE" and not _finals(now)
        out = await h.feed(answer(second.data, 486), DUAL_V4)
        assert statuses(out, CALLER) == [486]

    run(tmp_path, body, resolver=dual_stack_dns())


def test_reason_phrase_cannot_be_injected_from_a_certificate() -> None:
    """The failure text may quote names from a hostile server's certificate."""
    reason = transport_reason("does not name x (it names a\r\nVia: evil\x00\x7f" + "y" * 500)
    assert reason.startswith(b"Service Unavailable: does not name x")
    assert all(32 <= b < 127 for b in reason) and len(reason) <= 200
    assert transport_reason("") == b"Service Unavailable"
