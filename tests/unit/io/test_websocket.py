"""SIP over WebSocket (RFC 7118) with a small wsproto client."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Pong,
    RejectConnection,
    Request,
    TextMessage,
)

from rtc64.io import tls
from rtc64.net.endpoint import Transport

from .helpers import Gateway, cseq, ok, options, port_of, wait_for


class Client:
    """A WebSocket client over asyncio streams."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.ws = WSConnection(ConnectionType.CLIENT)

    @classmethod
    async def open(
        cls, host: str, port: int, protocols: list[str], context: ssl.SSLContext | None = None
    ) -> tuple[Client, Event]:
        reader, writer = await asyncio.open_connection(host, port, ssl=context)
        client = cls(reader, writer)
        await client.send(Request(host="gw.example.net", target="/", subprotocols=protocols))
        return client, await client.next_event()

    async def send(self, event: Event) -> None:
        self.writer.write(self.ws.send(event))
        await self.writer.drain()

    async def next_event(self) -> Event:
        while True:
            for event in self.ws.events():
                return event
            data = await asyncio.wait_for(self.reader.read(65536), 5)
            self.ws.receive_data(data or None)


def test_upgrade_and_one_sip_message_each_way() -> None:
    async def main() -> None:
        gw = Gateway()
        layer = gw.layer(["ws:[::1]:0"])
        await layer.start()
        try:
            client, reply = await Client.open("::1", port_of(layer, Transport.WS, 6), ["sip"])
            assert isinstance(reply, AcceptConnection) and reply.subprotocol == "sip"
            body = options(3)
            body = body.replace(b"Content-Length: 0\r\n", b"")  # optional on WebSocket
            await client.send(TextMessage(data=body.decode()))
            await wait_for(lambda: len(gw.messages) == 1)
            msg, flow = gw.messages[0]
            assert cseq(msg) == 3 and flow.transport is Transport.WS
            assert flow.connection_id is not None

            assert layer.send(ok(3), Transport.WS, *flow.remote, flow=flow)
            event = await client.next_event()
            assert isinstance(event, TextMessage) and event.data.encode() == ok(3)

            await client.send(Ping(payload=b"hi"))
            pong = await client.next_event()
            assert isinstance(pong, Pong) and pong.payload == b"hi"

            await client.send(BytesMessage(data=b"not sip at all"))
            await wait_for(lambda: len(gw.bad) == 1)
            assert gw.bad[0][2] == flow and layer.stats.bad_datagrams == 1

            await client.send(CloseConnection(code=1000))
            closing = await client.next_event()
            assert isinstance(closing, CloseConnection) and closing.code == 1000
            assert await asyncio.wait_for(client.reader.read(), 5) == b""
            await wait_for(lambda: layer.stats.connections_open == 0)
            assert layer.stats.connections_closed == 1
            client.writer.close()
        finally:
            await layer.stop()

    asyncio.run(main())


def test_upgrade_without_sip_subprotocol_is_refused() -> None:
    async def main() -> None:
        gw = Gateway()
        layer = gw.layer(["ws:127.0.0.1:0"])
        await layer.start()
        try:
            port = port_of(layer, Transport.WS, 4)
            client, reply = await Client.open("127.0.0.1", port, ["chat"])
            assert isinstance(reply, RejectConnection) and reply.status_code == 400
            assert await asyncio.wait_for(client.reader.read(), 5) == b""
            client.writer.close()
            assert layer.stats.received == 0
        finally:
            await layer.stop()

    asyncio.run(main())


def test_websocket_framing_error_and_oversized_message_close_the_connection() -> None:
    async def main() -> None:
        gw = Gateway()
        layer = gw.layer(["ws:127.0.0.1:0"])
        await layer.start()
        try:
            port = port_of(layer, Transport.WS, 4)
            client, _ = await Client.open("127.0.0.1", port, ["sip"])
            client.writer.write(b"\x8f\x80\x00\x00\x00\x00")  # masked frame, reserved opcode
            assert await asyncio.wait_for(client.reader.read(), 5) != b""  # close frame
            assert layer.stats.framing_errors == 1

            big, _ = await Client.open("127.0.0.1", port, ["sip"])
            await big.send(BytesMessage(data=b"x" * 70_000))
            await wait_for(lambda: layer.stats.framing_errors == 2)
            for c in (client, big):
                c.writer.close()
        finally:
            await layer.stop()

    asyncio.run(main())


def test_secure_websocket(tmp_path: Path) -> None:
    identity = tls.server_identity(tmp_path)

    async def main() -> None:
        gw = Gateway()
        layer = gw.layer(["wss:127.0.0.1:0"], server_tls=identity.context)
        await layer.start()
        try:
            port = port_of(layer, Transport.WSS, 4)
            context = tls.client_context(identity.cert_path)
            client, reply = await Client.open("127.0.0.1", port, ["sip"], context)
            assert isinstance(reply, AcceptConnection)
            await client.send(TextMessage(data=options(9).decode()))
            await wait_for(lambda: len(gw.messages) == 1)
            msg, flow = gw.messages[0]
            assert cseq(msg) == 9 and flow.transport is Transport.WSS
            # No flow given: any open connection to that remote is used.
            assert layer.send(ok(9), Transport.WSS, *flow.remote)
            event = await client.next_event()
            assert isinstance(event, TextMessage) and event.data.encode() == ok(9)
            client.writer.close()
        finally:
            await layer.stop()

    asyncio.run(main())
