"""Shared helpers for the transport tests: a collecting gateway stand-in and SIP samples."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import ip_address

from rtc64.errors import RemoteProtocolError
from rtc64.io.connection import Limits
from rtc64.io.sip_transport import SendFailure, SipTransportLayer
from rtc64.net.endpoint import Flow, ListenSpec, Transport
from rtc64.sip.message import Message

V4 = ip_address("127.0.0.1")
V6 = ip_address("::1")


def options(n: int = 1, body: bytes = b"") -> bytes:
    """A small OPTIONS request; ``n`` makes each one distinct."""
    head = (
        f"OPTIONS sip:gw.example.net SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-{n}\r\n"
        f"Max-Forwards: 70\r\n"
        f"To: <sip:gw.example.net>\r\n"
        f"From: <sip:alice@example.net>;tag={n}\r\n"
        f"Call-ID: call-{n}@example.net\r\n"
        f"CSeq: {n} OPTIONS\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def ok(n: int = 1) -> bytes:
    """A 200 response to ``options(n)``."""
    return (
        f"SIP/2.0 200 OK\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-{n}\r\n"
        f"To: <sip:gw.example.net>;tag=gw\r\n"
        f"From: <sip:alice@example.net>;tag={n}\r\n"
        f"Call-ID: call-{n}@example.net\r\n"
        f"CSeq: {n} OPTIONS\r\n"
        f"Content-Length: 0\r\n\r\n"
    ).encode()


@dataclass
class Gateway:
    """Collects what a layer delivers."""

    messages: list[tuple[Message, Flow]] = field(default_factory=list)
    bad: list[tuple[bytes, RemoteProtocolError, Flow]] = field(default_factory=list)
    send_errors: list[SendFailure] = field(default_factory=list)

    def on_message(self, msg: Message, flow: Flow) -> None:
        self.messages.append((msg, flow))

    def on_bad(self, data: bytes, error: RemoteProtocolError, flow: Flow) -> None:
        self.bad.append((data, error, flow))

    def on_send_error(self, failure: SendFailure) -> None:
        self.send_errors.append(failure)

    def layer(self, specs: list[str] | list[ListenSpec], **kw: object) -> SipTransportLayer:
        from rtc64.net.endpoint import parse_listen  # noqa: PLC0415

        parsed = [parse_listen(s) if isinstance(s, str) else s for s in specs]
        return SipTransportLayer(
            parsed,
            self.on_message,
            self.on_bad,
            on_send_error=self.on_send_error,
            **kw,  # type: ignore[arg-type]
        )


async def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``cond`` until true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


def port_of(layer: SipTransportLayer, transport: Transport, version: int) -> int:
    for b in layer.listeners:
        if b.transport is transport and b.spec.address.version == version:
            return b.port
    raise LookupError((transport, version))


FAST = Limits(idle_timeout=0.3, connect_timeout=2.0, handshake_timeout=2.0)


def cseq(msg: Message) -> int:
    """The CSeq number of a delivered message (tells test messages apart)."""
    return msg.cseq.seq
