# SQLite location and user store: the default backend, one file under the data dir.
#
# Rules:
# - WAL journal, ``synchronous=NORMAL``: a committed transaction is in the WAL (the OS page
#   cache) before ``replace`` returns, so it survives kill -9 of the process; only a power
#   loss can take the last commits back. ``busy_timeout`` lets a second process (``rtc64
#   user add`` next to a running gateway) wait for the write lock instead of failing.
# - ``replace`` deletes the AOR's rows and inserts the new ones inside a ``BEGIN IMMEDIATE``
#   transaction: readers see the old set or the new one.
# - Group commit: binding writes (``replace``, ``swap``) issued while the writer thread is
#   busy, or within one loop iteration, go to the file as one transaction (one WAL append,
#   one lock round); each caller returns only once that transaction committed, so nothing
#   is acknowledged before it is in the WAL. Within a batch every write is its own
#   savepoint: one that fails is undone alone and raises ``StoreError`` to its caller, the
#   others commit. A failed COMMIT fails every write of the batch.
# - Every call runs on one dedicated worker thread that owns the connection (see
#   ``SqliteStore``), so the event loop never blocks on the file and calls are serialised.
# - The gateway process is the only writer of its bindings (gateways that share
#   registrations use Redis), so live bindings are also kept in memory: ``lookup`` (every
#   INVITE to a local user, every REGISTER) costs no thread hand-off; writes commit to the
#   file first and update memory after, so memory never holds what the file does not.
#   Memory holds rows (``Binding.to_row``: untracked by the garbage collector) and each
#   AOR's earliest expiry in a heap (``Deadlines``): ``expire`` deletes through the
#   ``expires_at`` index and then touches only the AORs whose time has come.
# - Shared mode (SIP workers: several processes write one file): nothing is cached; reads
#   run inline on a second, read-only connection (a WAL reader never waits for a writer and
#   sees every committed transaction), so a registration made through one worker is seen
#   by every other at once.
# - ``swap`` is compare-and-set: in one ``BEGIN IMMEDIATE`` transaction the AOR's live
#   bindings are compared with what the caller read, and replaced only if unchanged (two
#   workers registering contacts of one AOR at once lose neither).
# - Rows keep ``expires_at`` as a column (for expiry queries) and the binding in the shared
#   JSON form (``Binding.to_json``); users are plain columns. The file is created 0600: HA1
#   values are password-equivalent.

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from rtc64.gateway.location.bindings import ROW_EXPIRES_AT, Binding, BindingRow
from rtc64.gateway.location.deadlines import Deadlines
from rtc64.gateway.location.store import StoreError, check_aor
from rtc64.gateway.location.users import UserRecord, aors_from_json

T = TypeVar("T")

SCHEMA_VERSION = 2  # 2: users.aors (extra AORs a user may register)
ALL_BATCH = 2000
"""AORs ``all_bindings`` rebuilds between two yields to the event loop."""
BUSY_TIMEOUT = 5.0  # seconds a writer waits for another process's lock
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS bindings (
        aor TEXT NOT NULL,
        pos INTEGER NOT NULL,
        expires_at REAL NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (aor, pos)
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS bindings_expires_at ON bindings (expires_at)",
    """CREATE TABLE IF NOT EXISTS users (
        name TEXT PRIMARY KEY,
        realm TEXT NOT NULL,
        ha1_md5 TEXT NOT NULL,
        ha1_sha256 TEXT NOT NULL,
        aors TEXT NOT NULL DEFAULT '[]'
    ) WITHOUT ROWID""",
)
_UserRow = tuple[str, str, str, str, str]


def _connect(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the store file and bring its schema up to date."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    conn = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
    )
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"sqlite {path}: cannot switch to WAL journal (got {mode})")
        conn.execute("PRAGMA synchronous=NORMAL")
        with _transaction(conn):
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(f"sqlite {path}: schema {version} is newer than this rtc64")
            for statement in _SCHEMA:
                conn.execute(statement)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(users)")}
            if "aors" not in columns:  # a version 1 file
                conn.execute("ALTER TABLE users ADD COLUMN aors TEXT NOT NULL DEFAULT '[]'")
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    except BaseException:
        conn.close()
        raise
    return conn


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, or ``ROLLBACK`` on any exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # also after a failed COMMIT, so the next BEGIN works
            conn.execute("ROLLBACK")
        raise


