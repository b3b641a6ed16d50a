# Counters of the TURN core: allocations by (client family, relay family), errors by STUN
# error code, what was dropped and why. Bytes and packets are counted by the io where the
# packets are; the service merges both into its snapshot.
"""Core counters and the frozen snapshot the service reads."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from rtc64.net.address import Family


@dataclass(frozen=True, slots=True)
class TurnStats:
    """A read-only snapshot of the core (``TurnServer.stats()``).

    ``allocations_by_family`` counts allocations made since start per
    ``(client family, relay family)`` (a dual allocation counts once per relay family);
    ``errors`` counts error responses sent per code; ``dropped`` counts silently dropped
    input per reason (``no-permission``, ``no-allocation``, ``no-channel``, ``malformed``,
    ``not-stun``, ``bad-indication``, ``family``).
    """

    allocations: int = 0
    reservations: int = 0
    permissions: int = 0
    channels: int = 0
    tcp_connections: int = 0
    allocations_by_family: dict[tuple[Family, Family], int] = field(default_factory=dict)
    errors: dict[int, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    indications: int = 0
    lookups: int = 0


class Counters:
    """Mutable counters kept by the core (not thread-safe; one core, one loop)."""

    __slots__ = ("by_family", "dropped", "errors", "indications", "lookups", "requests")

    def __init__(self) -> None:
        self.by_family: Counter[tuple[Family, Family]] = Counter()
        self.errors: Counter[int] = Counter()
        self.dropped: Counter[str] = Counter()
        self.requests = 0
        self.indications = 0
        self.lookups = 0

    def drop(self, reason: str) -> None:
        self.dropped[reason] += 1
