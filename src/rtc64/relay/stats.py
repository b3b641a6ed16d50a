# Read-only statistics of relayed calls, for the SIP layer and the ng protocol.
#
# Rules: frozen slotted snapshots built on request from the forwarder's counters; nothing
# here is updated per packet. Times are the relay clock's (monotonic seconds).
# ``RelayView`` is what a reader (web console, metrics) may call on a running relay.
"""Snapshots of relayed calls: per leg and per call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from rtc64.net.address import IPAddress
from rtc64.rtp.legs import LatchMode
from rtc64.rtp.stats import ReceptionSnapshot

if TYPE_CHECKING:
    from rtc64.relay.engine import RelayCounters


@dataclass(frozen=True, slots=True)
class LegStats:
    """One party's RTP or RTCP on one stream: what it sent to the relay."""

    tag: bytes
    media: int
    kind: str
    """The ``m=`` media type (``audio``, ``video``...)."""
    component: str
    """``rtp`` or ``rtcp``."""
    local: tuple[IPAddress, int]
    remote: tuple[IPAddress, int] | None
    """Signalled address of the party (``None``: hold, host name, unknown)."""
    latched: tuple[IPAddress, int] | None
    """The source learned from its packets."""
    mode: LatchMode
    held: bool
    packets: int
    octets: int
    forwarded: int
    dropped: int
    last_packet: float | None
    reception: ReceptionSnapshot | None

    @property
    def lost(self) -> int:
        return 0 if self.reception is None else self.reception.lost

    @property
    def jitter_ms(self) -> float:
        return 0.0 if self.reception is None else self.reception.jitter_seconds * 1000.0


@dataclass(frozen=True, slots=True)
class CallStats:
    """A relayed call: its parties' legs, when it started, whether it was answered."""

    call_id: bytes
    created: float
    answered: float | None
    tags: tuple[bytes, ...]
    legs: tuple[LegStats, ...]

    @property
    def packets(self) -> int:
        return sum(leg.packets for leg in self.legs)

    @property
    def octets(self) -> int:
        return sum(leg.octets for leg in self.legs)

    @property
    def dropped(self) -> int:
        return sum(leg.dropped for leg in self.legs)

    @property
    def last_packet(self) -> float | None:
        times = [leg.last_packet for leg in self.legs if leg.last_packet is not None]
        return max(times) if times else None

    def leg(self, tag: bytes, media: int = 0, component: str = "rtp") -> LegStats | None:
        for leg in self.legs:
            if leg.tag == tag and leg.media == media and leg.component == component:
                return leg
        return None


class RelayView(Protocol):
    """Read-only access to a running relay: its calls and its engine counters."""

    @property
    def counters(self) -> RelayCounters: ...

    def calls(self) -> list[bytes]: ...

    def query(self, call_id: bytes) -> CallStats | None: ...
