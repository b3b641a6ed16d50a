"""TURN credentials: long-term keys from the user store, REST secrets, stateless nonces."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtc64.gateway.location.users import UserRecord
from rtc64.net.address import IPAddress
from rtc64.sip import digest
from rtc64.sip.digest import Algorithm
from rtc64.turnserver import credentials as credentials_module
from rtc64.turnserver.credentials import (
    ALGORITHM_MD5,
    ALGORITHM_SHA256,
    NONCE_COOKIE,
    PENDING,
    STALE,
    Credentials,
    CredentialSettings,
    long_term_key,
    rest_credentials,
    rest_expiry,
    rest_password,
)

REALM = "example.net"
NOW = 1_765_000_000.0  # unix time of the tests


@dataclass(frozen=True)
class Client:
    remote: tuple[IPAddress, int]


class FakeStore:
    def __init__(self, *records: UserRecord) -> None:
        self.users = {r.name: r for r in records}
        self.calls: list[str] = []
        self.fail = False

    async def get_user(self, name: str) -> UserRecord | None:
        self.calls.append(name)
        if self.fail:
            raise OSError("database is locked")
        return self.users.get(name)


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(
    *records: UserRecord, secrets: tuple[bytes, ...] = (), long_term: bool = True, **kw: float
) -> tuple[Credentials, FakeStore, Clock]:
    store = FakeStore(*records)
    clock = Clock()
    settings = CredentialSettings(realm=REALM, long_term=long_term, secrets=secrets, **kw)  # type: ignore[arg-type]
    creds = Credentials(settings, store, clock=clock, wall=lambda: NOW)
    return creds, store, clock


ALICE = UserRecord.from_password("alice", REALM, "s3cret")


# --- long-term credentials from the user store -----------------------------------------


def test_long_term_key_is_the_sip_ha1_bytes() -> None:
    # RFC 8489 §9.2.2: key = MD5(username ":" realm ":" password); SHA-256 likewise.
    md5 = long_term_key("alice", REALM, "s3cret", ALGORITHM_MD5)
    assert md5 == hashlib.md5(b"alice:example.net:s3cret").digest()
    assert md5 == bytes.fromhex(digest.ha1("alice", REALM, "s3cret", Algorithm.MD5))
    sha = long_term_key("alice", REALM, "s3cret", ALGORITHM_SHA256)
    assert sha == hashlib.sha256(b"alice:example.net:s3cret").digest()


def test_rfc5769_long_term_key() -> None:
    # RFC 5769 §2.4: username "マトリックス" (after SASLprep), realm "example.org",
    # password "TheMatrIX": the key is MD5 of the three joined by ':'.
    user = "\u30de\u30c8\u30ea\u30c3\u30af\u30b9"
    expected = hashlib.md5(f"{user}:example.org:TheMatrIX".encode()).digest()
    assert long_term_key(user, "example.org", "TheMatrIX", ALGORITHM_MD5) == expected


def test_store_lookup_pending_then_cached() -> None:
    creds, store, _ = make(ALICE)
    assert creds.key("alice", REALM, ALGORITHM_MD5) is PENDING
    assert asyncio.run(creds.fetch("alice")) is True
    assert creds.key("alice", REALM, ALGORITHM_MD5) == bytes.fromhex(ALICE.ha1_md5)
    assert creds.key("alice", REALM, ALGORITHM_SHA256) == bytes.fromhex(ALICE.ha1_sha256)
    assert store.calls == ["alice"]


def test_unknown_user_negative_cache_then_expiry() -> None:
    creds, _store, clock = make(ALICE, negative_ttl=10.0)
    assert creds.key("mallory", REALM, ALGORITHM_MD5) is PENDING
    assert asyncio.run(creds.fetch("mallory")) is False
    assert creds.key("mallory", REALM, ALGORITHM_MD5) is None
    clock.now += 11
    assert creds.key("mallory", REALM, ALGORITHM_MD5) is PENDING


def test_cache_expires_and_password_change_is_seen() -> None:
    creds, store, clock = make(ALICE, cache_ttl=60.0)
    creds.key("alice", REALM, ALGORITHM_MD5)
    asyncio.run(creds.fetch("alice"))
    store.users["alice"] = UserRecord.from_password("alice", REALM, "new")
    assert creds.key("alice", REALM, ALGORITHM_MD5) == bytes.fromhex(ALICE.ha1_md5)
    clock.now += 61
    assert creds.key("alice", REALM, ALGORITHM_MD5) is PENDING
    asyncio.run(creds.fetch("alice"))
    assert creds.key("alice", REALM, ALGORITHM_MD5) == long_term_key(
        "alice", REALM, "new", ALGORITHM_MD5
    )
    creds.forget("alice")
    assert creds.key("alice", REALM, ALGORITHM_MD5) is PENDING


def test_other_realm_gets_no_key_and_no_lookup() -> None:
    creds, store, _ = make(ALICE)
    assert creds.key("alice", "evil.example", ALGORITHM_MD5) is None
    assert creds.key("", REALM, ALGORITHM_MD5) is None
    assert store.calls == []


def test_user_of_another_realm_in_the_store_is_unknown() -> None:
    other = UserRecord.from_password("bob", "other.realm", "pw")
    creds, _, _ = make(other)
    creds.key("bob", REALM, ALGORITHM_MD5)
    assert asyncio.run(creds.fetch("bob")) is False
    assert creds.key("bob", REALM, ALGORITHM_MD5) is None


def test_store_failure_is_counted_and_answers_401_briefly() -> None:
    creds, store, clock = make(ALICE, error_ttl=2.0)
    store.fail = True
    creds.key("alice", REALM, ALGORITHM_MD5)
    assert asyncio.run(creds.fetch("alice")) is False
    assert creds.store_errors == 1
    assert "database is locked" in creds.last_error
    assert creds.key("alice", REALM, ALGORITHM_MD5) is None  # no look-up loop
    store.fail = False
    clock.now += 3
    assert creds.key("alice", REALM, ALGORITHM_MD5) is PENDING


def test_name_spray_bounded_by_max_pending() -> None:
    creds, _store, clock = make(ALICE, max_pending=4)
    answers = [creds.key(f"user{i}", REALM, ALGORITHM_MD5) for i in range(10)]
    assert answers[:4] == [PENDING] * 4
    assert answers[4:] == [None] * 6
    assert creds.lookups_refused == 6
    # the same name again while in flight stays pending, costs no slot
    assert creds.key("user0", REALM, ALGORITHM_MD5) is PENDING
    asyncio.run(creds.fetch("user0"))
    assert creds.key("user9", REALM, ALGORITHM_MD5) is PENDING
    # look-ups the service never finished are forgotten after 30 s
    clock.now += 31
    assert creds.key("user8", REALM, ALGORITHM_MD5) is PENDING


def test_cache_is_bounded() -> None:
    creds, _, _ = make(ALICE, max_cache=3)
    for i in range(10):
        asyncio.run(creds.fetch(f"u{i}"))
    assert len(creds) == 3


def test_long_term_off_means_no_lookup() -> None:
    creds, store, _ = make(ALICE, long_term=False, secrets=(b"k",))
    assert creds.key("alice", REALM, ALGORITHM_MD5) is None
    assert store.calls == []


# --- TURN REST shared secrets ----------------------------------------------------------


def coturn_password(secret: bytes, username: str) -> str:
    """What coturn's use-auth-secret and every REST client compute."""
    return base64.b64encode(hmac.new(secret, username.encode(), hashlib.sha1).digest()).decode()


