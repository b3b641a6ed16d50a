"""Trusted networks, digest challenges, stale nonces and failure blocking."""

from __future__ import annotations

import asyncio
import logging
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path

import pytest

from rtc64.gateway import auth as auth_module
from rtc64.gateway.auth import Authenticator, AuthResult
from rtc64.gateway.location.backends import open_store
from rtc64.gateway.location.users import UserRecord
from rtc64.net.address import IPAddress
from rtc64.sip import digest
from rtc64.sip.framing import parse_datagram
from rtc64.sip.message import Request

REALM = "example.net"
NOW = 1_700_000_000.0
PHONE = IPv6Address("2001:db8:bad::10")
OTHER = IPv6Address("2001:db8:cafe::10")


def authenticator(**kwargs: object) -> Authenticator:
    args: dict[str, object] = {
        "realm": REALM,
        "users": [("alice", "secret")],
        "store": None,
        "trusted": [IPv4Network("192.0.2.0/24"), IPv6Network("2001:db8:aaaa::/48")],
        "nonce_lifetime": 300.0,
        "max_failures": 3,
        "block_seconds": 60.0,
        "log": logging.getLogger("test.auth"),
        "secret": b"k" * 32,
    }
    args.update(kwargs)
    return Authenticator(**args)  # type: ignore[arg-type]


def register(header: bytes = b"", method: bytes = b"REGISTER") -> Request:
    data = (
        b"%s sip:example.net SIP/2.0\r\nVia: SIP/2.0/UDP [2001:db8:bad::10];branch=z9hG4bK1\r\n"
        b"From: <sip:alice@example.net>;tag=1\r\nTo: <sip:alice@example.net>\r\n"
        b"Call-ID: c@x\r\nCSeq: 1 %s\r\n%sContent-Length: 0\r\n\r\n"
        % (method, method, header + b"\r\n" if header else b"")
    )
    msg = parse_datagram(data)
    assert isinstance(msg, Request)
    return msg


def check(
    auth: Authenticator,
    req: Request,
    source: IPAddress = PHONE,
    now: float = NOW,
    proxy: bool = False,
) -> AuthResult:
    return asyncio.run(auth.check(req, source, now, proxy=proxy))


def answer(
    result: AuthResult,
    password: str,
    *,
    user: str = "alice",
    pick: int = 0,
    proxy: bool = False,
    method: bytes = b"REGISTER",
) -> Request:
    challenge = digest.parse_challenge(result.headers[pick][1])
    creds = digest.respond(
        challenge, username=user, password=password, method=method, uri="sip:example.net"
    )
    name = b"Proxy-Authorization" if proxy else b"Authorization"
    return register(name + b": " + digest.format_credentials(creds), method)


def test_trusted_network_needs_no_credentials() -> None:
    auth = authenticator()
    for source in (IPv4Address("192.0.2.77"), IPv6Address("2001:db8:aaaa::1")):
        result = check(auth, register(), source)
        assert result.ok and result.user is None
    assert auth.is_trusted(IPv6Address("::ffff:192.0.2.77"))  # mapped counts as IPv4
    assert not auth.is_trusted(PHONE)


def test_registrar_challenge_is_401_sha256_then_md5() -> None:
    result = check(authenticator(), register())
    assert (result.ok, result.status) == (False, 401)
    assert [n for n, _ in result.headers] == [b"WWW-Authenticate"] * 2
    parsed = [digest.parse_challenge(v) for _, v in result.headers]
    assert [c.algorithm for c in parsed] == [digest.Algorithm.SHA_256, digest.Algorithm.MD5]
    assert all(c.realm == REALM and not c.stale for c in parsed)


def test_proxy_challenge_is_407() -> None:
    result = check(authenticator(), register(method=b"INVITE"), proxy=True)
    assert result.status == 407
    assert result.reason == "Proxy Authentication Required"
    assert {n for n, _ in result.headers} == {b"Proxy-Authenticate"}


def test_right_password_with_each_algorithm() -> None:
    auth = authenticator()
    for pick in (0, 1):
        challenge = check(auth, register())
        result = check(auth, answer(challenge, "secret", pick=pick))
        assert result == AuthResult(ok=True, user="alice")
    assert auth.successes == 2


def test_proxy_authorization_for_a_proxied_request() -> None:
    auth = authenticator()
    challenge = check(auth, register(method=b"INVITE"), proxy=True)
    req = answer(challenge, "secret", proxy=True, method=b"INVITE")
    assert check(auth, req, proxy=True).ok
    # Authorization (registrar header) does not satisfy the proxy.
    challenge = check(auth, register(method=b"INVITE"), proxy=True)
    req = answer(challenge, "secret", proxy=False, method=b"INVITE")
    assert check(auth, req, proxy=True).status == 407


