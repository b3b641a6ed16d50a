# Redis location and user store: several gateways share registrations and users.
#
# Rules:
# - One key per AOR, ``rtc64:loc:<aor>``, holding the AOR's bindings as one JSON array
#   (``bindings_to_json``), written with ``SET ... PXAT <longest expires_at>``: one command,
#   so a replace is atomic and Redis drops the key when its last binding expires.
# - ``expire`` trims expired bindings out of live keys with WATCH/MULTI (optimistic, so a
#   concurrent ``replace`` from another gateway is never overwritten with stale data); keys
#   Redis already dropped by TTL are not counted.
# - ``swap`` is compare-and-set (WATCH the key, compare its live bindings with what the
#   caller read, MULTI/SET/EXEC): two gateways registering contacts of one AOR at the same
#   moment never overwrite each other; the loser reads again and retries.
# - Users: one hash per user, ``rtc64:user:<name>`` (name, realm, ha1_md5, ha1_sha256,
#   aors as a JSON array; absent in records written before it existed).
# - ``replace`` returns after Redis acknowledged the write; durability beyond that is the
#   Redis server's persistence configuration (AOF/RDB), not ours.
# - Redis errors become ``StoreError``.

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Mapping, Sequence

from redis.asyncio import Redis
from redis.exceptions import RedisError, WatchError

from rtc64.errors import ConfigError
from rtc64.gateway.location.bindings import Binding, bindings_from_json, bindings_to_json
from rtc64.gateway.location.store import (
    LOC_PREFIX,
    URL_FORM,
    USER_PREFIX,
    Owned,
    StoreError,
    check_aor,
)
from rtc64.gateway.location.users import UserRecord

TIMEOUT = 5.0  # seconds to connect or to get a reply
SCAN_COUNT = 500  # keys per SCAN round trip
WATCH_RETRIES = 8  # optimistic-transaction attempts per key in ``expire``


@contextlib.contextmanager
def _redis_errors() -> Iterator[None]:
    try:
        yield
    except RedisError as exc:
        raise StoreError(f"redis: {exc}") from exc


def _loc_key(aor: str) -> bytes:
    return (LOC_PREFIX + aor).encode()


def _user_key(name: str) -> bytes:
    return (USER_PREFIX + name).encode()


