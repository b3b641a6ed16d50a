"""Keepalives shared by SIP workers: one owner per AOR, notices and answers handed over
(the wiring of ``io.worker_link`` replaced by direct calls between two instances)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import Coroutine
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path
from typing import Any

from rtc64.gateway.keepalive.options import fast_reply
from rtc64.gateway.keepalive.schedule import ContactState, KeepaliveSchedule, KeepaliveSettings
from rtc64.gateway.keepalive.service import (
    Keepalives,
    ReplyTap,
    WatchedStore,
    owner_of,
    token_owner,
    worker_token,
)
from rtc64.gateway.location.sqlite import SqliteStore
from rtc64.net.endpoint import Flow, Transport

from .helpers import binding
from .test_service import LOCAL6, Clock, FakeSender, _answer, _fire_until, sent_by


@dataclass
class Share:
    """Two workers' keepalives calling each other as the worker link would."""

    index: int
    count: int
    peers: dict[int, Keepalives] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    changed: list[tuple[int, str]] = field(default_factory=list)
    handed: list[int] = field(default_factory=list)

    def keepalive_changed(self, owner: int, aor: str) -> None:
        self.changed.append((owner, aor))
        self.tasks.append(asyncio.get_running_loop().create_task(self.peers[owner].refresh(aor)))

    def keepalive_answer(self, owner: int, data: bytes, flow: Flow) -> None:
        self.handed.append(owner)
        tap = ReplyTap(lambda msg, flow: None)
        tap.keepalives = self.peers[owner]
        assert tap.on_raw_response(data, flow)


async def _worker(path: Path, k: int, clock: Clock, peers: dict[int, Keepalives]) -> Keepalives:
    store = await SqliteStore.open(path, shared=True)
    counter = itertools.count(1)
    share = Share(k, 2, peers)
    ka = Keepalives(
        KeepaliveSchedule(
            KeepaliveSettings(options_interval=60.0),
            rng=random.Random(k).random,
            new_token=lambda: worker_token(k, b"t%d" % next(counter)),
        ),
        sender=FakeSender(),
        store=store,
        sent_by=sent_by,
        clock=clock,
        wall=clock.wall,
        spawn=lambda coro: _spawn(share, coro),
        log=logging.getLogger(f"test.w{k}"),
        share=share,
    )
    peers[k] = ka
    return ka


def _spawn(share: Share, coro: Coroutine[Any, Any, None]) -> None:
    share.tasks.append(asyncio.get_running_loop().create_task(coro))


def _aor_owned_by(k: int) -> int:
    return next(n for n in range(1, 100) if owner_of(binding(n).aor, 2) == k)


def test_tokens_name_their_worker() -> None:
    assert token_owner(worker_token(3, b"ab12")) == 3
    assert token_owner(b"ab12") is None and token_owner(b"WZ") is None
    assert token_owner(b"W12x") is None and token_owner(b"W9999999Z1") is None
    assert owner_of("sip:bob@example.net", 4) == owner_of("sip:bob@example.net", 4)
    assert {owner_of(f"sip:u{n}@x", 2) for n in range(20)} == {0, 1}


def test_each_aor_is_kept_alive_by_its_owner_only(tmp_path: Path) -> None:
    async def main() -> None:
        clock, peers = Clock(), {}
        w0 = await _worker(tmp_path / "loc.sqlite", 0, clock, peers)
        w1 = await _worker(tmp_path / "loc.sqlite", 1, clock, peers)
        n0, n1 = _aor_owned_by(0), _aor_owned_by(1)
        b0, b1 = binding(n0), binding(n1, ip="2001:db8::11")
        # both REGISTERs land on worker 0 (the kernel's pick): it keeps b0 itself and
        # tells worker 1 about b1, which reads it from the store
        store0 = WatchedStore(w0.store, w0.on_replaced)
        await store0.replace(b0.aor, [b0])
        await store0.replace(b1.aor, [b1])
        await asyncio.gather(*w0.share.tasks)  # type: ignore[union-attr]
        assert w0.share.changed == [(1, b1.aor)]  # type: ignore[union-attr]
        assert len(w0.schedule) == 1 and w0.schedule.status((b0.aor, b0.contact))
        assert len(w1.schedule) == 1 and w1.schedule.status((b1.aor, b1.contact))
        # a restarted worker 1 loads what it owns, worker 0 what it owns: no duplicates
        fresh1 = await _worker(tmp_path / "loc.sqlite", 1, clock, peers)
        assert await fresh1.load() == 1 and fresh1.schedule.status((b1.aor, b1.contact))
        fresh0 = await _worker(tmp_path / "loc.sqlite", 0, clock, peers)
        assert await fresh0.load() == 1 and fresh0.schedule.status((b0.aor, b0.contact))
        # fresh1 sends an OPTIONS; its answer reaches worker 0 (the kernel's hash): handed
        _fire_until(fresh1, clock, 70.0, lambda: bool(fresh1.sender.sent))  # type: ignore[attr-defined]
        request = fresh1.sender.sent[0][0]  # type: ignore[attr-defined]
        raw = _answer(request).wire
        assert raw is not None
        found = fast_reply(raw)
        assert found is not None and token_owner(found[0]) == 1
        source = Flow(Transport.UDP, LOCAL6, (ip_address("2001:db8::11"), 5070))
        tap0 = ReplyTap(lambda msg, flow: None)
        tap0.keepalives = fresh0
        assert tap0.on_raw_response(raw, source)
        assert fresh0.share.handed == [1]  # type: ignore[union-attr]
        status = fresh1.schedule.status((b1.aor, b1.contact))
        assert status is not None and status.state is ContactState.REACHABLE
        assert fresh0.schedule.stats.stray_replies == 0
        # the parsed path hands over too (a reply the fast reader does not take)
        tap0.on_message(_answer(request), source)
        assert fresh0.share.handed == [1, 1]  # type: ignore[union-attr]
        assert fresh1.schedule.stats.stray_replies == 1  # a replay, refused by the owner
        for ka in (w0, w1, fresh0, fresh1):
            await ka.store.close()

    asyncio.run(main())
