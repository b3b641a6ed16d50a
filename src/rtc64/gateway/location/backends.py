# Store backend selection: ``store.url`` to a parsed location, and opening the backend it
# names. Kept out of ``store.py`` (the protocol) so the protocol imports no backend and the
# backends import only the protocol: no import circle.
#
# Rules:
# - ``sqlite`` (data_dir/location.sqlite), ``sqlite:///ABS/PATH`` or
#   ``redis://[USER:PASS@]HOST[:PORT][/DB]``; anything else raises
#   ``ConfigError("store.url", ...)``.
# - Backend modules are imported only when chosen: a SQLite gateway never loads redis.

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from rtc64.errors import ConfigError
from rtc64.gateway.location.store import URL_FORM, Store

DEFAULT_SQLITE_NAME = "location.sqlite"


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


async def open_store(url: str, data_dir: Path, *, shared: bool = False) -> Store:
    """Open the store ``url`` names (see ``parse_store_url``); the caller closes it.
    ``shared``: other processes (SIP workers) write the same SQLite file, so reads go to
    the file rather than this process's memory (Redis is always shared).

    Raises ``ConfigError`` for a bad URL and ``StoreError`` if the backend cannot be
    reached or opened.
    """
    location = parse_store_url(url, data_dir)
    # Backends are imported on demand: a SQLite gateway never loads the redis package.
    if location.kind == "sqlite":
        from rtc64.gateway.location.sqlite import SqliteStore  # noqa: PLC0415 (lazy by design)

        assert location.path is not None
        return await SqliteStore.open(location.path, shared=shared)
    from rtc64.gateway.location.redis import RedisStore  # noqa: PLC0415 (lazy by design)

    return await RedisStore.open(location.url)
