"""The keepalive wiring with a fake transport and a real SQLite store."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest

from rtc64.gateway.keepalive import service
from rtc64.gateway.keepalive.options import BRANCH_MARK
from rtc64.gateway.keepalive.schedule import ContactState
from rtc64.gateway.keepalive.service import Keepalives, ReplyTap, WatchedStore
from rtc64.gateway.location.sqlite import SqliteStore
from rtc64.net.address import IPAddress, family_of
from rtc64.net.endpoint import Flow, SockAddr, Transport
from rtc64.sip.framing import parse_datagram
from rtc64.sip.message import Message, Request

from .helpers import WALL, binding, schedule

LOCAL6 = (ip_address("::"), 5060)


@dataclass
class FakeSender:
    pings: list[tuple[Transport, str, SockAddr, bytes]] = field(default_factory=list)
    sent: list[tuple[bytes, Transport, SockAddr, Flow | None]] = field(default_factory=list)
    connections: set[tuple[Transport, SockAddr]] = field(default_factory=set)

    def keepalive(
        self, transport: Transport, listener: str, remote: SockAddr, payload: bytes
    ) -> bool:
        self.pings.append((transport, listener, remote, payload))
        return True

    def has_connection(self, transport: Transport, address: IPAddress, port: int) -> bool:
        return (transport, (address, port)) in self.connections

    def send(
        self,
        data: bytes,
        transport: Transport,
        address: IPAddress,
        port: int,
        *,
        flow: Flow | None = None,
        server_name: str | None = None,
        handle: object = None,
    ) -> bool:
        self.sent.append((data, transport, (address, port), flow))
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def wall(self) -> float:
        return WALL + self.now


def sent_by(name: str, remote: SockAddr) -> tuple[SockAddr, str] | None:
    return (LOCAL6, "[2001:db8::1]:5060") if name == "udp:[::]:5060" else None


async def _setup(
    tmp_path: Path, **kw: object
) -> tuple[Keepalives, WatchedStore, FakeSender, Clock, list[asyncio.Task[None]]]:
    store = await SqliteStore.open(tmp_path / "loc.sqlite")
    clock, sender = Clock(), FakeSender()
    tasks: list[asyncio.Task[None]] = []

    def spawn(coro: Coroutine[Any, Any, None]) -> None:
        tasks.append(asyncio.get_running_loop().create_task(coro))

    ka = Keepalives(
        schedule(**kw),
        sender=sender,
        store=store,
        sent_by=sent_by,
        clock=clock,
        wall=clock.wall,
        spawn=spawn,
        log=logging.getLogger("test.keepalive"),
    )
    watched = WatchedStore(store, ka.on_replaced)
    ka.store = watched
    return ka, watched, sender, clock, tasks


def _fire_until(
    ka: Keepalives, clock: Clock, until: float, after: Callable[[], bool] = lambda: False
) -> None:
    """Fire the timer up to ``until``, calling ``after`` after each firing (True: stop)."""
    when = ka.get_timer()
    while when is not None and when <= until:
        clock.now = when
        ka.handle_timer(when)
        if after():
            return
        when = ka.get_timer()
    clock.now = until


def _answer(request: bytes, status: int = 200) -> Message:
    req = parse_datagram(request)
    assert isinstance(req, Request)
    branch = req.vias[0].branch
    assert branch is not None
    return parse_datagram(
        b"SIP/2.0 %d OK\r\nVia: SIP/2.0/UDP [2001:db8::1]:5060;branch=%s\r\n"
        b"From: <sip:keepalive@x>;tag=1\r\nTo: <sip:u1@x>;tag=2\r\n"
        b"Call-ID: %s\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        % (status, branch, req.call_id)
    )


def test_stored_registrations_get_pings_from_their_listener(tmp_path: Path) -> None:
    async def main() -> None:
        ka, watched, sender, clock, _ = await _setup(tmp_path, options_interval=0.0)
        old = binding(1)
        await watched.inner.replace(old.aor, [old])  # stored before the gateway started
        assert await ka.load() == 1
        new = binding(2, ip="192.0.2.9", port=6000)
        await watched.replace(new.aor, [new])  # a REGISTER through the proxy's store
        assert len(ka.schedule) == 2
        _fire_until(ka, clock, 30.0)
        targets = {(p[1], p[2]) for p in sender.pings}
        assert targets == {
            ("udp:[::]:5060", (ip_address("2001:db8::10"), 5070)),
            ("udp:0.0.0.0:5060", (ip_address("192.0.2.9"), 6000)),
        }
        assert all(p[3] == b"\r\n\r\n" for p in sender.pings)
        await watched.replace(new.aor, [])  # unregistered
        assert len(ka.schedule) == 1
        await watched.close()

    asyncio.run(main())


def test_answered_options_are_taken_off_before_the_proxy(tmp_path: Path) -> None:
    async def main() -> None:
        ka, watched, sender, clock, _ = await _setup(tmp_path, options_interval=60.0)
        b = binding(1)
        await watched.replace(b.aor, [b])
        _fire_until(ka, clock, 60.0, lambda: bool(sender.sent))
        assert len(sender.sent) == 1
        data, transport, remote, flow = sender.sent[0]
        assert transport is Transport.UDP and remote == (b.received_ip, 5070)
        assert flow is not None and flow.local == LOCAL6
        assert data.startswith(b"OPTIONS sip:u1@[2001:db8::10]:5070 SIP/2.0\r\n")
        forwarded: list[Message] = []
        tap = ReplyTap(lambda msg, flow: forwarded.append(msg))
        tap.keepalives = ka
        source = Flow(Transport.UDP, LOCAL6, (ip_address("2001:db8::10"), 5070))
        clock.now += 0.03
        tap.on_message(_answer(data), source)
        assert forwarded == []
        status = ka.schedule.status((b.aor, b.contact))
        assert status is not None and status.state is ContactState.REACHABLE
        assert status.rtt is not None and 0.0 < status.rtt < 0.1
        health = ka.health(b.aor, b.contact)  # the console's view (gateway.stats)
        assert health is not None and health.state == "reachable" and health.failures == 0
        assert health.rtt == status.rtt
        # the wall-clock time of the answer, not of the question nor of the look-up
        answered_at = clock.wall()
        assert health.last_keepalive == pytest.approx(answered_at)
        clock.now += 42.0
        later = ka.health(b.aor, b.contact)
        assert later is not None and later.last_keepalive == pytest.approx(answered_at)
        assert ka.health(b.aor, b"sip:nobody@[2001:db8::99]") is None
        other = parse_datagram(_answer(data).wire.replace(BRANCH_MARK, b"z9hG4bK-x"))  # type: ignore[union-attr]
        tap.on_message(other, source)
        assert forwarded == [other]  # not ours: the proxy's business
        assert not tap.on_raw_response(other.wire, source)  # type: ignore[arg-type]
        await watched.close()

    asyncio.run(main())


def test_raw_answers_are_taken_before_parsing(tmp_path: Path) -> None:
    async def main() -> None:
        ka, watched, sender, clock, _ = await _setup(tmp_path, options_interval=60.0)
        b = binding(1)
        await watched.replace(b.aor, [b])
        _fire_until(ka, clock, 60.0, lambda: bool(sender.sent))
        tap = ReplyTap(lambda msg, flow: None)
        source = Flow(Transport.UDP, LOCAL6, (ip_address("2001:db8::10"), 5070))
        raw = _answer(sender.sent[0][0]).wire
        assert raw is not None
        assert not tap.on_raw_response(raw, source)  # no keepalives wired yet
        tap.keepalives = ka
        assert tap.on_raw_response(raw, source)
        status = ka.schedule.status((b.aor, b.contact))
        assert status is not None and status.state is ContactState.REACHABLE
        assert tap.on_raw_response(raw, source)  # a replay: ours, but stray
        assert ka.schedule.stats.stray_replies == 1 and ka.schedule.stats.replies == 1
        await watched.close()

    asyncio.run(main())


def test_unreachable_contacts_are_removed_from_the_store(tmp_path: Path) -> None:
    async def main() -> None:
        ka, watched, sender, clock, tasks = await _setup(
            tmp_path, options_interval=10.0, options_timeout=2.0, max_failures=2
        )
        a, b = binding(1), replace(binding(2), aor=binding(1).aor)
        await watched.replace(a.aor, [a, b])

        def b_answers() -> bool:  # at once; a never does
            for data, *_ in sender.sent:
                if b"u2@" in data.split(b"\r\n", 1)[0]:
                    flow = Flow(Transport.UDP, LOCAL6, (b.received_ip, 5070))
                    ka.on_response(_answer(data), flow)
            sender.sent.clear()
            return False

        for _ in range(4):
            _fire_until(ka, clock, clock.now + 10.0, b_answers)
            await asyncio.gather(*tasks)
        assert await watched.lookup(a.aor, clock.wall()) == [b]
        assert ka.stats.removed == 1
        counted = ka.counters()  # /metrics: failures by the contact's family
        assert counted.failures == {family_of(a.received_ip): 2}  # type: ignore[arg-type]
        assert counted.unreachable == {family_of(a.received_ip): 1}  # type: ignore[arg-type]
        assert counted.removed == 1 and counted.replies >= 1 and counted.tracked == 1
        health = ka.health(b.aor, b.contact)
        never = ka.health(a.aor, a.contact)
        assert health is not None and health.last_keepalive is not None
        assert never is None  # removed
        assert len(ka.schedule) == 1 and ka.schedule.status((a.aor, a.contact)) is None
        await watched.close()

    asyncio.run(main())


def test_a_reregistration_since_the_failure_wins(tmp_path: Path) -> None:
    async def main() -> None:
        ka, watched, _, clock, tasks = await _setup(
            tmp_path, options_interval=10.0, options_timeout=2.0, max_failures=1
        )
        a = binding(1)
        await watched.replace(a.aor, [a])
        await watched.inner.replace(a.aor, [replace(a, cseq=2)])  # re-registered meanwhile
        _fire_until(ka, clock, 30.0)
        await asyncio.gather(*tasks)
        assert await watched.lookup(a.aor, clock.wall()) == [replace(a, cseq=2)]
        assert ka.stats.removed == 0
        await watched.close()

    asyncio.run(main())


def test_an_answer_from_a_new_source_updates_the_stored_binding(tmp_path: Path) -> None:
    async def main() -> None:
        ka, watched, sender, clock, tasks = await _setup(tmp_path, options_interval=10.0)
        b = binding(1)
        await watched.replace(b.aor, [b])
        _fire_until(ka, clock, 10.0, lambda: bool(sender.sent))
        new = (ip_address("2001:db8::99"), 40000)
        ka.on_response(_answer(sender.sent[0][0]), Flow(Transport.UDP, LOCAL6, new))
        await asyncio.gather(*tasks)
        stored = await watched.lookup(b.aor, clock.wall())
        assert [(s.received_ip, s.received_port) for s in stored] == [new]
        assert ka.stats.moved == 1
        sender.pings.clear()
        sender.sent.clear()
        _fire_until(ka, clock, 60.0)
        assert sender.sent and {s[2] for s in sender.sent} == {new}
        assert {p[2] for p in sender.pings} <= {new}
        await watched.close()

    asyncio.run(main())


def test_stream_contacts_are_probed_only_over_an_open_connection(tmp_path: Path) -> None:
    async def main() -> None:
        ka, watched, sender, clock, _ = await _setup(tmp_path, options_interval=10.0)
        b = binding(1, transport="tcp", listener="tcp:[::]:5060")
        await watched.replace(b.aor, [b])
        _fire_until(ka, clock, 10.0)
        assert sender.sent == [] and ka.stats.options_unsent == 1
        assert all(p[0] is Transport.TCP for p in sender.pings)
        await watched.close()

    asyncio.run(main())


def test_loading_many_bindings_lets_the_loop_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "LOAD_BATCH", 10)

    async def main() -> None:
        ka, watched, _, _, _ = await _setup(tmp_path, options_interval=0.0)
        for n in range(35):
            b = binding(n)
            await watched.inner.replace(b.aor, [b])
        seen: list[int] = []

        async def ticker() -> None:
            while True:
                seen.append(len(ka.schedule))
                await asyncio.sleep(0)

        task = asyncio.get_running_loop().create_task(ticker())
        await asyncio.sleep(0)
        assert await ka.load() == 35
        task.cancel()
        assert any(0 < n < 35 for n in seen), seen  # other work ran while loading
        await watched.close()

    asyncio.run(main())
