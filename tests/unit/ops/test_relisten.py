"""Listener changes on reload: ``SipTransportLayer.relisten`` and ``Identity`` following."""

from __future__ import annotations

import asyncio
import socket
from ipaddress import IPv4Address

import pytest

from rtc64.errors import ConfigError
from rtc64.gateway.identity import Identity
from rtc64.io.sip_transport import SipTransportLayer
from rtc64.net.endpoint import parse_listen


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_relisten_opens_closes_keeps_and_rolls_back() -> None:
    port = _free_port()
    udp = parse_listen(f"udp:127.0.0.1:{port}")
    tcp = parse_listen(f"tcp:127.0.0.1:{port}")
    foreign = parse_listen("udp:192.0.2.99:5060")  # not an address of this host

    async def run() -> None:
        layer = SipTransportLayer([udp], lambda m, f: None, lambda d, e, f: None)
        await layer.start()
        identity = Identity(list(layer.listeners), source_for=lambda _ip: None)
        try:
            opened, closed = await layer.relisten([udp, tcp])
            assert (opened, closed) == ([tcp], [])
            identity.replace_listeners(layer.listeners)
            assert [b.spec for b in identity.listeners] == [udp, tcp]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            with pytest.raises(ConfigError) as err:
                await layer.relisten([udp, tcp, foreign])
            assert "sip.listen" in str(err.value) and "192.0.2.99" in str(err.value)
            assert [b.spec for b in layer.listeners] == [udp, tcp]
            opened, closed = await layer.relisten([udp])
            assert (opened, closed) == ([], [tcp])
            await asyncio.sleep(0.05)
            assert layer.connection_count == 1  # the accepted connection stays
            with pytest.raises(OSError):
                await asyncio.open_connection("127.0.0.1", port)
            identity.replace_listeners(layer.listeners)
            assert identity.ports == frozenset({port})
            assert identity.addresses == frozenset({IPv4Address("127.0.0.1")})
            writer.close()
            del reader
        finally:
            await layer.stop()

    asyncio.run(run())
