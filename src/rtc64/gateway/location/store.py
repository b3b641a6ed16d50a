# Location and user stores: the interface every backend implements (RFC 3261 §10.3 location
# service; RFC 8760 digest HA1 records). Backend choice lives in ``backends.py``; this
# module imports no backend.
#
# Rules:
# - A store is async; ``replace`` swaps an AOR's whole binding set atomically (readers see the
#   old set or the new one, never a mix) and returns only once the write is durable in the
#   backend. Reads return only live bindings (``now < expires_at``), in stored order.
# - Times are absolute wall-clock seconds: Redis expires keys on its own clock.
# - Backends: SQLite (default, one file under the data dir, ``sqlite.py``) and Redis (shared
#   by several gateways, ``redis.py``).
# - Backend failures and malformed stored data raise ``StoreError`` (a bad ``store.url``
#   raises ``ConfigError`` in ``backends.py``).

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from rtc64.errors import LocalProtocolError, Rtc64Error
from rtc64.gateway.location.bindings import Binding
from rtc64.gateway.location.users import UserRecord

URL_FORM = "sqlite, sqlite:///PATH or redis://HOST:PORT/DB"
LOC_PREFIX = "rtc64:loc:"
USER_PREFIX = "rtc64:user:"


Owned = Callable[[str], bool]
"""Which AORs a reader wants (by their location-service key)."""


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

    async def all_bindings(self, now: float, owned: Owned | None = None) -> list[Binding]:
        """Every live binding (of the AORs ``owned`` says yes to), grouped by AOR (AORs
        sorted), each AOR in stored order. ``owned`` is asked before a binding is decoded:
        a SIP worker loading its share of 100,000 contacts decodes only those."""
        ...

    async def close(self) -> None:
        """Release the backend; idempotent."""
        ...


@runtime_checkable
class SwappingStore(Protocol):
    """A location store that can compare-and-set an AOR (shared by processes or
    gateways: the SQLite and Redis backends)."""

    async def swap(
        self, aor: str, expected: Sequence[Binding], bindings: Sequence[Binding], now: float
    ) -> bool:
        """Make ``bindings`` the AOR's whole set only if its live bindings at ``now`` are
        still ``expected``; False (nothing written) otherwise."""
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


def check_aor(aor: str, bindings: Sequence[Binding]) -> tuple[Binding, ...]:
    """The bindings as a tuple, after checking that each belongs to ``aor``."""
    for b in bindings:
        if b.aor != aor:
            raise LocalProtocolError(f"binding for {b.aor!r} given to replace {aor!r}")
    return tuple(bindings)
