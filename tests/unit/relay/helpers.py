"""Fakes and SDP samples for relay tests."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from ipaddress import ip_address

from rtc64.rtp.legs import LegCounters, LegSpec, LocalPort

V4 = ip_address("192.0.2.1")
V6 = ip_address("2001:db8::1")


def sdp(
    address: str,
    port: int = 49170,
    *,
    extra: str = "",
    media_extra: str = "",
    origin: str | None = None,
    second: str = "",
) -> bytes:
    fam = "IP6" if ":" in address else "IP4"
    o = origin or address
    ofam = "IP6" if ":" in o else "IP4"
    text = (
        "v=0\r\n"
        f"o=alice 2890844526 2890844526 IN {ofam} {o}\r\n"
        "s=-\r\n"
        f"c=IN {fam} {address}\r\n"
        "t=0 0\r\n"
        f"{extra}"
        f"m=audio {port} RTP/AVP 0 8 101\r\n"
        "a=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:8 PCMA/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
        "a=fmtp:101 0-16\r\n"
        "a=ptime:20\r\n"
        f"{media_extra}"
        f"{second}"
    )
    return text.encode()


class FakeForwarder:
    """Records what the engine asks; counters are set by the test."""

    def __init__(self, fail: Iterable[LocalPort] = ()) -> None:
        self.ports: set[LocalPort] = set()
        self.legs: dict[int, LegSpec] = {}
        self.fail = set(fail)
        self.stats: dict[int, LegCounters] = {}
        self.closed_all = False
        self.opened_total = 0

    def open(self, worker: int, ports: Sequence[LocalPort]) -> list[LocalPort]:
        failed = [p for p in ports if p in self.fail]
        for p in ports:
            if p not in failed:
                assert p not in self.ports, f"{p} opened twice"
                self.ports.add(p)
                self.opened_total += 1
        return failed

    def close(self, worker: int, ports: Sequence[LocalPort]) -> None:
        for p in ports:
            self.ports.discard(p)

    def update(self, worker: int, legs: Sequence[LegSpec], removed: Sequence[int]) -> None:
        for leg in removed:
            self.legs.pop(leg, None)
        for spec in legs:
            assert spec.local in self.ports, f"leg {spec.leg} on closed port {spec.local}"
            self.legs[spec.leg] = spec

    def counters(self, legs: Iterable[int]) -> dict[int, LegCounters]:
        return {leg: self.stats[leg] for leg in legs if leg in self.stats}

    def shutdown(self) -> None:
        self.closed_all = True

    def leg_on(self, port: LocalPort) -> list[LegSpec]:
        return [s for s in self.legs.values() if s.local == port]

    def activity(self, leg: int, when: float, packets: int = 1) -> None:
        self.stats[leg] = LegCounters(leg, packets, packets * 172, 0, packets, when, None)


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