def test_rest_credentials_shape() -> None:
    cred = rest_credentials("sharedsecret", "alice", 86400, NOW)
    assert cred.username == f"{int(NOW) + 86400}:alice"
    assert cred.password == coturn_password(b"sharedsecret", cred.username)
    assert cred.ttl == 86400
    assert cred.password not in repr(cred)
    assert rest_credentials("s", "", 10, NOW).username == str(int(NOW) + 10)
    with pytest.raises(ValueError, match="ttl"):
        rest_credentials("s", "alice", 0, NOW)
    with pytest.raises(ValueError, match="':'"):
        rest_credentials("s", "a:b", 10, NOW)


def test_rest_key_matches_coturn() -> None:
    creds, store, _ = make(secrets=(b"sharedsecret",))
    username = f"{int(NOW) + 3600}:alice"
    password = coturn_password(b"sharedsecret", username)
    for algorithm in (ALGORITHM_MD5, ALGORITHM_SHA256):
        expected = long_term_key(username, REALM, password, algorithm)
        assert creds.key(username, REALM, algorithm) == expected
    assert store.calls == []  # REST usernames never reach the store


def test_rest_several_secrets_for_rotation() -> None:
    creds, _, _ = make(secrets=(b"new", b"old"))
    username = f"{int(NOW) + 60}:alice"
    keys = creds.keys(username, REALM, ALGORITHM_MD5)
    assert isinstance(keys, tuple)
    assert keys == tuple(
        long_term_key(username, REALM, rest_password(s, username), ALGORITHM_MD5)
        for s in (b"new", b"old")
    )
    assert creds.key(username, REALM, ALGORITHM_MD5) == keys[0]


