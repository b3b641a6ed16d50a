"""Location and user stores: one suite for every backend, plus SQLite durability and Redis
key layout. Times are real wall-clock values (Redis expires keys on its own clock)."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from ipaddress import IPv4Address, ip_address
from pathlib import Path

import pytest
from redis.asyncio import Redis

from rtc64.errors import ConfigError, LocalProtocolError
from rtc64.gateway.location.backends import StoreLocation, open_store, parse_store_url
from rtc64.gateway.location.bindings import Binding
from rtc64.gateway.location.sqlite import SCHEMA_VERSION
from rtc64.gateway.location.store import Store, StoreError
from rtc64.gateway.location.users import UserRecord
from tests.unit.gateway.support import RedisServer, StoreSpec, free_port

LONGEST_LISTENER = "tls:[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:65535"
ALICE = "sip:alice@example.net"
BOB = "sip:bob@[2001:db8::1]"


def make(aor: str, n: int, expires_at: float, **changes: object) -> Binding:
    values: dict[str, object] = {
        "aor": aor,
        "contact": f"sip:dev{n}@[2001:db8::{n:x}]:5060;transport=tcp".encode(),
        "expires_at": expires_at,
        "call_id": f"call-{n}@host".encode(),
        "cseq": n,
        "transport": "tcp",
        "listener": "tcp:[2001:db8::1]:5060",
    }
    values.update(changes)
    return Binding(**values)  # type: ignore[arg-type]


def rich_bindings(now: float) -> list[Binding]:
    """Bindings exercising every field and every address form."""
    return [
        make(
            ALICE,
            1,
            now + 3600.123456789,
            q=0.9,
            transport="tls",
            listener=LONGEST_LISTENER,
            received_ip=ip_address("2001:db8:85a3:8d3:1319:8a2e:370:7348"),
            received_port=65535,
            path=(b"<sip:edge.example.net;lr;ob>", b"<sip:[2001:db8::2]:5061;transport=tls;lr>"),
            instance=b'"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"',
            reg_id=1,
            user_agent=b"Ph\xc3\xb6ne/2 \xff\x00",
            registered_at=now - 10.5,
        ),
        make(
            ALICE,
            2,
            now + 60,
            q=0.5,
            received_ip=ip_address("::ffff:192.0.2.1"),
            received_port=5060,
        ),
        make(
            ALICE,
            3,
            now + 120,
            received_ip=ip_address("fe80::1%eth0"),
            received_port=5062,
            transport="wss",
            listener="wss:[fe80::2%eth0]:443",
        ),
        make(
            ALICE,
            4,
            now + 7200,
            q=0.0,
            received_ip=IPv4Address("192.0.2.99"),
            transport="udp",
            listener="udp:192.0.2.1:5060",
            contact="sip:jos\u00e9@192.0.2.99".encode(),
        ),
    ]


# -- one suite, every backend --


def test_bindings_round_trip_exactly(store_spec: StoreSpec) -> None:
    now = time.time()
    items = rich_bindings(now)

    async def body(store: Store) -> None:
        await store.replace(ALICE, items)
        got = await store.lookup(ALICE, now)
        assert got == items
        for a, b in zip(got, items, strict=True):
            assert repr(a) == repr(b)  # same types too: IPv6 stays IPv6, scope ids kept
            assert a.expires_at == b.expires_at
        assert await store.all_bindings(now) == items
        assert await store.lookup(BOB, now) == []

    store_spec.run(body)


def test_expiry(store_spec: StoreSpec) -> None:
    now = time.time()
    alice = [make(ALICE, 1, now + 100), make(ALICE, 2, now + 300), make(ALICE, 3, now + 200)]
    bob = [make(BOB, 4, now + 150)]

    async def body(store: Store) -> None:
        await store.replace(ALICE, alice)
        await store.replace(BOB, bob)
        assert await store.lookup(ALICE, now + 100) == [alice[1], alice[2]]  # at expires_at: gone
        assert await store.lookup(ALICE, now + 99.9) == alice
        assert await store.all_bindings(now + 160) == [alice[1], alice[2]]
        assert await store.expire(now) == 0
        assert await store.expire(now + 160) == 2  # alice 1 and bob
        assert await store.lookup(BOB, now) == []  # purged, whatever time we ask at
        assert await store.lookup(ALICE, now) == [alice[1], alice[2]]
        assert await store.expire(now + 160) == 0
        assert await store.expire(now + 1000) == 2
        assert await store.all_bindings(now) == []

    store_spec.run(body)


def test_replace_swaps_the_whole_set(store_spec: StoreSpec) -> None:
    now = time.time()
    first = [make(ALICE, 1, now + 600), make(ALICE, 2, now + 600)]
    second = [make(ALICE, 3, now + 900)]

    async def body(store: Store) -> None:
        await store.replace(ALICE, first)
        await store.replace(BOB, [make(BOB, 9, now + 600)])
        await store.replace(ALICE, second)
        assert await store.lookup(ALICE, now) == second
        await store.replace(ALICE, [])
        assert await store.lookup(ALICE, now) == []
        assert [b.aor for b in await store.all_bindings(now)] == [BOB]
        await store.replace(ALICE, [])  # removing an absent AOR is fine

    store_spec.run(body)


def test_replace_is_all_or_nothing(store_spec: StoreSpec) -> None:
    now = time.time()
    old = [make(ALICE, 1, now + 600)]

    async def body(store: Store) -> None:
        await store.replace(ALICE, old)
        with pytest.raises(LocalProtocolError):
            await store.replace(ALICE, [make(ALICE, 2, now + 600), make(BOB, 3, now + 600)])
        assert await store.lookup(ALICE, now) == old

    store_spec.run(body)


def test_concurrent_replaces_never_mix(store_spec: StoreSpec) -> None:
    now = time.time()
    sets = [[make(ALICE, 10 * k + i, now + 600 + k) for i in range(5)] for k in range(6)]
    valid = [tuple(s) for s in sets]

    async def body(store: Store) -> None:
        await store.replace(ALICE, sets[0])
        seen: list[tuple[Binding, ...]] = []

        async def reader() -> None:
            for _ in range(30):
                seen.append(tuple(await store.lookup(ALICE, now)))

        await asyncio.gather(reader(), *(store.replace(ALICE, s) for s in sets[1:]), reader())
        final = tuple(await store.lookup(ALICE, now))
        assert final in valid
        assert all(s in valid for s in seen)

    store_spec.run(body)


def test_all_bindings_grouped_by_aor(store_spec: StoreSpec) -> None:
    now = time.time()
    aors = ["sip:zed@example.net", "sip:amy@example.net", "sip:m\u00fc@example.net"]

    async def body(store: Store) -> None:
        for n, aor in enumerate(aors):
            await store.replace(aor, [make(aor, 2 * n + 1, now + 60), make(aor, 2 * n, now + 60)])
        got = await store.all_bindings(now)
        assert [b.aor for b in got] == [a for a in sorted(aors) for _ in range(2)]
        assert [b.cseq for b in got if b.aor == aors[0]] == [1, 0]  # stored order kept
        mine = await store.all_bindings(now, lambda aor: aor != aors[1])  # a worker's share
        assert [b.aor for b in mine] == [a for a in sorted(aors) if a != aors[1] for _ in range(2)]

    store_spec.run(body)


def test_users(store_spec: StoreSpec) -> None:
    alice = UserRecord.from_password("alice", "example.net", "pw1")
    bob = UserRecord.from_password("b\u00f6b", "example.net", "pw2")

    async def body(store: Store) -> None:
        assert await store.get_user("alice") is None
        assert await store.list_users() == []
        await store.put_user(bob)
        await store.put_user(alice)
        assert await store.get_user("alice") == alice
        assert await store.get_user("b\u00f6b") == bob
        assert await store.get_user("Alice") is None  # names are case-sensitive
        assert await store.list_users() == [alice, bob]
        changed = UserRecord.from_password("alice", "other.example", "pw3")
        await store.put_user(changed)
        assert await store.get_user("alice") == changed
        assert await store.delete_user("alice") is True
        assert await store.delete_user("alice") is False
        assert await store.list_users() == [bob]

    store_spec.run(body)


def test_closed_store_raises(store_spec: StoreSpec) -> None:
    async def main() -> None:
        store = await open_store(store_spec.url, store_spec.data_dir)
        await store.close()
        await store.close()  # idempotent
        with pytest.raises(StoreError, match="closed"):
            await store.lookup(ALICE, time.time())

    asyncio.run(main())


def test_data_survives_reopen(store_spec: StoreSpec) -> None:
    """A restart: close, open again (a new event loop too), everything is still there."""
    now = time.time()
    items = rich_bindings(now)
    user = UserRecord.from_password("alice", "example.net", "pw")

    async def write(store: Store) -> None:
        await store.replace(ALICE, items)
        await store.put_user(user)

    async def read(store: Store) -> tuple[list[Binding], UserRecord | None]:
        return await store.lookup(ALICE, now), await store.get_user("alice")

    store_spec.run(write)
    assert store_spec.run(read) == (items, user)


# -- SQLite specifics --

CHILD = """
import asyncio, sys
from pathlib import Path
from rtc64.gateway.location.backends import open_store
from rtc64.gateway.location.bindings import Binding

