"""SIP worker sockets and the supervisor: SO_REUSEPORT groups, private ports, restarts."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import time
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest

from rtc64.errors import ConfigError
from rtc64.io.connection import Limits
from rtc64.io.sip_workers import (
    Supervisor,
    bind_groups,
    notify_ready,
    own_ports,
    peer_listeners,
)
from rtc64.net.address import HostPort
from rtc64.net.endpoint import ListenSpec, Transport

LIMITS = Limits()
UDP4 = ListenSpec(Transport.UDP, IPv4Address("127.0.0.1"), 0)
UDP6 = ListenSpec(Transport.UDP, IPv6Address("::1"), 0)
TCP4 = ListenSpec(Transport.TCP, IPv4Address("127.0.0.1"), 0)


def test_groups_share_the_public_port_and_own_private_ones() -> None:
    groups = bind_groups([UDP4, UDP6, TCP4], 3, worker_ports=0, limits=LIMITS)
    try:
        publics = {spec for g in groups for spec, _ in g.public}
        assert len(publics) == 3  # the same three specs (bound ports) in every worker
        assert all(spec.port for spec in publics)
        own = [spec for g in groups for spec, _ in g.own]
        assert len(own) == 9  # one per listener per worker
        # numbers distinct per transport: a private port names its worker
        assert len({(s.transport, s.port) for s in own}) == 9
        assert sorted(s.transport.value for s in own) == ["tcp"] * 3 + ["udp"] * 6
        for g in groups:  # private ports first: Via and Record-Route name them
            assert g.specs[: len(g.own)] == tuple(s for s, _ in g.own)
            opener = g.opener()
            for spec, sock in (*g.own, *g.public):
                assert opener(spec) is sock
        assert {b.port for b in peer_listeners(groups)} == {s.port for s in own}
    finally:
        for g in groups:
            g.close()


def test_each_peer_lands_on_one_worker_always() -> None:
    """Datagrams to the shared port: each source (address, port) reaches exactly one
    member of the group, the same one every time (retransmissions, CANCEL, ACK)."""
    groups = bind_groups([UDP4], 2, worker_ports=0, limits=LIMITS)
    members = [g.public[0][1] for g in groups]
    port = groups[0].public[0][0].port
    clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(16)]
    try:
        for member in members:
            member.settimeout(0.5)
        where: dict[int, set[int]] = {}
        for _ in range(3):
            for n, client in enumerate(clients):
                client.sendto(b"%d" % n, ("127.0.0.1", port))
            got = 0
            for k, member in enumerate(members):
                member.setblocking(False)
                while True:
                    try:
                        data = member.recv(100)
                    except BlockingIOError:
                        break
                    where.setdefault(int(data), set()).add(k)
                    got += 1
            assert got == 16
        assert all(len(ks) == 1 for ks in where.values())
        assert {k for ks in where.values() for k in ks} == {0, 1}  # both members got some
    finally:
        for c in clients:
            c.close()
        for g in groups:
            g.close()


def test_configured_worker_ports_and_advertise() -> None:
    base = _free_udp_base(2)
    spec = ListenSpec(Transport.UDP, IPv4Address("127.0.0.1"), 0, HostPort("sip.example.net"))
    groups = bind_groups([spec], 2, worker_ports=base, limits=LIMITS)
    try:
        own = [g.own[0][0] for g in groups]
        assert [s.port for s in own] == [base, base + 1]
        # the advertised name stays, with the worker's own port
        assert [s.advertise for s in own] == [
            HostPort("sip.example.net", base),
            HostPort("sip.example.net", base + 1),
        ]
    finally:
        for g in groups:
            g.close()


def test_bind_failure_names_the_key_and_closes_everything() -> None:
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blocker.bind(("127.0.0.1", 0))  # no SO_REUSEPORT: the group cannot join it
    taken = blocker.getsockname()[1]
    try:
        with pytest.raises(ConfigError) as info:
            bind_groups(
                [UDP4, ListenSpec(Transport.UDP, IPv4Address("127.0.0.1"), taken)],
                2,
                worker_ports=0,
                limits=LIMITS,
            )
        assert info.value.key == "sip.listen"
        assert f"127.0.0.1:{taken}" in str(info.value)
        with pytest.raises(ConfigError) as info:
            bind_groups([UDP4], 1, worker_ports=taken, limits=LIMITS)
        assert info.value.key == "sip.worker_ports"
    finally:
        blocker.close()


def _free_udp_base(count: int) -> int:
    for base in range(42000, 60000, 97):
        probes = []
        try:
            for k in range(count):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                probes.append(s)
                s.bind(("127.0.0.1", base + k))
        except OSError:
            continue
        finally:
            for s in probes:
                s.close()
        return base
    raise AssertionError("no free UDP ports")


# --- the supervisor (spawned children run these module-level functions) ---------------


def crash_once(marker: str, notify: socket.socket) -> None:
    """First run: exit 3. Later runs: report ready and serve until terminated."""
    path = Path(marker)
    if not path.exists():
        path.write_text("crashed")
        sys.exit(3)
    path.write_text("again")
    notify_ready(notify, 0)
    while True:
        time.sleep(0.2)


def serve_forever(marker: str, notify: socket.socket) -> None:
    notify_ready(notify, int(marker))
    while True:
        time.sleep(0.2)


def test_supervisor_restarts_a_worker_that_exits(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    log = _log()
    ready: list[float] = []

    async def main() -> tuple[list[int | None], int]:
        sup = Supervisor(
            crash_once, lambda k: str(marker), 1, log, on_ready=lambda: ready.append(1)
        )
        sup.start()
        first = sup.pids[0]
        try:
            deadline = time.monotonic() + 60
            while not ready and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            pids = sup.pids
            assert pids[0] is not None and pids[0] != first
            return pids, sup.restarts
        finally:
            await sup.stop()

    pids, restarts = asyncio.run(main())
    assert ready == [1] and restarts == 1
    assert marker.read_text() == "again"
    assert pids[0] is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pids[0], 0)  # stopped


def test_supervisor_ready_once_all_workers_are(tmp_path: Path) -> None:
    log = _log()
    ready: list[list[int | None]] = []

    async def main() -> list[int | None]:
        sup = Supervisor(serve_forever, str, 2, log, on_ready=lambda: ready.append(sup.pids))
        sup.start()
        try:
            deadline = time.monotonic() + 60
            while not ready and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            return sup.pids
        finally:
            await sup.stop()

    pids = asyncio.run(main())
    assert len(ready) == 1 and all(pids) and len(set(pids)) == 2
    for pid in pids:
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def bad_config(marker: str, notify: socket.socket) -> None:
    """Worker 1 cannot run its configuration (exit 2, as ``run_worker`` does); worker 0 serves."""
    if marker == "1":
        sys.exit(2)
    serve_forever(marker, notify)


def test_a_worker_that_cannot_run_its_configuration_stops_the_gateway() -> None:
    """Exit 2 before the gateway was ever ready: no restart loop, ``on_fatal`` instead."""
    log = _log()
    fatal: list[int] = []

    async def main() -> int:
        sup = Supervisor(bad_config, str, 2, log)
        sup.on_fatal = fatal.append
        sup.start()
        try:
            deadline = time.monotonic() + 60
            while not fatal and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
            return sup.restarts
        finally:
            await sup.stop()

    assert asyncio.run(main()) == 0 and fatal == [1]


def _log() -> logging.Logger:
    return logging.getLogger("rtc64.test.workers")


def test_private_ports_of_the_previous_run_are_taken_again() -> None:
    """A Path or Record-Route naming a worker's port keeps working after a restart of the
    whole gateway: the next run binds the same private ports, unless one is taken."""
    spec = ListenSpec(Transport.UDP, IPv4Address("127.0.0.1"), _free_udp_base(1))
    first = bind_groups([spec], 2, worker_ports=0, limits=LIMITS)
    remembered = own_ports(first)
    ports = [g.own[0][0].port for g in first]
    for g in first:
        g.close()
    assert sorted(remembered.values()) == sorted(ports)
    again = bind_groups([spec], 2, worker_ports=0, limits=LIMITS, previous=remembered)
    try:
        assert [g.own[0][0].port for g in again] == ports
    finally:
        for g in again:
            g.close()
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blocker.bind(("127.0.0.1", ports[0]))
    try:
        third = bind_groups([spec], 2, worker_ports=0, limits=LIMITS, previous=remembered)
        got = [g.own[0][0].port for g in third]
        for g in third:
            g.close()
        assert got[0] != ports[0] and got[1] == ports[1]
    finally:
        blocker.close()
