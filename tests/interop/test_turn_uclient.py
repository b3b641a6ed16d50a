"""coturn's client tools against the TURN server under test, across the lab (issue 10).

The server runs on the gateway host (one leg per family, forwarding off: the only way
across is the relay); ``turnutils_uclient`` runs on the IPv6-only or the IPv4-only host and
exchanges packets with ``turnutils_peer`` (an echo) on the other one. The server under test
is rtc64 (``RTC64_TURN_SERVER=coturn`` runs the same tests against coturn, a check of the
harness). Peers live at private lab addresses, so the server allows exactly the two peer
hosts (``--turn-allow-peer``) and denies everything else as by default.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest

from tests.interop.lab import V4_GW, V4_HOST, V6_GW, V6_HOST, Lab
from tests.interop.turnclient import ADDITIONAL_ADDRESS_FAMILY, DRAFT_ADDITIONAL_ADDRESS_FAMILY
from tests.interop.turnlab import (
    TLS_PORT,
    TURN_PORT,
    Peer,
    TurnServer,
    TurnSetup,
    UclientResult,
    listeners,
    python_client,
    start_turn,
    stunclient,
    uclient,
)

pytestmark = pytest.mark.interop
LAB_TOOLS = ("turnserver", "turnutils_uclient", "turnutils_peer", "turnutils_stunclient", "ss")

USERS = {"alice": "wonderland-7"}
SECRET = "rest-secret-for-the-lab"
PEERS = (f"{V4_HOST}/32", f"{V6_HOST}/128")
MESSAGES = 30


def _setup(**changes: object) -> TurnSetup:
    base: dict[str, object] = {
        "listeners": listeners(V6_GW, V4_GW, protos=("udp", "tcp", "tls")),
        "relays": (V4_GW, V6_GW),
        "users": USERS,
        "allow_peers": PEERS,
    }
    base.update(changes)
    return TurnSetup(**base)  # type: ignore[arg-type]


@pytest.fixture
def server(net: Lab, work: Path) -> TurnServer:
    return start_turn(net.gw, work, _setup())


def _delivered(result: UclientResult, server: TurnServer, expected: int = MESSAGES) -> None:
    """Every packet went out and came back through the relay."""
    assert result.returncode == 0, f"{result}\n--- server\n{server.text()[-3000:]}"
    assert (result.sent, result.received, result.lost) == (expected, expected, 0), str(result)


def _refused(result: UclientResult) -> None:
    """No allocation: uclient retried its Allocate against 401s until it gave up."""
    assert result.returncode != 0, str(result)
    assert (result.relays, result.received) == ((), 0), str(result)
    assert result.errors, str(result)


def test_binding_answered_on_both_families(net: Lab, server: TurnServer) -> None:
    """A STUN server for ICE: the reflexive address is the client's own, per family."""
    assert stunclient(net.v6, V6_GW)[0] == V6_HOST
    assert stunclient(net.v4, V4_GW)[0] == V4_HOST


@pytest.mark.parametrize(
    ("flags", "port"),
    [
        pytest.param(("-c",), TURN_PORT, id="udp-channels"),
        pytest.param(("-c", "-s"), TURN_PORT, id="udp-send-indications"),
        pytest.param(("-c", "-t"), TURN_PORT, id="tcp"),
        pytest.param(("-c", "-t", "-S"), TLS_PORT, id="tls"),
    ],
)
def test_ipv6_only_client_reaches_ipv4_only_peer_through_an_ipv4_relay(
    net: Lab, work: Path, server: TurnServer, flags: tuple[str, ...], port: int
) -> None:
    """No REQUESTED-ADDRESS-FAMILY from an IPv6 client: the relay is IPv4 (RFC 8656 §7.2).
    Over UDP (ChannelData, or Send/Data indications with ``-s``), TCP and TLS (``-S``)."""
    Peer(net.v4, work, V4_HOST)
    result = uclient(
        net.v6,
        V6_GW,
        password=USERS["alice"],
        peer=V4_HOST,
        port=port,
        flags=flags,
        messages=MESSAGES,
    )
    _delivered(result, server)
    assert result.relays, str(result)
    assert {ip for ip, _ in result.relays} == {V4_GW}, str(result)


def test_ipv6_relay_with_requested_address_family(net: Lab, work: Path, server: TurnServer) -> None:
    """``uclient -x`` sends REQUESTED-ADDRESS-FAMILY IPv6: an IPv4-only client gets an
    IPv6 relay and talks to the IPv6-only peer."""
    Peer(net.v6, work, V6_HOST)
    result = uclient(
        net.v4, V4_GW, password=USERS["alice"], peer=V6_HOST, flags=("-c", "-x"), messages=MESSAGES
    )
    _delivered(result, server)
    assert result.relays, str(result)
    assert {ip for ip, _ in result.relays} == {V6_GW}, str(result)


