"""Allocation state with a fake clock: permissions, channels, quarantine, deadlines."""

from __future__ import annotations

from ipaddress import ip_address

from rtc64.net.address import Family
from rtc64.net.endpoint import Transport
from rtc64.turn.allocation import COMPACT_MIN, Allocation, Deadlines, peer_family
from rtc64.turn.events import Bind, ClientFlow, Permit, Unbind, Unpermit

CLIENT = ClientFlow(Transport.UDP, (ip_address("2001:db8::1"), 5000), (ip_address("::1"), 3478))
R4 = (ip_address("192.0.2.10"), 50000)
R6 = (ip_address("2001:db8::10"), 50002)
P4 = ip_address("198.51.100.7")
P6 = ip_address("2001:db8:1::7")


def make(now: float = 0.0, lifetime: int = 600) -> Allocation:
    return Allocation(
        CLIENT,
        username="alice",
        transaction_id=b"t" * 12,
        relays={Family.INET: R4, Family.INET6: R6},
        protocol=17,
        lifetime=lifetime,
        now=now,
    )


def test_peer_family_treats_mapped_as_ipv4() -> None:
    assert peer_family(ip_address("::ffff:198.51.100.7")) is Family.INET
    assert peer_family(P4) is Family.INET
    assert peer_family(P6) is Family.INET6


def test_lifetime_and_refresh() -> None:
    a = make(now=100.0)
    assert a.expires == 700.0
    assert a.next_deadline() == 700.0
    a.refresh(1200, 650.0)
    assert a.expires == 1850.0


def test_permission_lasts_300_s_and_refreshes() -> None:
    a = make()
    assert a.permit(P4, 10.0) == Permit(R4, P4, 310.0)
    assert a.permit(P6, 20.0) == Permit(R6, P6, 320.0)
    assert a.permitted(P4, 309.9)
    assert a.next_deadline() == 310.0
    a.permit(P4, 200.0)  # refreshed to 500
    assert a.expire(320.0) == [Unpermit(R6, P6)]
    assert a.permitted(P4, 499.0)
    assert a.expire(500.0) == [Unpermit(R4, P4)]
    assert not a.permitted(P4, 500.0)


def test_permission_ignores_port_and_counts_new_ips() -> None:
    a = make()
    a.permit(P4, 0.0)
    assert a.new_permissions([P4, P4, P6, ip_address("198.51.100.8")]) == 2


def test_channel_bind_refresh_and_expiry_with_quarantine() -> None:
    a = make(lifetime=3600)
    peer = (P4, 4000)
    events = a.bind(0x4000, peer, 0.0)
    assert events == [Permit(R4, P4, 300.0), Bind(R4, CLIENT, 0x4000, peer)]
    # re-bind of the same pair refreshes, no second Bind
    assert a.bind(0x4000, peer, 500.0) == [Permit(R4, P4, 800.0)]
    assert a.channel(0x4000, 1099.0) is not None
    assert a.channel(0x4000, 1100.0) is None
    events = a.expire(1100.0)
    assert Unbind(R4, 0x4000) in events
    # number and peer quarantined for 300 s against other pairs
    assert a.channel_conflict(0x4000, (P4, 4001), 1200.0) is not None
    assert a.channel_conflict(0x4001, peer, 1200.0) is not None
    assert a.channel_conflict(0x4000, peer, 1200.0) is None
    a.expire(1400.0)
    assert a.channel_conflict(0x4000, (P4, 4001), 1400.0) is None


def test_channel_conflicts_while_bound() -> None:
    a = make()
    a.bind(0x4000, (P4, 4000), 0.0)
    assert a.channel_conflict(0x4000, (P4, 4001), 1.0) == "channel already bound to another peer"
    assert a.channel_conflict(0x4001, (P4, 4000), 1.0) == "peer already bound to another channel"
    assert a.channel_conflict(0x4001, (P4, 4001), 1.0) is None


def test_deadlines_keep_the_earliest_and_skip_superseded() -> None:
    d = Deadlines()
    a, b = object(), object()
    d.schedule(10.0, a)
    d.schedule(20.0, a)  # later: ignored
    d.schedule(5.0, b)
    d.schedule(3.0, b)  # earlier: replaces
    assert d.next() == 3.0
    assert d.due(4.0) == [b]
    assert d.next() == 10.0
    d.cancel(a)
    assert d.next() is None
    assert d.due(100.0) == []
    assert len(d) == 0


def test_deadlines_bounded_under_repeated_refresh() -> None:
    d = Deadlines()
    key = object()
    for i in range(10000):
        d.schedule(1000.0 + i, key)  # refreshes only ever extend
    assert len(d._heap) == 1


def test_deadlines_drop_cancelled_entries_behind_a_long_lived_key() -> None:
    """Allocations created and deleted behind one that lives on (its deadline at the top)
    must not pile up on the heap, each keeping its allocation alive until its own time."""
    d = Deadlines()
    first = object()
    d.schedule(10.0, first)
    for i in range(20000):
        key = object()
        d.schedule(600.0 + i, key)
        d.cancel(key)
        assert d.next() == 10.0
    assert len(d) == 1
    assert d.heap_size <= 2 * COMPACT_MIN + 2
    assert d.due(10.0) == [first] and d.next() is None


def test_deadlines_compaction_keeps_every_live_deadline() -> None:
    d = Deadlines()
    keys = [object() for _ in range(2000)]
    for i, key in enumerate(keys):
        d.schedule(float(i), key)
    live = [k for i, k in enumerate(keys) if i % 4 == 1]
    for i, key in enumerate(keys):
        if i % 4 != 1:
            d.cancel(key)  # 1,500 stale against 500 live: rebuilt on the way
    assert d.heap_size < 1000
    for key in live[::2]:
        d.schedule(-1.0, key)  # earlier: supersedes
    assert d.due(-1.0) == live[::2]
    assert d.due(1e9) == live[1::2]
    assert d.next() is None and len(d) == 0


def test_client_flow_is_a_value() -> None:
    """Equal and hashed by its four fields (a plain class for mypyc, as the dataclass was)."""
    remote, local = (ip_address("192.0.2.1"), 5000), (ip_address("192.0.2.9"), 3478)
    a = ClientFlow(Transport.UDP, remote, local)
    same = ClientFlow(Transport.UDP, (ip_address("192.0.2.1"), 5000), local, 0)
    assert a == same and hash(a) == hash(same) and len({a, same}) == 1
    others = (
        ClientFlow(Transport.TCP, remote, local),
        ClientFlow(Transport.UDP, (remote[0], 5001), local),
        ClientFlow(Transport.UDP, remote, (local[0], 3479)),
        ClientFlow(Transport.UDP, remote, local, 7),
    )
    assert all(a != o for o in others) and len({a, *others}) == 5
    assert a != (Transport.UDP, remote, local, 0)
    assert repr(a) == (
        f"ClientFlow(transport={Transport.UDP!r}, remote={remote!r}, local={local!r}, connection=0)"
    )
    assert (a.family, a.stream, others[0].stream) == (Family.INET, False, True)
