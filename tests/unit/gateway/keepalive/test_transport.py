"""The transport hooks on real loopback sockets: STUN on the SIP UDP ports, keep-alives
from the registered listener, stream pings only over an open connection."""

from __future__ import annotations

import asyncio
import os
import socket
from ipaddress import ip_address

import pytest
from wsproto.events import AcceptConnection, Ping

from rtc64.gateway.keepalive import stunkeep
from rtc64.net.endpoint import Transport
from rtc64.stun.attributes import XOR_MAPPED_ADDRESS
from rtc64.stun.message import Class, Method, build, decode, encode
from tests.unit.io.helpers import Gateway, ok, options, port_of, wait_for
from tests.unit.io.test_websocket import Client


def _binding_request() -> bytes:
    return encode(build(Method.BINDING, Class.REQUEST, os.urandom(12)))


@pytest.mark.parametrize(("host", "version"), [("127.0.0.1", 4), ("::1", 6)])
def test_stun_binding_on_the_sip_port_is_answered(host: str, version: int) -> None:
    async def main() -> None:
        gw = Gateway()
        layer = gw.layer(
            [f"udp:{host}:0" if version == 4 else "udp:[::1]:0"], on_stun=stunkeep.answer
        )
        await layer.start()
        family = socket.AF_INET if version == 4 else socket.AF_INET6
        with socket.socket(family, socket.SOCK_DGRAM) as client:
            client.bind((host, 0))
            client.settimeout(2.0)
            client.sendto(_binding_request(), (host, port_of(layer, Transport.UDP, version)))
            data = await asyncio.to_thread(client.recv, 2048)
            mine = client.getsockname()
        try:
            msg = decode(data)
            assert msg.cls is Class.SUCCESS
            assert msg.get(XOR_MAPPED_ADDRESS) == (ip_address(host), mine[1])
            assert layer.stats.stun_received == 1 and layer.stats.stun_answered == 1
            assert layer.stats.bad_datagrams == 0 and gw.messages == [] and gw.bad == []
            assert layer.stats.sent == 0  # a STUN answer is not a SIP message
        finally:
            await layer.stop()

    asyncio.run(main())


def test_stun_without_a_handler_is_counted_not_a_bad_sip_datagram() -> None:
    async def main() -> None:
        gw = Gateway()
        layer = gw.layer(["udp:127.0.0.1:0"])
        await layer.start()
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
                client.sendto(_binding_request(), ("127.0.0.1", port_of(layer, Transport.UDP, 4)))
            await wait_for(lambda: layer.stats.stun_received == 1)
            assert layer.stats.bad_datagrams == 0 and gw.bad == []
            assert layer.stats.stun_answered == 0
        finally:
            await layer.stop()

    asyncio.run(main())


def test_a_udp_keepalive_leaves_from_the_named_listener() -> None:
    async def main() -> None:
        gw = Gateway()
        layer = gw.layer(["udp:127.0.0.1:0", "udp:127.0.0.2:0"])
        await layer.start()
        second = layer.listeners[1]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as phone:
            phone.bind(("127.0.0.1", 0))
            phone.settimeout(2.0)
            remote = (ip_address("127.0.0.1"), phone.getsockname()[1])
            try:
                assert layer.keepalive(Transport.UDP, second.name(), remote, b"\r\n\r\n")
                data, src = await asyncio.to_thread(phone.recvfrom, 2048)
                assert data == b"\r\n\r\n"
                assert src == ("127.0.0.2", second.port)
                # an unknown or other-family name falls back to a listener of the family
                assert layer.keepalive(Transport.UDP, "udp:[::]:5060", remote, b"\0")
                data, src = await asyncio.to_thread(phone.recvfrom, 2048)
                assert data == b"\0" and src[1] in {b.port for b in layer.listeners}
                assert layer.stats.keepalives_sent == 2 and layer.stats.sent == 0
                v6 = (ip_address("::1"), 5060)
                assert not layer.keepalive(Transport.UDP, second.name(), v6, b"\0")
            finally:
                await layer.stop()

    asyncio.run(main())


def test_stream_pings_go_only_over_an_open_connection() -> None:
    async def main() -> None:
        gw = Gateway()
        layer = gw.layer(["tcp:127.0.0.1:0"])
        await layer.start()
        port = port_of(layer, Transport.TCP, 4)
        try:
            nobody = (ip_address("127.0.0.1"), 9)
            assert not layer.keepalive(Transport.TCP, "tcp:127.0.0.1:0", nobody, b"")
            await asyncio.sleep(0.05)
            assert layer.connection_count == 0  # never a new connection for a ping
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            await wait_for(lambda: layer.connection_count == 1)
            phone = (ip_address("127.0.0.1"), writer.get_extra_info("sockname")[1])
            assert layer.keepalive(Transport.TCP, "ignored", phone, b"ignored")
            assert await asyncio.wait_for(reader.readexactly(4), 2.0) == b"\r\n\r\n"
            writer.close()
        finally:
            await layer.stop()

    asyncio.run(main())


def test_a_raw_response_handler_takes_responses_before_parsing() -> None:
    async def main() -> None:
        gw = Gateway()
        taken: list[bytes] = []

        def raw(data: bytes, flow: object) -> bool:
            if b"take-me" in data:
                taken.append(data)
                return True
            if b"explode" in data:
                raise RuntimeError("handler bug")
            return False

        layer = gw.layer(["udp:127.0.0.1:0"], on_raw_response=raw)
        await layer.start()
        port = port_of(layer, Transport.UDP, 4)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
                resp = ok(1)
                for data in (
                    resp.replace(b"OK", b"take-me"),
                    resp.replace(b"OK", b"explode"),
                    resp,
                ):
                    peer.sendto(data, ("127.0.0.1", port))
                peer.sendto(options(2), ("127.0.0.1", port))  # requests never go to it
            await wait_for(lambda: len(gw.messages) == 3)
            assert len(taken) == 1
            assert [m.cseq.seq for m, _ in gw.messages] == [1, 1, 2]  # explode fell through
            assert layer.stats.received == 4
        finally:
            await layer.stop()

    asyncio.run(main())


def test_websocket_clients_get_a_ping_frame_not_a_sip_message() -> None:
    async def main() -> None:
        gw = Gateway()
        layer = gw.layer(["ws:[::1]:0"])
        await layer.start()
        try:
            client, accepted = await Client.open("::1", port_of(layer, Transport.WS, 6), ["sip"])
            assert isinstance(accepted, AcceptConnection)
            await wait_for(lambda: layer.connection_count == 1)
            phone = (ip_address("::1"), client.writer.get_extra_info("sockname")[1])
            assert layer.keepalive(Transport.WS, "ws:[::1]:0", phone, b"ignored")
            event = await client.next_event()
            assert isinstance(event, Ping)
            assert layer.stats.keepalives_sent == 1 and layer.stats.sent == 0
            client.writer.close()
        finally:
            await layer.stop()

    asyncio.run(main())
