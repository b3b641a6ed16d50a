"""Shared helpers for the keepalive tests: bindings and a fake-clock driver."""

from __future__ import annotations

import itertools
import random
from dataclasses import replace
from ipaddress import ip_address

from rtc64.gateway.keepalive.schedule import Action, KeepaliveSchedule, KeepaliveSettings
from rtc64.gateway.location.bindings import Binding

WALL = 1_700_000_000.0


def binding(n: int = 1, *, ip: str = "2001:db8::10", port: int = 5070, **kw: object) -> Binding:
    """A UDP binding of ``sip:uN@example.net`` registered from ``[ip]:port``."""
    listener = "udp:[::]:5060" if ":" in ip else "udp:0.0.0.0:5060"
    host = f"[{ip}]" if ":" in ip else ip
    b = Binding(
        aor=f"sip:u{n}@example.net",
        contact=f"sip:u{n}@{host}:{port}".encode(),
        expires_at=WALL + 3600,
        call_id=b"reg-%d" % n,
        cseq=1,
        transport="udp",
        listener=listener,
        received_ip=ip_address(ip),
        received_port=port,
    )
    return replace(b, **kw)  # type: ignore[arg-type]


def schedule(seed: int = 7, **kw: object) -> KeepaliveSchedule:
    rng = random.Random(seed)
    counter = itertools.count(1)
    return KeepaliveSchedule(
        KeepaliveSettings(**kw),  # type: ignore[arg-type]
        rng=rng.random,
        new_token=lambda: b"tok%d" % next(counter),
    )


def run(s: KeepaliveSchedule, until: float) -> list[tuple[float, Action]]:
    """Fire the schedule's timer as a driver would, up to ``until``."""
    out: list[tuple[float, Action]] = []
    when = s.get_timer()
    while when is not None and when <= until:
        out += [(when, a) for a in s.handle_timer(when)]
        when = s.get_timer()
    return out


def first(s: KeepaliveSchedule, kind: type, until: float) -> tuple[float, Action]:
    """Fire the timer until the first action of ``kind``; return its time and the action."""
    when = s.get_timer()
    while when is not None and when <= until:
        for action in s.handle_timer(when):
            if isinstance(action, kind):
                return when, action
        when = s.get_timer()
    raise AssertionError(f"no {kind.__name__} before {until}")
