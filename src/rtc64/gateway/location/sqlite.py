# SQLite location and user store: the default backend, one file under the data dir.
#
# Rules:
# - WAL journal, ``synchronous=NORMAL``: a committed transaction is in the WAL (the OS page
#   cache) before ``replace`` returns, so it survives kill -9 of the process; only a power
#   loss can take the last commits back. ``busy_timeout`` lets a second process (``rtc64
#   user add`` next to a running gateway) wait for the write lock instead of failing.
# - ``replace`` deletes the AOR's rows and inserts the new ones inside a ``BEGIN IMMEDIATE``
#   transaction: readers see the old set or the new one.
# - Group commit on the event loop: binding writes (``replace``, ``swap``) issued within one
#   loop iteration go to the file as one transaction (one WAL append, one lock round),
#   committed inline by a callback on the loop: with ``synchronous=NORMAL`` a commit is a few
#   ``pwrite`` calls to the page cache, never an fsync, so no thread hand-off is needed per
#   REGISTER. Each caller returns only once that transaction committed, so nothing is
#   acknowledged before it is in the WAL. Within a batch every write is its own savepoint:
#   one that fails is undone alone and raises ``StoreError`` to its caller, the others
#   commit. A failed COMMIT fails every write of the batch.
# - The loop never waits for the file: its connection has no busy timeout. When another
#   process (a SIP worker, ``rtc64 user add``) holds the write lock, that batch goes to the
#   store's worker thread instead, which waits up to ``BUSY_TIMEOUT``; writes queued
#   meanwhile form the next batch. WAL checkpoints (which fsync) never run on the loop:
#   the loop's connection does not checkpoint, and every ``CHECKPOINT_EVERY`` commits a
#   passive checkpoint runs on the worker thread, on its own connection.
# - Everything else (expiry, users, the start-up load, checkpoints) runs on that one
#   worker thread with its own connection, so the loop never blocks on it.
# - The gateway process is the only writer of its bindings (gateways that share
#   registrations use Redis), so live bindings are also kept in memory: ``lookup`` (every
#   INVITE to a local user, every REGISTER) reads no file, and ``swap`` compares with
#   memory (and the writes before it in the same batch); memory follows each commit,
#   so it never holds what the file does not.
#   Memory holds rows (``Binding.to_row``: untracked by the garbage collector) and each
#   AOR's earliest expiry in a heap (``Deadlines``): ``expire`` deletes through the
#   ``expires_at`` index and then touches only the AORs whose time has come. Memory also
#   knows how many rows each AOR has in the file at most (its set's length, or the
#   length before ``expire`` removed some: ``_spread``), so a write that does not shrink
#   the set replaces rows in place (``INSERT OR REPLACE``) without a DELETE.
# - Shared mode (SIP workers: several processes write one file): no binding set is cached;
#   reads run inline on a second, read-only connection (a WAL reader never waits for a
#   writer and sees every committed transaction), so a registration made through one worker
#   is seen by every other at once. Only the decoding of a row's text is cached, by that
#   text (``DecodedBindings``: the same text always decodes to the same binding).
# - ``swap`` is compare-and-set: in one ``BEGIN IMMEDIATE`` transaction the AOR's live
#   bindings are compared with what the caller read, and replaced only if unchanged (two
#   workers registering contacts of one AOR at once lose neither). Bindings read from the
#   file keep their stored text (``Binding.to_json``), so the comparison is of strings.
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

from rtc64.gateway.location.bindings import (
    ROW_EXPIRES_AT,
    Binding,
    BindingRow,
    DecodedBindings,
)
from rtc64.gateway.location.deadlines import Deadlines
from rtc64.gateway.location.store import Owned, StoreError, check_aor
from rtc64.gateway.location.users import UserRecord, aors_from_json

T = TypeVar("T")

SCHEMA_VERSION = 2  # 2: users.aors (extra AORs a user may register)
ALL_BATCH = 2000
"""AORs ``all_bindings`` rebuilds between two yields to the event loop."""
BUSY_TIMEOUT = 5.0  # seconds a writer waits for another process's lock
CHECKPOINT_EVERY = 256
"""Group commits between two passive WAL checkpoints (the default auto-checkpoint runs
at 1,000 pages; a batch writes a few)."""
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
_Rows = tuple[BindingRow, ...]


_INSERT = "INSERT OR REPLACE INTO bindings (aor, pos, expires_at, data) VALUES (?, ?, ?, ?)"


