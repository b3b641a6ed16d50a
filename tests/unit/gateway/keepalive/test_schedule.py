"""The keepalive schedule on a fake clock: intervals, spreading, OPTIONS, failures."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import replace
from ipaddress import ip_address

import pytest

from rtc64.gateway.keepalive.schedule import (
    AddressChanged,
    ContactState,
    KeepaliveSettings,
    Reachable,
    SendOptions,
    SendPing,
    Target,
    Unreachable,
)
from rtc64.net.endpoint import Transport

from .helpers import WALL, binding, first, run, schedule

NO_OPTIONS = {"options_interval": 0.0}


def pings(actions: list[tuple[float, object]]) -> list[float]:
    return [t for t, a in actions if isinstance(a, SendPing)]


def test_pings_keep_within_the_interval_from_the_registered_listener() -> None:
    s = schedule(**NO_OPTIONS)
    b = binding()
    s.add(b, 0.0, WALL)
    got = run(s, 1000.0)
    times = pings(got)
    assert len(times) >= 1000 / 25
    assert times[0] <= 25.0 + 0.02
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 25.0 * 0.9 - 0.02
    assert max(gaps) <= 25.0 + 0.02
    target = got[0][1].target  # type: ignore[attr-defined]
    assert target == Target(Transport.UDP, "udp:[::]:5060", (ip_address("2001:db8::10"), 5070))
    assert not [a for _, a in got if not isinstance(a, SendPing)]


def test_many_contacts_added_at_once_are_spread_not_burst() -> None:
    s = schedule(**NO_OPTIONS)
    for n in range(2500):
        s.add(binding(n, ip=f"10.0.{n // 250}.{n % 250 + 1}"), 0.0, WALL)
    per_second = Counter(int(t) for t in pings(run(s, 100.0)))
    mean = 2500 / 25 * 0.95  # gaps average 0.95 x interval with 10 % jitter
    assert all(per_second[sec] >= mean * 0.6 for sec in range(100))
    assert max(per_second.values()) <= mean * 1.6
    assert sum(per_second.values()) >= 2500 * 100 / 25


def test_the_driver_fires_at_most_once_per_slot() -> None:
    s = schedule(**NO_OPTIONS, resolution=0.5)
    for n in range(200):
        s.add(binding(n), 0.0, WALL)
    fired = []
    when = s.get_timer()
    while when is not None and when < 100:
        fired.append(when)
        s.handle_timer(when)
        when = s.get_timer()
    assert len(fired) == len(set(fired)) <= 100 / 0.5 + 1


def test_options_answered_record_rtt_and_reachability() -> None:
    s = schedule(options_interval=120.0)
    b = binding()
    s.add(b, 0.0, WALL)
    t, opt = first(s, SendOptions, 121.0)
    assert isinstance(opt, SendOptions) and opt.binding == b and opt.token == b"tok1"
    assert s.outstanding == 1
    assert s.status((b.aor, b.contact)).state is ContactState.UNKNOWN  # type: ignore[union-attr]
    reply = s.on_reply(b"tok1", 200, Transport.UDP, (b.received_ip, 5070), t + 0.042)
    assert reply == [Reachable(b, pytest.approx(0.042), again=False)]  # type: ignore[arg-type]
    status = s.status((b.aor, b.contact))
    assert status is not None and status.state is ContactState.REACHABLE
    assert status.rtt == pytest.approx(0.042)
    assert s.outstanding == 0
    # the token is used once: a replayed answer is stray
    assert s.on_reply(b"tok1", 200, Transport.UDP, (b.received_ip, 5070), t + 1) == []
    assert s.stats.stray_replies == 1 and s.stats.replies == 1


def test_options_every_interval_and_each_refreshes_the_pinhole() -> None:
    s = schedule(options_interval=60.0, interval=25.0)
    b = binding()
    s.add(b, 0.0, WALL)
    got = run(s, 600.0)
    sends = sorted(t for t, a in got if isinstance(a, SendPing | SendOptions))
    options = [t for t, a in got if isinstance(a, SendOptions)]
    assert 600 / 60 <= len(options) <= 600 / 54 + 1
    gaps = [b - a for a, b in itertools.pairwise(sends)]
    assert max(gaps) <= 25.0 + 0.02  # no send leaves the pinhole unrefreshed longer


def test_unanswered_options_make_the_contact_unreachable_once_counted() -> None:
    s = schedule(options_interval=30.0, max_failures=3, options_timeout=5.0)
    b = binding()
    s.add(b, 0.0, WALL)
    got = run(s, 30.0 * 5)
    unreachable = [(t, a) for t, a in got if isinstance(a, Unreachable)]
    assert unreachable, "three unanswered OPTIONS must make the contact unreachable"
    first = unreachable[0][1]
    assert isinstance(first, Unreachable) and first.binding == b and first.failures == 3
    options_before = [t for t, a in got if isinstance(a, SendOptions) and t < unreachable[0][0]]
    assert len(options_before) == 3
    assert s.status((b.aor, b.contact)).state is ContactState.UNREACHABLE  # type: ignore[union-attr]
    assert s.stats.unreachable == 1  # counted once even though removal is asked again
    assert len(unreachable) >= 2  # the removal is asked again while the binding stays
    assert s.stats.timeouts >= 4


def test_an_answer_in_between_resets_the_failure_count() -> None:
    s = schedule(options_interval=30.0, max_failures=2, options_timeout=5.0)
    b = binding()
    s.add(b, 0.0, WALL)
    now = 0.0
    for n in range(8):  # answer every other OPTIONS: never two failures in a row
        now, opt = first(s, SendOptions, now + 31.0)
        assert isinstance(opt, SendOptions)
        if n % 2:
            s.on_reply(opt.token, 200, Transport.UDP, (b.received_ip, 5070), now + 0.1)
    assert s.stats.unreachable == 0 and s.stats.timeouts >= 3


def test_a_reregistration_resets_an_unreachable_contact() -> None:
    s = schedule(options_interval=10.0, max_failures=1, options_timeout=2.0)
    b = binding()
    s.add(b, 0.0, WALL)
    run(s, 30.0)
    assert s.status((b.aor, b.contact)).state is ContactState.UNREACHABLE  # type: ignore[union-attr]
    t, opt = first(s, SendOptions, 40.0)
    assert isinstance(opt, SendOptions)
    again = s.on_reply(opt.token, 200, Transport.UDP, (b.received_ip, 5070), t)
    assert [(type(a), getattr(a, "again", None)) for a in again] == [(Reachable, True)]
    run(s, 70.0)  # unreachable again
    s.set_aor(b.aor, [replace(b, cseq=2)], 70.0, WALL + 70)
    status = s.status((b.aor, b.contact))
    assert status is not None and status.state is ContactState.UNKNOWN and status.failures == 0


def test_provisional_answers_do_not_end_the_wait() -> None:
    s = schedule(options_interval=10.0, options_timeout=5.0, max_failures=1)
    b = binding()
    s.add(b, 0.0, WALL)
    t, opt = first(s, SendOptions, 10.0)
    assert isinstance(opt, SendOptions)
    s.on_reply(opt.token, 100, Transport.UDP, (b.received_ip, 5070), t + 0.1)
    assert s.outstanding == 1
    s.on_reply(opt.token, 404, Transport.UDP, (b.received_ip, 5070), t + 0.2)
    assert s.outstanding == 0  # any final answer proves the contact alive
    assert s.status((b.aor, b.contact)).state is ContactState.REACHABLE  # type: ignore[union-attr]


def test_an_answer_from_a_new_source_moves_the_target() -> None:
    s = schedule(options_interval=10.0)
    b = binding(ip="10.0.0.5", port=5070)
    s.add(b, 0.0, WALL)
    t, opt = first(s, SendOptions, 10.0)
    assert isinstance(opt, SendOptions)
    new = (ip_address("10.0.0.9"), 40000)
    actions = s.on_reply(opt.token, 200, Transport.UDP, new, t)
    assert actions[1:] == [AddressChanged(b, new)] and isinstance(actions[0], Reachable)
    later = [a for _, a in run(s, 60.0) if isinstance(a, SendPing | SendOptions)]
    assert later and all(a.target.remote == new for a in later)
    assert s.stats.address_changes == 1


@pytest.mark.parametrize(
    ("transport", "source"),
    [
        (Transport.UDP, (ip_address("2001:db8::66"), 5070)),  # other family
        (Transport.TCP, (ip_address("10.0.0.5"), 5070)),  # other transport
    ],
)
def test_answers_from_another_family_or_transport_are_stray(
    transport: Transport, source: tuple[object, int]
) -> None:
    s = schedule(options_interval=10.0)
    b = binding(ip="10.0.0.5")
    s.add(b, 0.0, WALL)
    t, opt = first(s, SendOptions, 10.0)
    assert isinstance(opt, SendOptions)
    assert s.on_reply(opt.token, 200, transport, source, t) == []  # type: ignore[arg-type]
    assert s.stats.stray_replies == 1 and s.outstanding == 1
    assert s.status((b.aor, b.contact)).target.remote[0] == ip_address("10.0.0.5")  # type: ignore[union-attr]


def test_unknown_tokens_are_stray() -> None:
    s = schedule()
    assert s.on_reply(b"forged", 200, Transport.UDP, (ip_address("10.0.0.1"), 1), 0.0) == []
    assert s.stats.stray_replies == 1


def test_the_token_table_is_bounded() -> None:
    s = schedule(options_interval=100.0, options_timeout=99.0, max_outstanding=3)
    for n in range(20):
        s.add(binding(n), 0.0, WALL)
    run(s, 98.0)  # nothing has timed out yet
    assert s.outstanding == 3
    assert s.stats.options == 3 and s.stats.deferred >= 10


def test_set_aor_drops_contacts_no_longer_registered() -> None:
    s = schedule()
    a, b = binding(1), replace(binding(2), aor=binding(1).aor)
    s.set_aor(a.aor, [a, b], 0.0, WALL)
    assert len(s) == 2
    s.set_aor(a.aor, [b], 1.0, WALL + 1)
    assert len(s) == 1 and s.status((a.aor, a.contact)) is None
    s.set_aor(a.aor, [], 2.0, WALL + 2)
    assert len(s) == 0
    assert all(isinstance(x, SendPing) is False for _, x in run(s, 100.0))


def test_a_changed_target_forgets_the_outstanding_options() -> None:
    s = schedule(options_interval=10.0)
    b = binding(ip="10.0.0.5")
    s.add(b, 0.0, WALL)
    t, opt = first(s, SendOptions, 10.0)
    assert isinstance(opt, SendOptions)
    moved = replace(b, received_ip=ip_address("10.0.0.6"), cseq=2)
    s.set_aor(b.aor, [moved], t, WALL + t)
    assert s.outstanding == 0
    assert s.on_reply(opt.token, 200, Transport.UDP, (b.received_ip, 5070), t) == []
    assert s.stats.stray_replies == 1


def test_expired_bindings_leave_the_schedule() -> None:
    s = schedule(**NO_OPTIONS)
    b = binding(expires_at=WALL + 60)
    s.add(b, 0.0, WALL)
    got = run(s, 300.0)
    assert len(s) == 0
    assert max(pings(got)) < 60.0
    s.add(replace(b, expires_at=WALL - 1), 0.0, WALL)  # already expired: not tracked
    assert len(s) == 0


def test_bindings_that_cannot_be_kept_open_from_here_are_not_tracked() -> None:
    s = schedule()
    s.add(binding(1, path=(b"<sip:edge.example.net;lr>",)), 0.0, WALL)
    s.add(binding(2, received_ip=None, received_port=None), 0.0, WALL)
    assert len(s) == 0 and s.get_timer() is None


def test_removed_contacts_are_skipped_when_their_slot_comes() -> None:
    s = schedule(**NO_OPTIONS)
    b = binding()
    s.add(b, 0.0, WALL)
    assert s.remove((b.aor, b.contact))
    assert not s.remove((b.aor, b.contact))
    assert run(s, 100.0) == []


@pytest.mark.parametrize(
    "kw",
    [
        {"interval": 0.0},
        {"interval": float("nan")},
        {"options_interval": -1.0},
        {"max_failures": 0},
        {"jitter": 1.0},
        {"payload": b""},
        {"payload": b"x" * 513},
        {"max_outstanding": 0},
    ],
)
def test_bad_settings_are_refused(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        KeepaliveSettings(**kw)  # type: ignore[arg-type]
