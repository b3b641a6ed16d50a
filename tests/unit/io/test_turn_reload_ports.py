"""A reload moves TURN's own relay pool to a new port range (``media.ports``; with SIP
workers the supervisor's TURN slice): allocations in progress keep their ports, a port
outside the new range is never handed out again (neither an idle socket nor the free half
of a pair), new allocations relay from the new range."""

from __future__ import annotations

import asyncio
from ipaddress import ip_network

import pytest

from rtc64.errors import LocalProtocolError
from rtc64.net.endpoint import Transport, parse_listen
from rtc64.relay.ports import LocalPair, PortPool
from rtc64.stun import message as stun
from rtc64.stun.attributes import LIFETIME, REQUESTED_TRANSPORT, XOR_RELAYED_ADDRESS
from rtc64.turn.settings import TurnSettings
from rtc64.turnserver.peers import PeerPolicy
from rtc64.turnserver.service import TurnService, TurnServiceSettings

from .turn_client import REALM_NAME, Client, StubCredentials
from .turn_helpers import V4, port_range

M = stun.Method


async def _own_pool_service(ports: tuple[int, int]) -> TurnService:
    """TURN with no media relay to share: its own pool (the SIP workers' supervisor)."""
    creds = StubCredentials()
    settings = TurnServiceSettings(
        core=TurnSettings(realm=REALM_NAME, open=True),
        listen=(parse_listen("udp:127.0.0.1:0"),),
        relay_addresses=(V4,),
        ports=ports,
    )
    policy = PeerPolicy(allow=[ip_network("127.0.0.0/8")])
    service = TurnService(settings, credentials=creds, policy=policy, fetch=creds.fetch)
    await service.start()
    return service


async def _allocate(service: TurnService) -> tuple[Client, int]:
    server = service.bound[0].local
    client = await Client(Transport.UDP, server).open()
    answer = await client.request(M.ALLOCATE, REQUESTED_TRANSPORT(17))
    assert answer.cls is stun.Class.SUCCESS, answer.error()
    relay = answer.get(XOR_RELAYED_ADDRESS)
    assert relay is not None
    return client, relay[1]


def test_new_range_for_new_allocations_old_ports_never_handed_out_again() -> None:
    async def main() -> None:
        old = port_range(20)
        new = (old[0] + 2000, old[1] + 2000)
        service = await _own_pool_service(old)
        clients: list[Client] = []
        try:
            first, p1 = await _allocate(service)
            second, p2 = await _allocate(service)
            clients += [first, second]
            assert old[0] <= p1 <= old[1] and old[0] <= p2 <= old[1]
            # the second relay is freed and parked idle: its socket would serve the next
            done = await second.request(M.REFRESH, LIFETIME(0))
            assert done.cls is stun.Class.SUCCESS, done.error()
            assert service.relays.idle == 1
            listen, core, policy = service.settings.listen, service.settings.core, service.policy
            await service.reconfigure(listen, core, policy, new)
            assert service.settings.ports == new and service.relays.idle == 0
            # new allocations: the new range only (not p1's free half, not the idle socket)
            for _ in range(3):
                client, port = await _allocate(service)
                clients.append(client)
                assert new[0] <= port <= new[1], (port, new)
            # the allocation made before relays on; once freed its port is not kept idle
            assert (V4, p1) in service.relays.udp
            done = await first.request(M.REFRESH, LIFETIME(0))
            assert done.cls is stun.Class.SUCCESS, done.error()
            assert service.relays.idle == 0
            client, port = await _allocate(service)
            clients.append(client)
            assert new[0] <= port <= new[1]
        finally:
            for client in clients:
                client.close()
            await service.close()

    asyncio.run(main())


def test_a_range_too_small_is_refused_before_anything_changes() -> None:
    async def main() -> None:
        service = await _own_pool_service(port_range(20))
        try:
            with pytest.raises(LocalProtocolError):
                service.check_ports((31000, 31000))
            service.check_ports((31000, 31010))
        finally:
            await service.close()

    asyncio.run(main())


def test_pool_holds_only_pairs_of_its_current_addresses_and_range() -> None:
    pool = PortPool([V4], 30000, 30019)
    pair = pool.allocate(V4)
    assert pool.holds(pair)
    pool.reconfigure([V4], 31000, 31019)
    assert not pool.holds(pair) and pool.holds(LocalPair(V4, 31000))
    assert not pool.holds(LocalPair(V4, 31001))  # an odd port is no pair
    pool.release(pair)
    assert all(pool.allocate(V4).port >= 31000 for _ in range(pool.free(V4)))