async def main() -> None:
    store = await open_store(sys.argv[1], Path(sys.argv[2]))
    binding = Binding.from_json(sys.argv[3])
    await store.replace(binding.aor, [binding])
    print("written", flush=True)
    await asyncio.sleep(120)

asyncio.run(main())
"""


def test_sqlite_commit_survives_kill_9(tmp_path: Path) -> None:
    now = time.time()
    binding = rich_bindings(now)[0]
    db = tmp_path / "store" / "loc.sqlite"
    url = f"sqlite://{db}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, url, str(tmp_path), binding.to_json()],
        stdout=subprocess.PIPE,
        env=env,
        cwd=Path(__file__).parents[3],
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"written\n"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (db.parent / (db.name + "-wal")).exists()  # the commit lived only in the WAL

    async def main() -> list[Binding]:
        store = await open_store(url, tmp_path)
        try:
            return await store.lookup(binding.aor, now)
        finally:
            await store.close()

    assert asyncio.run(main()) == [binding]


def test_sqlite_file_settings(tmp_path: Path) -> None:
    data_dir = tmp_path / "new" / "data"

    async def main() -> None:
        store = await open_store("sqlite", data_dir)
        await store.close()

    asyncio.run(main())
    db = data_dir / "location.sqlite"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600  # HA1 values are password-equivalent
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    conn.close()


def test_sqlite_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "location.sqlite"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version=99")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        asyncio.run(open_store("sqlite", tmp_path))


def test_sqlite_corrupt_row_is_store_error(tmp_path: Path) -> None:
    now = time.time()
    spec = StoreSpec("sqlite", "sqlite", tmp_path)
    spec.run(lambda store: store.replace(ALICE, [make(ALICE, 1, now + 60)]))
    conn = sqlite3.connect(tmp_path / "location.sqlite")
    conn.execute("UPDATE bindings SET data = '{\"aor\": 1}'")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="unreadable"):
        spec.run(lambda store: store.lookup(ALICE, now))


def test_sqlite_unopenable_path_is_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError):
        asyncio.run(open_store("sqlite", blocker / "data"))


# -- Redis specifics --


def test_redis_key_layout(redis_server: RedisServer) -> None:
    redis_server.flush()
    now = time.time()
    items = [make(ALICE, 1, now + 100), make(ALICE, 2, now + 1000)]
    user = UserRecord.from_password("alice", "example.net", "pw")

    async def main() -> None:
        store = await open_store(redis_server.url, Path("/nonexistent"))
        client = Redis.from_url(redis_server.url)
        try:
            await store.replace(ALICE, items)
            await store.put_user(user)
            keys = sorted(await client.keys("*"))
            assert keys == [b"rtc64:loc:" + ALICE.encode(), b"rtc64:user:alice"]
            ttl_ms = await client.pttl(b"rtc64:loc:" + ALICE.encode())
            assert 990_000 < ttl_ms <= 1_000_001  # the longest binding
            assert await client.pttl(b"rtc64:user:alice") == -1  # users do not expire
            fields = await client.hgetall(b"rtc64:user:alice")
            assert fields[b"ha1_sha256"] == user.ha1_sha256.encode()
            assert all(b"pw" not in v for v in fields.values() if isinstance(v, bytes))
            await store.replace(ALICE, [make(ALICE, 3, now - 1)])  # already expired
            assert await client.exists(b"rtc64:loc:" + ALICE.encode()) == 0
        finally:
            await client.aclose()
            await store.close()

    asyncio.run(main())


def test_redis_unreachable_is_store_error() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(StoreError, match="redis"):
        asyncio.run(open_store(url, Path("/nonexistent")))


# -- URLs --


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite", StoreLocation("sqlite", path=Path("/data/location.sqlite"))),
        (
            "sqlite:///var/lib/rtc64/loc.db",
            StoreLocation("sqlite", path=Path("/var/lib/rtc64/loc.db")),
        ),
        ("redis://127.0.0.1:6379/0", StoreLocation("redis", url="redis://127.0.0.1:6379/0")),
        ("redis://[::1]:6380/3", StoreLocation("redis", url="redis://[::1]:6380/3")),
        ("redis://redis.example.net", StoreLocation("redis", url="redis://redis.example.net")),
        (
            "redis://:secret@10.0.0.1:6379/1",
            StoreLocation("redis", url="redis://:secret@10.0.0.1:6379/1"),
        ),
    ],
)
def test_parse_store_url(url: str, expected: StoreLocation) -> None:
    assert parse_store_url(url, Path("/data")) == expected


@pytest.mark.parametrize(
    "url",
    [
        "",
        "SQLITE",
        "sqlite:",
        "sqlite://relative/path",
        "sqlite:///",
        "postgres://db/x",
        "redis://",
        "redis://host:notaport/0",
        "redis://host:99999/0",
        "redis://host:0/0",
        "redis://host:6379/zero",
        "redis://host:6379/0/extra",
        "rediss://host:6379/0",
    ],
)
def test_bad_store_url_is_config_error(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_store_url(url, Path("/data"))
    assert info.value.key == "store.url"
    assert info.value.value == url
    assert "redis://HOST:PORT/DB" in info.value.expected
    with pytest.raises(ConfigError):
        asyncio.run(open_store(url, Path("/data")))
