"""Expiry by deadlines: the SQLite store's cache and the registration log touch only what
expires, at the right time (fake clock); binding rows stay out of the collector's walk."""

from __future__ import annotations

import asyncio
import gc
import logging
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path

import pytest

from rtc64.gateway.calllog import RegistrationLog
from rtc64.gateway.location.bindings import Binding, pack_ip, unpack_ip
from rtc64.gateway.location.deadlines import Deadlines
from rtc64.gateway.location.sqlite import SqliteStore
from tests.unit.gateway.test_store import make, rich_bindings

A, B, C = "sip:a@example.net", "sip:b@example.net", "sip:c@example.net"


def test_deadlines_return_each_due_key_once_at_its_time() -> None:
    d: Deadlines[str] = Deadlines()
    d.schedule("a", 10.0)
    d.schedule("b", 20.0)
    d.schedule("a", 30.0)  # later: the earlier one stays
    d.schedule("c", 5.0)
    d.schedule("c", 1.0)  # earlier: replaces, the 5.0 entry goes stale
    assert d.due(0.999) == []
    assert d.due(1.0) == ["c"]
    assert d.due(9.99) == []  # the stale 5.0 entry of c is not reported
    assert d.due(10.0) == ["a"]
    assert len(d) == 1 and d.next() == 20.0
    assert d.due(100.0) == ["b"] and len(d) == 0 and d.entries == 0


def test_deadlines_heap_does_not_grow_with_refreshes() -> None:
    d: Deadlines[str] = Deadlines()
    for i in range(1000):
        d.schedule("a", 100.0 + i)  # a phone refreshing with a later expiry each time
    assert d.entries == 1


def _expire(store: SqliteStore, now: float) -> int:
    return asyncio.run(store.expire(now))


def test_sqlite_expiry_removes_exactly_the_expired_bindings(tmp_path: Path) -> None:
    path = tmp_path / "loc.sqlite"

    async def fill() -> SqliteStore:
        store = await SqliteStore.open(path)
        await store.replace(A, [make(A, 1, 100.0), make(A, 2, 200.0)])
        await store.replace(B, [make(B, 3, 150.0)])
        await store.replace(C, [make(C, 4, 120.0)])
        await store.replace(C, [make(C, 4, 300.0)])  # refreshed: later than its first time
        return store

    store = asyncio.run(fill())

    def held() -> list[tuple[str, float]]:  # what memory holds, expired or not
        return [(b.aor, b.expires_at) for b in asyncio.run(store.all_bindings(0.0))]

    assert _expire(store, 99.9) == 0
    assert len(held()) == 4
    assert _expire(store, 100.0) == 1  # live while now < expires_at
    assert held() == [(A, 200.0), (B, 150.0), (C, 300.0)]
    assert _expire(store, 149.0) == 0
    assert _expire(store, 160.0) == 1
    assert held() == [(A, 200.0), (C, 300.0)]
    asyncio.run(store.replace(A, [make(A, 5, 130.0)]))  # moved earlier than its due time
    assert _expire(store, 131.0) == 1
    assert held() == [(C, 300.0)]
    assert _expire(store, 250.0) == 0  # C's 120 s entry went stale: nothing removed early
    assert held() == [(C, 300.0)]
    assert _expire(store, 300.0) == 1 and held() == []
    asyncio.run(store.close())

    async def reopened() -> list[Binding]:
        again = await SqliteStore.open(path)
        try:
            return await again.all_bindings(0.0)
        finally:
            await again.close()

    assert asyncio.run(reopened()) == []  # the file agrees with memory


def test_sqlite_expiry_after_reopen_uses_loaded_deadlines(tmp_path: Path) -> None:
    path = tmp_path / "loc.sqlite"

    async def run() -> tuple[int, list[Binding]]:
        store = await SqliteStore.open(path)
        await store.replace(A, [make(A, 1, 100.0), make(A, 2, 200.0)])
        await store.close()
        store = await SqliteStore.open(path)
        try:
            removed = await store.expire(150.0)
            return removed, await store.all_bindings(0.0)
        finally:
            await store.close()

    removed, left = asyncio.run(run())
    assert removed == 1 and [b.expires_at for b in left] == [200.0]


def test_binding_rows_round_trip_every_field_and_address_form() -> None:
    samples = [
        *rich_bindings(1000.0),
        make(A, 1, 1.0, received_ip=ip_address("fe80::1%eth0"), received_port=1),
        make(A, 2, 1.0, received_ip=IPv6Address("::ffff:192.0.2.1"), received_port=2),
        make(A, 3, 1.0, received_ip=IPv4Address("255.255.255.255"), received_port=3),
        make(A, 4, 1.0, received_ip=IPv6Address("::"), received_port=4),
        make(A, 5, 1.0, received_ip=IPv4Address("0.0.0.0"), received_port=5),
    ]
    for b in samples:
        again = Binding.from_row(b.to_row())
        assert again == b
        assert type(again.received_ip) is type(b.received_ip)
        if isinstance(b.received_ip, IPv6Address):
            assert isinstance(again.received_ip, IPv6Address)
            assert again.received_ip.scope_id == b.received_ip.scope_id


@pytest.mark.parametrize("text", ["0.0.0.0", "::", "::ffff:0.0.0.1", "fe80::1%2", "1.2.3.4"])
def test_packed_addresses_keep_their_family(text: str) -> None:
    ip = ip_address(text)
    assert unpack_ip(pack_ip(ip)) == ip
    assert unpack_ip(pack_ip(ip)).version == ip.version  # type: ignore[union-attr]


def test_rows_leave_the_collectors_walk() -> None:
    b = rich_bindings(1000.0)[0]
    assert gc.is_tracked(b) and gc.is_tracked(b.received_ip)
    rows = [x.to_row() for x in rich_bindings(1000.0)]
    gc.collect()
    assert not any(gc.is_tracked(row) for row in rows)


def test_registration_log_sweep_touches_only_due_contacts() -> None:
    regs = RegistrationLog(logging.getLogger("test.expiry"))

    class Store:
        def __init__(self) -> None:
            self.asked: list[str] = []

        async def lookup(self, aor: str, now: float) -> list[Binding]:
            self.asked.append(aor)
            return []

    store = Store()
    regs.changed([], [make(A, 1, 100.0)], 0.0)
    regs.changed([], [make(B, 2, 200.0)], 0.0)
    first = make(C, 3, 100.0)
    regs.changed([], [first], 0.0)
    regs.changed([first], [make(C, 3, 400.0)], 50.0)  # refreshed before its time
    assert asyncio.run(regs.sweep(store, 99.0)) == 0 and store.asked == []
    assert asyncio.run(regs.sweep(store, 100.0)) == 1 and store.asked == [A]
    assert asyncio.run(regs.sweep(store, 300.0)) == 1 and store.asked == [A, B]
    assert len(regs) == 1
    assert asyncio.run(regs.sweep(store, 400.0)) == 1 and store.asked == [A, B, C]
    assert len(regs) == 0


def test_row_is_made_once_and_never_stale_after_replace() -> None:
    import dataclasses  # noqa: PLC0415

    b = make(A, 1, 100.0, received_ip=IPv4Address("192.0.2.1"), received_port=5060)
    row = b.to_row()
    assert b.to_row() is row and Binding.from_row(row).to_row() is row  # shared tuple
    moved = dataclasses.replace(b, received_ip=IPv4Address("192.0.2.9"))
    assert Binding.from_row(moved.to_row()).received_ip == IPv4Address("192.0.2.9")
    assert moved != b and repr(b).count("_row") == 0
