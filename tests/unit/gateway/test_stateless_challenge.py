"""REGISTERs answered without a server transaction (issue 12: as Kamailio's
``www_challenge`` and registrar over ``sl``): the nonce verifies, retransmissions are
answered again, the To tag is stable, counters move, and REGISTERs not for the registrar
keep the stateful path."""

from __future__ import annotations

from ipaddress import ip_address
from pathlib import Path

from rtc64.sip import digest
from rtc64.sip.message import Response
from rtc64.sip.uri import parse_uri
from tests.unit.gateway.test_proxy import (
    CALLER,
    CORE,
    PASSWORD,
    REALM,
    STRANGER,
    Harness,
    one,
    request,
    run,
    statuses,
)
from tests.unit.gateway.test_security_auth import authorization, reg

SOURCE = ("2001:db8:bad::10", 5062)


def answer(resp: Response, password: str = PASSWORD, pick: int = 1) -> bytes:
    """The Authorization header answering the 401 ``resp`` (MD5 by default)."""
    challenge = digest.parse_challenge(resp.get_all(b"www-authenticate")[pick])
    creds = digest.respond(
        challenge, username="alice", password=password, method=b"REGISTER",
        uri="sip:example.net",
    )  # fmt: skip
    return b"Authorization: " + digest.format_credentials(creds)


def test_register_without_credentials_gets_a_401_and_leaves_no_transaction(
    tmp_path: Path,
) -> None:
    async def body(h: Harness) -> None:
        out = await h.feed(reg(b"alice", SOURCE), SOURCE)
        challenge = one(out, SOURCE)
        resp = challenge.response
        assert resp.status == 401
        assert h.layer.server_count == 0 and h.proxy.get_timer() is None  # nothing lingers
        assert (h.proxy.stats.stateless_replies, h.proxy.stats.auth_challenges) == (1, 1)
        assert h.proxy.stats.errors_sent == 1 and h.auth.challenges_sent == 1
        # RFC 3581: the Via stamped with rport and received (the source) like any reply.
        assert resp.via.rport == SOURCE[1] and resp.via.received == ip_address(SOURCE[0])
        assert resp.call_id == b"reg@x" and resp.cseq.seq == 1 and resp.to.tag
        found = [digest.parse_challenge(v) for v in resp.get_all(b"www-authenticate")]
        assert [c.algorithm for c in found] == [digest.Algorithm.SHA_256, digest.Algorithm.MD5]
        assert all(c.realm == REALM and not c.stale for c in found)

    run(tmp_path, body)