def _put(
    conn: sqlite3.Connection,
    aor: str,
    rows: list[tuple[str, int, float, str]],
    stored: int | None = None,
) -> None:
    """Replace the AOR's rows (inside the caller's transaction). ``stored``: how many
    rows the AOR has at most (None: not known); rows at positions the new set also
    fills are replaced in place, so only a shrinking set needs a DELETE."""
    if stored is None or stored > len(rows):
        conn.execute("DELETE FROM bindings WHERE aor = ? AND pos >= ?", (aor, len(rows)))
    if len(rows) == 1:
        conn.execute(_INSERT, rows[0])
    elif rows:
        conn.executemany(_INSERT, rows)


def _is_busy(exc: sqlite3.Error) -> bool:
    """Another connection holds the lock (SQLITE_BUSY, any extended code)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF == sqlite3.SQLITE_BUSY


def _run_works(conn: sqlite3.Connection, works: list[_Work]) -> _Results:
    """Inside an open transaction: ``works`` each in its own savepoint when there are
    several (one failing is undone alone); (ok, result or error) each."""
    if len(works) == 1:
        return [(True, works[0](conn))]  # its error fails the transaction
    results: _Results = []
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


def _finish(conn: sqlite3.Connection, works: list[_Work]) -> _Results:
    """``works`` then COMMIT, in the transaction the caller began; ROLLBACK and raise
    on an error outside the works."""
    try:
        results = _run_works(conn, works)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # also after a failed COMMIT, so the next BEGIN works
            conn.execute("ROLLBACK")
        raise
    return results


def _commit_waiting(conn: sqlite3.Connection, works: list[_Work]) -> _Results:
    """On the worker thread, when the loop found the write lock taken: wait for it up
    to ``BUSY_TIMEOUT``, then ``works`` in one transaction."""
    conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT * 1000)}")
    try:
        conn.execute("BEGIN IMMEDIATE")
        return _finish(conn, works)
    finally:
        conn.execute("PRAGMA busy_timeout=0")


def _checkpoint(conn: sqlite3.Connection) -> None:
    """Copy what the WAL holds into the database file without waiting for anyone."""
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def _decode(data: str, decoded: DecodedBindings | None = None) -> Binding:
    try:
        return Binding.from_json(data) if decoded is None else decoded.decode(data)
    except ValueError as exc:
        raise StoreError(f"sqlite: unreadable binding: {exc}") from None


_Queued = tuple[_Work, "asyncio.Future[object]"]


class SqliteStore:
    """Location and user store in one SQLite file.

    Threading choice: a binding write is a small transaction on a local file; with
    ``synchronous=NORMAL`` its commit appends to the WAL in the page cache (microseconds),
    so batches of them commit inline on the loop (see the rules). What can wait (another
    process holding the write lock, a checkpoint's fsync, a large expiry) runs on a single
    worker thread: the loop only pays a thread hand-off there. A cancelled caller does not
    undo a transaction already begun; it completes or rolls back as a whole.
    """

    def __init__(
        self,
        path: Path,
        conn: sqlite3.Connection,
        executor: ThreadPoolExecutor,
        reader: sqlite3.Connection | None = None,
        side: sqlite3.Connection | None = None,
    ) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = conn  # the loop's: binding writes
        self._side = side or conn  # the worker thread's: everything else
        self._executor = executor
        self._live: dict[str, _Rows] = {}
        self._deadlines: Deadlines[str] = Deadlines()
        self._reader = reader
        # Shared mode: every read decodes rows another process may have written.
        self._decoded = DecodedBindings() if reader is not None else None
        self._queue: list[_Queued] = []  # the next batch
        self._flushing = False  # a batch is scheduled or on the worker thread
        self._written: dict[str, _Rows] = {}  # the batch's writes, for memory (not shared)
        self._spread: dict[str, int] = {}  # rows in the file of AORs ``expire`` thinned
        self._idle = asyncio.Event()
        self._idle.set()
        self._checkpointing = False
        self._since_checkpoint = 0
        self.batches = 0  # write transactions committed by group commit
        self.batched = 0  # writes they carried
        self.waited = 0  # batches that found the write lock taken (went to the thread)

    @property
    def shared(self) -> bool:
        return self._reader is not None

    @classmethod
    async def open(cls, path: Path, *, shared: bool = False) -> SqliteStore:
        """Open or create the store at ``path``; ``StoreError`` if SQLite fails.
        ``shared``: other processes write it too (no cache; see the rules)."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rtc64-sqlite")
        loop = asyncio.get_running_loop()
        opened: list[sqlite3.Connection] = []
        try:
            side = await loop.run_in_executor(executor, _connect, path)
            opened.append(side)
            conn = await loop.run_in_executor(executor, _connect, path)
            opened.append(conn)
            conn.execute("PRAGMA busy_timeout=0")  # the loop never waits: see the rules
            conn.execute("PRAGMA wal_autocheckpoint=0")  # nor checkpoints
            reader = None
            if shared:
                reader = sqlite3.connect(
                    path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
                )
                opened.append(reader)
                reader.execute("PRAGMA query_only=1")
        except (sqlite3.Error, OSError) as exc:
            for c in opened:
                c.close()
            executor.shutdown(wait=False)
            raise StoreError(f"sqlite {path}: {exc}") from exc
        except BaseException:
            for c in opened:
                c.close()
            executor.shutdown(wait=False)
            raise
        store = cls(path, conn, executor, reader, side)
        if shared:
            return store
        loaded: dict[str, list[Binding]] = {}
        for binding in await store._all_rows():
            loaded.setdefault(binding.aor, []).append(binding)
        for aor, bindings in loaded.items():
            store._keep(aor, tuple(b.to_row() for b in bindings))
        return store

    def _stored(self, aor: str, current: _Rows) -> int:
        """At most how many rows the AOR has in the file (not shared; see the rules)."""
        spread = self._spread.get(aor)
        return len(current) if spread is None else max(spread, len(current))

    def _keep(self, aor: str, rows: _Rows) -> None:
        """Memory follows a committed write: the AOR's rows and its earliest expiry."""
        if self._spread:
            self._spread.pop(aor, None)  # the write left exactly ``rows`` in the file
        if not rows:
            self._live.pop(aor, None)  # its heap entry, if any, is dropped when due
            return
        self._live[aor] = rows
        self._deadlines.schedule(aor, min(row[ROW_EXPIRES_AT] for row in rows))

    def _write(self, work: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Queue ``work`` for the next group-commit transaction (see the rules): the
        future has its result once that transaction committed."""
        if self._conn is None:
            raise StoreError(f"sqlite {self.path}: store is closed")
        loop = asyncio.get_running_loop()
        done: asyncio.Future[object] = loop.create_future()
        self._queue.append((work, done))
        if not self._flushing:
            self._flushing = True
            self._idle.clear()
            loop.call_soon(self._flush)  # gather this loop iteration's writes
        return done  # type: ignore[return-value]

    def _flush(self) -> None:
        """On the loop: commit the queued batch now, or hand it to the worker thread
        when another connection holds the write lock."""
        batch, self._queue = self._queue, []
        conn = self._conn
        if conn is None:
            self._fail(batch, StoreError(f"sqlite {self.path}: store is closed"))
            self._settle()
            return
        works = [work for work, _ in batch]
        self._written.clear()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            if not _is_busy(exc):
                self._fail(batch, self._error(exc))
                self._settle()
                return
            self.waited += 1
            job = asyncio.get_running_loop().run_in_executor(
                self._executor, _commit_waiting, conn, works
            )
            job.add_done_callback(lambda job: self._committed(batch, job))
            return
        try:
            results = _finish(conn, works)
        except Exception as exc:  # every caller of the batch gets the failure
            self._written.clear()
            self._fail(batch, self._error(exc))
        else:
            self._answer(batch, results)
        self._settle()

    def _committed(self, batch: list[_Queued], job: asyncio.Future[_Results]) -> None:
        """A batch the worker thread committed (or failed)."""
        if job.cancelled():
            self._written.clear()
            self._fail(batch, StoreError(f"sqlite {self.path}: write cancelled"))
        elif (exc := job.exception()) is not None:
            self._written.clear()
            self._fail(batch, self._error(exc))
        else:
            self._answer(batch, job.result())
        self._settle()

    def _answer(self, batch: list[_Queued], results: _Results) -> None:
        """The batch committed: memory follows, then each caller gets its result."""
        self.batches += 1
        self.batched += len(batch)
        written, self._written = self._written, {}
        for aor, rows in written.items():
            self._keep(aor, rows)
        for (_, done), (ok, value) in zip(batch, results, strict=True):
            if done.done():
                continue
            if ok:
                done.set_result(value)
            else:
                assert isinstance(value, BaseException)
                done.set_exception(self._error(value))
        self._since_checkpoint += 1
        if self._since_checkpoint >= CHECKPOINT_EVERY and not self._checkpointing:
            self._since_checkpoint = 0
            self._checkpointing = True
            job = asyncio.get_running_loop().run_in_executor(
                self._executor, _checkpoint, self._side
            )
            job.add_done_callback(self._checkpointed)

    def _checkpointed(self, job: asyncio.Future[None]) -> None:
        self._checkpointing = False
        if not job.cancelled():
            job.exception()  # a failed checkpoint is retried after the next commits

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
    def _fail(batch: list[_Queued], exc: BaseException) -> None:
        for _, done in batch:
            if not done.done():
                done.set_exception(exc)

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work`` on the worker thread, with its own connection."""
        if self._conn is None:
            raise StoreError(f"sqlite {self.path}: store is closed")
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._executor, work, self._side
            )
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite {self.path}: {exc}") from exc

    # -- location store --

    async def lookup(self, aor: str, now: float) -> list[Binding]:
        if self._conn is None:
            raise StoreError(f"sqlite {self.path}: store is closed")
        if self._reader is not None:
            return [b for b in self._read(aor) if b.expires_at > now]
        return [Binding.from_row(r) for r in self._live.get(aor, ()) if r[ROW_EXPIRES_AT] > now]

    def _read(self, aor: str | None, owned: Owned | None = None) -> list[Binding]:
        """Shared mode: the AOR's (None: every ``owned`` one's) stored bindings, read from
        the file now."""
        assert self._reader is not None
        try:
            if aor is None:
                found = self._reader.execute("SELECT aor, data FROM bindings ORDER BY aor, pos")
                return [_decode(d) for a, d in found if owned is None or owned(a)]
            query = "SELECT data FROM bindings WHERE aor = ? ORDER BY pos"
            rows = self._reader.execute(query, (aor,))
            return [_decode(row[0], self._decoded) for row in rows.fetchall()]
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite {self.path}: {exc}") from exc

    async def swap(
        self, aor: str, expected: Sequence[Binding], bindings: Sequence[Binding], now: float
    ) -> bool:
        """Make ``bindings`` the AOR's set if its live bindings at ``now`` are still
        ``expected`` (as ``lookup`` returned them); False, writing nothing, otherwise."""
        new = check_aor(aor, bindings)
        rows = [(aor, pos, b.expires_at, b.to_json()) for pos, b in enumerate(new)]
        if self._reader is None:
            # The only writer: memory (and this batch's earlier writes) is the file.
            want = tuple(b.to_row() for b in expected)
            kept = tuple(b.to_row() for b in new)

            def mine(conn: sqlite3.Connection) -> bool:
                current = self._written.get(aor)
                if current is None:
                    current = self._live.get(aor, ())
                if tuple(r for r in current if r[ROW_EXPIRES_AT] > now) != want:
                    return False
                _put(conn, aor, rows, self._stored(aor, current))
                self._written[aor] = kept
                return True

            return await self._write(mine)
        before = [b.to_json() for b in expected]  # the text read, for bindings read here
        decoded = self._decoded
        if decoded is not None:
            for b in new:  # this process's next read of these rows decodes nothing
                decoded.put(b)

        def work(conn: sqlite3.Connection) -> bool:
            found = conn.execute(
                "SELECT data, expires_at FROM bindings WHERE aor = ? ORDER BY pos", (aor,)
            ).fetchall()
            texts = [data for data, expires_at in found if expires_at > now]
            # Another spelling of the same bindings (bindings not read from the file are
            # encoded by this version) is no change either.
            if texts != before and [_decode(t, decoded) for t in texts] != list(expected):
                return False
            _put(conn, aor, rows, len(found))
            return True

        return await self._write(work)

    async def replace(self, aor: str, bindings: Sequence[Binding]) -> None:
        new = check_aor(aor, bindings)
        rows = [(aor, pos, b.expires_at, b.to_json()) for pos, b in enumerate(new)]
        kept = None if self._reader is not None else tuple(b.to_row() for b in new)

        def work(conn: sqlite3.Connection) -> None:
            if kept is None:
                _put(conn, aor, rows)
                return
            current = self._written.get(aor)
            if current is None:
                current = self._live.get(aor, ())
            _put(conn, aor, rows, self._stored(aor, current))
            self._written[aor] = kept

        await self._write(work)

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
                self._spread[aor] = max(len(rows), self._spread.get(aor, 0))
            else:
                del self._live[aor]
                self._spread.pop(aor, None)
        return removed

    async def all_bindings(self, now: float, owned: Owned | None = None) -> list[Binding]:
        if self._reader is not None:
            return [b for b in self._read(None, owned) if b.expires_at > now]
        out: list[Binding] = []
        for n, aor in enumerate(sorted(self._live)):
            if n % ALL_BATCH == 0 and n:
                await asyncio.sleep(0)  # 100,000 rebuilt at once would hold the loop
            if owned is not None and not owned(aor):
                continue
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
        side = self._side
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
            if side is not conn:
                await asyncio.get_running_loop().run_in_executor(self._executor, side.close)
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
