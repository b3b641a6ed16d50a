"""What one SIP worker knows of the others' connections and aliases (pure tables)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from rtc64.io.worker_conns import (
    BRANCH_LIFE,
    MAX_BRANCHES,
    PeerConnection,
    PeerConnections,
    SentFor,
)
from rtc64.net.endpoint import Transport

SPAN = 1 << 40
PEER = (IPv4Address("192.0.2.7"), 5061)
PHONE = (IPv6Address("2001:db8::7"), 40000)


def test_tls_reuse_follows_the_name_the_connection_was_checked_for() -> None:
    peers = PeerConnections()
    peers.opened(PeerConnection(1, SPAN + 1, Transport.TLS, PEER, "b.example.net"))
    assert peers.find(Transport.TLS, PEER) is not None  # addressed by IP: any connection
    assert peers.find(Transport.TLS, PEER, "b.example.net") is not None
    assert peers.find(Transport.TLS, PEER, "other.example.net") is None  # RFC 5923 §6
    assert peers.find(Transport.TCP, PEER) is None
    inbound = PeerConnection(1, SPAN + 2, Transport.TLS, (PEER[0], 40001))
    peers.opened(inbound)  # the peer opened it: no domain may use it without an alias
    assert peers.find(Transport.TLS, (PEER[0], 40001), "b.example.net") is None
    assert peers.find(Transport.TLS, (PEER[0], 40001)) == inbound


def test_aliases_come_only_from_the_owner_of_a_tls_connection_and_go_with_it() -> None:
    peers = PeerConnections()
    inbound = PeerConnection(1, SPAN + 2, Transport.TLS, (PEER[0], 40001))
    peers.opened(inbound)
    peers.opened(PeerConnection(0, 5, Transport.TCP, PHONE))
    assert not peers.aliased(0, SPAN + 2, "a.example.net", 5061)  # not worker 0's
    assert not peers.aliased(1, SPAN + 9, "a.example.net", 5061)  # unknown connection
    assert not peers.aliased(0, 5, "a.example.net", 5061)  # not TLS
    assert peers.aliased(1, SPAN + 2, "A.Example.NET.", 5061)
    assert peers.aliases() == {("a.example.net", 5061): SPAN + 2}
    assert peers.find(Transport.TLS, (PEER[0], 5061), "a.example.net") == inbound
    assert peers.find(Transport.TLS, (PEER[0], 5062), "a.example.net") is None
    peers.closed(SPAN + 2)
    assert (
        peers.aliases() == {}
        and peers.find(Transport.TLS, (PEER[0], 5061), "a.example.net") is None
    )
    assert peers.has(Transport.TCP, PHONE)
    assert peers.forget_worker(0) == 1 and not peers.has(Transport.TCP, PHONE) and len(peers) == 0


def test_sent_branches_expire_and_are_bounded() -> None:
    sent = SentFor()
    sent.add(b"z9hG4bK-1", 1, 100.0)
    assert sent.get(b"z9hG4bK-1", 100.0 + BRANCH_LIFE - 1) == 1
    assert sent.get(b"z9hG4bK-1", 100.0 + BRANCH_LIFE) is None
    assert sent.get(b"z9hG4bK-2", 100.0) is None
    for n in range(MAX_BRANCHES + 10):
        sent.add(b"b%d" % n, 2, 200.0)
    assert len(sent) == MAX_BRANCHES and sent.get(b"b0", 200.0) is None
    assert sent.get(b"b%d" % (MAX_BRANCHES + 9), 200.0) == 2
