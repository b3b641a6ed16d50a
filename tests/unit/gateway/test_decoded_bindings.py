"""Bindings decoded by their stored text (``DecodedBindings``) and the SQLite shared mode
that uses it: a cached decode is what a fresh one gives, another process's write is
never hidden, a malformed row is never kept."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from rtc64.gateway.location.bindings import Binding, DecodedBindings
from rtc64.gateway.location.sqlite import SqliteStore
from rtc64.gateway.location.store import StoreError
from tests.unit.gateway.test_store import ALICE, make, rich_bindings


def test_a_written_binding_decodes_to_itself() -> None:
    """What ``put`` keeps is what decoding its text gives (the cache's premise)."""
    now = time.time()
    for b in rich_bindings(now):
        fresh = Binding.from_json(b.to_json())
        assert fresh == b and fresh.to_row() == b.to_row()
        decoded = DecodedBindings()
        decoded.put(b)
        assert decoded.decode(b.to_json()) is b
        assert (decoded.hits, decoded.misses) == (1, 0)


def test_decode_once_per_text() -> None:
    now = time.time()
    text = make(ALICE, 1, now + 60).to_json()
    decoded = DecodedBindings()
    first = decoded.decode(text)
    assert first == Binding.from_json(text)
    assert decoded.decode(text) is first
    assert (decoded.hits, decoded.misses) == (1, 1)
    other = make(ALICE, 1, now + 61).to_json()  # a refreshed binding is another text
    assert decoded.decode(other).expires_at == now + 61


@pytest.mark.parametrize("text", ['{"aor": 1}', "[]", "not json", '{"aor":"sip:a@b"}'])
def test_malformed_text_raises_and_is_not_kept(text: str) -> None:
    decoded = DecodedBindings()
    for _ in range(2):
        with pytest.raises(ValueError):
            decoded.decode(text)
    assert len(decoded) == 0 and decoded.misses == 2


def test_bounded_oldest_dropped_first() -> None:
    now = time.time()
    decoded = DecodedBindings(limit=4)
    texts = [make(ALICE, n, now + 60).to_json() for n in range(1, 8)]
    for t in texts:
        decoded.decode(t)
        assert len(decoded) <= 4
    decoded.decode(texts[-1])
    assert decoded.hits == 1  # the newest is still there
    decoded.decode(texts[0])
    assert decoded.misses == 8  # the oldest was dropped, decoded again
    with pytest.raises(ValueError):
        DecodedBindings(limit=1)


def test_shared_stores_see_each_others_writes(tmp_path: Path) -> None:
    """Two workers on one file: each one's own write is read back without decoding,
    and the other's change is seen at once (a new text is decoded, never hidden)."""

    async def main() -> None:
        path = tmp_path / "location.sqlite"
        one = await SqliteStore.open(path, shared=True)
        two = await SqliteStore.open(path, shared=True)
        try:
            now = time.time()
            first = make(ALICE, 1, now + 600)
            assert await one.swap(ALICE, [], [first], now)
            assert await one.lookup(ALICE, now) == [first]
            assert one._decoded is not None and one._decoded.misses == 0
            assert await two.lookup(ALICE, now) == [first]
            refreshed = make(ALICE, 1, now + 900, cseq=2)
            assert await two.swap(ALICE, [first], [refreshed], now)
            assert await one.lookup(ALICE, now) == [refreshed]  # not the kept ``first``
            assert not await one.swap(ALICE, [first], [], now)  # stale read loses
            assert await one.lookup(ALICE, now) == [refreshed]
        finally:
            await one.close()
            await two.close()

    asyncio.run(main())


def test_shared_store_corrupt_row_is_store_error(tmp_path: Path) -> None:
    async def main() -> None:
        path = tmp_path / "location.sqlite"
        store = await SqliteStore.open(path, shared=True)
        try:
            now = time.time()
            assert await store.swap(ALICE, [], [make(ALICE, 1, now + 60)], now)
            conn = sqlite3.connect(path)
            conn.execute("UPDATE bindings SET data = '{\"aor\": 1}'")
            conn.commit()
            conn.close()
            for _ in range(2):
                with pytest.raises(StoreError, match="unreadable"):
                    await store.lookup(ALICE, now)
        finally:
            await store.close()

    asyncio.run(main())
