"""REGISTER without a server transaction (issue 12: as Kamailio's registrar over ``sl``):
retransmissions are recognised by the registrar and answered with the same 200 (before
authentication: their nonce count was used once), forged ones are not, CSeq games get
RFC 3261 §10.3, and a flood for one AOR from two sources loses nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from rtc64.sip.framing import parse_datagram
from rtc64.sip.message import Response
from tests.unit.gateway.test_proxy import (
    CALLER,
    PASSWORD,
    Harness,
    Sent,
    one,
    run,
    udp_flow,
)
from tests.unit.gateway.test_security_auth import authorization, reg

PHONE = ("2001:db8:bad::10", 5062)  # untrusted: authenticates
OTHER = ("2001:db8:bad::66", 5062)  # another untrusted source
AOR = "sip:alice@example.net"


async def authenticated(h: Harness, *, cseq: int = 2, call_id: bytes = b"reg@x") -> bytes:
    """REGISTER, 401, and the REGISTER with credentials (returned, not yet sent)."""
    challenge = one(
        await h.feed(reg(b"alice", PHONE, cseq=cseq - 1, call_id=call_id), PHONE), PHONE
    )
    header = authorization(challenge, "alice", PASSWORD)
    return reg(b"alice", PHONE, cseq=cseq, call_id=call_id, headers=(header,))


def contacts(sent: Sent) -> list[bytes]:
    """The 200's Contact values without their remaining seconds (which count down)."""
    return [v.partition(b";expires=")[0] for v in sent.response.values(b"contact")]


