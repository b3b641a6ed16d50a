# Location and user stores: the interface and the backend choice (RFC 3261 §10.3 location
# service; RFC 8760 digest HA1 records).
#
# Rules:
# - A store is async; ``replace`` swaps an AOR's whole binding set atomically (readers see the
#   old set or the new one, never a mix) and returns only once the write is durable in the
#   backend. Reads return only live bindings (``now < expires_at``), in stored order.
# - Times are absolute wall-clock seconds: Redis expires keys on its own clock.
# - Backends: SQLite (default, one file under the data dir) and Redis (shared by several
#   gateways). The backend modules are imported only when chosen.
# - Backend failures and malformed stored data raise ``StoreError``; a bad URL raises
#   ``ConfigError("store.url", ...)``.

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol
from urllib.parse import urlsplit

from rtc64.errors import ConfigError, LocalProtocolError, Rtc64Error
from rtc64.gateway.bindings import Binding
from rtc64.gateway.users import UserRecord

URL_FORM = "sqlite, sqlite:///PATH or redis://HOST:PORT/DB"
DEFAULT_SQLITE_NAME = "location.sqlite"
LOC_PREFIX = "rtc64:loc:"
USER_PREFIX = "rtc64:user:"


class StoreError(Rtc64Error):
    """The store backend failed, or holds data this version cannot read."""


class LocationStore(Protocol):
    """Bindings per address-of-record (the location service)."""

    async def lookup(self, aor: str, now: float) -> list[Binding]:
        """The AOR's live bindings, in stored order."""
        ...

    async def replace(self, aor: str, bindings: Sequence[Binding]) -> None:
        """Atomically make ``bindings`` the AOR's whole set (empty: remove the AOR)."""
        ...

    async def expire(self, now: float) -> int:
        """Purge bindings expired at ``now``; return how many this call removed."""
        ...

    async def all_bindings(self, now: float) -> list[Binding]:
        """Every live binding, grouped by AOR (AORs sorted), each AOR in stored order."""
        ...

    async def close(self) -> None:
        """Release the backend; idempotent."""
        ...


class UserStore(Protocol):
    """Digest users (name, realm, HA1 values; never passwords)."""

    async def get_user(self, name: str) -> UserRecord | None: ...

    async def put_user(self, user: UserRecord) -> None:
        """Create or replace the user's record."""
        ...

    async def delete_user(self, name: str) -> bool:
        """Remove the user; False if there was none."""
        ...

    async def list_users(self) -> list[UserRecord]:
        """Every user, sorted by name."""
        ...


class Store(LocationStore, UserStore, Protocol):
    """What ``open_store`` returns: both stores on one backend."""


@dataclass(frozen=True, slots=True)
class StoreLocation:
    """A parsed ``store.url``: the backend and where it lives."""

    kind: Literal["sqlite", "redis"]
    path: Path | None = None  # sqlite
    url: str = ""  # redis


def parse_store_url(url: str, data_dir: Path) -> StoreLocation:
    """Parse ``store.url``: ``sqlite`` (data_dir/location.sqlite), ``sqlite:///ABS/PATH``, or
    ``redis://[USER:PASS@]HOST[:PORT][/DB]``. Raises ``ConfigError`` for anything else."""

    def bad() -> ConfigError:
        return ConfigError("store.url", url, URL_FORM)

    if url == "sqlite":
        return StoreLocation("sqlite", path=data_dir / DEFAULT_SQLITE_NAME)
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite://"))
        if not path.is_absolute() or path == Path("/") or "\0" in url:
            raise bad()
        return StoreLocation("sqlite", path=path)
    if url.startswith("redis://"):
        try:
            parts = urlsplit(url)
            port = parts.port  # ValueError when not a number in 0..65535
        except ValueError:
            raise bad() from None
        db = parts.path.removeprefix("/")
        if not parts.hostname or port == 0 or parts.fragment or "/" in db:
            raise bad()
        if db and not (db.isascii() and db.isdigit()):
            raise bad()
        return StoreLocation("redis", url=url)
    raise bad()


async def open_store(url: str, data_dir: Path) -> Store:
    """Open the store ``url`` names (see ``parse_store_url``); the caller closes it.

    Raises ``ConfigError`` for a bad URL and ``StoreError`` if the backend cannot be
    reached or opened.
    """
    location = parse_store_url(url, data_dir)
    # Backends are imported on demand: a SQLite gateway never loads the redis package.
    if location.kind == "sqlite":
        from rtc64.gateway.store_sqlite import SqliteStore  # noqa: PLC0415 (lazy by design)

        assert location.path is not None
        return await SqliteStore.open(location.path)
    from rtc64.gateway.store_redis import RedisStore  # noqa: PLC0415 (lazy by design)

    return await RedisStore.open(location.url)


def check_aor(aor: str, bindings: Sequence[Binding]) -> tuple[Binding, ...]:
    """The bindings as a tuple, after checking that each belongs to ``aor``."""
    for b in bindings:
        if b.aor != aor:
            raise LocalProtocolError(f"binding for {b.aor!r} given to replace {aor!r}")
    return tuple(bindings)
