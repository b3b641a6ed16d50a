"""Happy eyeballs core: races over SIP targets (RFC 8305 §5 adapted) and the health cache."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtc64.errors import LocalProtocolError
from rtc64.net.address import Family, IPAddress
from rtc64.net.eyeballs import (
    FINISHED,
    INVITE_TABLE,
    NON_INVITE_TABLE,
    Action,
    HealthCache,
    Input,
    Race,
    RaceTimers,
    State,
    UdpRace,
    interleave,
)

V6, V4 = Family.INET6, Family.INET


@dataclass(frozen=True, slots=True)
class Target:
    address: IPAddress
    port: int = 5060


def targets(spec: str) -> list[Target]:
    """'6464' -> [2001:db8::1, 192.0.2.2, 2001:db8::3, 192.0.2.4]."""
    out: list[Target] = []
    for i, kind in enumerate(spec, start=1):
        address = IPv6Address(f"2001:db8::{i}") if kind == "6" else IPv4Address(f"192.0.2.{i}")
        out.append(Target(address))
    return out


def kinds(ts: list[Target]) -> str:
    return "".join(str(t.address.version) for t in ts)


# ---------------------------------------------------------------------------------------
# Races, table-driven: (time, op, argument, expected)
#   start               expected: index started
#   timer               expected: index started or None
#   fail   idx          expected: index started or None
#   resp   (idx, code)  expected: (action, winner, stop)
#   check  None         expected: (states as letters, get_timer(), exhausted)

W, TR, WON, ST, CA, EN, FA, SK = (
    State.WAITING,
    State.TRYING,
    State.WON,
    State.STOPPED,
    State.CANCELLED,
    State.ENDED,
    State.FAILED,
    State.SKIPPED,
)
F, IG, CN, AB = Action.FORWARD, Action.IGNORE, Action.CANCEL, Action.ACK_BYE

Step = tuple[float, str, Any, Any]

SCENARIOS: dict[str, tuple[str, bool, float | None, list[Step]]] = {
    "first answers within the delay": (
        "64",
        True,
        0.25,
        [
            (0.0, "start", None, 0),
            (0.0, "check", None, ([TR, W], 0.25, False)),
            (0.1, "timer", None, None),
            (0.1, "resp", (0, 100), (F, 0, ())),
            (0.1, "check", None, ([WON, SK], None, False)),
            (0.3, "timer", None, None),
            (0.4, "resp", (0, 200), (F, 0, ())),
        ],
    ),
    "silent IPv6, IPv4 answers, IPv6 rings later and is cancelled": (
        "64",
        True,
        0.25,
        [
            (0.0, "start", None, 0),
            (0.24, "timer", None, None),
            (0.25, "timer", None, 1),
            (0.25, "check", None, ([TR, TR], None, False)),
            (0.30, "resp", (1, 100), (F, 1, (0,))),
            (0.30, "check", None, ([ST, WON], None, False)),
            (0.50, "resp", (0, 180), (CN, 1, ())),
            (0.55, "resp", (0, 183), (IG, 1, ())),
            (0.60, "resp", (0, 487), (IG, 1, ())),
            (0.60, "check", None, ([EN, WON], None, False)),
        ],
    ),
    "a loser's 2xx to INVITE is ACKed and BYEd, every time": (
        "64",
        True,
        0.25,
        [
            (0.0, "start", None, 0),
            (0.25, "timer", None, 1),
            (0.3, "resp", (1, 180), (F, 1, (0,))),
            (0.4, "resp", (0, 200), (AB, 1, ())),
            (0.5, "resp", (0, 200), (AB, 1, ())),
            (0.5, "check", None, ([EN, WON], None, False)),
        ],
    ),
    "a cancelled loser's 2xx crossing the CANCEL": (
        "64",
        True,
        0.25,
        [
            (0.0, "start", None, 0),
            (0.25, "timer", None, 1),
            (0.3, "resp", (1, 100), (F, 1, (0,))),
            (0.4, "resp", (0, 100), (CN, 1, ())),
            (0.5, "resp", (0, 200), (AB, 1, ())),
        ],
    ),
    "non-INVITE losers are dropped, never cancelled": (
        "64",
        False,
        0.25,
        [
            (0.0, "start", None, 0),
            (0.25, "timer", None, 1),
            (0.3, "resp", (1, 200), (F, 1, (0,))),
            (0.4, "resp", (0, 100), (IG, 1, ())),
            (0.5, "resp", (0, 200), (IG, 1, ())),
            (0.5, "check", None, ([EN, WON], None, False)),
        ],
    ),
    "ICMP on the first starts the next at once": (
        "64",
        True,
        0.25,
        [
            (0.0, "start", None, 0),
            (0.05, "fail", 0, 1),
            (0.05, "check", None, ([FA, TR], None, False)),
            (0.1, "resp", (1, 100), (F, 1, ())),
        ],
    ),
    "a failure restarts the delay for the next": (
        "646",
        True,
        0.25,
        [
            (0.0, "start", None, 0),
            (0.05, "fail", 0, 1),
            (0.05, "check", None, ([FA, TR, W], 0.30, False)),
            (0.30, "timer", None, 2),
        ],
    ),
    "an older attempt failing does not hurry the next": (
        "646",
        True,
        0.25,
        [
            (0.0, "start", None, 0),
            (0.25, "timer", None, 1),
            (0.3, "fail", 0, None),
            (0.3, "check", None, ([FA, TR, W], 0.5, False)),
            (0.5, "timer", None, 2),
        ],
    ),
    "the latest failing while an older is silent starts the next": (
        "646",
        True,
        0.25,
        [
            (0.0, "start", None, 0),
            (0.25, "timer", None, 1),
            (0.3, "fail", 1, 2),
            (0.3, "check", None, ([TR, FA, TR], None, False)),
            (0.4, "resp", (0, 100), (F, 0, (2,))),
            (0.4, "check", None, ([WON, FA, ST], None, False)),
        ],
    ),
    "everything fails: exhausted": (
        "64",
        True,
        0.25,
        [
            (0.0, "start", None, 0),
            (0.25, "timer", None, 1),
            (32.0, "fail", 0, None),
            (32.25, "fail", 1, None),
            (32.25, "check", None, ([FA, FA], None, True)),
            (40.0, "timer", None, None),
        ],
    ),
    "a final error response wins too": (
        "64",
        True,
        0.25,
        [
            (0.0, "start", None, 0),
            (0.1, "resp", (0, 503), (F, 0, ())),
            (0.1, "check", None, ([WON, SK], None, False)),
        ],
    ),
    "the winner in the middle skips the rest": (
        "6464",
        True,
        0.25,
        [
            (0.0, "start", None, 0),
            (0.25, "timer", None, 1),
            (0.5, "timer", None, 2),
            (0.6, "resp", (1, 100), (F, 1, (0, 2))),
            (0.6, "check", None, ([ST, WON, ST, SK], None, False)),
            (32.0, "fail", 0, None),
            (32.5, "fail", 2, None),
            (32.5, "check", None, ([EN, WON, EN, SK], None, False)),
        ],
    ),
    "no racing: next only after a failure": (
        "64",
        True,
        None,
        [
            (0.0, "start", None, 0),
            (0.0, "check", None, ([TR, W], None, False)),
            (5.0, "timer", None, None),
            (32.0, "fail", 0, 1),
            (32.1, "resp", (1, 100), (F, 1, ())),
        ],
    ),
    "a late timer call counts the delay from the real start": (
        "646",
        True,
        0.25,
        [
            (0.0, "start", None, 0),
            (1.0, "timer", None, 1),
            (1.0, "check", None, ([TR, TR, W], 1.25, False)),
            (1.0, "timer", None, None),
        ],
    ),
    "a single target has no timer": (
        "4",
        True,
        0.25,
        [
            (0.0, "start", None, 0),
            (0.0, "check", None, ([TR], None, False)),
            (32.0, "fail", 0, None),
            (32.0, "check", None, ([FA], None, True)),
        ],
    ),
    "the winner's own later failure is the proxy's business": (
        "64",
        True,
        0.25,
        [
            (0.0, "start", None, 0),
            (0.1, "resp", (0, 100), (F, 0, ())),
            (32.0, "fail", 0, None),
            (32.0, "check", None, ([WON, SK], None, False)),
        ],
    ),
    "a late answer from a failed attempt": (
        "64",
        True,
        0.25,
        [
            (0.0, "start", None, 0),
            (0.1, "fail", 0, 1),
            (0.2, "resp", (0, 180), (IG, None, ())),
            (0.3, "resp", (1, 180), (F, 1, ())),
            (0.4, "resp", (0, 200), (AB, 1, ())),
        ],
    ),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_race_scenarios(name: str) -> None:
    spec, invite, delay, steps = SCENARIOS[name]
    race = UdpRace(targets(spec), delay, invite=invite)
    for now, op, arg, expected in steps:
        where = f"{name} @{now} {op} {arg}"
        if op == "start":
            assert race.start(now).index == expected, where
        elif op == "timer":
            got = race.handle_timer(now)
            assert (None if got is None else got.index) == expected, where
        elif op == "fail":
            got = race.attempt_failed(arg, now)
            assert (None if got is None else got.index) == expected, where
        elif op == "resp":
            d = race.response(arg[0], arg[1], now)
            assert (d.action, d.winner, d.stop) == expected, where
        else:
            states, timer, exhausted = expected
            assert race.states == states, where
            assert race.get_timer() == pytest.approx(timer), where
            assert race.exhausted is exhausted, where


def test_attempt_carries_its_target() -> None:
    ts = targets("64")
    race = UdpRace(ts)
    first = race.start(0.0)
    assert first.target is ts[0]
    second = race.handle_timer(0.25)
    assert second is not None
    assert second.target is ts[1]
    assert race.started_at == [0.0, 0.25]


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda r: r.response(1, 100, 0.0), "waiting"),
        (lambda r: r.attempt_failed(1, 0.0), "waiting"),
        (lambda r: r.response(5, 100, 0.0), "no attempt 5"),
        (lambda r: r.response(-1, 100, 0.0), "no attempt -1"),
        (lambda r: r.response(0, 99, 0.0), "bad SIP status"),
        (lambda r: r.response(0, 700, 0.0), "bad SIP status"),
        (lambda r: r.start(0.0), "already started"),
    ],
)
def test_misuse_raises_local_protocol_error(call: Any, fragment: str) -> None:
    race = UdpRace(targets("64"))
    race.start(0.0)
    before = list(race.states)
    with pytest.raises(LocalProtocolError, match=fragment):
        call(race)
    assert race.states == before, "a refused call changes nothing"


def test_skipped_attempt_cannot_answer() -> None:
    race = UdpRace(targets("64"))
    race.start(0.0)
    race.response(0, 100, 0.1)
    with pytest.raises(LocalProtocolError, match="skipped"):
        race.response(1, 100, 0.2)


def test_bad_construction() -> None:
    with pytest.raises(LocalProtocolError):
        UdpRace([])
    with pytest.raises(LocalProtocolError):
        UdpRace(targets("6"), -1.0)


def test_stream_race_closes_late_connects() -> None:
    race: Race[Target] = Race(targets("64"))
    race.start(0.0)
    race.handle_timer(0.25)
    d = race.connected(1, 0.3)
    assert (d.action, d.winner, d.stop) == (F, 1, (0,))
    d = race.connected(0, 0.4)
    assert (d.action, d.winner) == (IG, 1), "the late socket is closed"
    assert race.done


def _all_pairs() -> set[tuple[State, Input]]:
    return {(s, i) for s in State for i in Input}


@pytest.mark.parametrize("table", [INVITE_TABLE, NON_INVITE_TABLE], ids=["invite", "other"])
def test_tables_cover_every_reachable_pair(table: Any) -> None:
    answers = {Input.PROVISIONAL, Input.SUCCESS, Input.FINAL}
    unreachable = (
        {(s, Input.START) for s in State if s is not State.WAITING}
        | {(s, Input.LOSE) for s in State if s not in (State.WAITING, State.TRYING)}
        | {(State.SKIPPED, i) for i in Input}
        | {(State.WAITING, i) for i in answers | {Input.FAIL}}
    )
    if table is NON_INVITE_TABLE:
        # No CANCEL for non-INVITE requests: nothing moves into CANCELLED.
        assert all(new is not State.CANCELLED for new, _ in table.values())
        unreachable |= {(State.CANCELLED, i) for i in Input}
    assert set(table) == _all_pairs() - unreachable
    for (state, inp), (new, action) in table.items():
        if state in FINISHED:
            assert new is state, f"{state} is final ({inp})"
        if action is Action.FORWARD:
            assert new is State.WON
        if table is NON_INVITE_TABLE:
            assert action not in (Action.CANCEL, Action.ACK_BYE)


# ---------------------------------------------------------------------------------------
# Random sequences: invariants


ops = st.lists(
    st.one_of(
        st.tuples(st.just("wait"), st.floats(0.0, 1.0)),
        st.tuples(st.just("resp"), st.integers(0, 4), st.sampled_from([100, 180, 200, 486])),
        st.tuples(st.just("fail"), st.integers(0, 4)),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(
    spec=st.text(alphabet="46", min_size=1, max_size=5),
    invite=st.booleans(),
    delay=st.sampled_from([0.25, 0.1, None]),
    steps=ops,
)
def test_random_sequences_keep_the_invariants(
    spec: str, invite: bool, delay: float | None, steps: list[tuple[Any, ...]]
) -> None:
    race = UdpRace(targets(spec), delay, invite=invite)
    now = 0.0
    race.start(now)
    last_start = now
    winner: int | None = None
    cancelled: set[int] = set()

    def fire_until(limit: float) -> None:
        nonlocal now, last_start
        while (deadline := race.get_timer()) is not None and deadline <= limit:
            assert delay is not None
            assert deadline == pytest.approx(last_start + delay), "attempt_delay after a start"
            now = deadline
            attempt = race.handle_timer(now)
            assert attempt is not None
            last_start = now
        now = limit

    def check() -> None:
        won = [i for i, s in enumerate(race.states) if s is State.WON]
        assert len(won) <= 1, "never more than one winner"
        assert race.winner == (won[0] if won else None)
        assert winner is None or race.winner == winner, "the winner never changes"
        started = [s is not State.WAITING for s in race.states]
        assert started == sorted(started, reverse=True), "attempts start in order"
        waiting = State.WAITING in race.states
        if race.winner is None and waiting and delay is not None:
            # Silence never lasts longer than attempt_delay before the next is tried.
            timer = race.get_timer()
            assert timer is not None
            assert timer - last_start == pytest.approx(delay)
            assert now < timer
        if race.winner is not None or not waiting:
            assert race.get_timer() is None
        if race.exhausted:
            assert race.winner is None

    for step in steps:
        if step[0] == "wait":
            fire_until(now + step[1])
        elif step[0] == "fail":
            index = step[1]
            if index >= len(spec) or race.states[index] in (State.WAITING, State.SKIPPED):
                with pytest.raises(LocalProtocolError):
                    race.attempt_failed(index, now)
                continue
            nxt = race.attempt_failed(index, now)
            if nxt is not None:
                assert nxt.index == index + 1
                last_start = now
        else:
            _, index, status = step
            if index >= len(spec) or race.states[index] in (State.WAITING, State.SKIPPED):
                with pytest.raises(LocalProtocolError):
                    race.response(index, status, now)
                continue
            before = race.states[index]
            trying = {i for i, s in enumerate(race.states) if s is State.TRYING}
            d = race.response(index, status, now)
            if winner is None and before is State.TRYING:
                assert d.winner == index
                assert set(d.stop) == trying - {index}
                winner = index
            else:
                assert d.stop == ()
            assert (d.action is Action.FORWARD) == (index == race.winner)
            if d.action is Action.CANCEL:
                assert invite
                assert status < 200
                assert index not in cancelled, "CANCEL once per attempt"
                cancelled.add(index)
            if d.action is Action.ACK_BYE:
                assert invite
                assert 200 <= status < 300
                assert index != race.winner
        check()

    # Drain: timers fire and every live transaction ends (times out) eventually.
    for _ in range(4 * len(spec)):
        fire_until(now + 64.0)
        live = [i for i, s in enumerate(race.states) if s in (TR, ST, CA)]
        if not live:
            break
        for index in live:
            if race.attempt_failed(index, now) is not None:
                last_start = now
        check()
    assert race.done, "every attempt ends"
    assert race.winner is not None or race.exhausted
    assert race.get_timer() is None


# ---------------------------------------------------------------------------------------
# Health cache


def test_interleave_keeps_each_family_in_order() -> None:
    ts = targets("66644")
    assert kinds(interleave(ts, [V6, V4])) == "64646"
    assert kinds(interleave(ts, [V4, V6])) == "46466"
    assert interleave(ts, [V4])[:2] == [ts[3], ts[0]]


def test_order_without_failures_is_unchanged() -> None:
    cache = HealthCache()
    ts = targets("6464")
    assert cache.order("example.net", ts, 0.0) == ts


def test_failed_family_goes_second_and_recovers_by_itself() -> None:
    cache = HealthCache(penalty=600.0)
    ts = targets("6464")
    cache.record_failure("example.net", V6, 100.0)
    ordered = cache.order("example.net", ts, 100.0)
    assert ordered == [ts[1], ts[0], ts[3], ts[2]], "IPv4 first, still interleaved"
    assert sorted(map(str, ordered)) == sorted(map(str, ts)), "nothing dropped"
    assert cache.order("other.example", ts, 100.0) == ts, "per destination"
    assert cache.order("example.net", ts, 699.9) == ordered
    assert cache.order("example.net", ts, 700.0) == ts, "the penalty expires"
    assert len(cache) == 0, "expired entries leave the cache"


def test_success_clears_the_penalty() -> None:
    cache = HealthCache()
    ts = targets("64")
    cache.record_failure("h", V6, 0.0)
    cache.record_success("h", V4, 1.0)
    assert kinds(cache.order("h", ts, 1.0)) == "46"
    cache.record_success("h", V6, 2.0)
    assert cache.order("h", ts, 2.0) == ts


def test_a_penalty_on_the_family_already_second_changes_nothing() -> None:
    cache = HealthCache()
    ts = targets("6464")
    cache.record_failure("h", V4, 0.0)
    assert cache.order("h", ts, 1.0) == ts
    swapped = targets("4646")
    assert cache.order("h", swapped, 1.0) == [swapped[i] for i in (1, 0, 3, 2)]


def test_both_failed_the_older_failure_goes_first() -> None:
    cache = HealthCache()
    ts = targets("6464")
    cache.record_failure("h", V4, 0.0)
    cache.record_failure("h", V6, 5.0)
    assert kinds(cache.order("h", ts, 6.0)) == "4646"
    cache.record_failure("h", V4, 7.0)
    assert cache.order("h", ts, 8.0) == ts


def test_one_family_only_is_unchanged() -> None:
    cache = HealthCache()
    cache.record_failure("h", V6, 0.0)
    ts = targets("666")
    assert cache.order("h", ts, 1.0) == ts


def test_memory_is_bounded() -> None:
    cache = HealthCache(penalty=600.0, max_entries=3)
    for i in range(10):
        cache.record_failure(f"h{i}", V6, float(i))
    assert len(cache) == 3
    ts = targets("64")
    assert cache.order("h0", ts, 10.0) == ts, "the oldest entries went first"
    assert kinds(cache.order("h9", ts, 10.0)) == "46"


def test_refreshing_a_failure_moves_it_back() -> None:
    cache = HealthCache(penalty=10.0, max_entries=2)
    cache.record_failure("a", V6, 0.0)
    cache.record_failure("b", V6, 1.0)
    cache.record_failure("a", V6, 2.0)
    cache.record_failure("c", V6, 3.0)
    assert set(cache.penalised("a", 3.0)) == {V6}
    assert cache.penalised("b", 3.0) == {}
    assert cache.penalised("a", 11.9) == {V6: 2.0}
    assert cache.penalised("a", 12.0) == {}


def test_zero_penalty_disables_the_cache() -> None:
    cache = HealthCache(penalty=0.0)
    cache.record_failure("h", V6, 0.0)
    assert cache.order("h", targets("64"), 0.0) == targets("64")
    assert len(cache) == 0
    with pytest.raises(LocalProtocolError):
        HealthCache(penalty=-1.0)
    with pytest.raises(LocalProtocolError):
        HealthCache(max_entries=0)


def test_learn_from_races() -> None:
    cache = HealthCache()
    ts = targets("6464")
    race = UdpRace(ts)
    cache.learn("h", race, 0.0)
    assert len(cache) == 0, "an undecided race teaches nothing"
    race.start(0.0)
    race.handle_timer(0.25)
    race.handle_timer(0.5)
    race.response(2, 100, 0.6)  # IPv6 won in the end, after an IPv4 attempt stayed silent
    cache.learn("h", race, 0.6)
    assert cache.penalised("h", 0.6) == {V4: 0.6}
    race = UdpRace(ts)
    race.start(1.0)
    race.handle_timer(1.25)
    race.response(1, 100, 1.3)  # IPv4 answered, IPv6 stayed silent
    cache.learn("h", race, 1.3)
    assert cache.penalised("h", 1.3) == {V6: 1.3}, "the winner's family is healthy again"
    assert kinds(cache.order("h", ts, 2.0)) == "4646"
    race = UdpRace(cache.order("h", ts, 2.0))
    race.start(2.0)
    race.response(0, 100, 2.1)
    cache.learn("h", race, 2.1)
    assert cache.penalised("h", 2.1) == {V6: 1.3}, "IPv6 is not forgiven by IPv4 answering"


@given(
    spec=st.text(alphabet="46", max_size=8),
    failures=st.lists(st.tuples(st.sampled_from([V4, V6]), st.floats(0.0, 100.0)), max_size=4),
    now=st.floats(0.0, 200.0),
)
def test_order_never_drops_and_keeps_each_family_in_order(
    spec: str, failures: list[tuple[Family, float]], now: float
) -> None:
    cache = HealthCache(penalty=50.0)
    for family, at in sorted(failures, key=lambda f: f[1]):
        cache.record_failure("h", family, at)
    ts = targets(spec)
    ordered = cache.order("h", ts, now)
    assert sorted(ordered, key=ts.index) == ts
    for version in (4, 6):
        mine = [t for t in ts if t.address.version == version]
        assert [t for t in ordered if t.address.version == version] == mine
    penalised = cache.penalised("h", now)
    if ordered and len(set(spec)) == 2 and len(penalised) == 1:
        assert ordered[0].address.version != (6 if V6 in penalised else 4)


def test_race_timers_drive_many_races() -> None:
    timers: RaceTimers[Target] = RaceTimers()
    assert timers.get_timer() is None
    quick, slow = UdpRace(targets("646")), UdpRace(targets("64"), 1.0)
    single = UdpRace(targets("6"))
    for race, at in ((quick, 0.0), (slow, 0.1), (single, 0.2)):
        race.start(at)
        timers.watch(race)
    assert timers.get_timer() == 0.25
    assert timers.handle_timer(0.2) == []
    started = timers.handle_timer(0.3)
    assert [(r, a.index) for r, a in started] == [(quick, 1)]
    assert timers.get_timer() == pytest.approx(0.55)
    quick.response(0, 100, 0.4)  # decided: its pending deadline becomes stale
    assert timers.get_timer() == pytest.approx(1.1)
    nxt = slow.attempt_failed(0, 0.5)  # the failure starts the next at once
    assert nxt is not None and nxt.index == 1
    timers.watch(slow)
    assert timers.get_timer() is None
    assert timers.handle_timer(10.0) == []
    assert len(timers) == 0


def test_the_cache_tells_what_it_learnt_itself_not_what_it_was_told() -> None:
    """``on_change`` (SIP workers share it): a failure, and a success that lifts a
    penalty; a success with no penalty, and whatever arrives with notify=False, are not
    told again (no echo between workers, no datagram per successful call)."""
    cache = HealthCache()
    told: list[tuple[object, object, bool]] = []
    cache.on_change = lambda key, family, works: told.append((key, family, works))
    cache.record_success("h", V4, 0.0)
    assert told == []
    cache.record_failure("h", V6, 1.0)
    assert told == [("h", V6, False)]
    cache.record_success("h", V6, 2.0)
    assert told[1:] == [("h", V6, True)]
    cache.record_failure("g", V6, 3.0, notify=False)
    cache.record_success("g", V6, 4.0, notify=False)
    assert len(told) == 2
    cache.record_failure("g", V4, 5.0, notify=False)
    assert kinds(cache.order("g", targets("46"), 5.0)) == "64", "told, and applied"
