"""Stores shared by SIP workers or gateways: compare-and-set (``swap``) on both backends,
SQLite shared mode (a write by one process is read by another at once), and REGISTER
retrying when another writer changed the AOR between its read and its write."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from rtc64.gateway.location.backends import open_store
from rtc64.gateway.location.bindings import Binding
from rtc64.gateway.location.register import SWAP_ATTEMPTS
from rtc64.gateway.location.store import Store, SwappingStore
from rtc64.sip.message import Request
from tests.unit.gateway.support import StoreSpec
from tests.unit.gateway.test_register import NOW, handle, register, with_store
from tests.unit.gateway.test_store import make

AOR = "sip:bob@example.net"


def test_swap_writes_only_over_what_was_read(store_spec: StoreSpec) -> None:
    async def body(store: Store) -> None:
        assert isinstance(store, SwappingStore)
        now = time.time()
        one, two, three = (make(AOR, n, now + 600) for n in (1, 2, 3))
        assert await store.swap(AOR, [], [one], now)
        assert await store.lookup(AOR, now) == [one]
        # a writer that read nothing (stale) loses, nothing is written
        assert not await store.swap(AOR, [], [two], now)
        assert await store.lookup(AOR, now) == [one]
        # a writer that read [one] wins
        assert await store.swap(AOR, [one], [one, three], now)
        assert await store.lookup(AOR, now) == [one, three]
        # a binding changed in place (refreshed expiry) is a change too
        refreshed = make(AOR, 1, now + 900)
        assert not await store.swap(AOR, [refreshed, three], [], now)
        assert await store.swap(AOR, [one, three], [], now)
        assert await store.lookup(AOR, now) == []

    store_spec.run(body)


def test_swap_ignores_bindings_expired_at_now(store_spec: StoreSpec) -> None:
    """The caller's read saw only live bindings; an expired one still stored is no
    conflict (it goes away with the write)."""

    async def body(store: Store) -> None:
        assert isinstance(store, SwappingStore)
        now = time.time()
        old, live = make(AOR, 1, now + 1.0), make(AOR, 2, now + 600)
        await store.replace(AOR, [old, live])
        later = now + 2.0
        assert await store.lookup(AOR, later) == [live]
        fresh = make(AOR, 3, later + 600)
        assert await store.swap(AOR, [live], [live, fresh], later)
        assert await store.lookup(AOR, later) == [live, fresh]

    store_spec.run(body)


def test_concurrent_swaps_lose_nothing(store_spec: StoreSpec) -> None:
    """Twenty writers add one contact each to one AOR at once, each with read-swap-retry
    (as REGISTER does): all twenty bindings end up stored."""

    async def body(store: Store) -> None:
        assert isinstance(store, SwappingStore)
        now = time.time()

        async def add(n: int) -> int:
            rounds = 0
            while True:
                rounds += 1
                current = await store.lookup(AOR, now)
                await asyncio.sleep(0)  # let the others read the same set
                if await store.swap(AOR, current, [*current, make(AOR, n, now + 600)], now):
                    return rounds

        rounds = await asyncio.gather(*(add(n) for n in range(1, 21)))
        stored = await store.lookup(AOR, now)
        assert sorted(b.cseq for b in stored) == list(range(1, 21))
        assert max(rounds) > 1  # the writers really collided

    store_spec.run(body)


def test_sqlite_shared_mode_reads_what_another_process_wrote(tmp_path: Path) -> None:
    """Two shared SQLite stores on one file (two workers): a write through one is seen by
    the other's next lookup; a cached (unshared) store would not see it."""

    async def body() -> None:
        now = time.time()
        a = await open_store("sqlite", tmp_path, shared=True)
        b = await open_store("sqlite", tmp_path, shared=True)
        first = make(AOR, 1, now + 600)
        await a.replace(AOR, [first])
        cached = await open_store("sqlite", tmp_path)
        try:
            assert await b.lookup(AOR, now) == [first]
            assert await b.all_bindings(now) == [first]
            assert await b.all_bindings(now, lambda aor: aor != AOR) == []  # not its share
            assert await cached.lookup(AOR, now) == [first]  # loaded at open
            second = make(AOR, 2, now + 600)
            await b.replace(AOR, [second])
            assert await a.lookup(AOR, now) == [second]
            assert await cached.lookup(AOR, now) == [first]  # its memory is stale
            await a.replace(AOR, [])
            assert await b.lookup(AOR, now) == []
        finally:
            for store in (a, b, cached):
                await store.close()

    asyncio.run(body())


