"""The client state machine driven against the server core, with a fake clock."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, IPv6Network

from hypothesis import given
from hypothesis import strategies as st

from rtc64.tunnel import client as tc
from rtc64.tunnel import packet as ip
from rtc64.tunnel import tsp
from rtc64.tunnel.server import ServerSettings, ToUdp, TunnelServer

SETTINGS = ServerSettings(IPv6Network("fd00:64::/64"), IPv4Address("192.0.2.1"), keepalive=10)
NAT = (IPv4Address("198.51.100.7"), 40000)


def _run(
    client: tc.TunnelClient,
    server: TunnelServer,
    out: list[bytes],
    now: float,
    nat: tuple[IPv4Address, int] = NAT,
) -> list[tc.Event]:
    events: list[tc.Event] = []
    while out:
        data = out.pop(0)
        assert len(data) >= tsp.REQUEST_SIZE or not tsp.is_signalling(data)
        for action in server.from_udp(data, nat, now):
            assert isinstance(action, ToUdp) and action.addr == nat
            more, evs = client.receive(action.data, now)
            out += more
            events += evs
    return events


def test_exchange_keepalive_and_remap() -> None:
    server = TunnelServer(SETTINGS)
    client = tc.TunnelClient()
    events = _run(client, server, client.start(0.0), 0.0)
    assert client.state is tc.State.UP
    (info,) = events
    assert isinstance(info, tc.Configured)
    assert info.address == server.mapping.client_address(*NAT)
    assert (info.interval, info.keepalive) == (10, IPv6Address("fd00:64::1"))
    assert client.get_timer() == 10.0
    out, _ = client.handle_timer(10.0)
    assert _run(client, server, out, 10.0) == [] and server.counters.keepalives == 1
    # the NAT changes the mapping: the server answers code 5, the client re-runs
    moved = (NAT[0], 40001)
    out, _ = client.handle_timer(20.0)
    events = _run(client, server, out, 20.0, nat=moved)
    assert client.restarts == 1 and client.state is tc.State.UP
    (info2,) = events
    assert isinstance(info2, tc.Configured)
    assert info2.address == server.mapping.client_address(*moved)


def test_missed_keepalives_rerun() -> None:
    server = TunnelServer(SETTINGS)
    client = tc.TunnelClient()
    _run(client, server, client.start(0.0), 0.0)
    for t in (10.0, 20.0, 30.0):
        out, _ = client.handle_timer(t)  # replies lost
        assert len(out) == 1
    out, _ = client.handle_timer(40.0)
    assert client.state is tc.State.VERSION and client.restarts == 1
    assert _run(client, server, out, 40.0) == []  # same address: no new Configured
    assert client.state is tc.State.UP


def test_retransmit_then_fail() -> None:
    client = tc.TunnelClient()
    first = client.start(0.0)
    now = 0.0
    for _ in range(tc.MAX_TRIES - 1):
        now = client.get_timer() or 0.0
        out, events = client.handle_timer(now)
        assert out == first and events == []
    out, events = client.handle_timer(client.get_timer() or 0.0)
    assert out == [] and isinstance(events[0], tc.Failed) and client.get_timer() is None


def test_error_status_and_stale_answers() -> None:
    client = tc.TunnelClient()
    client.start(0.0)
    stale = tsp.Header(client.sequence + 5, 0).encode() + b"CAPABILITY X\r\n"
    assert client.receive(stale, 0.0) == ([], [])
    bad = tsp.Header(client.sequence, 0).encode() + b"CAPABILITY TUNNEL=V6V4 AUTH=PLAIN\r\n"
    _, events = client.receive(bad, 0.0)
    assert isinstance(events[0], tc.Failed) and client.state is tc.State.FAILED
    garbage = tc.TunnelClient()
    garbage.start(0.0)
    _, events = garbage.receive(tsp.Header(garbage.sequence, 0).encode() + b"\xff\r\n", 0.0)
    assert isinstance(events[0], tc.Failed) and events[0].status == 500


def test_data_both_ways() -> None:
    server = TunnelServer(SETTINGS)
    client = tc.TunnelClient()
    assert client.outbound(b"x") is None
    _run(client, server, client.start(0.0), 0.0)
    assert client.info is not None
    peer = IPv6Address("2001:db8::5")
    pkt = ip.echo(peer, client.info.address, 1, 1, b"hi", reply=False)
    (down,) = server.from_tun(pkt, 1.0)
    assert isinstance(down, ToUdp)
    assert client.receive(down.data, 1.0) == ([], [tc.Inbound(pkt)])
    assert client.outbound(pkt) == pkt


@given(st.binary(max_size=1500), st.sampled_from(["start", "up"]))
def test_fuzz_client_receive(data: bytes, when: str) -> None:
    client = tc.TunnelClient()
    if when == "up":
        _run(client, TunnelServer(SETTINGS), client.start(0.0), 0.0)
    else:
        client.start(0.0)
    _, events = client.receive(data, 1.0)  # never raises
    for event in events:
        assert isinstance(event, tc.Inbound | tc.Failed)


def test_renewed_before_the_lifetime_ends() -> None:
    settings = ServerSettings(SETTINGS.prefix, SETTINGS.server_ipv4, lifetime=100, keepalive=10)
    server = TunnelServer(settings)
    client = tc.TunnelClient()
    _run(client, server, client.start(0.0), 0.0)
    now = 0.0
    while client.restarts == 0:
        now = client.get_timer() or 0.0
        out, _ = client.handle_timer(now)
        _run(client, server, out, now)  # keepalives answered: only the lifetime renews
    assert 90.0 <= now <= 100.0 and client.state is tc.State.UP
    assert server.counters.tunnels_created == 2
