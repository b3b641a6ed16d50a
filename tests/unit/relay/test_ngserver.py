"""ng wiring: configuration keys, and ``start`` from ``NgSettings`` on loopback."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from rtc64 import config, settings
from rtc64.errors import ConfigError
from rtc64.net.address import Family
from rtc64.relay import ngserver
from rtc64.relay.bencode import decode, encode

from .fakes import FakeEngine, kamailio_offer

LOG = logging.getLogger("rtc64.test.ngserver")


def test_config_keys() -> None:
    cfg = config.load(None)
    assert cfg.ng.listen is None and cfg.ng.interfaces == ()
    cfg = config.load(
        None, {"ng.listen": "udp:[::1]:2223", "ng.interfaces": ["Internal=IPv4", "external=ip6"]}
    )
    assert str(cfg.ng.listen) == "udp:[::1]:2223"
    assert dict(cfg.ng.interfaces) == {"internal": Family.INET, "external": Family.INET6}
    assert ("ng.interfaces", "external=IPv6, internal=IPv4") in cfg.describe()
    table = config.load(None, {"ng.interfaces": {"lan": "ipv4"}}).ng.interfaces
    assert table == (("lan", Family.INET),)
    for key, bad in [
        ("ng.listen", "tcp:127.0.0.1:2223"),
        ("ng.listen", "udp:127.0.0.1:2223;advertise=1.2.3.4"),
        ("ng.listen", "127.0.0.1:2223"),
        ("ng.interfaces", ["lan=ipx"]),
        ("ng.interfaces", ["=ipv4"]),
        ("ng.interfaces", {"a b": "ipv4"}),
        ("ng.interfaces", 5),
    ]:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            config.load(None, {key: bad})


def test_start_serves_the_relay_with_the_interface_map() -> None:
    async def main() -> None:
        cfg = config.load(
            None,
            {"ng.listen": "udp:127.0.0.1:0", "ng.interfaces": ["internal=ipv4", "external=ipv6"]},
        )
        ng = settings.ng_settings(cfg.ng)
        assert ng is not None
        engine = FakeEngine()
        listener = await ngserver.start(ng, engine, LOG)
        assert listener is not None
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        try:
            body = kamailio_offer(**{"address-family": "", "direction": ["internal", "external"]})
            await loop.sock_sendto(sock, b"k1 " + encode(body), ("127.0.0.1", listener.port))
            data = await asyncio.wait_for(loop.sock_recv(sock, 65535), 5)
            assert data.startswith(b"k1 ")
            assert decode(data[3:]) == {b"result": b"ok", b"sdp": b"offer-sdp:IP6"}
            assert engine.log[-1][1]["options"].from_family is Family.INET
        finally:
            sock.close()
            await listener.stop()

    asyncio.run(main())
