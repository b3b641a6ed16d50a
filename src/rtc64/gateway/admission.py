# Admission control: which new requests the proxy takes on and which get 503 (overload).
#
# Rules (RFC 3261 §21.5.4 503 + Retry-After; the local part of RFC 7339 rate control):
# - Only new work is ever shed: requests without a To tag other than ACK and CANCEL
#   (INVITE, REGISTER, out-of-dialog MESSAGE/OPTIONS...). In-dialog requests, ACK, CANCEL
#   and responses always pass, so calls in progress finish.
# - The overload signal is the queueing delay of work not yet processed: how long a
#   datagram waits in the receive queues before the proxy answers it (a self-ping through
#   each UDP listener) or how late the event loop runs its callbacks, whichever is larger.
#   io/ samples it every few tens of milliseconds (``observe``). A saturated loop shows it
#   within one sample, long before the loop lag alone grows: the backlog sits in the
#   kernel's socket buffers, which the loop drains a few dozen datagrams per turn.
# - AIMD on the admitted fraction: above ``target`` the fraction is cut (x0.7, x0.5 above
#   4 x target) on every sample where the backlog is not already draining (shrinking by
#   at least 0.2 s per second); at or under the target it grows by ``step`` per sample.
#   Goodput stays near what the loop clears instead of the backlog growing until every
#   request times out, and a load drop is followed by full admission within a second.
# - The fraction is applied deterministically (a credit counter), not at random.
# - With ``max_in_flight`` proxied requests awaiting their final response, every new
#   request is shed whatever the delay.
# - Sans-I/O: no clock is read; ``now`` is passed in.
"""Admission control for new requests: backlog-driven AIMD shedding and an in-flight cap."""

from __future__ import annotations

from dataclasses import dataclass

MIN_FRACTION = 0.02
"""Never admit less than this: some new work always gets through to show recovery."""
DRAIN_RATE = 0.2
"""A backlog shrinking by at least this many seconds per second is draining: hold."""


@dataclass(slots=True)
class AdmissionStats:
    """Counters and the current state, for logs and the console."""

    admitted: int = 0
    shed: int = 0
    shed_in_flight: int = 0
    samples: int = 0
    overload_episodes: int = 0
    delay: float = 0.0
    max_delay: float = 0.0
    fraction: float = 1.0


class Admission:
    """Decides, per new request, admit or shed (503); ``target`` 0 turns delay shedding off."""

    __slots__ = (
        "_credit",
        "_prev",
        "_prev_at",
        "max_in_flight",
        "overloaded",
        "quiet_until",
        "stats",
        "step",
        "target",
    )

    cut = 0.7
    severe = 0.5
    band = 1.0

    def __init__(self, target: float = 0.0, max_in_flight: int = 0, *, step: float = 0.05):
        if target < 0 or max_in_flight < 0 or not 0 < step <= 1:
            raise ValueError("target and max_in_flight must be >= 0, step in (0, 1]")
        self.target = target
        self.max_in_flight = max_in_flight
        self.step = step
        self.overloaded = False
        self.quiet_until = 0.0
        """Samples before this time are recorded but never shed: the loop's lag while the
        gateway itself starts (imports, binding, loading the store) is not load."""
        self.stats = AdmissionStats()
        self._credit = 0.0
        self._prev = 0.0
        self._prev_at: float | None = None

    @property
    def fraction(self) -> float:
        """Share of new requests admitted now (1.0: all)."""
        return self.stats.fraction

    def observe(self, now: float, delay: float) -> bool:
        """One sample of the queueing delay (seconds). True when ``overloaded`` flipped."""
        st = self.stats
        st.samples += 1
        st.delay = delay
        st.max_delay = max(st.max_delay, delay)
        prev, self._prev = self._prev, delay
        prev_at, self._prev_at = self._prev_at, now
        if self.target <= 0 or now < self.quiet_until:
            return False
        fraction = st.fraction
        if delay > self.target:
            draining = (
                prev_at is not None
                and now > prev_at
                and ((prev - delay) / (now - prev_at) >= DRAIN_RATE)
            )
            if not draining:  # cut harder the deeper the backlog
                fraction *= self.severe if delay > 4 * self.target else self.cut
        elif delay < self.target * self.band:
            fraction += self.step
        st.fraction = fraction = min(1.0, max(MIN_FRACTION, fraction))
        was, self.overloaded = self.overloaded, fraction < 1.0
        if self.overloaded and not was:
            st.overload_episodes += 1
        return was != self.overloaded

    def shed(self, initial: bool, in_flight: int, now: float) -> bool:
        """True if this request must get 503: only ever for new work (``initial``)."""
        if not initial:
            return False
        st = self.stats
        if self.max_in_flight and in_flight >= self.max_in_flight:
            st.shed += 1
            st.shed_in_flight += 1
            return True
        fraction = st.fraction
        if fraction >= 1.0:
            st.admitted += 1
            return False
        self._credit += fraction
        if self._credit >= 1.0:
            self._credit -= 1.0
            st.admitted += 1
            return False
        st.shed += 1
        return True
