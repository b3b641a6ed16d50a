"""SQLite group commit: writes of one loop iteration (or queued while the writer thread
is busy) share one transaction, each caller returns after that commit, and one failing
write does not take the others down."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from rtc64.gateway.location.sqlite import SqliteStore
from rtc64.gateway.location.store import StoreError
from tests.unit.gateway.test_store import make

N = 60


def _run(tmp_path: Path, body: object, *, shared: bool = False) -> None:
    async def main() -> None:
        store = await SqliteStore.open(tmp_path / "store.db", shared=shared)
        try:
            await body(store)  # type: ignore[operator]
        finally:
            await store.close()

    asyncio.run(main())


def _rows(path: Path) -> dict[str, int]:
    """What another connection reads from the file now: rows per AOR."""
    with sqlite3.connect(path) as conn:
        found = conn.execute("SELECT aor, count(*) FROM bindings GROUP BY aor").fetchall()
    return dict(found)


@pytest.mark.parametrize("shared", [False, True])
def test_concurrent_writes_share_transactions(tmp_path: Path, shared: bool) -> None:
    async def body(store: SqliteStore) -> None:
        now = time.time()
        aors = [f"sip:u{n}@example.net" for n in range(N)]
        await asyncio.gather(*(store.replace(a, [make(a, 1, now + 600)]) for a in aors))
        # every write is in the file (another connection sees it) once its caller returned
        assert _rows(tmp_path / "store.db") == dict.fromkeys(aors, 1)
        assert store.batched == N
        assert store.batches <= 3, store.batches  # one per loop iteration, not one per write
        for a in aors:
            assert [b.cseq for b in await store.lookup(a, now)] == [1]

    _run(tmp_path, body, shared=shared)


def test_each_caller_returns_after_its_commit(tmp_path: Path) -> None:
    async def body(store: SqliteStore) -> None:
        now = time.time()
        for n in range(5):  # one at a time: each its own transaction, visible at once
            aor = f"sip:s{n}@example.net"
            await store.replace(aor, [make(aor, 1, now + 600)])
            assert _rows(tmp_path / "store.db").get(aor) == 1
        assert store.batches == 5

    _run(tmp_path, body)


def test_a_failing_write_fails_alone(tmp_path: Path) -> None:
    async def body(store: SqliteStore) -> None:
        now = time.time()

        def broken(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM bindings")  # undone with its savepoint
            conn.execute("INSERT INTO no_such_table VALUES (1)")

        aors = [f"sip:f{n}@example.net" for n in range(4)]
        writes = [store.replace(a, [make(a, 1, now + 600)]) for a in aors[:2]]
        writes.append(store._write(broken))
        writes += [store.replace(a, [make(a, 1, now + 600)]) for a in aors[2:]]
        results = await asyncio.gather(*writes, return_exceptions=True)
        assert isinstance(results[2], StoreError) and "no_such_table" in str(results[2])
        assert [r for k, r in enumerate(results) if k != 2] == [None] * 4
        assert store.batches == 1
        assert _rows(tmp_path / "store.db") == dict.fromkeys(aors, 1)

    _run(tmp_path, body)


def test_swap_stays_compare_and_set_inside_a_batch(tmp_path: Path) -> None:
    """Two writers that read the same (empty) AOR in one batch: the first wins, the
    second sees the first's write and loses, as in separate transactions."""

    async def body(store: SqliteStore) -> None:
        now = time.time()
        aor = "sip:bob@example.net"
        one, two = make(aor, 1, now + 600), make(aor, 2, now + 600)
        won = await asyncio.gather(store.swap(aor, [], [one], now), store.swap(aor, [], [two], now))
        assert won == [True, False]
        assert store.batches == 1
        assert await store.lookup(aor, now) == [one]

    _run(tmp_path, body, shared=True)
    _run(tmp_path / "b", body)


def test_close_commits_writes_already_accepted(tmp_path: Path) -> None:
    async def main() -> None:
        store = await SqliteStore.open(tmp_path / "store.db")
        now = time.time()
        aors = [f"sip:c{n}@example.net" for n in range(10)]
        tasks = [asyncio.ensure_future(store.replace(a, [make(a, 1, now + 600)])) for a in aors]
        await asyncio.sleep(0)  # accepted, not committed yet
        await store.close()
        await asyncio.gather(*tasks)
        with pytest.raises(StoreError):
            await store.replace(aors[0], [])

    asyncio.run(main())
    assert _rows(tmp_path / "store.db") == dict.fromkeys(
        [f"sip:c{n}@example.net" for n in range(10)], 1
    )
