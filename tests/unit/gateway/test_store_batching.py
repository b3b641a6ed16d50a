"""SQLite group commit: writes of one loop iteration (or queued while a batch waits for
another process's lock on the worker thread) share one transaction committed on the loop,
each caller returns after that commit, and one failing write does not take the others
down."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from rtc64.gateway.location.bindings import Binding
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


def test_writes_commit_on_the_loop_without_the_worker_thread(tmp_path: Path) -> None:
    """A batch commits inline: the worker thread is never asked, and the loop's
    connection neither waits for locks nor checkpoints (both would block the loop)."""

    async def body(store: SqliteStore) -> None:
        now = time.time()
        asked: list[object] = []
        real = store._executor.submit

        def submit(fn: object, *args: object) -> object:
            asked.append(fn)
            return real(fn, *args)  # type: ignore[arg-type]

        store._executor.submit = submit  # type: ignore[method-assign]
        await asyncio.gather(*(store.replace(f"sip:i{n}@x", [make(f"sip:i{n}@x", 1, now + 60)])
                               for n in range(5)))  # fmt: skip
        assert await store.swap("sip:i0@x", await store.lookup("sip:i0@x", now), [], now)
        assert asked == []
        assert store.waited == 0
        conn = store._conn
        assert conn is not None
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 0
        assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0

    _run(tmp_path, body)
    _run(tmp_path / "shared", body, shared=True)


@pytest.mark.parametrize("shared", [False, True])
def test_a_batch_waits_for_another_writer_on_the_thread(tmp_path: Path, shared: bool) -> None:
    """Another process (a worker, ``rtc64 user add``) holds the write lock: the batch
    goes to the worker thread, which waits; the loop keeps running meanwhile, and each
    caller still returns only after its commit."""

    async def body(store: SqliteStore) -> None:
        now = time.time()
        other = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        aors = [f"sip:w{n}@example.net" for n in range(3)]
        writes = asyncio.gather(*(store.replace(a, [make(a, 1, now + 60)]) for a in aors))
        ticks = 0
        for _ in range(20):  # the loop is not blocked by the waiting writer
            await asyncio.sleep(0.005)
            ticks += 1
        assert not writes.done()
        assert store.waited == 1
        other.execute("COMMIT")
        other.close()
        await writes
        assert ticks == 20
        assert _rows(tmp_path / "store.db") == dict.fromkeys(aors, 1)
        # the next batch commits inline again
        await store.replace("sip:after@example.net", [make("sip:after@example.net", 1, now + 60)])
        assert store.waited == 1
        for a in aors:
            assert len(await store.lookup(a, now)) == 1

    _run(tmp_path, body, shared=shared)


def test_a_writer_that_never_lets_go_fails_the_batch_not_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("rtc64.gateway.location.sqlite.BUSY_TIMEOUT", 0.2)

    async def body(store: SqliteStore) -> None:
        now = time.time()
        other = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StoreError, match="locked"):
                await store.replace("sip:x@example.net", [make("sip:x@example.net", 1, now + 60)])
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert await store.lookup("sip:x@example.net", now) == []  # memory did not follow
        await store.replace("sip:x@example.net", [make("sip:x@example.net", 2, now + 60)])
        assert [b.cseq for b in await store.lookup("sip:x@example.net", now)] == [2]

    _run(tmp_path, body)


def test_the_wal_is_checkpointed_off_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every CHECKPOINT_EVERY commits the WAL is copied into the database file (by the
    worker thread's connection): a copy of the file alone, without its WAL, holds them."""
    monkeypatch.setattr("rtc64.gateway.location.sqlite.CHECKPOINT_EVERY", 10)

    async def body(store: SqliteStore) -> None:
        now = time.time()
        for n in range(10):
            aor = f"sip:k{n}@example.net"
            await store.replace(aor, [make(aor, 1, now + 60)])
        for _ in range(200):
            if not store._checkpointing:
                break
            await asyncio.sleep(0.01)
        assert not store._checkpointing
        copy = tmp_path / "copy.db"
        copy.write_bytes((tmp_path / "store.db").read_bytes())
        assert len(_rows(copy)) == 10

    _run(tmp_path, body)


def test_memory_follows_only_committed_writes(tmp_path: Path) -> None:
    """One process alone: a swap compares with memory and with the writes before it in
    the same batch; a batch that fails to commit leaves memory as the file is."""

    async def body(store: SqliteStore) -> None:
        now = time.time()
        aor = "sip:m@example.net"
        one = make(aor, 1, now + 60)
        await store.replace(aor, [one])
        two, three = make(aor, 2, now + 60), make(aor, 3, now + 60)
        won = await asyncio.gather(
            store.swap(aor, [one], [two], now),
            store.swap(aor, [one], [three], now),  # read [one] too: the first won meanwhile
            store.swap(aor, [two], [two, three], now),  # read what the first wrote
        )
        assert won == [True, False, True]
        assert await store.lookup(aor, now) == [two, three]
        other = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
        stored = other.execute("SELECT data FROM bindings WHERE aor = ? ORDER BY pos", (aor,))
        assert [Binding.from_json(r[0]) for r in stored] == [two, three]
        other.close()

    _run(tmp_path, body)
