"""Issue 8, authentication part, through the proxy in-process: registration hijack, lock-out
by guessing, throttling of trusted sources, clients that never answer SHA-256, realm
mismatches, and Via rport/received on every response the gateway builds itself."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest

from rtc64 import config, serve
from rtc64.cli import _overrides, build_parser, main
from rtc64.gateway.auth import Authenticator
from rtc64.gateway.location.backends import open_store
from rtc64.gateway.location.register import aor_refusal
from rtc64.gateway.location.store import Store
from rtc64.gateway.location.users import UserRecord
from rtc64.net.address import Family
from rtc64.sip import digest
from rtc64.sip.framing import parse_datagram
from rtc64.sip.message import Request
from rtc64.sip.uri import SipUri, parse_uri
from tests.unit.gateway.support import StoreSpec
from tests.unit.gateway.test_proxy import (
    CALLER,
    CORE,
    PASSWORD,
    REALM,
    STRANGER,
    Harness,
    Sent,
    invite,
    one,
    only,
    request,
    run,
    statuses,
)

ALICE_PHONE = ("2001:db8:bad::10", 5062)  # untrusted (same /64 as STRANGER)
SECOND = ("2001:db8:cafe::77", 5064)  # untrusted, another /64
THIRD = ("203.0.113.66", 5066)  # untrusted IPv4


def reg(
    aor_user: bytes,
    source: tuple[str, int],
    *,
    cseq: int = 1,
    call_id: bytes = b"reg@x",
    headers: tuple[bytes, ...] = (),
    to: bytes | None = None,
) -> bytes:
    """A REGISTER for ``sip:<aor_user>@example.net`` with the source as Contact."""
    return request(
        b"REGISTER",
        b"sip:example.net",
        source,
        branch=b"z9hG4bK%s-%d" % (call_id.hex().encode(), cseq),
        call_id=call_id,
        cseq=cseq,
        to=to or b"sip:%s@example.net" % aor_user,
        headers=(b"Expires: 600", *headers),
    ).replace(b"Contact: <sip:alice@", b"Contact: <sip:%s@" % aor_user)


def authorization(sent: Sent, user: str, password: str, *, pick: int = 1) -> bytes:
    """The Authorization header answering the 401 in ``sent`` (MD5 challenge by default)."""
    challenge = sent.response.get_all(b"www-authenticate")[pick]
    creds = digest.respond(
        digest.parse_challenge(challenge),
        username=user,
        password=password,
        method=b"REGISTER",
        uri="sip:example.net",
    )
    return b"Authorization: " + digest.format_credentials(creds)


async def register_as(
    h: Harness,
    aor_user: bytes,
    source: tuple[str, int],
    user: str,
    password: str,
    *,
    call_id: bytes = b"reg@x",
    to: bytes | None = None,
) -> list[int]:
    """REGISTER, 401, REGISTER with ``user``'s credentials: the statuses of the second."""
    out = await h.feed(reg(aor_user, source, call_id=call_id, to=to), source)
    challenge = one(out, source)
    assert challenge.status == 401, challenge.data
    header = authorization(challenge, user, password)
    data = reg(aor_user, source, cseq=2, call_id=call_id, headers=(header,), to=to)
    return statuses(await h.feed(data, source), source)


# -- 1. registration hijack ------------------------------------------------------------------