class _Interfering:
    """A store whose first ``n`` swaps find the AOR changed by "another worker" (it adds
    one more binding of its own right before the swap), as two workers would race."""

    def __init__(self, store: Store, n: int) -> None:
        self.store = store
        self.left = n
        self.swaps = 0

    async def lookup(self, aor: str, now: float) -> list[Binding]:
        return await self.store.lookup(aor, now)

    async def replace(self, aor: str, bindings: list[Binding]) -> None:
        await self.store.replace(aor, bindings)

    async def swap(
        self, aor: str, expected: list[Binding], bindings: list[Binding], now: float
    ) -> bool:
        self.swaps += 1
        if self.left:
            self.left -= 1
            current = await self.store.lookup(aor, now)
            contact = b"sip:bob@192.0.2.%d:5060" % (10 + self.left)
            await self.store.replace(aor, [*current, make(aor, 10, now + 600, contact=contact)])
        assert isinstance(self.store, SwappingStore)
        return await self.store.swap(aor, expected, bindings, now)


def _register_bob(contact: bytes) -> Request:
    return register(b"Contact: <" + contact + b">;expires=600")


def test_register_retries_when_another_worker_changed_the_aor(tmp_path: Path) -> None:
    """Another worker adds a contact between this REGISTER's read and write (three times
    in a row): the REGISTER reads again each time; its 200 lists all four contacts, all
    four are stored."""

    async def body(store: Store) -> None:
        racing = _Interfering(store, 3)
        resp = await handle(racing, _register_bob(b"sip:bob@[2001:db8::20]:5070"))  # type: ignore[arg-type]
        assert resp.status == 200
        assert racing.swaps == 4
        stored = sorted(b.contact for b in await store.lookup(AOR, NOW))
        others = [b"sip:bob@192.0.2.%d:5060" % n for n in (10, 11, 12)]
        assert stored == [*others, b"sip:bob@[2001:db8::20]:5070"]
        assert len(resp.get_all(b"contact")) == 4

    with_store(tmp_path, body)


def test_register_gives_up_with_500_when_the_aor_never_settles(tmp_path: Path) -> None:
    """An AOR changed under every attempt: 500 with Retry-After, nothing of ours stored."""

    async def body(store: Store) -> None:
        attempts = SWAP_ATTEMPTS

        class Always(_Interfering):
            async def swap(
                self, aor: str, expected: list[Binding], bindings: list[Binding], now: float
            ) -> bool:
                await self.store.replace(aor, [make(AOR, self.swaps + 1, now + 600)])
                return await super().swap(aor, expected, bindings, now)

        racing = Always(store, 0)
        resp = await handle(racing, _register_bob(b"sip:bob@[2001:db8::20]:5070"))  # type: ignore[arg-type]
        assert resp.status == 500 and resp.get(b"retry-after") == b"1"
        assert racing.swaps == attempts
        stored = [b.contact for b in await store.lookup(AOR, NOW)]
        assert b"sip:bob@[2001:db8::20]:5070" not in stored

    with_store(tmp_path, body)


def test_keepalives_watched_store_keeps_compare_and_set(tmp_path: Path) -> None:
    """The keepalives' ``WatchedStore`` in front of the proxy's store swaps through the
    inner store (a lost race writes nothing and is not reported to the keepalives)."""
    from rtc64.gateway.keepalive.service import WatchedStore  # noqa: PLC0415

    async def body(store: Store) -> None:
        seen: list[str] = []
        watched = WatchedStore(store, lambda aor, bindings: seen.append(aor))
        assert isinstance(watched, SwappingStore)
        now = time.time()
        one, two = make(AOR, 1, now + 600), make(AOR, 2, now + 600)
        assert await watched.swap(AOR, [], [one], now)
        assert not await watched.swap(AOR, [], [two], now)  # stale read: refused
        assert await store.lookup(AOR, now) == [one]
        assert seen == [AOR]
        resp = await handle(watched, _register_bob(b"sip:bob@[2001:db8::20]:5070"))  # type: ignore[arg-type]
        assert resp.status == 200 and len(await store.lookup(AOR, NOW)) >= 1

    with_store(tmp_path, body)
