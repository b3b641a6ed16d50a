"""Admission control driven by a fake clock and a model of the loop's receive backlog."""

from __future__ import annotations

import pytest

from rtc64.gateway.admission import MIN_FRACTION, Admission

SAMPLE = 0.05  # io/ samples the delay every 50 ms


class Loop:
    """A single server clearing ``capacity`` calls/s; a shed call costs ``shed_cost`` of one.

    The backlog (seconds of work queued) is seen as the self-ping sees it: a ping sent
    every 100 ms is answered after the backlog in front of it; each 50 ms sample is the
    latest answer's round trip or the age of the oldest unanswered ping, if larger."""

    def __init__(self, adm: Admission, capacity: float, shed_cost: float = 0.25) -> None:
        self.adm = adm
        self.capacity = capacity
        self.shed_cost = shed_cost
        self.now = 0.0
        self.backlog = 0.0
        self._arrivals = 0.0
        self._pings: list[tuple[float, float]] = []  # (sent, answered at)
        self._next_ping = 0.0
        self._last = 0.0

    def run(self, seconds: float, offered: float) -> tuple[int, int, float]:
        """Offer ``offered`` new calls/s; (admitted, shed, largest backlog seen)."""
        admitted = shed = 0
        worst = 0.0
        dt = 0.005
        for n in range(round(seconds / dt)):
            self._arrivals += offered * dt
            while self._arrivals >= 1:
                self._arrivals -= 1
                if self.adm.shed(True, 0, self.now):
                    shed += 1
                    self.backlog += self.shed_cost / self.capacity
                else:
                    admitted += 1
                    self.backlog += 1 / self.capacity
            self.backlog = max(0.0, self.backlog - dt)
            self.now += dt
            worst = max(worst, self.backlog)
            if self.now >= self._next_ping:
                self._next_ping += 0.1
                self._pings.append((self.now, self.now + self.backlog))
            if n % round(SAMPLE / dt) == 0:
                self.adm.observe(self.now, self._seen())
        return admitted, shed, worst

    def _seen(self) -> float:
        answered = [p for p in self._pings if p[1] <= self.now]
        if answered:
            self._last = answered[-1][1] - answered[-1][0]
            self._pings = [p for p in self._pings if p[1] > self.now]
        oldest = self._pings[0][0] if self._pings else self.now
        return max(self._last, self.now - oldest)


def test_under_capacity_nothing_is_shed() -> None:
    adm = Admission(target=0.1)
    admitted, shed, worst = Loop(adm, capacity=450).run(20, offered=400)
    assert shed == 0 and admitted == 8000
    assert worst < 0.1 and not adm.overloaded


def test_twice_capacity_sheds_within_the_first_second_and_keeps_goodput() -> None:
    adm = Admission(target=0.1)
    loop = Loop(adm, capacity=450)
    admitted, shed, _ = loop.run(1.0, offered=900)
    assert adm.overloaded and shed > 0, "503s start in the first second of overload"
    admitted, shed, worst = loop.run(19.0, offered=900)
    assert worst < 0.5, "the backlog (ping time) stays bounded"
    goodput = admitted / 19.0
    # the best possible: what is left of the loop once every shed call is answered
    best = (450 - 0.25 * 900) / (1 - 0.25)
    assert goodput > 0.9 * best, f"goodput {goodput:.0f}/s, best {best:.0f}/s"


def test_recovery_once_load_drops() -> None:
    adm = Admission(target=0.1)
    loop = Loop(adm, capacity=450)
    loop.run(20.0, offered=900)
    assert adm.overloaded
    waited = 0.0
    while adm.overloaded and waited < 10:
        loop.run(0.25, offered=225)
        waited += 0.25
    assert waited <= 2.0, f"full admission again after {waited} s"
    assert adm.fraction == 1.0
    admitted, shed, _ = loop.run(5.0, offered=225)
    assert shed == 0 and admitted == 1125


def test_calls_in_progress_are_never_shed() -> None:
    adm = Admission(target=0.1, max_in_flight=10)
    now = 0.0
    for _ in range(40):  # deep backlog: the fraction is at its floor
        now += SAMPLE
        adm.observe(now, 5.0)
    assert adm.fraction == pytest.approx(MIN_FRACTION)
    # in-dialog requests, ACK, CANCEL (initial=False) pass, even over the in-flight cap
    assert not any(adm.shed(False, 1_000, now) for _ in range(1000))
    shed = sum(adm.shed(True, 0, now) for _ in range(1000))
    assert 970 <= shed <= 990, "new work mostly shed, a trickle still admitted"


def test_in_flight_cap_sheds_new_work_whatever_the_delay() -> None:
    adm = Admission(target=0.0, max_in_flight=3)
    assert not adm.shed(True, 2, 0.0)
    assert adm.shed(True, 3, 0.0)
    assert adm.stats.shed_in_flight == 1
    assert not adm.shed(False, 3, 0.0)


def test_delay_shedding_off_with_target_zero() -> None:
    adm = Admission(target=0.0)
    assert not adm.observe(1.0, 30.0)
    assert not any(adm.shed(True, 0, 1.0) for _ in range(100))


def test_a_draining_backlog_is_not_cut_further() -> None:
    adm = Admission(target=0.1)
    adm.observe(0.0, 1.0)
    adm.observe(0.05, 1.0)
    cut = adm.fraction
    assert cut < 1.0
    adm.observe(0.10, 0.9)  # shrinking by 2 s/s: hold
    assert adm.fraction == cut
    adm.observe(0.15, 0.9)  # flat again: cut
    assert adm.fraction < cut


def test_observe_reports_the_transitions() -> None:
    adm = Admission(target=0.1)
    assert adm.observe(0.05, 0.3) is True and adm.overloaded
    assert adm.observe(0.10, 0.3) is False
    flips = [adm.observe(0.10 + i * SAMPLE, 0.0) for i in range(1, 40)]
    assert flips.count(True) == 1 and not adm.overloaded
    assert adm.stats.overload_episodes == 1


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="target"):
        Admission(target=-1)
    with pytest.raises(ValueError, match="step"):
        Admission(step=0)


def test_start_up_lag_never_sheds() -> None:
    """The loop's lag while the gateway itself starts is recorded, not treated as load."""
    adm = Admission(target=0.1)
    adm.quiet_until = 3.0
    for i in range(10):
        assert not adm.observe(0.25 * i, 0.5)
    assert not adm.overloaded and adm.stats.max_delay == 0.5
    assert not adm.shed(True, 0, 2.5)
    assert adm.observe(3.0, 0.5) and adm.overloaded  # after the grace: real overload sheds
