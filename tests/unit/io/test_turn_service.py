"""The TURN service end to end on loopback: a real client over UDP and TCP allocates,
permits, relays through Send/Data and channels, authenticates (with a user fetched on
demand) and frees its relay; IPv6 client to IPv4 relay; counters in the snapshot."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import socket
from ipaddress import ip_address, ip_network

import pytest

from rtc64.errors import ConfigError
from rtc64.io import memory
from rtc64.net.address import Family
from rtc64.net.endpoint import Transport, parse_listen
from rtc64.relay.ports import PortPool
from rtc64.stun import message as stun
from rtc64.stun.attributes import (
    ADDITIONAL_ADDRESS_FAMILY,
    CHANNEL_NUMBER,
    CONNECTION_ID,
    DATA,
    LIFETIME,
    REQUESTED_TRANSPORT,
    XOR_MAPPED_ADDRESS,
    XOR_PEER_ADDRESS,
    XOR_RELAYED_ADDRESS,
)
from rtc64.turn.settings import TurnSettings
from rtc64.turnserver.peers import PeerPolicy
from rtc64.turnserver.quotas import ChallengeLimiter
from rtc64.turnserver.service import TurnService, TurnServiceSettings, tune_memory

from .turn_client import REALM_NAME, Client, StubCredentials
from .turn_helpers import V4, V6, endpoint, port_range, settle, wait_for

M = stun.Method


async def _service(
    *,
    open_: bool = True,
    credentials: StubCredentials | None = None,
    bandwidth: int = 0,
    challenges: ChallengeLimiter | None = None,
) -> tuple[TurnService, PortPool]:
    creds = credentials or StubCredentials()
    pool = PortPool([V4, V6], *port_range())
    settings = TurnServiceSettings(
        core=TurnSettings(realm=REALM_NAME, open=open_),
        listen=tuple(
            parse_listen(s) for s in ("udp:127.0.0.1:0", "tcp:127.0.0.1:0", "udp:[::1]:0")
        ),
        relay_addresses=(V4, V6),
        bandwidth=bandwidth,
    )
    policy = PeerPolicy(allow=[ip_network("127.0.0.0/8"), ip_network("::1/128")])
    service = TurnService(
        settings,
        credentials=creds,
        policy=policy,
        pools=[pool],
        fetch=creds.fetch,
        challenges=challenges,
    )
    await service.start()
    return service, pool


def _listener(service: TurnService, transport: Transport, version: int = 4) -> tuple:  # type: ignore[type-arg]
    for bound in service.bound:
        if bound.transport is transport and bound.spec.address.version == version:
            return bound.local
    raise AssertionError("no listener")


def test_udp_allocation_relays_both_ways_then_refresh_zero_frees_the_port() -> None:
    async def main() -> None:
        service, pool = await _service()
        client = await Client(Transport.UDP, _listener(service, Transport.UDP)).open()
        peer = await endpoint()
        try:
            binding = await client.request(M.BINDING)
            assert binding.get(XOR_MAPPED_ADDRESS) == client.udp.address  # type: ignore[union-attr]
            answer = await client.request(M.ALLOCATE, REQUESTED_TRANSPORT(17))
            assert answer.cls is stun.Class.SUCCESS, answer.error()
            relay = answer.get(XOR_RELAYED_ADDRESS)
            assert relay is not None and relay[0] == V4
            assert pool.in_use == 1

            # no permission yet: the peer's datagram goes nowhere
            peer.send(b"too early", (str(relay[0]), relay[1]))
            await settle()
            assert client.other == []

            ok = await client.request(M.CREATE_PERMISSION, XOR_PEER_ADDRESS(peer.address))
            assert ok.cls is stun.Class.SUCCESS, ok.error()
            client.raw(
                stun.encode(
                    stun.build(
                        M.SEND,
                        stun.Class.INDICATION,
                        client.tid(),
                        XOR_PEER_ADDRESS(peer.address),
                        DATA(b"send indication"),
                    )
                )
            )
            await wait_for(lambda: len(peer.got) == 1)
            assert peer.got[0] == (b"send indication", (str(relay[0]), relay[1]))
            peer.send(b"data indication", (str(relay[0]), relay[1]))
            await wait_for(lambda: len(client.other) == 1)
            indication = stun.decode(client.other[0])
            assert indication.method == M.DATA and indication.get(DATA) == b"data indication"

            bound = await client.request(
                M.CHANNEL_BIND, CHANNEL_NUMBER(0x4000), XOR_PEER_ADDRESS(peer.address)
            )
            assert bound.cls is stun.Class.SUCCESS, bound.error()
            client.raw(b"\x40\x00\x00\x05hello")
            await wait_for(lambda: len(peer.got) == 2)
            assert peer.got[1][0] == b"hello"
            peer.send(b"world", (str(relay[0]), relay[1]))
            await wait_for(lambda: len(client.other) == 2)
            assert client.other[1] == b"\x40\x00\x00\x05world"

            stats = service.stats()
            (traffic,) = stats.traffic
            assert (traffic.client_family, traffic.relay_family) == (Family.INET, Family.INET)
            assert traffic.to_peer_packets == 2 and traffic.from_peer_packets == 2
            assert traffic.no_permission == 1
            assert stats.core.allocations == 1

            gone = await client.request(M.REFRESH, LIFETIME(0))
            assert gone.cls is stun.Class.SUCCESS, gone.error()
            await wait_for(lambda: service.relays.idle == 1)  # kept bound for reuse
            assert pool.in_use == 1
            peer.send(b"after", (str(relay[0]), relay[1]))
            await settle()
            assert len(client.other) == 2
            assert service.stats().traffic[0].relays == 1  # closed relay's counters kept
        finally:
            client.close()
            peer.close()
            await service.close()
        assert pool.in_use == 0  # closing the service frees the idle relay's port

    asyncio.run(main())


def test_ipv6_client_gets_an_ipv4_relay_by_default() -> None:
    async def main() -> None:
        service, _ = await _service()
        client = await Client(Transport.UDP, _listener(service, Transport.UDP, 6)).open()
        peer = await endpoint()
        try:
            answer = await client.request(M.ALLOCATE, REQUESTED_TRANSPORT(17))
            relay = answer.get(XOR_RELAYED_ADDRESS)
            assert relay is not None and relay[0] == V4  # RFC 8656 §7.2: IPv4 by default
            await client.request(M.CREATE_PERMISSION, XOR_PEER_ADDRESS(peer.address))
            await client.request(
                M.CHANNEL_BIND, CHANNEL_NUMBER(0x4001), XOR_PEER_ADDRESS(peer.address)
            )
            peer.send(b"v4 to v6", (str(relay[0]), relay[1]))
            await wait_for(lambda: len(client.other) == 1)
            assert client.other[0] == b"\x40\x01\x00\x08v4 to v6"
            (traffic,) = service.stats().traffic
            assert (traffic.client_family, traffic.relay_family) == (Family.INET6, Family.INET)
        finally:
            client.close()
            peer.close()
            await service.close()

    asyncio.run(main())


def test_long_term_credentials_with_a_user_fetched_on_demand() -> None:
    async def main() -> None:
        creds = StubCredentials(slow=("alice",))
        service, _ = await _service(open_=False, credentials=creds)
        client = await Client(Transport.UDP, _listener(service, Transport.UDP)).open()
        try:
            client.user = "alice"
            answer = await client.request(M.ALLOCATE, REQUESTED_TRANSPORT(17))
            assert answer.cls is stun.Class.SUCCESS, answer.error()
            assert creds.fetched == ["alice"]  # the Lookup was fetched and the request re-fed
            wrong = Client(Transport.UDP, _listener(service, Transport.UDP))
            await wrong.open()
            try:
                wrong.user = "alice"
                first = await wrong.request(M.ALLOCATE, REQUESTED_TRANSPORT(17))
                assert first.cls is stun.Class.SUCCESS
                wrong.key = b"not the key" * 2
                refused = await wrong.request(M.REFRESH, LIFETIME(600), retry=False)
                error = refused.error()
                assert error is not None and error[0] == 401
            finally:
                wrong.close()
        finally:
            client.close()
            await service.close()

    asyncio.run(main())


def test_tcp_client_allocation_goes_with_its_connection() -> None:
    async def main() -> None:
        service, pool = await _service()
        client = await Client(Transport.TCP, _listener(service, Transport.TCP)).open()
        peer = await endpoint()
        try:
            answer = await client.request(M.ALLOCATE, REQUESTED_TRANSPORT(17))
            assert answer.cls is stun.Class.SUCCESS, answer.error()
            relay = answer.get(XOR_RELAYED_ADDRESS)
            assert relay is not None
            await client.request(
                M.CHANNEL_BIND, CHANNEL_NUMBER(0x4002), XOR_PEER_ADDRESS(peer.address)
            )
            client.raw(b"\x40\x02\x00\x03abc\x00")  # padded on a stream
            await wait_for(lambda: len(peer.got) == 1)
            assert peer.got[0][0] == b"abc"
            peer.send(b"xyz", (str(relay[0]), relay[1]))
            await wait_for(lambda: len(client.other) == 1)
            assert client.other[0] == b"\x40\x02\x00\x03xyz\x00"
            assert pool.in_use == 1
            client.close()
            await wait_for(lambda: service.relays.idle == 1)  # connection closed: deleted
            assert not service.relays.udp
        finally:
            client.close()
            peer.close()
            await service.close()

    asyncio.run(main())


def test_garbage_to_the_service_is_counted_not_fatal() -> None:
    async def main() -> None:
        service, _ = await _service()
        client = await Client(Transport.UDP, _listener(service, Transport.UDP)).open()
        try:
            client.raw(b"\x00\x01\x00\x04" + b"\x21\x12\xa4\x42" + b"t" * 12 + b"\xff\xff")
            client.raw(b"\x00\x03\x00\x08" + b"\x00" * 30)  # bad cookie, lying length
            await settle()
            assert service.failures == 0
            answer = await client.request(M.BINDING)
            assert answer.cls is stun.Class.SUCCESS
        finally:
            client.close()
            await service.close()

    asyncio.run(main())


def test_flood_of_unauthenticated_requests_gets_few_401s() -> None:
    async def main() -> None:
        limiter = ChallengeLimiter(rate=1.0, burst=3.0)
        service, _ = await _service(open_=False, challenges=limiter)
        client = await Client(Transport.UDP, _listener(service, Transport.UDP)).open()
        try:
            for _ in range(30):
                msg = stun.build(
                    M.ALLOCATE, stun.Class.REQUEST, client.tid(), REQUESTED_TRANSPORT(17)
                )
                client.raw(stun.encode(msg))
            await wait_for(lambda: limiter.challenges + limiter.dropped == 30)
            await settle()
            assert len(client.responses) == limiter.challenges < 30
            assert {(r.error() or (0,))[0] for r in client.responses.values()} == {401}
            assert service.stats().challenges_dropped == limiter.dropped > 0
            ok = await client.request(M.BINDING)  # other answers are never limited
            assert ok.cls is stun.Class.SUCCESS
        finally:
            client.close()
            await service.close()

    asyncio.run(main())


def test_rfc6062_connect_and_connection_bind_splice_raw_bytes() -> None:
    async def main() -> None:
        accepted: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

        async def on_peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.append((reader, writer))

        peer_server = await asyncio.start_server(on_peer, "127.0.0.1", 0)
        peer = (V4, peer_server.sockets[0].getsockname()[1])
        service, _ = await _service()
        tcp = _listener(service, Transport.TCP)
        control = await Client(Transport.TCP, tcp).open()
        data_reader, data_writer = await asyncio.open_connection(str(tcp[0]), tcp[1])
        try:
            answer = await control.request(M.ALLOCATE, REQUESTED_TRANSPORT(6))
            assert answer.cls is stun.Class.SUCCESS, answer.error()
            relay = answer.get(XOR_RELAYED_ADDRESS)
            assert relay is not None
            ok = await control.request(M.CREATE_PERMISSION, XOR_PEER_ADDRESS(peer))
            assert ok.cls is stun.Class.SUCCESS, ok.error()
            connected = await control.request(M.CONNECT, XOR_PEER_ADDRESS(peer))
            assert connected.cls is stun.Class.SUCCESS, connected.error()
            cid = connected.get(CONNECTION_ID)
            assert cid is not None
            await wait_for(lambda: len(accepted) == 1)
            peer_reader, peer_writer = accepted[0]
            assert peer_writer.get_extra_info("peername")[1] == relay[1]  # from the relay
            peer_writer.write(b"before bind ")
            await peer_writer.drain()

            tid = b"bind-request"
            bind = stun.build(M.CONNECTION_BIND, stun.Class.REQUEST, tid, CONNECTION_ID(cid))
            data_writer.write(stun.encode(bind) + b"first bytes")  # raw data right behind it
            await data_writer.drain()
            head = await data_reader.readexactly(20)
            length = int.from_bytes(head[2:4], "big")
            reply = stun.decode(head + await data_reader.readexactly(length))
            assert reply.cls is stun.Class.SUCCESS and reply.transaction_id == tid
            assert await data_reader.readexactly(12) == b"before bind "
            assert await peer_reader.readexactly(11) == b"first bytes"
            peer_writer.write(b"\x00\x01 not stun")
            await peer_writer.drain()
            assert await data_reader.readexactly(11) == b"\x00\x01 not stun"
            tcp = service.stats().tcp
            assert (tcp.relays, tcp.connections) == (1, 1)
            assert tcp.bytes_from_peers == 23 and tcp.bytes_to_peers == 11
            peer_writer.close()
            assert await data_reader.read() == b""  # the peer's close reaches the client
            assert service.stats().tcp.bytes_from_peers == 23  # kept after the close
        finally:
            control.close()
            data_writer.close()
            for _, w in accepted:
                w.close()
            peer_server.close()
            await service.close()

    asyncio.run(main())


def test_dual_allocation_also_with_coturns_draft_attribute() -> None:
    async def main() -> None:
        service, pool = await _service()
        client = await Client(Transport.UDP, _listener(service, Transport.UDP, 6)).open()
        try:
            rfc = await client.request(
                M.ALLOCATE, REQUESTED_TRANSPORT(17), ADDITIONAL_ADDRESS_FAMILY(Family.INET6)
            )
            assert [a[0] for a in rfc.get_all(XOR_RELAYED_ADDRESS)] == [V4, V6]
            assert pool.in_use == 2  # one port of each family
            await client.request(M.REFRESH, LIFETIME(0))
            await wait_for(lambda: service.relays.idle == 2)
            assert pool.in_use == 2 and not service.relays.udp
            tid = client.tid()
            draft = stun.build(
                M.ALLOCATE, stun.Class.REQUEST, tid, REQUESTED_TRANSPORT(17), (0x8032, b"\2\0\0\0")
            )
            client.raw(stun.encode(draft))  # what turnutils_uclient -Z sends
            await wait_for(lambda: tid in client.responses)
            answer = client.responses.pop(tid)
            assert [a[0] for a in answer.get_all(XOR_RELAYED_ADDRESS)] == [V4, V6]
            assert service.relays.reused == 2 and service.relays.idle == 0  # one per family
            assert pool.in_use == 2
        finally:
            client.close()
            await service.close()

    asyncio.run(main())


def test_tune_memory_sets_the_gateways_collector_settings_and_undoes_them() -> None:
    async def main() -> None:
        service, _ = await _service()
        undo = tune_memory(service, logging.getLogger("test"))
        try:
            assert gc.get_threshold() == (
                memory.YOUNG_THRESHOLD,
                memory.MIDDLE_THRESHOLD,
                memory.NO_AUTOMATIC_FULL,
            )
            assert gc.get_freeze_count() > 0
        finally:
            undo()
            await service.close()
        assert gc.get_threshold() == (700, 10, 10)
        assert gc.get_freeze_count() == 0

    asyncio.run(main())


def test_reconfigure_opens_and_closes_listeners_and_keeps_the_allocation() -> None:
    """A reload: a new TCP listener opens, the IPv6 UDP one closes, the quota and peer
    policy change for new requests; the allocation made before relays on. A listener that
    cannot be bound changes nothing (``ConfigError`` naming it)."""

    async def main() -> None:
        service, pool = await _service()
        client = await Client(Transport.UDP, _listener(service, Transport.UDP)).open()
        peer = await endpoint()
        try:
            answer = await client.request(M.ALLOCATE, REQUESTED_TRANSPORT(17))
            assert answer.cls is stun.Class.SUCCESS, answer.error()
            relay = answer.get(XOR_RELAYED_ADDRESS)
            assert relay is not None
            old_v6 = _listener(service, Transport.UDP, 6)
            listen = (
                parse_listen("udp:127.0.0.1:0"),
                parse_listen("tcp:127.0.0.1:0"),
                parse_listen("tcp:[::1]:0"),
            )
            before = [b.spec for b in service.bound]
            with pytest.raises(ConfigError) as err:
                await service.reconfigure(
                    (*listen, parse_listen("udp:192.0.2.99:3478")),
                    service.settings.core,
                    service.policy,
                )
            assert err.value.key == "turn.listen" and "192.0.2.99" in str(err.value)
            assert [b.spec for b in service.bound] == before
            core = dataclasses.replace(service.settings.core, max_permissions=1)
            strict = PeerPolicy(allow=[ip_network("127.0.0.1/32")])
            opened, closed = await service.reconfigure(listen, core, strict)
            assert opened == [parse_listen("tcp:[::1]:0")]
            assert closed == [parse_listen("udp:[::1]:0")]
            assert {(b.transport, b.spec.address.version) for b in service.bound} == {
                (Transport.UDP, 4), (Transport.TCP, 4), (Transport.TCP, 6)
            }  # fmt: skip
            assert service.settings.listen == listen
            probe = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            probe.setblocking(False)
            ip, port = _listener(service, Transport.TCP, 6)
            await asyncio.get_running_loop().sock_connect(probe, (str(ip), port))
            probe.close()
            assert old_v6 not in service.listeners.udp
            # the allocation made before the reload relays on, under the new limits
            ok = await client.request(M.CREATE_PERMISSION, XOR_PEER_ADDRESS(peer.address))
            assert ok.cls is stun.Class.SUCCESS, ok.error()
            client.raw(
                stun.encode(
                    stun.build(
                        M.SEND, stun.Class.INDICATION, client.tid(),
                        XOR_PEER_ADDRESS(peer.address), DATA(b"after reload"),
                    )
                )
            )  # fmt: skip
            await wait_for(lambda: len(peer.got) == 1)
            other = (ip_address("127.0.0.2"), 4000)  # allowed before the reload, not now
            refused = await client.request(M.CREATE_PERMISSION, XOR_PEER_ADDRESS(other))
            assert refused.error() is not None and refused.error()[0] == 403  # type: ignore[index]
            assert service.core.settings.max_permissions == 1
            assert pool.in_use == 1
        finally:
            client.close()
            peer.close()
            await service.close()

    asyncio.run(main())