def test_dual_allocation_with_uclient(net: Lab, work: Path, server: TurnServer) -> None:
    """``uclient -Z`` sends ADDITIONAL-ADDRESS-FAMILY: one allocation, a relay of each
    family (``-x`` makes uclient print both and use the IPv6 one)."""
    Peer(net.v6, work, V6_HOST)
    result = uclient(
        net.v6, V6_GW, password=USERS["alice"], peer=V6_HOST, flags=("-Z", "-x"), messages=MESSAGES
    )
    _delivered(result, server)
    families = {ip.version for ip, _ in result.relays}
    assert families == {4, 6}, str(result)
    assert {ip for ip, _ in result.relays} == {V4_GW, V6_GW}, str(result)


def test_dual_allocation_relays_to_both_families(net: Lab, work: Path, server: TurnServer) -> None:
    """The Python client's dual allocation from the IPv4-only host: Send indications reach
    the IPv4 peer and the IPv6 peer, and their echoes come back as Data indications."""
    Peer(net.v4, work, V4_HOST)
    Peer(net.v6, work, V6_HOST)
    job = {
        "server": [str(V4_GW), 3478],
        "username": "alice",
        "password": USERS["alice"],
        "allocate": {"additional": True, "additional_type": _additional(server)},
        "echo": [[str(V4_HOST), 3480, 10], [str(V6_HOST), 3480, 10]],
    }
    result = python_client(net.v4, job)
    assert result["allocate"] == 0, result
    relayed = {(IPv4Address(a) if "." in a else IPv6Address(a)) for a, _ in result["relayed"]}
    assert relayed == {V4_GW, V6_GW}, result
    assert result["echo"] == {str(V4_HOST): 10, str(V6_HOST): 10}, (result, server.text()[-3000:])
    assert result["refresh0"] == 0, result


def test_first_send_indication_after_allocate_reaches_the_peer(
    net: Lab, work: Path, server: TurnServer
) -> None:
    """Eight fresh allocations, each sending one Send indication right after its
    CreatePermission: every one reaches the IPv4 peer and its echo comes back."""
    Peer(net.v4, work, V4_HOST)
    job = {
        "server": [str(V6_GW), 3478],
        "username": "alice",
        "password": USERS["alice"],
        "echo": [[str(V4_HOST), 3480, 1]],
        "echo_wait": 3.0,
    }
    results = python_client(net.v6, [job] * 8)
    echoed = [r["echo"][str(V4_HOST)] for r in results]
    assert echoed == [1] * 8, f"echoes per allocation: {echoed}\n{server.text()[-2000:]}"


def _additional(server: TurnServer) -> int:
    """ADDITIONAL-ADDRESS-FAMILY's RFC 8656 codepoint; coturn 4.6 knows only the draft's."""
    return DRAFT_ADDITIONAL_ADDRESS_FAMILY if server.kind == "coturn" else ADDITIONAL_ADDRESS_FAMILY


def test_tcp_relay_rfc6062(net: Lab, work: Path) -> None:
    """``uclient -T``: two clients with TCP allocations (RFC 6062) Connect to each other's
    relayed address; the peer is the server's own IPv4 relay address, which only the
    lab's allow-list makes a permitted peer."""
    server = start_turn(net.gw, work, _setup(allow_peers=(*PEERS, f"{V4_GW}/32")))
    result = uclient(net.v6, V6_GW, password=USERS["alice"], flags=("-T",), messages=10)
    _delivered(result, server, expected=20)
    assert {ip for ip, _ in result.relays} == {V4_GW}, str(result)


def test_rest_secret_credentials(net: Lab, work: Path) -> None:
    """TURN REST credentials (``expiry:user``, HMAC-SHA1 of the secret) as ``uclient -W``
    computes them; a client with another secret gets no allocation."""
    server = start_turn(net.gw, work, _setup(users={}, secret=SECRET))
    Peer(net.v4, work, V4_HOST)
    good = uclient(net.v6, V6_GW, secret=SECRET, peer=V4_HOST, messages=MESSAGES)
    _delivered(good, server)
    assert {ip for ip, _ in good.relays} == {V4_GW}, str(good)
    bad = uclient(net.v6, V6_GW, secret="not-the-secret", peer=V4_HOST, messages=5, timeout=20)
    _refused(bad)


def test_wrong_password_gets_no_allocation(net: Lab, work: Path, server: TurnServer) -> None:
    Peer(net.v4, work, V4_HOST)
    result = uclient(net.v6, V6_GW, password="wrong", peer=V4_HOST, messages=5, timeout=20)
    _refused(result)


def test_allocations_freed_at_once_leave_no_error(net: Lab, server: TurnServer) -> None:
    """100 clients each Allocate and at once Refresh with lifetime 0 (as Chromium does when
    a page closes early): every step succeeds and the server logs no error for it."""
    job = {"server": [str(V6_GW), 3478], "username": "alice", "password": USERS["alice"]}
    results = python_client(net.v6, [job] * 100)
    assert [(r["allocate"], r["refresh0"]) for r in results] == [(0, 0)] * 100, results[:3]
    errors = [line for line in server.text().splitlines() if " ERROR " in line]
    assert not errors, "\n".join(errors[:10])
