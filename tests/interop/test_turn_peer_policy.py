"""The TURN peer policy over every listener transport and both client families (issue 10).

Deny by default, stricter than coturn: a CreatePermission (UDP, TCP and TLS listeners, the
client on the IPv6-only and on the IPv4-only host) and an RFC 6062 Connect (TCP and TLS)
to any address of the table gets 403 — loopback, unspecified, private, CGNAT, link-local,
metadata, multicast, broadcast, documentation, benchmarking, ULA, site-local, the server's
own listener and relay addresses, every IPv4 address wrapped in IPv6 (mapped, compatible,
NAT64 /96 and /48, 6to4, Teredo) judged as the IPv4 inside, and configured deny ranges not
aligned to bytes (CVE-2020-26262, CVE-2026-27624, CVE-2026-53450, CVE-2026-73212,
CVE-2026-73213). Public-like addresses and the allow-listed lab peer are permitted; a
Connect to the allow-listed peer reaches its TCP listener.

The server's relay addresses are public-like addresses on the gateway
namespace's loopback (never routed anywhere), so "own address" is tested on its own, not as private.
``test_harness_against_coturn`` (last: it stops the module's server) runs the same client
against coturn and checks what coturn is known to answer (LAB-NOTES), a check of the
harness itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

import pytest

from tests.interop.lab import V4_GW, V4_HOST, V6_GW, Host, Lab
from tests.interop.turnclient import TCP, UDP
from tests.interop.turnlab import (
    SERVER_UNDER_TEST,
    TurnServer,
    TurnSetup,
    listeners,
    python_client,
    start_turn,
)

pytestmark = pytest.mark.interop
LAB_TOOLS = ("turnserver", "ss")

PUBLIC4, PUBLIC6 = IPv4Address("11.64.0.1"), IPv6Address("3001:64::1")
USERS = {"alice": "wonderland-7"}
CONNECT_PORT = 4480
DENY = ("203.0.113.0/25", "11.64.1.0/25", "3001:64:0:8000::/49")
ALLOW = (f"{V4_HOST}/32",)

DENIED_V4 = (
    "127.0.0.1", "127.255.255.254", "0.0.0.0", "0.1.2.3",  # loopback, this network
    "10.1.2.3", "172.16.5.4", "172.31.255.254", "192.168.1.1",  # RFC 1918
    "100.64.0.1", "100.127.255.254",  # CGNAT
    "169.254.169.254", "169.254.1.1",  # metadata, link-local
    "224.0.0.1", "239.255.255.250", "255.255.255.255",  # multicast, broadcast
    "192.0.2.1", "198.51.100.7", "203.0.113.9",  # documentation
    "198.18.0.1", "198.19.255.254",  # benchmarking
    str(V4_GW), str(PUBLIC4),  # the server's own listener and relay addresses
    "11.64.1.5", "11.64.1.127", "203.0.113.100",  # deny ranges (/25)
    "10.64.4.3",  # next to the allow-listed peer
)  # fmt: skip
DENIED_V6 = (
    "::1", "::",  # loopback, unspecified
    "::127.0.0.1", "::a00:1",  # IPv4-compatible
    "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b:1:7f00:0:100::",  # NAT64 /96, /48
    "2002:7f00:1::1", "2002:a00:1::1",  # 6to4 of 127.0.0.1, 10.0.0.1
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo client 127.0.0.1
    "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo client 10.0.0.1
    "fe80::1", "fc00::1", "fd12:3456::1", "fec0::1",  # link-local, ULA, site-local
    "ff02::1", "ff0e::1",  # multicast
    "2001:db8::1", "2001:2::1",  # documentation, benchmarking
    str(V6_GW), str(PUBLIC6),  # own listener and relay addresses
    "64:ff9b::b40:1",  # own relay address wrapped in IPv6
    "3001:64:0:8000::1", "3001:64:0:ffff::1",  # deny ranges
)  # fmt: skip
MAPPED = (
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:0.0.0.0", "::ffff:169.254.169.254",
    "::ffff:11.64.0.1", "::ffff:11.64.1.5",  # own relay address, deny range
)  # fmt: skip
"""IPv4-mapped peers (CVE-2026-27624, CVE-2026-53450), sent on an IPv6 allocation: the
attribute's family is IPv6, so RFC 8656 §9.1's family check (443) passes and the policy
must answer 403."""
PERMITTED_V4 = ("11.64.0.2", "11.64.1.128", "11.64.1.200", str(V4_HOST))
PERMITTED_V6 = ("3001:64::2", "3001:64:0:7fff::1")


@pytest.fixture(scope="module")
def public(net: Lab) -> Lab:
    """Public-like addresses for the server's relays on the gateway's loopback (no dummy
    interfaces on this kernel; the namespace has no uplink, nothing routes them out)."""
    net.gw.run("ip", "-4", "addr", "add", f"{PUBLIC4}/32", "dev", "lo")
    net.gw.run("ip", "-6", "addr", "add", f"{PUBLIC6}/128", "dev", "lo", "nodad")
    return net


def _setup() -> TurnSetup:
    return TurnSetup(
        listeners(V6_GW, V4_GW, protos=("udp", "tcp", "tls")),
        (PUBLIC4, PUBLIC6),
        users=USERS,
        allow_peers=ALLOW,
        deny_peers=DENY,
    )


@pytest.fixture(scope="module")
def server(public: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TurnServer]:
    """One server and one TCP peer for the whole table (the tests take no ``work``, whose
    teardown would stop them); the lab stops both at the end of the module."""
    workdir = tmp_path_factory.mktemp("turn-policy")
    _tcp_listener(public, workdir)
    yield start_turn(public.gw, workdir, _setup())


def _client(net: Lab, family: int) -> tuple[Host, str]:
    return (net.v6, str(V6_GW)) if family == 6 else (net.v4, str(V4_GW))


def _port(transport: str) -> int:
    return 5349 if transport == "tls" else 3478


def _jobs(
    server: str,
    transport: str,
    relay_transport: int,
    key: str,
    tables: tuple[tuple[str, ...], ...] = (DENIED_V4, PERMITTED_V4, DENIED_V6, PERMITTED_V6),
) -> list[dict[str, Any]]:
    """One allocation per relay family, each with the table of its family."""
    jobs = []
    denied4, permitted4, denied6, permitted6 = tables
    for family, denied, permitted in ((4, denied4, permitted4), (6, denied6, permitted6)):
        job: dict[str, Any] = {
            "server": [server, _port(transport)],
            "transport": transport,
            "username": "alice",
            "password": USERS["alice"],
            "allocate": {"transport": relay_transport, "family": family},
        }
        if key == "permissions":
            job["permissions"] = [*denied, *permitted]
        else:
            job["connects"] = [[peer, CONNECT_PORT] for peer in denied]
            if family == 4:
                job["connects"].append([str(V4_HOST), CONNECT_PORT])
        jobs.append(job)
    return jobs


def _tcp_listener(net: Lab, work: Path) -> None:
    """A TCP peer on the IPv4-only host that accepts and holds connections."""
    code = (
        "import socket,time\n"
        f"s=socket.create_server(('{V4_HOST}',{CONNECT_PORT}))\n"
        "held=[]\n"
        "while True: held.append(s.accept())\n"
    )
    net.v4.popen(["python3", "-c", code], log=work / "tcp-peer.log")
    wait = f"for i in $(seq 100); do ss -Hltn | grep -q :{CONNECT_PORT} && exit 0; sleep 0.05; done"
    net.v4.run("sh", "-c", wait + "; exit 1")


def _bad(results: list[dict[str, Any]], key: str, expect: dict[str, int]) -> dict[str, Any]:
    got: dict[str, int] = {}
    for result in results:
        assert result["allocate"] == 0, result
        got.update(result[key])
    return {peer: (got.get(peer), code) for peer, code in expect.items() if got.get(peer) != code}


@pytest.mark.skipif(SERVER_UNDER_TEST != "rtc64", reason="the deny table is rtc64's policy")
@pytest.mark.parametrize("family", [6, 4], ids=["ipv6-client", "ipv4-client"])
@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_create_permission_table(
    public: Lab, server: TurnServer, transport: str, family: int
) -> None:
    host, address = _client(public, family)
    results = python_client(host, _jobs(address, transport, UDP, "permissions"))
    expect = dict.fromkeys((*DENIED_V4, *DENIED_V6), 403)
    expect |= dict.fromkeys((*PERMITTED_V4, *PERMITTED_V6), 0)
    wrong = _bad(results, "permissions", expect)
    assert not wrong, f"(got, expected) per peer: {wrong}\n{server.text()[-2000:]}"


@pytest.mark.skipif(SERVER_UNDER_TEST != "rtc64", reason="the deny table is rtc64's policy")
@pytest.mark.parametrize("family", [6, 4], ids=["ipv6-client", "ipv4-client"])
@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_rfc6062_connect_table(
    public: Lab, server: TurnServer, transport: str, family: int
) -> None:
    """Connect is judged like CreatePermission: 403, never a connection attempt (447) or
    a 500 as coturn answers for some of these; the allow-listed peer is connected. The
    client sends a CreatePermission before each Connect, as real clients do (RFC 6062
    servers may require it), so the Connect meets the policy with or without one."""
    host, address = _client(public, family)
    results = python_client(host, _jobs(address, transport, TCP, "connects"))
    expect = dict.fromkeys((*DENIED_V4, *DENIED_V6), 403) | {str(V4_HOST): 0}
    wrong = _bad(results, "connects", expect)
    assert not wrong, f"(got, expected) per peer: {wrong}\n{server.text()[-2000:]}"


@pytest.mark.skipif(SERVER_UNDER_TEST != "rtc64", reason="the deny table is rtc64's policy")
@pytest.mark.parametrize(
    ("transport", "relay", "key"),
    [
        ("udp", UDP, "permissions"),
        ("tcp", UDP, "permissions"),
        ("tls", UDP, "permissions"),
        ("tcp", TCP, "connects"),
        ("tls", TCP, "connects"),
    ],
    ids=["udp-permission", "tcp-permission", "tls-permission", "tcp-connect", "tls-connect"],
)
def test_ipv4_mapped_peers_get_403(
    public: Lab, server: TurnServer, transport: str, relay: int, key: str
) -> None:
    host, address = _client(public, 6)
    job = _jobs(address, transport, relay, key, ((), (), MAPPED, ()))[1]
    wrong = _bad([python_client(host, job)], key, dict.fromkeys(MAPPED, 403))
    assert not wrong, f"(got, expected) per peer: {wrong}"


def test_harness_against_coturn(public: Lab, work: Path) -> None:
    """The same client and table against coturn 4.6: the answers LAB-NOTES records
    (loopback and configured ranges refused, RFC 1918/CGNAT/wrapped addresses allowed;
    on Connect 447 or 500 for ::127.0.0.1 and ::ffff:127.0.0.1), so the harness can tell
    a 403 from a success and from other errors."""
    for host in public.hosts:  # the module's rtc64 server and TCP peer, if they ran
        host.stop_all()
    coturn = start_turn(public.gw, work, _setup(), kind="coturn")
    _tcp_listener(public, work)
    host, address = _client(public, 6)
    perms = python_client(host, _jobs(address, "udp", UDP, "permissions"))
    wrong = _bad(
        perms,
        "permissions",
        {"127.0.0.1": 403, "11.64.1.5": 403, "10.1.2.3": 0, "100.64.0.1": 0, "11.64.0.2": 0}
        | {"::1": 403, "64:ff9b::7f00:1": 0, "2002:7f00:1::1": 0, "3001:64:0:8000::1": 403},
    )
    assert not wrong, f"{wrong}\n{coturn.text()[-2000:]}"
    tables = (("127.0.0.1",), (), ("::127.0.0.1", "::ffff:127.0.0.1"), ())
    connects = python_client(host, _jobs(address, "tcp", TCP, "connects", tables))
    got: dict[str, int] = {}
    for result in connects:
        got.update(result["connects"])
    assert got["127.0.0.1"] == 403 and got[str(V4_HOST)] == 0, (got, coturn.text()[-2000:])
    # Wrapped loopback is not refused but attempted or failed (447 or 500 by coturn's luck).
    assert got["::127.0.0.1"] in (447, 500) and got["::ffff:127.0.0.1"] in (447, 500), got