@pytest.mark.parametrize(
    ("username", "expiry"),
    [
        ("1765003600:alice", 1765003600),
        ("1765003600", 1765003600),
        ("alice:1765003600", 1765003600),  # coturn also reads USER:EXPIRY
        (":1765003600", 1765003600),
        ("1765003600:", 1765003600),
        ("alice", None),
        ("alice:bob", None),
        ("alice:bob:1765003600", None),
        ("12x:alice", None),
        ("", None),
        ("\u0661\u0662\u0663:alice", None),  # non-ASCII digits
        ("9" * 13 + ":alice", None),
    ],
)
def test_rest_expiry_parsing(username: str, expiry: int | None) -> None:
    assert rest_expiry(username) == expiry


def test_rest_expired_username_refused() -> None:
    creds, _, _ = make(secrets=(b"k",))
    assert creds.key(f"{int(NOW) - 1}:alice", REALM, ALGORITHM_MD5) is None
    assert creds.rest_expired == 1
    # coturn accepts an expiry equal to now
    assert creds.key(f"{int(NOW)}:alice", REALM, ALGORITHM_MD5) is not None


def test_rest_wrong_secret_gives_a_different_key() -> None:
    creds, _, _ = make(secrets=(b"right",))
    username = f"{int(NOW) + 60}:alice"
    forged = long_term_key(username, REALM, coturn_password(b"wrong", username), ALGORITHM_MD5)
    assert creds.key(username, REALM, ALGORITHM_MD5) != forged


def test_plain_names_still_use_the_store_with_rest_on() -> None:
    creds, store, _ = make(ALICE, secrets=(b"k",))
    assert creds.key("alice", REALM, ALGORITHM_MD5) is PENDING
    assert asyncio.run(creds.fetch("alice")) is True
    assert store.calls == ["alice"]
    assert creds.key("alice", REALM, ALGORITHM_MD5) == bytes.fromhex(ALICE.ha1_md5)


# --- nonces ----------------------------------------------------------------------------

V4_CLIENT = Client((IPv4Address("203.0.113.7"), 50000))
V6_CLIENT = Client((IPv6Address("2001:db8:1:2::7"), 50000))


def test_nonce_cookie_and_features() -> None:
    creds, _, _ = make(ALICE)
    nonce = creds.nonce(V4_CLIENT, 1000.0)
    # RFC 8489 §9.2: "obMatJos2" + base64 of 24 feature bits; bit 0 = password algorithms
    assert nonce.startswith(NONCE_COOKIE + "gAAA")
    assert len(nonce) < 128  # RFC 8489 §14.10
    assert nonce.isascii() and '"' not in nonce and "\\" not in nonce


def test_nonce_valid_then_stale() -> None:
    creds, _, _ = make(ALICE, nonce_lifetime=600.0)
    nonce = creds.nonce(V6_CLIENT, 1000.0)
    assert creds.nonce_ok(nonce, V6_CLIENT, 1000.0) is True
    assert creds.nonce_ok(nonce.encode(), V6_CLIENT, 1599.0) is True
    assert creds.nonce_ok(nonce, V6_CLIENT, 1601.0) == STALE