def test_register_for_another_users_aor_is_403_and_calls_do_not_reach_the_attacker(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(h: Harness) -> None:
        assert await register_as(h, b"bob", ALICE_PHONE, "alice", PASSWORD) == [403]
        assert h.proxy.stats.registrations_forbidden == 1
        assert h.proxy.stats.registrations == 0
        assert await h.store.lookup("sip:bob@example.net", h.wall()) == []
        # bob's calls do not reach alice's contact.
        out = await h.feed(invite(b"sip:bob@example.net"), CALLER)
        assert statuses(out, CALLER) == [100, 404]
        assert not only(out, ALICE_PHONE)
        # alice registers her own AOR.
        assert await register_as(h, b"alice", ALICE_PHONE, "alice", PASSWORD, call_id=b"r2") == [
            200
        ]
        assert h.proxy.stats.registrations == 1

    with caplog.at_level(logging.WARNING):
        run(tmp_path, body)
    assert "refused: Forbidden: sip:bob@example.net is not an address of user alice" in (
        caplog.text
    )


def test_register_for_a_foreign_domain_or_an_aor_from_the_user_store(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        # The To address must be in a served domain, even with the user's own name.
        foreign = b"sip:alice@elsewhere.example"
        assert await register_as(h, b"alice", ALICE_PHONE, "alice", PASSWORD, to=foreign) == [403]
        # An AOR listed for the user in the store may be registered by that user only.
        await h.store.put_user(
            UserRecord.from_password("carol", REALM, "c-pw", ["sip:sales@example.net"])
        )
        assert await register_as(h, b"sales", SECOND, "carol", "c-pw", call_id=b"s1") == [200]
        assert await register_as(h, b"sales", THIRD, "alice", PASSWORD, call_id=b"s2") == [403]
        bindings = await h.store.lookup("sip:sales@example.net", h.wall())
        assert [b.received_port for b in bindings] == [SECOND[1]]

    run(tmp_path, body)


def test_alice_cannot_remove_bobs_bindings_with_a_wildcard(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        bob_phone = ("2001:db8:aaaa::20", 5070)  # trusted
        assert statuses(await h.feed(reg(b"bob", bob_phone), bob_phone), bob_phone) == [200]
        wipe = reg(b"bob", ALICE_PHONE, call_id=b"w").replace(b"Expires: 600", b"Expires: 0")
        wipe = wipe.replace(b"Contact: <sip:bob@[2001:db8:bad::10]:5062>", b"Contact: *")
        assert b"Contact: *" in wipe
        out = await h.feed(wipe, ALICE_PHONE)
        assert statuses(out, ALICE_PHONE) == [401]
        header = authorization(one(out, ALICE_PHONE), "alice", PASSWORD)
        retry = (
            wipe.replace(b"CSeq: 1 ", b"CSeq: 2 ")
            .replace(b"Expires: 0", b"Expires: 0\r\n" + header)
            .replace(b"-1;rport", b"-2;rport")
        )
        assert statuses(await h.feed(retry, ALICE_PHONE), ALICE_PHONE) == [403]
        assert len(await h.store.lookup("sip:bob@example.net", h.wall())) == 1

    run(tmp_path, body)


def test_trusted_source_stays_exempt(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        data = reg(b"bob", CALLER)
        assert statuses(await h.feed(data, CALLER), CALLER) == [200]

    run(tmp_path, body)


def test_aor_refusal_rules() -> None:
    def req(to: bytes) -> Request:
        msg = parse_datagram(reg(b"x", STRANGER, to=to))
        assert isinstance(msg, Request)
        return msg

    def local(uri: SipUri) -> bool:
        return uri.host == "example.net"

    assert aor_refusal(req(b"sip:bob@example.net"), None, (), local) is None  # trusted
    assert aor_refusal(req(b"sip:bob@example.net"), "bob", (), local) is None
    assert aor_refusal(req(b"sip:b%6Fb@EXAMPLE.net;x=1"), "bob", (), local) is None
    assert aor_refusal(req(b"sip:bob@example.net"), "Bob", (), local) is not None  # exact
    assert aor_refusal(req(b"sip:bob@example.net"), "alice", (), local) is not None
    assert aor_refusal(req(b"sip:bob@example.net"), "alice", ("sip:bob@example.net",), local) is (
        None
    )
    assert aor_refusal(req(b"sip:bob@evil.example"), "bob", (), local) is not None
    assert aor_refusal(req(b"sip:example.net"), "bob", (), local) is not None  # no user part
    # A user part that tries to smuggle the domain in.
    assert aor_refusal(req(b"sip:alice%40x@example.net"), "alice", (), local) is not None


# -- 2. lock-out by guessing -----------------------------------------------------------------


def test_wrong_passwords_from_one_source_do_not_lock_alice_out_elsewhere(
    tmp_path: Path,
) -> None:
    async def body(h: Harness) -> None:
        for i in range(3):  # max_failures = 3 in the harness
            assert await register_as(
                h, b"alice", STRANGER, "alice", "guess", call_id=b"g%d" % i
            ) == [401]
        # The guessing source is blocked (also with the right password)...
        out = await h.feed(reg(b"alice", STRANGER, call_id=b"g9"), STRANGER)
        assert statuses(out, STRANGER) == [403]
        # ...but alice from another source registers.
        assert await register_as(h, b"alice", SECOND, "alice", PASSWORD, call_id=b"ok") == [200]

    run(tmp_path, body)


def test_unknown_user_names_block_only_their_source(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        for i in range(3):
            assert await register_as(h, b"mallory", THIRD, "mallory", "x", call_id=b"m%d" % i) == [
                401
            ]
        assert statuses(await h.feed(reg(b"alice", THIRD, call_id=b"m9"), THIRD), THIRD) == [403]
        assert h.auth.tracker.blocked_count(h.wall()) == 1  # the source only
        assert await register_as(h, b"alice", SECOND, "alice", PASSWORD) == [200]
        # The block expires (auth.block_seconds = 60 in the harness).
        h.wall.now += 61
        assert await register_as(h, b"alice", THIRD, "alice", PASSWORD, call_id=b"m10") == [200]

    run(tmp_path, body)


def test_user_blocked_from_one_source_after_guesses_from_a_shared_address(
    tmp_path: Path,
) -> None:
    """Behind one address (NAT), bob keeps authenticating while someone guesses alice:
    alice is blocked from that address only; bob goes on; alice elsewhere is fine."""

    async def body(h: Harness) -> None:
        await h.store.put_user(UserRecord.from_password("bob", REALM, "b-pw"))
        for i in range(3):
            assert await register_as(h, b"alice", THIRD, "alice", "guess", call_id=b"a%d" % i) == [
                401
            ]
            assert await register_as(h, b"bob", THIRD, "bob", "b-pw", call_id=b"b%d" % i) == [200]
        assert await register_as(h, b"alice", THIRD, "alice", PASSWORD, call_id=b"a9") == [403]
        assert await register_as(h, b"bob", THIRD, "bob", "b-pw", call_id=b"b9") == [200]
        assert await register_as(h, b"alice", SECOND, "alice", PASSWORD, call_id=b"a10") == [200]

    run(tmp_path, body)


# -- 3. throttling ---------------------------------------------------------------------------


def test_trusted_source_above_the_rate_is_not_throttled(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        for i in range(20):
            out = await h.feed(invite(branch=b"z9hG4bKt%d" % i, call_id=b"t%d" % i), CALLER)
            assert statuses(out, CALLER) == [100], i
        assert h.proxy.stats.rate_limited == 0

    run(tmp_path, body, rate=1.0)


def test_only_new_requests_count_and_each_throttle_episode_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(h: Harness) -> None:
        first = request(b"OPTIONS", b"sip:bob@192.0.2.50", STRANGER, call_id=b"o0")
        assert statuses(await h.feed(first, STRANGER), STRANGER) == [407]
        # In-dialog requests are not counted (this one is refused, but not dropped).
        for i in range(5):
            bye = request(
                b"BYE", b"sip:bob@192.0.2.50", STRANGER, to_tag=b"t", call_id=b"d%d" % i,
                branch=b"z9hG4bKd%d" % i,
            )  # fmt: skip
            assert statuses(await h.feed(bye, STRANGER), STRANGER) == [403]
        for i in range(3):
            new = request(b"OPTIONS", b"sip:bob@192.0.2.50", STRANGER, branch=b"z9hG4bKn%d" % i)
            assert await h.feed(new, STRANGER) == []
        assert (h.proxy.stats.rate_limited, h.proxy.stats.throttled_sources) == (3, 1)
        # /metrics: by the source's family (STRANGER is IPv6)
        assert h.proxy.traffic.rate_limited == {Family.INET6: 3}
        assert h.proxy.traffic.throttled == {Family.INET6: 1}
        h.clock.now += 5  # the bucket refills: the episode ends with the next admitted one
        again = request(b"OPTIONS", b"sip:bob@192.0.2.50", STRANGER, branch=b"z9hG4bKa")
        assert statuses(await h.feed(again, STRANGER), STRANGER) == [407]
        more = request(b"OPTIONS", b"sip:bob@192.0.2.50", STRANGER, branch=b"z9hG4bKb")
        assert await h.feed(more, STRANGER) == []
        assert h.proxy.stats.throttled_sources == 2

    with caplog.at_level(logging.WARNING):
        run(tmp_path, body, rate=1.0)
    lines = [r.getMessage() for r in caplog.records if "rate limit" in r.getMessage()]
    assert len(lines) == 2
    assert "2001:db8:bad::/64 throttled" in lines[0]


def test_throttle_log_lines_are_capped_when_many_sources_flood(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(h: Harness) -> None:
        for i in range(20):  # 20 /64s, each over its rate, within one second
            source = (f"2001:db8:f{i:03x}::1", 5060)
            for j in range(2):
                data = request(b"OPTIONS", b"sip:x@192.0.2.50", source, branch=b"z9hG4bKf%d" % j)
                await h.feed(data, source)
        assert h.proxy.stats.throttled_sources == 20
        h.clock.now += 2
        source = ("2001:db8:ffff::1", 5060)
        for j in range(2):
            await h.feed(
                request(b"OPTIONS", b"sip:x@192.0.2.50", source, branch=b"z9hG4bKg%d" % j), source
            )

    with caplog.at_level(logging.WARNING):
        run(tmp_path, body, rate=1.0)
    lines = [r.getMessage() for r in caplog.records if "rate limit" in r.getMessage()]
    assert len(lines) == 2
    assert "(19 more sources throttled since the last line)" in lines[1]


def test_upstream_core_address_is_not_throttled(tmp_path: Path) -> None:
    core = ("203.0.113.5", 5060)  # not in a trusted network
    upstream = parse_uri(b"sip:203.0.113.5:5060")
    assert isinstance(upstream, SipUri)

    async def body(h: Harness) -> None:
        assert not h.auth.is_trusted(ip_address(core[0]))
        for i in range(5):
            data = request(b"OPTIONS", b"sip:carol@example.net", core, branch=b"z9hG4bKc%d" % i)
            assert await h.feed(data, core) != [], i
        assert h.proxy.stats.rate_limited == 0

    run(tmp_path, body, rate=1.0, upstream=upstream)


def test_core_in_trusted_networks_is_not_throttled(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        for i in range(5):
            data = request(b"OPTIONS", b"sip:carol@example.net", CORE, branch=b"z9hG4bKk%d" % i)
            assert await h.feed(data, CORE) != [], i
        assert h.proxy.stats.rate_limited == 0

    run(tmp_path, body, rate=1.0)


# -- 4. clients that never answer a SHA-256 challenge ---------------------------------------


def _auth(**kwargs: Any) -> Authenticator:
    args: dict[str, Any] = {
        "realm": REALM,
        "users": [("alice", PASSWORD)],
        "store": None,
        "trusted": [],
        "nonce_lifetime": 300.0,
        "max_failures": 5,
        "block_seconds": 60.0,
        "log": logging.getLogger("test.unanswered"),
        "secret": b"s" * 32,
    }
    args.update(kwargs)
    return Authenticator(**args)


def _plain_register(cseq: int, call_id: bytes = b"baresip@x", header: bytes = b"") -> Request:
    data = reg(b"alice", STRANGER, cseq=cseq, call_id=call_id, headers=(header,) if header else ())
    data = data.replace(b"Expires: 600", b"User-Agent: baresip v1.0.0 (x86_64/linux)")
    msg = parse_datagram(data)
    assert isinstance(msg, Request)
    return msg


def test_new_request_without_credentials_after_sha256_challenge_is_explained(
    caplog: pytest.LogCaptureFixture,
) -> None:
    auth = _auth()
    source = ip_address(STRANGER[0])

    async def main_() -> None:
        assert (await auth.check(_plain_register(1), source, 0.0, proxy=False)).status == 401
        assert (await auth.check(_plain_register(2), source, 5.0, proxy=False)).status == 401

    with caplog.at_level(logging.WARNING):
        asyncio.run(main_())
    assert auth.unanswered.unanswered == 1
    assert 'auth.algorithms = ["MD5"]' in caplog.text
    assert "--auth-algorithm MD5" in caplog.text
    assert "baresip v1.0.0" in caplog.text


def test_challenge_never_answered_is_explained_once_per_source(
    caplog: pytest.LogCaptureFixture,
) -> None:
    auth = _auth()
    source = ip_address(STRANGER[0])

    async def main_() -> None:
        for i in range(3):
            await auth.check(_plain_register(1, call_id=b"c%d" % i), source, i * 100.0, proxy=False)

    with caplog.at_level(logging.WARNING):
        asyncio.run(main_())
    assert auth.unanswered.unanswered == 2  # the third is still pending
    assert caplog.text.count("gave up") == 1  # quiet period per source


def test_answered_challenge_and_md5_only_are_not_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = ip_address(STRANGER[0])

    async def main_(auth: Authenticator) -> None:
        first = await auth.check(_plain_register(1), source, 0.0, proxy=False)
        creds = digest.respond(
            digest.parse_challenge(first.headers[0][1]),
            username="alice",
            password=PASSWORD,
            method=b"REGISTER",
            uri="sip:example.net",
        )
        header = b"Authorization: " + digest.format_credentials(creds)
        assert (await auth.check(_plain_register(2, header=header), source, 1.0, proxy=False)).ok
        await auth.check(_plain_register(3, call_id=b"md5"), source, 2.0, proxy=False)
        await auth.check(_plain_register(4, call_id=b"md5"), source, 100.0, proxy=False)

    with caplog.at_level(logging.WARNING):
        answered = _auth()
        asyncio.run(main_(answered))
        md5_only = _auth(algorithms=[digest.Algorithm.MD5])
        asyncio.run(main_(md5_only))
    assert md5_only.unanswered.unanswered == 0
    assert answered.unanswered.unanswered == 1  # only the "md5" Call-ID, never answered
    assert "SHA-256" in caplog.text


def test_auth_algorithm_option_overrides_the_configuration(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('[auth]\nalgorithms = ["SHA-256", "MD5"]\n')
    args = build_parser().parse_args(["serve", "--auth-algorithm", "MD5"])
    cfg = config.load(toml, _overrides(args))
    assert cfg.auth.algorithms == ("md5",)
    args = build_parser().parse_args(
        ["serve", "--auth-algorithm", "MD5", "--auth-algorithm", "sha-256"]
    )
    assert config.load(None, _overrides(args)).auth.algorithms == ("md5", "sha-256")
    with pytest.raises(Exception, match=r"auth\.algorithms"):
        config.load(
            None, _overrides(build_parser().parse_args(["serve", "--auth-algorithm", "SHA1"]))
        )


# -- 5. realm of `rtc64 user add` ------------------------------------------------------------


def test_user_add_resolves_the_realm_as_serve_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(tmp_path / "data")
    assert serve.realm_of is config.realm_of  # one function for both
    argv = ["user", "--data-dir", data, "add", "alice", "--password", "pw", "--domain", REALM]
    assert main(argv) == 0
    cfg = config.load(None, {"sip.domains": [REALM]})
    assert config.realm_of(cfg) == REALM
    assert main(["user", "--data-dir", data, "add", "bob", "--password", "pw"]) == 0
    captured = capsys.readouterr()
    assert "realm example.net" in captured.out
    assert "this host's name" in captured.err
    assert main(["user", "--data-dir", data, "--domain", REALM, "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"alice\trealm={REALM}"
    assert out[1].startswith("bob\trealm=") and "not this configuration's realm" in out[1]


def test_user_add_with_aors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = str(tmp_path / "data")
    base = ["user", "--data-dir", data]
    argv = [*base, "add", "carol", "--password", "pw", "--domain", REALM]
    assert main([*argv, "--aor", "sip:Sales@EXAMPLE.net;transport=tcp", "--aor", "sip:x@y"]) == 0
    assert main([*argv, "--password", "new"]) == 0  # a password change keeps the AORs
    assert main([*base, "--domain", REALM, "list"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"carol\trealm={REALM}\taors=sip:Sales@example.net,sip:x@y"
    )
    assert main([*argv, "--aor", "example.net"]) == 2
    assert "--aor" in capsys.readouterr().err


def test_gateway_explains_a_user_stored_under_another_realm(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(store: Store) -> None:
        await store.put_user(UserRecord.from_password("dave", "myhost", "pw"))
        auth = _auth(store=store, users=[])
        source = ip_address(STRANGER[0])
        first = await auth.check(_plain_register(1), source, 0.0, proxy=False)
        creds = digest.respond(
            digest.parse_challenge(first.headers[0][1]),
            username="dave",
            password="pw",
            method=b"REGISTER",
            uri="sip:example.net",
        )
        header = b"Authorization: " + digest.format_credentials(creds)
        assert (
            await auth.check(_plain_register(2, header=header), source, 1.0, proxy=False)
        ).status == 401

    async def main_() -> None:
        store = await open_store("sqlite", tmp_path / "data")
        try:
            await body(store)
        finally:
            await store.close()

    with caplog.at_level(logging.INFO):
        asyncio.run(main_())
    assert "exists in the store under realm 'myhost'" in caplog.text
    assert "rtc64 user add dave --realm example.net" in caplog.text
    assert "unknown user" not in caplog.text


# -- 6. Via rport/received on responses we build ---------------------------------------------


def _stamped(sent: Sent, source: tuple[str, int]) -> None:
    via = sent.response.via
    assert via.rport == source[1], sent.data
    assert via.received == ip_address(source[0]), sent.data


def test_register_200_and_other_local_responses_carry_rport(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        phone = ("2001:db8:aaaa::20", 5070)  # trusted: 200 at once
        out = await h.feed(reg(b"bob", phone), phone)
        assert statuses(out, phone) == [200]
        _stamped(one(out, phone), phone)
        # 401 and 403 from the registrar.
        out = await h.feed(reg(b"bob", STRANGER, call_id=b"x1"), STRANGER)
        _stamped(one(out, STRANGER), STRANGER)
        assert await register_as(h, b"bob", SECOND, "alice", PASSWORD, call_id=b"x2") == [403]
        _stamped(h.sender.sent[-1], SECOND)
        # A 423 from the registrar logic.
        short = reg(b"bob", phone, call_id=b"x3", cseq=5).replace(b"Expires: 600", b"Expires: 1")
        out = await h.feed(short, phone)
        assert statuses(out, phone) == [423]
        _stamped(one(out, phone), phone)
        # A final response chosen among branches that we built (408 after Timer B).
        out = await h.feed(invite(call_id=b"tb"), CALLER)
        out = await h.advance(40.0)
        final = [s for s in only(out, CALLER) if s.status == 408]
        assert final
        _stamped(final[0], CALLER)

    run(tmp_path, body)


def test_overload_503_carries_rport(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        await h.feed(invite(), CALLER)
        out = await h.feed(invite(branch=b"z9hG4bKo2", call_id=b"o2"), CALLER)
        busy = one(out, CALLER)
        assert busy.status == 503
        _stamped(busy, CALLER)

    run(tmp_path, body, max_transactions=1)


# -- user store: extra AORs --------------------------------------------------------------------


def test_user_aors_round_trip(store_spec: StoreSpec) -> None:
    carol = UserRecord.from_password("carol", REALM, "pw", ["sip:sales@example.net", "sip:a@b"])

    async def body(store: Store) -> None:
        await store.put_user(carol)
        assert await store.get_user("carol") == carol
        assert await store.list_users() == [carol]

    store_spec.run(body)
    assert repr(carol).count("sip:sales@example.net") == 1


def test_sqlite_schema_1_file_gains_the_aors_column(tmp_path: Path) -> None:
    db = tmp_path / "location.sqlite"
    conn = sqlite3.connect(db)
    conn.execute(
        "CREATE TABLE users (name TEXT PRIMARY KEY, realm TEXT NOT NULL, ha1_md5 TEXT NOT NULL,"
        " ha1_sha256 TEXT NOT NULL) WITHOUT ROWID"
    )
    old = UserRecord.from_password("old", REALM, "pw")
    conn.execute(
        "INSERT INTO users VALUES (?, ?, ?, ?)", (old.name, old.realm, old.ha1_md5, old.ha1_sha256)
    )
    conn.execute("PRAGMA user_version=1")
    conn.commit()
    conn.close()

    async def main_() -> UserRecord | None:
        store = await open_store("sqlite", tmp_path)
        try:
            return await store.get_user("old")
        finally:
            await store.close()

    assert asyncio.run(main_()) == old
