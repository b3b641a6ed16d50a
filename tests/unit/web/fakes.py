"""Fake read-only services for the web app's unit tests (real snapshot types, made-up
numbers), and a helper running the app with aiohttp's test client."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from rtc64.gateway.location.bindings import Binding
from rtc64.gateway.ratelimit import AuthFailureTracker
from rtc64.gateway.stats import CallParty, CallView, Fallbacks, ProxyStats, SipTraffic
from rtc64.io.turn_listeners import ListenerStats
from rtc64.io.turn_relay import RelayCounters as TurnRelayCounters
from rtc64.net.address import Family, family_of
from rtc64.net.endpoint import Transport
from rtc64.relay.engine import RelayCounters
from rtc64.relay.stats import CallStats, LegStats
from rtc64.rtp.legs import LatchMode
from rtc64.rtp.stats import ReceptionSnapshot
from rtc64.turn.events import ClientFlow
from rtc64.turn.stats import TurnStats
from rtc64.turnserver.stats import AllocationView, TurnServiceStats, snapshot
from rtc64.web.auth import Guard, hash_admin
from rtc64.web.views import Sources, Status, TurnRest

NOW = 1_800_000_000.0
V4 = IPv4Address("192.0.2.10")
V6 = IPv6Address("2001:db8::10")
TOKEN = "full-access-token-0123456789"
TURN_TOKEN = "turn-only-token-0123456789"
SECRET = "turn-rest-secret"


def binding(aor: str, ip: IPv4Address | IPv6Address, transport: str = "udp") -> Binding:
    return Binding(
        aor=aor,
        contact=f"<sip:{aor.split(':')[1].split('@', maxsplit=1)[0]}@{ip}>".encode(),
        expires_at=NOW + 300,
        call_id=b"reg-" + str(ip).encode(),
        cseq=1,
        transport=transport,
        listener="udp:[::]:5060",
        received_ip=ip,
        received_port=5062,
        user_agent=b"test-ua",
    )


def reception(lost: int, jitter: float) -> ReceptionSnapshot:
    return ReceptionSnapshot(
        packets=100,
        octets=17200,
        expected=100 + lost,
        received=100,
        lost=lost,
        jitter=jitter * 8000,
        jitter_seconds=jitter,
        ssrc=1,
        extended_highest_sequence=100,
        rtcp_packets=0,
        rtcp_octets=0,
        malformed=0,
        ssrc_changes=0,
    )


def leg(tag: bytes, local: Any, packets: int, lost: int = 0, component: str = "rtp") -> LegStats:
    return LegStats(
        tag=tag,
        media=0,
        kind="audio",
        component=component,
        local=(ip_address(local), 30000 if component == "rtp" else 30001),
        remote=None,
        latched=(ip_address(local), 4000),
        mode=LatchMode.ADDRESS,
        held=False,
        packets=packets,
        octets=packets * 172,
        forwarded=packets,
        dropped=0,
        last_packet=10.0,
        reception=reception(lost, 0.002),
    )


def call(call_id: bytes, caller: Any, callee: Any, packets: int = 100, lost: int = 0) -> CallStats:
    return CallStats(
        call_id=call_id,
        created=5.0,
        answered=6.0,
        tags=(b"a", b"b"),
        legs=(leg(b"a", caller, packets, lost), leg(b"b", callee, packets)),
    )


@dataclass
class FakeStore:
    bindings: list[Binding] = field(default_factory=list)

    async def all_bindings(self, now: float) -> list[Binding]:
        return [b for b in self.bindings if b.is_live(now)]


@dataclass
class FakeRelay:
    live: dict[bytes, CallStats] = field(default_factory=dict)
    counters: RelayCounters = field(default_factory=RelayCounters)

    def calls(self) -> list[bytes]:
        return list(self.live)

    def query(self, call_id: bytes) -> CallStats | None:
        return self.live.get(call_id)


def signalled(
    call_id: bytes,
    caller: Any,
    callee: Any | None,
    *,
    relayed: bool = True,
    transports: tuple[str, str] = ("udp", "udp"),
) -> CallView:
    """A call as the proxy's snapshot shows it (``callee`` None: not answered yet)."""
    return CallView(
        call_id=call_id,
        caller_uri="sip:alice@example.net",
        callee_uri="sip:bob@example.net",
        state="early" if callee is None else "confirmed",
        age=12.0,
        talk=None if callee is None else 10.0,
        caller=CallParty(family_of(ip_address(caller)), transports[0], (ip_address(caller), 5062)),
        callee=None
        if callee is None
        else CallParty(family_of(ip_address(callee)), transports[1], (ip_address(callee), 5060)),
        relayed=relayed,
    )


