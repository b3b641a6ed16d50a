# SIP transaction timers (RFC 3261 §17, Table 4 in §A; RFC 6026 §8 for Timers L and M).
#
# Rules:
# - Timers are plain deadlines (floats, same clock as the ``now`` callers pass in); nothing
#   here reads a clock.
# - T1, T2, T4 and the Timer D floor are configurable; every other value derives from them:
#   A/E/G start at T1 (A doubles without bound, E and G are capped at T2), B/F/H/J/L/M are
#   64*T1, I and K are T4, D is max(timer_d, 64*T1) (at least 32 s, and at least as long
#   as the server may retransmit its final response).
# - On a reliable transport A, E and G are never started (``None``) and D, I, J and K are
#   zero (§17.1.1.2, §17.1.2.2, §17.2.1, §17.2.2): the state they guard is left at once.
"""Timer names and values for the transaction layer."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

from rtc64.errors import LocalProtocolError


class Timer(enum.Enum):
    """RFC 3261 transaction timers (and RFC 6026's L and M)."""

    TIMER_A = "A"  # INVITE request retransmit (client, unreliable only)
    TIMER_B = "B"  # INVITE transaction timeout (client)
    TIMER_D = "D"  # wait for response retransmits (client INVITE COMPLETED)
    TIMER_E = "E"  # non-INVITE request retransmit (client, unreliable only)
    TIMER_F = "F"  # non-INVITE transaction timeout (client)
    TIMER_G = "G"  # INVITE response retransmit (server, unreliable only)
    TIMER_H = "H"  # wait for ACK receipt (server)
    TIMER_I = "I"  # wait for ACK retransmits (server CONFIRMED)
    TIMER_J = "J"  # wait for non-INVITE request retransmits (server COMPLETED)
    TIMER_K = "K"  # wait for response retransmits (client non-INVITE COMPLETED)
    TIMER_L = "L"  # RFC 6026: wait for INVITE retransmits after a 2xx (server ACCEPTED)
    TIMER_M = "M"  # RFC 6026: wait for 2xx retransmits (client ACCEPTED)

    __hash__ = object.__hash__  # members are singletons: no Python-level hash per look-up


RETRANSMIT_TIMERS = frozenset((Timer.TIMER_A, Timer.TIMER_E, Timer.TIMER_G))

Durations = dict[Timer, tuple[float | None, float | None]]


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """T1, T2, T4 (seconds) and the Timer D floor for unreliable transports."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    timer_d: float = 32.0
    _durations: Durations = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("t1", "t2", "t4", "timer_d"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise LocalProtocolError(f"timer {name} must be a positive number, not {v!r}")
        if self.t2 < self.t1:
            raise LocalProtocolError(f"T2 ({self.t2}) must not be less than T1 ({self.t1})")
        t1, t4, t64 = float(self.t1), float(self.t4), 64.0 * self.t1
        d: Durations = {
            Timer.TIMER_A: (t1, None),
            Timer.TIMER_B: (t64, t64),
            Timer.TIMER_D: (max(float(self.timer_d), t64), 0.0),
            Timer.TIMER_E: (t1, None),
            Timer.TIMER_F: (t64, t64),
            Timer.TIMER_G: (t1, None),
            Timer.TIMER_H: (t64, t64),
            Timer.TIMER_I: (t4, 0.0),
            Timer.TIMER_J: (t64, 0.0),
            Timer.TIMER_K: (t4, 0.0),
            Timer.TIMER_L: (t64, t64),
            Timer.TIMER_M: (t64, t64),
        }
        object.__setattr__(self, "_durations", d)

    def duration(self, timer: Timer, reliable: bool) -> float | None:
        """Initial value of ``timer``; ``None`` when it is not started on this transport."""
        return self._durations[timer][reliable]

    def cap(self, timer: Timer) -> float:
        """Upper bound of a retransmit interval: A is unbounded, E and G stop at T2."""
        return math.inf if timer is Timer.TIMER_A else float(self.t2)


DEFAULT_TIMERS = TimerConfig()