_Work = Callable[[sqlite3.Connection], object]
_Results = list[tuple[bool, object]]


def _put(conn: sqlite3.Connection, aor: str, rows: list[tuple[str, int, float, str]]) -> None:
    """Replace the AOR's rows (inside the caller's transaction)."""
    conn.execute("DELETE FROM bindings WHERE aor = ?", (aor,))
    if rows:
        conn.executemany(
            "INSERT INTO bindings (aor, pos, expires_at, data) VALUES (?, ?, ?, ?)", rows
        )


def _commit(conn: sqlite3.Connection, works: list[_Work]) -> _Results:
    """On the writer thread: ``works`` in one transaction, each in its own savepoint
    when there are several (one failing is undone alone); (ok, result or error) each.
    An error outside the works (BEGIN, COMMIT) rolls everything back and raises."""
    results: _Results = []
    with _transaction(conn):
        if len(works) == 1:
            results.append((True, works[0](conn)))  # its error fails the transaction
            return results
        for work in works:
            conn.execute("SAVEPOINT w")
            try:
                value = work(conn)
            except (sqlite3.Error, StoreError) as exc:
                conn.execute("ROLLBACK TO w")
                conn.execute("RELEASE w")
                results.append((False, exc))
                continue
            conn.execute("RELEASE w")
            results.append((True, value))
    return results


def _decode(data: str) -> Binding:
    try:
        return Binding.from_json(data)
    except ValueError as exc:
        raise StoreError(f"sqlite: unreadable binding: {exc}") from None