def _decode(raw: bytes | str) -> list[Binding]:
    try:
        return bindings_from_json(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise StoreError(f"redis: unreadable bindings: {exc}") from None


def _pxat(bindings: Sequence[Binding]) -> int:
    """The key's expiry: the longest binding, as Unix milliseconds (rounded up)."""
    return math.ceil(max(b.expires_at for b in bindings) * 1000)


class RedisStore:
    """Location and user store on a Redis server (``redis://host:port/db``)."""

    def __init__(self, client: Redis) -> None:
        self._client: Redis | None = client

    @classmethod
    async def open(cls, url: str) -> RedisStore:
        """Connect to ``url`` and check the server answers; ``StoreError`` if not.

        Commands time out after ``TIMEOUT`` seconds (``StoreError``) rather than stall the
        REGISTERs waiting on them.
        """
        try:
            client = Redis.from_url(url, socket_connect_timeout=TIMEOUT, socket_timeout=TIMEOUT)
        except ValueError as exc:  # e.g. a bad ?query option redis-py parses itself
            raise ConfigError("store.url", url, f"{URL_FORM} ({exc})") from None
        try:
            with _redis_errors():
                await client.ping()
        except BaseException:
            await client.aclose()
            raise
        return cls(client)

    @property
    def client(self) -> Redis:
        if self._client is None:
            raise StoreError("redis: store is closed")
        return self._client

    async def _scan(self, prefix: str) -> list[bytes]:
        keys: list[bytes] = []
        async for key in self.client.scan_iter(match=prefix + "*", count=SCAN_COUNT):
            keys.append(key)
        keys.sort()
        return keys

    # -- location store --

    async def lookup(self, aor: str, now: float) -> list[Binding]:
        with _redis_errors():
            raw = await self.client.get(_loc_key(aor))
        if raw is None:
            return []
        return [b for b in _decode(raw) if b.is_live(now)]

    async def replace(self, aor: str, bindings: Sequence[Binding]) -> None:
        items = check_aor(aor, bindings)
        key = _loc_key(aor)
        with _redis_errors():
            if not items or _pxat(items) <= time.time() * 1000:
                await self.client.delete(key)
            else:
                await self.client.set(key, bindings_to_json(items), pxat=_pxat(items))

    async def swap(
        self, aor: str, expected: Sequence[Binding], bindings: Sequence[Binding], now: float
    ) -> bool:
        """Make ``bindings`` the AOR's set if its live bindings at ``now`` are still
        ``expected``; False (nothing written) if they changed or another writer got in
        between the read and the write."""
        items = check_aor(aor, bindings)
        key = _loc_key(aor)
        before = [b.to_json() for b in expected]
        with _redis_errors():
            async with self.client.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)
                    stored = [] if raw is None else [b for b in _decode(raw) if b.is_live(now)]
                    if [b.to_json() for b in stored] != before:
                        await pipe.unwatch()  # type: ignore[no-untyped-call]
                        return False
                    pipe.multi()  # type: ignore[no-untyped-call]  # untyped in redis-py
                    if not items or _pxat(items) <= time.time() * 1000:
                        pipe.delete(key)
                    else:
                        pipe.set(key, bindings_to_json(items), pxat=_pxat(items))
                    await pipe.execute()
                except WatchError:
                    return False
        return True

    async def expire(self, now: float) -> int:
        removed = 0
        with _redis_errors():
            for key in await self._scan(LOC_PREFIX):
                removed += await self._trim(key, now)
        return removed

    async def _trim(self, key: bytes, now: float) -> int:
        """Drop the expired bindings of one key, retrying if another writer interferes."""
        for _ in range(WATCH_RETRIES):
            async with self.client.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)
                    if raw is None:
                        return 0
                    bindings = _decode(raw)
                    live = [b for b in bindings if b.is_live(now)]
                    if len(live) == len(bindings):
                        return 0
                    pipe.multi()  # type: ignore[no-untyped-call]  # untyped in redis-py
                    if live:
                        pipe.set(key, bindings_to_json(live), pxat=_pxat(live))
                    else:
                        pipe.delete(key)
                    await pipe.execute()
                    return len(bindings) - len(live)
                except WatchError:
                    continue
        return 0  # busy key: another writer keeps replacing it; the next run will trim it

    async def all_bindings(self, now: float, owned: Owned | None = None) -> list[Binding]:
        out: list[Binding] = []
        with _redis_errors():
            keys = await self._scan(LOC_PREFIX)
            if owned is not None:
                skip = len(LOC_PREFIX)
                keys = [k for k in keys if owned(k[skip:].decode("utf-8", "surrogateescape"))]
            for start in range(0, len(keys), SCAN_COUNT):
                for raw in await self.client.mget(keys[start : start + SCAN_COUNT]):
                    if raw is not None:
                        out.extend(b for b in _decode(raw) if b.is_live(now))
        return out

    # -- user store --

    async def get_user(self, name: str) -> UserRecord | None:
        with _redis_errors():
            fields = await self.client.hgetall(_user_key(name))
        return _user(fields) if fields else None

    async def put_user(self, user: UserRecord) -> None:
        key = _user_key(user.name)
        with _redis_errors():
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                pipe.hset(key, items=[x for pair in user.to_dict().items() for x in pair])
                await pipe.execute()

    async def delete_user(self, name: str) -> bool:
        with _redis_errors():
            return bool(await self.client.delete(_user_key(name)))

    async def list_users(self) -> list[UserRecord]:
        with _redis_errors():
            keys = await self._scan(USER_PREFIX)
            async with self.client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hgetall(key)
                replies = await pipe.execute()
        users = [_user(fields) for fields in replies if fields]
        return sorted(users, key=lambda u: u.name)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with _redis_errors():
                await client.aclose()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _user(fields: Mapping[bytes | str, bytes | str]) -> UserRecord:
    try:
        return UserRecord.from_dict({_text(k): _text(v) for k, v in fields.items()})
    except (ValueError, UnicodeDecodeError) as exc:
        raise StoreError(f"redis: unreadable user record: {exc}") from None