def test_a_trusted_register_and_its_retransmission_get_the_same_200(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        data = reg(b"alice", CALLER, cseq=5)
        first = one(await h.feed(data, CALLER), CALLER).response
        (stored,) = await h.store.lookup(AOR, h.wall())
        h.wall.now += 0.5  # T1
        again = one(await h.feed(data, CALLER), CALLER).response
        assert (first.status, again.status) == (200, 200)
        assert again.to.tag == first.to.tag  # RFC 3261 §8.2.7: stateless, same tag
        assert again.values(b"contact") == first.values(b"contact")
        assert await h.store.lookup(AOR, h.wall()) == [stored]  # not written again
        assert h.layer.server_count == 0
        assert h.proxy.stats.stateless_replies == 2

    run(tmp_path, body)


def test_a_digest_register_retransmitted_after_its_200_gets_it_again_not_401(
    tmp_path: Path,
) -> None:
    """The retransmission repeats the nonce count: authenticating it again would be a
    replay (401 stale). A transaction would have absorbed it; the registrar answers it."""

    async def body(h: Harness) -> None:
        data = await authenticated(h)
        first = one(await h.feed(data, PHONE), PHONE)
        assert first.status == 200
        h.wall.now += 1.0
        again = one(await h.feed(data, PHONE), PHONE)
        assert again.status == 200 and contacts(again) == contacts(first)
        assert again.response.to.tag == first.response.to.tag
        assert h.auth.successes == 1  # not authenticated twice
        assert h.proxy.stats.registrations == 2
        assert len(await h.store.lookup(AOR, h.wall())) == 1

    run(tmp_path, body)


def test_a_retransmission_while_the_original_is_being_stored_is_not_500(
    tmp_path: Path,
) -> None:
    """Both copies are read before either is written: the first stores, the second
    finds the first's binding (same Call-ID and CSeq) and gets the same 200."""

    async def body(h: Harness) -> None:
        data = reg(b"alice", CALLER, cseq=9)
        for _ in range(2):
            h.proxy.on_message(parse_datagram(data), udp_flow(CALLER))
        tasks, h.tasks[:] = list(h.tasks), []
        await asyncio.gather(*tasks)
        answers = [s.response for s in h.sender.sent]
        assert [r.status for r in answers] == [200, 200]
        assert answers[0].values(b"contact") == answers[1].values(b"contact")
        assert len(await h.store.lookup(AOR, h.wall())) == 1

    run(tmp_path, body)


@pytest.mark.parametrize("forgery", ["contact", "source", "expires"])
def test_a_forged_retransmission_is_authenticated_and_refused(tmp_path: Path, forgery: str) -> None:
    """An attacker replays a captured authenticated REGISTER (same Call-ID, CSeq and
    credentials) with another Contact, from another source or with another expiry: it
    repeats no stored registration, so it is authenticated, and its nonce count is a
    replay: 401 (stale), nothing changes."""

    async def body(h: Harness) -> None:
        data = await authenticated(h)
        assert one(await h.feed(data, PHONE), PHONE).status == 200
        before = await h.store.lookup(AOR, h.wall())
        source = PHONE
        if forgery == "contact":
            data = data.replace(b"Contact: <sip:alice@", b"Contact: <sip:alice-evil@")
        elif forgery == "source":
            source = OTHER
        else:
            data = data.replace(b"Expires: 600", b"Expires: 7000")
        out = one(await h.feed(data, source), source).response
        assert out.status == 401
        assert b"stale=true" in b"".join(out.get_all(b"www-authenticate")).lower()
        assert await h.store.lookup(AOR, h.wall()) == before
        assert h.auth.successes == 1

    run(tmp_path, body)


def test_cseq_games_get_the_rfc_treatment(tmp_path: Path) -> None:
    """Trusted source, same Call-ID: a lower CSeq is 500 (§10.3 step 7), the same CSeq
    with another expiry is 500 (not a retransmission), a higher one updates."""

    async def body(h: Harness) -> None:
        assert one(await h.feed(reg(b"alice", CALLER, cseq=10), CALLER), CALLER).status == 200
        (stored,) = await h.store.lookup(AOR, h.wall())
        lower = reg(b"alice", CALLER, cseq=9)
        assert one(await h.feed(lower, CALLER), CALLER).status == 500
        other = reg(b"alice", CALLER, cseq=10).replace(b"Expires: 600", b"Expires: 900")
        assert one(await h.feed(other, CALLER), CALLER).status == 500
        assert await h.store.lookup(AOR, h.wall()) == [stored]
        h.wall.now += 40.0  # past Timer F: the same CSeq is no retransmission any more
        late = one(await h.feed(reg(b"alice", CALLER, cseq=10), CALLER), CALLER)
        assert late.status == 500
        higher = one(await h.feed(reg(b"alice", CALLER, cseq=11), CALLER), CALLER)
        assert higher.status == 200
        (now,) = await h.store.lookup(AOR, h.wall())
        assert now.cseq == 11

    run(tmp_path, body)


def test_a_flood_for_one_aor_from_two_sources_loses_nothing(tmp_path: Path) -> None:
    """Two devices of one AOR (trusted sources) send 30 REGISTERs each, all arriving
    before any is stored: every one is answered 200 (none runs out of compare-and-set
    rounds), and the AOR ends with both devices at their last CSeq."""
    first, second = CALLER, ("198.51.100.7", 5070)

    async def body(h: Harness) -> None:
        for n in range(1, 31):
            for source, call_id in ((first, b"one@x"), (second, b"two@x")):
                data = reg(b"alice", source, cseq=n, call_id=call_id)
                h.proxy.on_message(parse_datagram(data), udp_flow(source))
        tasks, h.tasks[:] = list(h.tasks), []
        await asyncio.gather(*tasks)
        answers = [parse_datagram(s.data) for s in h.sender.sent]
        assert all(isinstance(a, Response) and a.status == 200 for a in answers), [
            a.status for a in answers if isinstance(a, Response)
        ]
        assert len(answers) == 60
        bindings = await h.store.lookup(AOR, h.wall())
        assert sorted((b.call_id, b.cseq) for b in bindings) == [(b"one@x", 30), (b"two@x", 30)]
        assert len(h.proxy.routing.turns) == 0  # every turn given back

    run(tmp_path, body)


def test_a_blocked_source_with_credentials_gets_403_before_any_store_read(
    tmp_path: Path,
) -> None:
    """Credentials from a source blocked for failed guesses are not looked at, and the
    store is not read for them (no retransmission check for a blocked source)."""

    async def body(h: Harness) -> None:
        for cseq in range(1, 4):  # max_failures = 3 wrong passwords
            challenge = one(await h.feed(reg(b"alice", PHONE, cseq=10 + cseq), PHONE), PHONE)
            header = authorization(challenge, "alice", "wrong")
            data = reg(b"alice", PHONE, cseq=20 + cseq, headers=(header,))
            assert one(await h.feed(data, PHONE), PHONE).status == 401
        reads: list[str] = []
        real = h.store.lookup

        async def lookup(aor: str, now: float) -> list[object]:
            reads.append(aor)
            return await real(aor, now)  # type: ignore[return-value]

        h.store.lookup = lookup  # type: ignore[method-assign,assignment]
        data = reg(b"alice", PHONE, cseq=30, headers=(header,))
        out = one(await h.feed(data, PHONE), PHONE).response
        assert out.status == 403 and out.get(b"retry-after")
        assert reads == []
        assert h.proxy.routing.turns.__len__() == 0

    run(tmp_path, body)