def test_the_stateless_nonce_verifies_and_the_register_is_stored(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        for pick in (0, 1):  # SHA-256 and MD5
            data = reg(b"alice", SOURCE, cseq=10 * pick + 1)
            challenge = one(await h.feed(data, SOURCE), SOURCE)
            header = authorization(challenge, "alice", PASSWORD, pick=pick)
            data = reg(b"alice", SOURCE, cseq=10 * pick + 2, headers=(header,))
            assert statuses(await h.feed(data, SOURCE), SOURCE) == [200]
        assert h.proxy.stats.registrations == 2 and h.auth.successes == 2
        bindings = await h.store.lookup("sip:alice@example.net", h.wall())
        assert len(bindings) == 1
        # The authenticated REGISTER is stateless too: the registrar recognises its
        # retransmissions (test_register_retransmission.py).
        assert h.layer.server_count == 0 and h.proxy.stats.stateless_replies == 4

    run(tmp_path, body)


def test_a_retransmission_gets_another_401_with_a_fresh_nonce_and_the_same_to_tag(
    tmp_path: Path,
) -> None:
    async def body(h: Harness) -> None:
        first = one(await h.feed(reg(b"alice", SOURCE), SOURCE), SOURCE).response
        h.wall.now += 0.5  # T1: the client retransmits
        second = one(await h.feed(reg(b"alice", SOURCE), SOURCE), SOURCE).response
        assert (first.status, second.status) == (401, 401)
        assert first.to.tag == second.to.tag  # RFC 3261 §8.2.7
        nonces = [digest.parse_challenge(r.get_all(b"www-authenticate")[1]).nonce
                  for r in (first, second)]  # fmt: skip
        assert nonces[0] != nonces[1]
        # The client answers the first challenge it saw: still good.
        header = answer(first)
        data = reg(b"alice", SOURCE, cseq=2, headers=(header,))
        assert statuses(await h.feed(data, SOURCE), SOURCE) == [200]
        assert h.proxy.stats.stateless_replies == 3 and h.layer.server_count == 0

    run(tmp_path, body)


def test_to_tags_differ_between_requests_and_do_not_echo_the_request(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        tags = set()
        for call_id in (b"a@x", b"b@x"):
            for cseq in (1, 2):
                data = reg(b"alice", SOURCE, call_id=call_id, cseq=cseq)
                tags.add(one(await h.feed(data, SOURCE), SOURCE).response.to.tag)
        assert len(tags) == 4
        assert all(t is not None and len(t) == 16 and b"x" not in t for t in tags)

    run(tmp_path, body)


def test_blocked_source_gets_a_stateless_403(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        for cseq in range(2, 5):  # max_failures = 3 wrong passwords
            challenge = one(await h.feed(reg(b"alice", SOURCE, cseq=cseq), SOURCE), SOURCE)
            header = authorization(challenge, "alice", "wrong")
            data = reg(b"alice", SOURCE, cseq=cseq + 10, headers=(header,))
            assert statuses(await h.feed(data, SOURCE), SOURCE) == [401]
        stateless = h.proxy.stats.stateless_replies
        servers = h.layer.server_count
        resp = one(await h.feed(reg(b"alice", SOURCE, cseq=30), SOURCE), SOURCE).response
        assert resp.status == 403 and resp.get(b"retry-after")
        assert h.proxy.stats.stateless_replies == stateless + 1
        assert h.layer.server_count == servers

    run(tmp_path, body)


def test_trusted_and_credentialed_registers_are_stateless_foreign_ones_stateful(
    tmp_path: Path,
) -> None:
    async def body(h: Harness) -> None:
        # Trusted source: straight to the registrar, 200, without a transaction.
        assert statuses(await h.feed(reg(b"alice", CALLER), CALLER), CALLER) == [200]
        # Credentials for another realm: challenged, without a transaction.
        other = b'Authorization: Digest username="alice", realm="elsewhere", nonce="n", ' + (
            b'uri="sip:example.net", response="' + b"0" * 32 + b'"'
        )
        data = reg(b"alice", SOURCE, cseq=5, headers=(other,))
        assert statuses(await h.feed(data, SOURCE), SOURCE) == [401]
        # Garbage credentials: 400 naming the problem, without a transaction.
        bad = reg(b"alice", SOURCE, cseq=6, headers=(b"Authorization: Digest username",))
        out = one(await h.feed(bad, SOURCE), SOURCE).response
        assert out.status == 400 and b"username" in out.reason
        # A domain not served here: 403 from the router, stateful.
        foreign = request(b"REGISTER", b"sip:elsewhere.example", SOURCE, branch=b"z9hG4bKf")
        assert statuses(await h.feed(foreign, SOURCE), SOURCE) == [403]
        assert h.proxy.stats.stateless_replies == 3
        assert h.layer.server_count == 1

    run(tmp_path, body)


def test_upstream_mode_forwards_registers_without_challenging(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        out = await h.feed(reg(b"alice", SOURCE), SOURCE)
        assert one(out, CORE).request.method == b"REGISTER"
        assert h.proxy.stats.stateless_replies == 0

    run(tmp_path, body, upstream=parse_uri(b"sip:198.51.100.99:5060"))


def test_unknown_stranger_register_is_counted_as_challenge(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        data = request(b"REGISTER", b"sip:example.net", STRANGER, branch=b"z9hG4bKs")
        assert statuses(await h.feed(data, STRANGER), STRANGER) == [401]
        assert h.proxy.stats.requests_in == 1 and h.proxy.stats.messages_out == 1

    run(tmp_path, body)


def test_an_unexpected_error_while_challenging_falls_back_to_the_stateful_500(
    tmp_path: Path,
) -> None:
    async def body(h: Harness) -> None:
        def broken(*args: object, **kwargs: object) -> object:
            raise RuntimeError("bug")

        # The authenticator (interpreted; the router may be compiled and not patchable)
        # fails while the challenge is built and again on the stateful path.
        h.proxy.routing.auth.precheck = broken  # type: ignore[method-assign,assignment]
        out = await h.feed(reg(b"alice", SOURCE), SOURCE)  # nothing escapes on_message
        assert statuses(out, SOURCE) == [500]
        assert h.proxy.stats.stateless_replies == 0

    run(tmp_path, body)
