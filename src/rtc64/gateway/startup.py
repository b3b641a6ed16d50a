"""What the listeners deliver to while the gateway starts.

Rules:
- The proxy needs the bound listeners (our addresses, ports, families), so the sockets are
  opened before it exists; between "SIP listening" and "gateway ready" messages can arrive.
- ``Reception`` stands between the transports and the proxy: once ``proxy`` is set every
  call goes straight to it. Before that, a request other than ACK is answered
  ``503 Service Unavailable`` with ``Retry-After`` (RFC 3261 §21.5.4: try again shortly),
  responses, ACKs and unparseable datagrams are dropped; each is counted in ``early``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from rtc64.errors import RemoteProtocolError
from rtc64.gateway.media import MediaBridge
from rtc64.gateway.proxy import hops
from rtc64.net.endpoint import Flow
from rtc64.sip.message import Message, Request, make_response
from rtc64.sip.serializer import serialize

if TYPE_CHECKING:
    from rtc64.gateway.proxy.branches import Sender
    from rtc64.gateway.proxy.service import Proxy
    from rtc64.io.sip_transport import SendFailure

RETRY_AFTER = b"2"
STARTING = b"Service Unavailable (starting)"


class Reception:
    """Routes transport callbacks to the proxy once it is wired; answers 503 until then."""

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self.proxy: Proxy | None = None
        self.sender: Sender | None = None
        self.early = 0
        """Messages that arrived before the proxy existed."""
        self.taken: Callable[[bytes, Flow], None] | None = None
        """Shows a datagram the proxy took raw to the transport's taps (HEP, trace)."""

    def on_message(self, msg: Message, flow: Flow) -> None:
        proxy = self.proxy
        if proxy is not None:
            proxy.on_message(msg, flow)
            return
        self.early += 1
        if not isinstance(msg, Request) or msg.method == b"ACK" or self.sender is None:
            return
        resp = make_response(msg, 503, STARTING, headers=[(b"Retry-After", RETRY_AFTER)])
        hop = hops.response_hop(msg, flow)
        self.sender.send(serialize(resp), hop.transport, hop.ip, hop.port, flow=hop.flow)
        if self.early == 1:
            self.log.info("requests before the gateway is ready get 503 Retry-After")

    def on_raw_request(self, data: bytes, flow: Flow) -> bool:
        """A UDP request before parsing: the proxy may answer it at once (overload), or
        forward it from its raw bytes (an ACK: then shown to ``taken``)."""
        proxy = self.proxy
        if proxy is None:
            return False
        if proxy.shed_raw(data, flow):
            return True
        if not proxy.on_raw_request(data, flow):
            return False
        if self.taken is not None:
            self.taken(data, flow)
        return True

    def on_raw_response(self, data: bytes, flow: Flow) -> bool:
        """A UDP response before parsing: the proxy may forward it from its raw bytes
        (True: taken, shown to ``taken``, the transport's taps)."""
        proxy = self.proxy
        if proxy is None or not proxy.on_raw_response(data, flow):
            return False
        if self.taken is not None:
            self.taken(data, flow)
        return True

    def on_bad_datagram(self, data: bytes, error: RemoteProtocolError, flow: Flow) -> None:
        if self.proxy is not None:
            self.proxy.on_bad_datagram(data, error, flow)
        else:
            self.early += 1

    def on_media_timeout(self, session: bytes) -> None:
        """The relay saw no media for a session: the proxy ends its call (BYE both sides)."""
        if self.proxy is not None:
            self.proxy.media_timeout(MediaBridge.call_of(session))

    def on_send_error(self, failure: SendFailure) -> None:
        """RFC 3261 §17.1.4: the transaction hears of a transport failure at once."""
        if self.proxy is not None:
            self.proxy.transport_failed(failure.handle, failure.reason)