class SqliteStore:
    """Location and user store in one SQLite file.

    Threading choice: each call is a small transaction on a local file and usually takes
    microseconds, but a WAL checkpoint fsyncs and a second process holding the write lock can
    make a call wait up to ``BUSY_TIMEOUT``. Running inline would freeze every SIP and media
    task for that time, so calls go to a single worker thread that owns the connection: the
    loop only pays a thread hand-off (tens of microseconds), and the single thread also
    serialises the calls, so no locking is needed. A cancelled caller does not undo a
    transaction already handed to the thread; it completes or rolls back as a whole.
    """

    def __init__(
        self,
        path: Path,
        conn: sqlite3.Connection,
        executor: ThreadPoolExecutor,
        reader: sqlite3.Connection | None = None,
    ) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = conn
        self._executor = executor
        self._live: dict[str, tuple[BindingRow, ...]] = {}
        self._deadlines: Deadlines[str] = Deadlines()
        self._reader = reader
        self._queue: list[tuple[_Work, asyncio.Future[object]]] = []  # the next batch
        self._flushing = False  # a batch is scheduled or on the writer thread
        self._idle = asyncio.Event()
        self._idle.set()
        self.batches = 0  # write transactions committed by group commit
        self.batched = 0  # writes they carried

    @property
    def shared(self) -> bool:
        return self._reader is not None

    @classmethod
    async def open(cls, path: Path, *, shared: bool = False) -> SqliteStore:
        """Open or create the store at ``path``; ``StoreError`` if SQLite fails.
        ``shared``: other processes write it too (no cache; see the rules)."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rtc64-sqlite")
        try:
            conn = await asyncio.get_running_loop().run_in_executor(executor, _connect, path)
        except (sqlite3.Error, OSError) as exc:
            executor.shutdown(wait=False)
            raise StoreError(f"sqlite {path}: {exc}") from exc
        except BaseException:
            executor.shutdown(wait=False)
            raise
        reader = None
        if shared:
            try:
                reader = sqlite3.connect(
                    path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
                )
                reader.execute("PRAGMA query_only=1")
            except sqlite3.Error as exc:
                conn.close()
                executor.shutdown(wait=False)
                raise StoreError(f"sqlite {path}: {exc}") from exc
        store = cls(path, conn, executor, reader)
        if shared:
            return store
        loaded: dict[str, list[Binding]] = {}
        for binding in await store._all_rows():
            loaded.setdefault(binding.aor, []).append(binding)
        for aor, bindings in loaded.items():
            store._keep(aor, bindings)
        return store

    def _keep(self, aor: str, bindings: Sequence[Binding]) -> None:
        """Memory follows a committed write: the AOR's rows and its earliest expiry."""
        if not bindings:
            self._live.pop(aor, None)  # its heap entry, if any, is dropped when due
            return
        rows = tuple(b.to_row() for b in bindings)
        self._live[aor] = rows
        self._deadlines.schedule(aor, min(row[ROW_EXPIRES_AT] for row in rows))

    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` in the next group-commit transaction (see the rules); returns
        its result once that transaction committed."""
        if self._conn is None:
            raise StoreError(f"sqlite {self.path}: store is closed")
        loop = asyncio.get_running_loop()
        done: asyncio.Future[object] = loop.create_future()
        self._queue.append((work, done))
        if not self._flushing:
            self._flushing = True
            self._idle.clear()
            loop.call_soon(self._flush)  # gather this loop iteration's writes
        result: T = await done  # type: ignore[assignment]
        return result

    def _flush(self) -> None:
        batch, self._queue = self._queue, []
        conn = self._conn
        if conn is None:
            self._fail(batch, StoreError(f"sqlite {self.path}: store is closed"))
            self._settle()
            return
        works = [work for work, _ in batch]
        job = asyncio.get_running_loop().run_in_executor(self._executor, _commit, conn, works)
        job.add_done_callback(lambda job: self._committed(batch, job))

    def _committed(
        self, batch: list[tuple[_Work, asyncio.Future[object]]], job: asyncio.Future[_Results]
    ) -> None:
        if job.cancelled():
            self._fail(batch, StoreError(f"sqlite {self.path}: write cancelled"))
        elif (exc := job.exception()) is not None:
            self._fail(batch, self._error(exc))
        else:
            self.batches += 1
            self.batched += len(batch)
            for (_, done), (ok, value) in zip(batch, job.result(), strict=True):
                if done.done():
                    continue
                if ok:
                    done.set_result(value)
                else:
                    assert isinstance(value, BaseException)
                    done.set_exception(self._error(value))
        self._settle()

    def _settle(self) -> None:
        """The batch is answered: start the next one (writes queued meanwhile), or idle."""
        if self._queue:
            self._flush()
        else:
            self._flushing = False
            self._idle.set()

    def _error(self, exc: BaseException) -> BaseException:
        """What a write's caller gets: SQLite errors as ``StoreError`` (as ``_run``)."""
        if isinstance(exc, sqlite3.Error):
            failure = StoreError(f"sqlite {self.path}: {exc}")
            failure.__cause__ = exc
            return failure
        return exc

    @staticmethod
    def _fail(batch: list[tuple[_Work, asyncio.Future[object]]], exc: BaseException) -> None:
        for _, done in batch:
            if not done.done():
                done.set_exception(exc)

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._conn
        if conn is None:
            raise StoreError(f"sqlite {self.path}: store is closed")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, work, conn)
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite {self.path}: {exc}") from exc

    # -- location store --

    async def lookup(self, aor: str, now: float) -> list[Binding]:
        if self._conn is None:
            raise StoreError(f"sqlite {self.path}: store is closed")
        if self._reader is not None:
            return [b for b in self._read(aor) if b.expires_at > now]
        return [Binding.from_row(r) for r in self._live.get(aor, ()) if r[ROW_EXPIRES_AT] > now]

    def _read(self, aor: str | None) -> list[Binding]:
        """Shared mode: the AOR's (None: every) stored bindings, read from the file now."""
        assert self._reader is not None
        try:
            if aor is None:
                rows = self._reader.execute("SELECT data FROM bindings ORDER BY aor, pos")
            else:
                query = "SELECT data FROM bindings WHERE aor = ? ORDER BY pos"
                rows = self._reader.execute(query, (aor,))
            return [_decode(row[0]) for row in rows.fetchall()]
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite {self.path}: {exc}") from exc

    async def swap(
        self, aor: str, expected: Sequence[Binding], bindings: Sequence[Binding], now: float
    ) -> bool:
        """Make ``bindings`` the AOR's set if its live bindings at ``now`` are still
        ``expected`` (as ``lookup`` returned them); False, writing nothing, otherwise."""
        rows = [
            (aor, pos, b.expires_at, b.to_json()) for pos, b in enumerate(check_aor(aor, bindings))
        ]
        before = [b.to_json() for b in expected]

        def work(conn: sqlite3.Connection) -> bool:
            stored = conn.execute(
                "SELECT data FROM bindings WHERE aor = ? AND expires_at > ? ORDER BY pos",
                (aor, now),
            )
            texts = [row[0] for row in stored]
            # As written by this version the text is the binding's own JSON; otherwise
            # (another version's spelling) compare the bindings it decodes to.
            if texts != before and [_decode(t).to_json() for t in texts] != before:
                return False
            _put(conn, aor, rows)
            return True

        if not await self._write(work):
            return False
        if self._reader is None:
            self._keep(aor, bindings)
        return True

    async def replace(self, aor: str, bindings: Sequence[Binding]) -> None:
        rows = [
            (aor, pos, b.expires_at, b.to_json()) for pos, b in enumerate(check_aor(aor, bindings))
        ]

        def work(conn: sqlite3.Connection) -> None:
            _put(conn, aor, rows)

        await self._write(work)
        if self._reader is None:
            self._keep(aor, bindings)

    async def expire(self, now: float) -> int:
        def work(conn: sqlite3.Connection) -> int:
            with _transaction(conn):
                return conn.execute("DELETE FROM bindings WHERE expires_at <= ?", (now,)).rowcount

        removed = await self._run(work)
        for aor in self._deadlines.due(now):
            rows = self._live.get(aor)
            if rows is None:
                continue
            live = tuple(r for r in rows if r[ROW_EXPIRES_AT] > now)
            if live:
                self._live[aor] = live
                self._deadlines.schedule(aor, min(r[ROW_EXPIRES_AT] for r in live))
            else:
                del self._live[aor]
        return removed

    async def all_bindings(self, now: float) -> list[Binding]:
        if self._reader is not None:
            return [b for b in self._read(None) if b.expires_at > now]
        out: list[Binding] = []
        for n, aor in enumerate(sorted(self._live)):
            if n % ALL_BATCH == 0 and n:
                await asyncio.sleep(0)  # 100,000 rebuilt at once would hold the loop
            out += [Binding.from_row(r) for r in self._live.get(aor, ()) if r[ROW_EXPIRES_AT] > now]
        return out

    async def _all_rows(self) -> list[Binding]:
        def work(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute("SELECT data FROM bindings ORDER BY aor, pos")
            return [row[0] for row in rows]

        return [_decode(data) for data in await self._run(work)]

    # -- user store --

    async def get_user(self, name: str) -> UserRecord | None:
        def work(conn: sqlite3.Connection) -> _UserRow | None:
            row: _UserRow | None = conn.execute(
                "SELECT name, realm, ha1_md5, ha1_sha256, aors FROM users WHERE name = ?", (name,)
            ).fetchone()
            return row

        row = await self._run(work)
        return None if row is None else _user(row)

    async def put_user(self, user: UserRecord) -> None:
        values = (user.name, user.realm, user.ha1_md5, user.ha1_sha256, user.to_dict()["aors"])

        def work(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.execute(
                    "INSERT OR REPLACE INTO users (name, realm, ha1_md5, ha1_sha256, aors) "
                    "VALUES (?, ?, ?, ?, ?)",
                    values,
                )

        await self._run(work)

    async def delete_user(self, name: str) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            with _transaction(conn):
                return conn.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount > 0

        return await self._run(work)

    async def list_users(self) -> list[UserRecord]:
        def work(conn: sqlite3.Connection) -> list[_UserRow]:
            return list(
                conn.execute(
                    "SELECT name, realm, ha1_md5, ha1_sha256, aors FROM users ORDER BY name"
                )
            )

        return [_user(row) for row in await self._run(work)]

    async def close(self) -> None:
        if self._conn is None:
            return
        await self._idle.wait()  # writes already accepted are committed first
        conn, self._conn = self._conn, None
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
        finally:
            self._executor.shutdown(wait=True)


def _user(row: _UserRow) -> UserRecord:
    try:
        return UserRecord(
            name=row[0],
            realm=row[1],
            ha1_md5=row[2],
            ha1_sha256=row[3],
            aors=aors_from_json(row[4]),
        )
    except ValueError as exc:
        raise StoreError(f"sqlite: unreadable user record: {exc}") from None