def test_verified_nonces_are_remembered_per_source_and_still_expire(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The table of verified nonces changes the cost only: source binding, staleness and
    the clock are checked on every request, and the table stays bounded."""
    monkeypatch.setattr(credentials_module, "VERIFIED_NONCES", 4)
    creds, _, _ = make(ALICE, nonce_lifetime=600.0)
    nonce = creds.nonce(V6_CLIENT, 1000.0)
    for _ in range(3):
        assert creds.nonce_ok(nonce, V6_CLIENT, 1000.0) is True
    assert creds.nonce_ok(nonce, Client((IPv6Address("2001:db8:1:3::7"), 50000)), 1000.0) is False
    assert creds.nonce_ok(nonce, V6_CLIENT, 999.0) is False  # issued "later" than now
    assert creds.nonce_ok(nonce, V6_CLIENT, 1601.0) == STALE
    clients = [Client((IPv4Address(f"203.0.113.{i}"), 1)) for i in range(1, 20)]
    nonces = [creds.nonce(c, 1000.0) for c in clients]
    for _ in range(2):
        for c, n in zip(clients, nonces, strict=True):
            assert creds.nonce_ok(n, c, 1000.0) is True
            assert (
                creds.nonce_ok(n, clients[0] if c is not clients[0] else clients[1], 1000.0)
                is False
            )
    assert len(creds._verified) <= 4


def test_issued_nonces_are_remembered_for_their_source_only() -> None:
    """The nonce of a 401 is in the verified table at once (the Allocate that follows
    skips the MAC); it is keyed by the exact nonce and source, so a tampered nonce, the
    same nonce from another prefix or from the future are judged as before."""
    creds, _, _ = make(ALICE, nonce_lifetime=600.0)
    nonce = creds.nonce(V6_CLIENT, 1000.0)
    assert creds._verified == {(nonce, V6_CLIENT.remote[0]): 1000}
    assert creds.nonce_ok(nonce, V6_CLIENT, 1000.0) is True
    assert creds.nonce_ok(nonce, V6_CLIENT, 1601.0) == STALE
    assert creds.nonce_ok(nonce, V6_CLIENT, 999.0) is False
    tampered = nonce[:-1] + ("A" if nonce[-1] != "A" else "B")
    assert creds.nonce_ok(tampered, V6_CLIENT, 1000.0) is False
    other = Client((IPv6Address("2001:db8:1:3::7"), 50000))
    assert creds.nonce_ok(nonce, other, 1000.0) is False
    same64 = Client((IPv6Address("2001:db8:1:2::99"), 1))
    assert creds.nonce_ok(nonce, same64, 1000.0) is True  # through the MAC


def test_nonce_bound_to_source_prefix() -> None:
    creds, _, _ = make(ALICE)
    nonce = creds.nonce(V6_CLIENT, 1000.0)
    same64 = Client((IPv6Address("2001:db8:1:2::99"), 1))
    other64 = Client((IPv6Address("2001:db8:1:3::7"), 50000))
    assert creds.nonce_ok(nonce, same64, 1000.0) is True
    assert creds.nonce_ok(nonce, other64, 1000.0) is False
    v4 = creds.nonce(V4_CLIENT, 1000.0)
    mapped = Client((IPv6Address("::ffff:203.0.113.7"), 1))
    assert creds.nonce_ok(v4, mapped, 1000.0) is True
    assert creds.nonce_ok(v4, Client((IPv4Address("203.0.113.8"), 50000)), 1000.0) is False


def test_nonce_from_another_process_or_forged_is_refused() -> None:
    creds, _, _ = make(ALICE)
    other = Credentials(CredentialSettings(realm=REALM), None)
    assert creds.nonce_ok(other.nonce(V4_CLIENT, 1000.0), V4_CLIENT, 1000.0) is False
    nonce = creds.nonce(V4_CLIENT, 1000.0)
    prefix_len = len(NONCE_COOKIE) + 4
    # moving the issue time forward (to escape staleness) breaks the MAC
    later = nonce[:prefix_len] + f"{2000:08x}" + nonce[prefix_len + 8 :]
    assert creds.nonce_ok(later, V4_CLIENT, 2000.0) is False
    # a stale-looking forgery is "False", not "stale" (no 438 for made-up nonces)
    assert creds.nonce_ok(later, V4_CLIENT, 10_000.0) is False
    # other feature bits
    assert creds.nonce_ok(NONCE_COOKIE + "wAAA" + nonce[prefix_len:], V4_CLIENT, 1000.0) is False
    for bad in ("", "x", nonce[:-1], nonce + "A", b"\xff" * 40, nonce.replace("obMat", "obMaT")):
        assert creds.nonce_ok(bad, V4_CLIENT, 1000.0) is False


def test_nonce_from_the_future_is_refused() -> None:
    creds, _, _ = make(ALICE)
    nonce = creds.nonce(V4_CLIENT, 5000.0)
    assert creds.nonce_ok(nonce, V4_CLIENT, 4000.0) is False


@given(st.text(max_size=80) | st.binary(max_size=80))
def test_nonce_ok_never_raises(garbage: str | bytes) -> None:
    creds = Credentials(CredentialSettings(realm=REALM), None, nonce_key=b"k" * 32)
    assert creds.nonce_ok(garbage, V4_CLIENT, 1000.0) is False


@given(st.text(max_size=40))
def test_rest_expiry_never_raises(username: str) -> None:
    value = rest_expiry(username)
    assert value is None or 0 <= value < 10**12
