# Rules (RFC 7118, RFC 6455): inbound HTTP/1.1 Upgrade only; the client must offer the
# "sip" subprotocol (§4), which we select; an upgrade without it is refused with 400
# (RFC 6455 §4.2.2 lets a server reject the handshake with any HTTP error). Each text or
# binary WebSocket message is exactly one SIP message (§5), parsed like a datagram (no
# Content-Length needed); a bad one goes to the owner's bad-message hook, like a datagram.
# We send text frames when the message is UTF-8, binary otherwise (§5.1). Pings are
# answered; a close is answered and the TCP connection closed. WebSocket framing errors
# (and over-long messages, close code 1009) close the connection and are counted.
"""SIP over WebSocket (ws/wss): a thin asyncio adapter around wsproto."""

from __future__ import annotations

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.utilities import RemoteProtocolError as WsProtocolError

from rtc64.errors import RemoteProtocolError
from rtc64.io.connection import Connection, ConnectionOwner
from rtc64.net.endpoint import Transport
from rtc64.sip.framing import parse_datagram

SUBPROTOCOL = "sip"
CLOSE_NORMAL = 1000
CLOSE_TOO_BIG = 1009


class WebSocketConnection(Connection):
    """One inbound SIP WebSocket connection (server side of RFC 7118)."""

    def __init__(self, owner: ConnectionOwner, transport: Transport, conn_id: int) -> None:
        super().__init__(owner, transport, conn_id)
        self._ws = WSConnection(ConnectionType.SERVER)
        self._parts: list[bytes] = []
        self._size = 0

    def _opened(self) -> None:
        pass  # ready after the upgrade handshake

    def _received(self, data: bytes) -> None:
        try:
            self._ws.receive_data(data)
            for event in self._ws.events():
                self._event(event)
                if self.closed:
                    return
        except WsProtocolError as exc:
            if exc.event_hint is not None and self._transport is not None:
                self._transport.write(self._ws.send(exc.event_hint))
            raise RemoteProtocolError(f"WebSocket: {exc}") from None

    def _event(self, event: Event) -> None:
        if isinstance(event, Request):
            self._handshake(event)
        elif isinstance(event, TextMessage | BytesMessage):
            data = event.data.encode() if isinstance(event, TextMessage) else bytes(event.data)
            self._message_part(data, finished=event.message_finished)
        elif isinstance(event, Ping):
            self._write(self._ws.send(event.response()))
        elif isinstance(event, CloseConnection):
            self._closing(event)

    def _handshake(self, request: Request) -> None:
        if SUBPROTOCOL not in (p.strip().lower() for p in request.subprotocols):
            self.owner.log.info("refusing WebSocket upgrade from %s: no 'sip' subprotocol", self)
            reply = RejectConnection(status_code=400, headers=[(b"content-length", b"0")])
            self._write(self._ws.send(reply))
            self.close()
            return
        self._write(self._ws.send(AcceptConnection(subprotocol=SUBPROTOCOL)))
        self._set_ready()

    def _message_part(self, data: bytes, *, finished: bool) -> None:
        self._size += len(data)
        if self._size > self.owner.limits.max_message:
            self._write(self._ws.send(CloseConnection(code=CLOSE_TOO_BIG)))
            raise RemoteProtocolError(f"WebSocket message over {self.owner.limits.max_message}")
        self._parts.append(data)
        if not finished:
            return
        whole = b"".join(self._parts)
        self._parts, self._size = [], 0
        assert self.flow is not None
        try:
            msg = parse_datagram(whole)
        except RemoteProtocolError as exc:
            self.owner.bad_message(whole, exc, self.flow)
            return
        self.owner.deliver(msg, self.flow)

    def _closing(self, event: CloseConnection) -> None:
        if self._ws.state is ConnectionState.OPEN:
            # wsproto reports a frame it could not parse as a close with state still OPEN.
            self._write(self._ws.send(event.response()))
            raise RemoteProtocolError(f"WebSocket framing: {event.reason} ({event.code})")
        if self._ws.state is ConnectionState.REMOTE_CLOSING:
            self._write(self._ws.send(event.response()))
        self.close()

    def _ping(self) -> bytes:
        if self._ws.state is not ConnectionState.OPEN:
            return b""
        return self._ws.send(Ping(payload=b"rtc64"))

    def _encode(self, data: bytes) -> bytes:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return self._ws.send(BytesMessage(data=data))
        return self._ws.send(TextMessage(data=text))

    def close(self) -> None:
        """Send a close frame (if the WebSocket is open), then close the connection."""
        if self._ws.state is ConnectionState.OPEN and self._transport is not None:
            self._write(self._ws.send(CloseConnection(code=CLOSE_NORMAL)))
        super().close()