def test_wrong_password_counts_and_blocks_with_403() -> None:
    auth = authenticator()
    for _ in range(3):
        result = check(auth, answer(check(auth, register()), "wrong"))
        assert result.status == 401
    assert auth.tracker.blocked_count(NOW) == 2  # the source /64 and (alice, source /64)
    blocked = check(auth, register())
    assert blocked.status == 403
    assert dict(blocked.headers)[b"Retry-After"].isdigit()
    # Even the right password is not checked while blocked.
    good = answer(check(auth, register(), source=OTHER), "secret")
    assert check(auth, good).status == 403
    # The user is not blocked from another source: a guesser cannot lock alice out.
    assert check(auth, good, source=OTHER) == AuthResult(ok=True, user="alice")
    # After the block the right password works again.
    later = NOW + 120
    fresh = answer(check(auth, register(), now=later), "secret")
    assert check(auth, fresh, now=later).ok


def test_unknown_user_answers_like_a_wrong_password() -> None:
    auth = authenticator()
    result = check(auth, answer(check(auth, register()), "secret", user="mallory"))
    assert result.status == 401
    assert not result.ok


def test_stale_nonce_with_right_password() -> None:
    auth = authenticator()
    challenge = check(auth, register())
    req = answer(challenge, "secret")
    result = check(auth, req, now=NOW + 301)
    assert result.status == 401
    assert all(digest.parse_challenge(v).stale for _, v in result.headers)
    # Replaying a used nonce-count is stale too.
    fresh = answer(check(auth, register()), "secret")
    assert check(auth, fresh).ok
    replay = check(auth, fresh)
    assert replay.status == 401
    assert digest.parse_challenge(replay.headers[0][1]).stale


def test_stale_nonce_with_wrong_password_is_a_failure() -> None:
    auth = authenticator(max_failures=1)
    req = answer(check(auth, register()), "wrong")
    result = check(auth, req, now=NOW + 301)
    assert not digest.parse_challenge(result.headers[0][1]).stale
    assert check(auth, register(), now=NOW + 302).status == 403


def test_foreign_nonce_is_challenged_without_counting() -> None:
    auth = authenticator(max_failures=1)
    other = authenticator(secret=b"z" * 32)
    req = answer(check(other, register()), "wrong")
    result = check(auth, req)
    assert result.status == 401
    assert not digest.parse_challenge(result.headers[0][1]).stale
    assert check(auth, register()).status == 401  # not blocked


def test_credentials_for_another_realm_are_ignored() -> None:
    auth = authenticator()
    theirs = authenticator(realm="elsewhere.example")
    req = answer(check(theirs, register()), "secret")
    assert check(auth, req).status == 401


def test_users_from_the_store(tmp_path: Path) -> None:
    async def main() -> None:
        store = await open_store("sqlite", tmp_path / "data")
        try:
            await store.put_user(UserRecord.from_password("bob", REALM, "hunter2"))
            await store.put_user(UserRecord.from_password("eve", "other.realm", "x"))
            auth = authenticator(store=store, users=[])
            challenge = await auth.check(register(), PHONE, NOW, proxy=False)
            req = answer(challenge, "hunter2", user="bob")
            assert (await auth.check(req, PHONE, NOW, proxy=False)).user == "bob"
            challenge = await auth.check(register(), PHONE, NOW, proxy=False)
            req = answer(challenge, "x", user="eve")  # a record of another realm
            assert (await auth.check(req, PHONE, NOW, proxy=False)).status == 401
        finally:
            await store.close()

    asyncio.run(main())


def test_trust_is_remembered_per_address_and_family() -> None:
    """``is_trusted`` remembers answers by (type, integer): an IPv6 address whose integer
    equals a trusted IPv4 address's is not trusted by that, and the answers hold when
    asked again, for mapped addresses too."""
    auth = authenticator(trusted=[IPv4Network("10.0.0.0/8")])
    inside = IPv4Address("10.0.0.1")
    same_int = IPv6Address(int(inside))  # ::a00:1
    for _ in range(2):
        assert auth.is_trusted(inside)
        assert not auth.is_trusted(same_int)
        assert auth.is_trusted(IPv6Address("::ffff:10.0.0.1"))
        assert not auth.is_trusted(IPv4Address("11.0.0.1"))


def test_reconfigured_trust_applies_at_once() -> None:
    auth = authenticator()
    source = IPv4Address("192.0.2.77")
    assert auth.is_trusted(source) and not auth.is_trusted(PHONE)
    auth.reconfigure([("alice", "secret")], [IPv6Network("2001:db8:bad::/48")])
    assert not auth.is_trusted(source)
    assert auth.is_trusted(PHONE)


def test_trust_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spoofed sources cannot grow the memory: past the bound it starts afresh, and
    answers stay right."""
    monkeypatch.setattr(auth_module, "TRUST_CACHE", 8)
    auth = authenticator()
    for n in range(50):
        assert not auth.is_trusted(IPv4Address(f"203.0.113.{n}"))
        assert len(auth._trust) <= 8
    assert auth.is_trusted(IPv4Address("192.0.2.77"))
