"""``rtc64 serve`` with TURN: ``--only turn`` starts no SIP listener and relays; with SIP
and media, TURN relay ports come from the media relay's pool; long-term credentials from
the user store; a busy TURN port is a one-line configuration error."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

import pytest

from rtc64 import config
from rtc64.errors import ConfigError
from rtc64.gateway.location.users import UserRecord
from rtc64.net.endpoint import Transport
from rtc64.serve import Gateway, open_checked_store
from rtc64.stun import message as stun
from rtc64.stun.attributes import (
    CHANNEL_NUMBER,
    REQUESTED_TRANSPORT,
    XOR_PEER_ADDRESS,
    XOR_RELAYED_ADDRESS,
)
from rtc64.stun.integrity import long_term_key

from .turn_client import Client
from .turn_helpers import V4, endpoint, port_range, wait_for

M = stun.Method
LOG = logging.getLogger("test.turn.serve")


def _cfg(tmp_path: Path, **extra: object) -> config.Config:
    low, high = port_range(100)
    values: dict[str, object] = {
        "general.data_dir": str(tmp_path),
        "general.services": ["turn"],
        "turn.listen": ["udp:127.0.0.1:0", "tcp:127.0.0.1:0"],
        "turn.allow_peers": ["127.0.0.0/8"],
        "media.ports": f"{low}-{high}",
    }
    values.update(extra)
    return config.load(overrides=values)


def _listener(gateway: Gateway, transport: Transport) -> tuple:  # type: ignore[type-arg]
    assert gateway.turn is not None
    for bound in gateway.turn.bound:
        if bound.transport is transport:
            return bound.local
    raise AssertionError("no listener")


async def _relay_one_channel(client: Client) -> None:
    peer = await endpoint()
    try:
        answer = await client.request(M.ALLOCATE, REQUESTED_TRANSPORT(17))
        assert answer.cls is stun.Class.SUCCESS, answer.error()
        relay = answer.get(XOR_RELAYED_ADDRESS)
        assert relay is not None and relay[0] == V4  # the specific listen address's family
        bound = await client.request(
            M.CHANNEL_BIND, CHANNEL_NUMBER(0x4000), XOR_PEER_ADDRESS(peer.address)
        )
        assert bound.cls is stun.Class.SUCCESS, bound.error()
        peer.send(b"ping", (str(relay[0]), relay[1]))
        await wait_for(lambda: client.other[-1:] == [b"\x40\x00\x00\x04ping"])
    finally:
        peer.close()


def test_only_turn_open_relays_and_starts_no_sip(tmp_path: Path) -> None:
    async def main() -> None:
        gateway = Gateway(_cfg(tmp_path, **{"turn.open": True}), LOG)
        await gateway.start()
        client = await Client(Transport.UDP, _listener(gateway, Transport.UDP)).open()
        try:
            assert gateway.transports is None and gateway.proxy is None
            assert gateway.relay is None
            await _relay_one_channel(client)
        finally:
            client.close()
            await gateway.stop()

    asyncio.run(main())


def test_long_term_credentials_from_the_user_store(tmp_path: Path) -> None:
    async def main() -> None:
        cfg = _cfg(tmp_path, **{"auth.realm": "lab.example"})
        store = await open_checked_store(cfg)
        md5 = long_term_key("alice", "lab.example", "wonderland", 1).hex()
        sha = long_term_key("alice", "lab.example", "wonderland", 2).hex()
        await store.put_user(UserRecord("alice", "lab.example", md5, sha))
        await store.close()
        gateway = Gateway(cfg, LOG)
        await gateway.start()
        client = await Client(Transport.TCP, _listener(gateway, Transport.TCP)).open()
        try:
            refused = await client.request(M.ALLOCATE, REQUESTED_TRANSPORT(17))
            assert (refused.error() or (0,))[0] == 401
            client.user = "alice"
            await _relay_one_channel(client)
        finally:
            client.close()
            await gateway.stop()

    asyncio.run(main())


def test_sip_media_and_turn_share_the_port_pool(tmp_path: Path) -> None:
    async def main() -> None:
        cfg = _cfg(
            tmp_path,
            **{
                "general.services": ["sip", "media", "turn"],
                "sip.listen": ["udp:[::1]:0"],  # port 0 twice counts as the same endpoint
                "media.addresses": ["127.0.0.1"],
                "turn.open": True,
            },
        )
        gateway = Gateway(cfg, LOG)
        await gateway.start()
        client = await Client(Transport.UDP, _listener(gateway, Transport.UDP)).open()
        try:
            assert gateway.relay is not None and gateway.transports is not None
            before = gateway.relay.pool.in_use
            answer = await client.request(M.ALLOCATE, REQUESTED_TRANSPORT(17))
            relay = answer.get(XOR_RELAYED_ADDRESS)
            assert relay is not None
            assert gateway.relay.pool.in_use == before + 1  # the media relay's own pool
            low, high = cfg.media.ports
            assert low <= relay[1] <= high
        finally:
            client.close()
            await gateway.stop()

    asyncio.run(main())


def test_busy_turn_port_is_a_config_error(tmp_path: Path) -> None:
    async def main() -> None:
        squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        squatter.bind(("127.0.0.1", 0))
        port = squatter.getsockname()[1]
        gateway = Gateway(
            _cfg(tmp_path, **{"turn.open": True, "turn.listen": [f"udp:127.0.0.1:{port}"]}), LOG
        )
        try:
            with pytest.raises(ConfigError) as err:
                await gateway.start()
            assert err.value.key == "turn.listen"
        finally:
            squatter.close()
            await gateway.stop()

    asyncio.run(main())