@dataclass
class FakeProxy:
    stats: ProxyStats = field(default_factory=ProxyStats)
    traffic: SipTraffic = field(default_factory=SipTraffic)
    in_flight: int = 0
    fallbacks: Fallbacks = field(default_factory=Fallbacks)
    calls: list[CallView] = field(default_factory=list)

    def calls_in_progress(self) -> list[CallView]:
        return list(self.calls)


@dataclass
class FakeTurn:
    views: list[AllocationView] = field(default_factory=list)

    def stats(self) -> TurnServiceStats:
        core = TurnStats(
            allocations=len(self.views),
            allocations_by_family={(Family.INET6, Family.INET): 3},
            errors={401: 2},
        )
        live = [
            TurnRelayCounters(
                relay=(V4, 50000),
                family=Family.INET,
                client=None,
                to_peer_packets=5,
                to_peer_bytes=500,
                from_peer_packets=4,
                from_peer_bytes=400,
                no_permission=0,
                over_limit=0,
            )
        ]
        return snapshot(core, ListenerStats(), live, {})

    def allocations(self) -> list[AllocationView]:
        return self.views


def allocation() -> AllocationView:
    return AllocationView(
        client=ClientFlow(Transport.UDP, (V6, 40000), (IPv6Address("2001:db8::1"), 3478)),
        username="1800000000:alice",
        relays=((Family.INET, (V4, 50000)), (Family.INET6, (IPv6Address("2001:db8::2"), 50002))),
        peers=(IPv4Address("198.51.100.7"),),
        channels=1,
        expires_in=500.0,
        to_peer_packets=5,
        to_peer_bytes=500,
        from_peer_packets=4,
        from_peer_bytes=400,
    )


def sources(**kw: Any) -> Sources:
    status = Status(
        version="0.1.0",
        services=("sip", "media"),
        listeners=("udp:[::]:5060",),
        relay_addresses=("192.0.2.1", "2001:db8::1"),
        turn_listeners=(),
        nat64=("64:ff9b::/96",),
        config=(("web.token", "set, hidden"),),
        started=NOW - 100,
    )
    values: dict[str, Any] = {
        "status": status,
        "wall": lambda: NOW,
        "clock": lambda: 15.0,
        "registrations": FakeStore([binding("sip:alice@example.net", V6)]),
        "proxy": FakeProxy(),
        "relay": FakeRelay({b"c1": call(b"c1", V6, V4)}),
        "turn": FakeTurn([allocation()]),
        "blocks": AuthFailureTracker(2, 60, 300),
        "turn_rest": TurnRest(SECRET, ("turn:192.0.2.1:3478?transport=udp",)),
    }
    values.update(kw)
    return Sources(**values)


def guard(*, admin: bool = True, token: str = TOKEN, turn_token: str = TURN_TOKEN) -> Guard:
    return Guard(
        admin=hash_admin("admin", "correct horse battery") if admin else None,
        token=token,
        turn_token=turn_token,
        lifetime=600,
    )


def with_client(
    src: Sources, g: Guard, job: Callable[[TestClient[Any, Any]], Awaitable[None]]
) -> None:
    """Run ``job`` against the app on a loopback test server."""
    from rtc64.web.app import build_app  # noqa: PLC0415

    async def main() -> None:
        server = TestServer(build_app(src, g), host="127.0.0.1")
        async with TestClient(server) as client:
            await job(client)

    asyncio.run(main())


@contextlib.contextmanager
def serving(src: Sources, g: Guard) -> Iterator[int]:
    """The app on a loopback port in a thread of its own (for synchronous clients); yields
    the port."""
    from aiohttp import web  # noqa: PLC0415

    from rtc64.web.app import build_app  # noqa: PLC0415

    ready: queue.Queue[int] = queue.Queue()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def main() -> None:
        runner = web.AppRunner(build_app(src, g))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        ready.put(int(runner.addresses[0][1]))
        await stop.wait()
        await runner.cleanup()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    try:
        yield ready.get(timeout=10)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)
        loop.close()
