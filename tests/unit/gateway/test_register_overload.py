"""Under overload a REGISTER retransmission is absorbed (answered as its original was),
not refused with 503: the registrar keeps no server transaction, so the branches of the
REGISTERs it took lately (``RecentBranches``) say what is a retransmission, both before
parsing (``shed_raw``) and after. New REGISTERs are still shed."""

from __future__ import annotations

from pathlib import Path

import pytest

from rtc64.gateway.location.register import RecentBranches
from rtc64.sip.framing import parse_datagram
from tests.unit.gateway.test_proxy import CALLER, Harness, one, run, statuses, udp_flow
from tests.unit.gateway.test_register_retransmission import (
    AOR,
    PHONE,
    authenticated,
    contacts,
)
from tests.unit.gateway.test_security_auth import reg
from tests.unit.gateway.test_shed_raw import arrive, overload


@pytest.mark.parametrize("raw", [True, False])
def test_a_trusted_retransmission_under_overload_gets_the_same_200(
    tmp_path: Path, raw: bool
) -> None:
    async def body(h: Harness) -> None:
        data = reg(b"alice", CALLER, cseq=5)
        first = one(await arrive(h, data, CALLER), CALLER)
        assert first.status == 200
        (stored,) = await h.store.lookup(AOR, h.wall())
        overload(h, 0.02)  # MIN_FRACTION: new work is shed
        h.wall.now += 0.5  # T1
        if raw:
            again = one(await arrive(h, data, CALLER), CALLER)
        else:  # a listener without the raw look (TCP, TLS): the parsed path decides
            before = len(h.sender.sent)
            h.proxy.on_message(parse_datagram(data), udp_flow(CALLER))
            await h.drain()
            again = one(h.sender.sent[before:], CALLER)
        assert again.status == 200 and contacts(again) == contacts(first)
        assert again.response.to.tag == first.response.to.tag
        assert await h.store.lookup(AOR, h.wall()) == [stored]
        assert h.proxy.stats.overloaded == 0
        # a new REGISTER (another branch) is new work: refused
        fresh = reg(b"alice", CALLER, cseq=6)
        assert statuses(await arrive(h, fresh, CALLER), CALLER) == [503]
        assert h.proxy.stats.overloaded == 1

    run(tmp_path, body)


def test_a_digest_retransmission_under_overload_is_not_authenticated_again(
    tmp_path: Path,
) -> None:
    async def body(h: Harness) -> None:
        data = await authenticated(h)
        first = one(await arrive(h, data, PHONE), PHONE)
        assert first.status == 200
        overload(h, 0.02)
        h.wall.now += 1.0
        again = one(await arrive(h, data, PHONE), PHONE)
        assert again.status == 200 and contacts(again) == contacts(first)
        assert h.auth.successes == 1
        assert h.proxy.stats.overloaded == 0

    run(tmp_path, body)


def test_a_forged_branch_gains_nothing_under_overload(tmp_path: Path) -> None:
    """An attacker replays a captured authenticated REGISTER (its branch was seen
    lately) with another Contact: not shed, but handled as any REGISTER: not a
    retransmission (another Contact), so authenticated again, and its nonce count
    was used (401 stale); the stored binding stays."""

    async def body(h: Harness) -> None:
        data = await authenticated(h)
        assert one(await arrive(h, data, PHONE), PHONE).status == 200
        (stored,) = await h.store.lookup(AOR, h.wall())
        overload(h, 0.02)
        forged = data.replace(b"Contact: <sip:alice@", b"Contact: <sip:mallory@")
        assert forged != data
        out = one(await arrive(h, forged, PHONE), PHONE)
        assert out.status == 401
        assert await h.store.lookup(AOR, h.wall()) == [stored]
        assert h.auth.successes == 1

    run(tmp_path, body)


def test_recent_branches_are_bounded() -> None:
    recent = RecentBranches(limit=4)
    for n in range(7):
        recent.add(b"z9hG4bK%d" % n)
        assert len(recent) <= 4
    assert b"z9hG4bK6" in recent and b"z9hG4bK0" not in recent
    recent.add(b"z9hG4bK6")  # seen again: nothing changes
    assert len(recent) <= 4 and b"z9hG4bK6" in recent
    assert None not in recent
    with pytest.raises(ValueError):
        RecentBranches(limit=1)
