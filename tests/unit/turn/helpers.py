"""Fakes for the TURN core's collaborators and a small test client speaking rtc64.stun."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from typing import Any, Literal

from rtc64.net.address import Family, IPAddress
from rtc64.net.endpoint import Transport
from rtc64.stun.attributes import (
    ERROR_CODE,
    NONCE,
    REALM,
    USERNAME,
    Field,
    PasswordAlgorithm,
)
from rtc64.stun.integrity import long_term_key
from rtc64.stun.message import Class, Message, build, decode, encode
from rtc64.turn.events import ClientFlow, Event, SockAddr, ToClient
from rtc64.turn.protocols import PENDING, Pending, RelayUnavailable
from rtc64.turn.server import TurnServer
from rtc64.turn.settings import TurnSettings

REALM_NAME = "example.org"
RELAY4 = ip_address("192.0.2.100")
RELAY6 = ip_address("2001:db8::100")
LISTEN6 = (ip_address("2001:db8::1"), 3478)
LISTEN4 = (ip_address("192.0.2.1"), 3478)
PEER4 = (ip_address("198.51.100.20"), 5000)
PEER6 = (ip_address("2001:db8:2::20"), 5000)
PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"}


class FakeRelays:
    """Relay ports per family from 50000 up; ``full`` families raise RelayUnavailable."""

    def __init__(self) -> None:
        self.ports = {
            Family.INET: itertools.count(50000, 2),
            Family.INET6: itertools.count(50000, 2),
        }
        self.live: set[SockAddr] = set()
        self.kept: set[SockAddr] = set()
        self.full: set[Family] = set()
        self.calls: list[tuple[Any, ...]] = []

    def reserve(self, family: Family, protocol: int, *, even: bool, reserve_next: bool) -> SockAddr:
        self.calls.append(("reserve", family, protocol, even, reserve_next))
        if family in self.full:
            raise RelayUnavailable("no port")
        ip: IPAddress = RELAY4 if family is Family.INET else RELAY6
        port = next(self.ports[family])
        self.live.add((ip, port))
        if reserve_next:
            self.kept.add((ip, port + 1))
        return (ip, port)

    def take_reserved(self, address: SockAddr) -> SockAddr | None:
        if address not in self.kept:
            return None
        self.kept.discard(address)
        self.live.add(address)
        return address

    def release(self, relay: SockAddr) -> None:
        self.calls.append(("release", relay))
        self.live.discard(relay)
        self.kept.discard(relay)


class FakeCredentials:
    """Users from PASSWORDS; nonces "n-<issued>" fresh for 600 s; ``pending`` users wait."""

    def __init__(self) -> None:
        self.pending: set[str] = set()
        self.lookups = 0

    def key(self, username: str, realm: str, algorithm: int) -> bytes | Pending | None:
        self.lookups += 1
        if username in self.pending:
            return PENDING
        password = PASSWORDS.get(username)
        if password is None:
            return None
        return long_term_key(username, realm, password, PasswordAlgorithm(algorithm))

    def nonce(self, client: ClientFlow, now: float) -> str:
        return f"n-{now:.0f}"

    def nonce_ok(self, nonce: str, client: ClientFlow, now: float) -> bool | Literal["stale"]:
        if not nonce.startswith("n-"):
            return False
        try:
            issued = float(nonce[2:])
        except ValueError:
            return False
        return True if now - issued < 600 else "stale"


@dataclass
class FakePolicy:
    """Denies loopback, private and documentation-free test ranges the tests name."""

    denied: list[Any] = field(
        default_factory=lambda: [
            ip_network("127.0.0.0/8"),
            ip_network("10.0.0.0/8"),
            ip_network("::1/128"),
        ]
    )

    def allowed(self, peer_ip: IPAddress) -> bool:
        ip = peer_ip
        if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return not any(ip in net for net in self.denied if net.version == ip.version)


class Harness:
    """A TurnServer with fakes, a fake clock and helpers to talk to it."""

    def __init__(self, **settings: Any) -> None:
        settings.setdefault("realm", REALM_NAME)
        self.settings = TurnSettings(**settings)
        self.relays = FakeRelays()
        self.credentials = FakeCredentials()
        self.policy = FakePolicy()
        self.counter = itertools.count(1)
        self.server = TurnServer(
            self.settings,
            credentials=self.credentials,
            relays=self.relays,
            policy=self.policy,
            random=self._random,
        )
        self.now = 1000.0

    def _random(self, n: int) -> bytes:
        return next(self.counter).to_bytes(n, "big")

    def flow(
        self,
        port: int = 40000,
        *,
        v6: bool = True,
        transport: Transport = Transport.UDP,
        connection: int = 0,
    ) -> ClientFlow:
        if v6:
            return ClientFlow(transport, (ip_address("2001:db8:1::5"), port), LISTEN6, connection)
        return ClientFlow(transport, (IPv4Address("203.0.113.5"), port), LISTEN4, connection)

    def tick(self, seconds: float) -> list[Event]:
        self.now += seconds
        self.server.handle_timer(self.now)
        return self.server.events()

    def feed(self, client: ClientFlow, data: bytes) -> list[Event]:
        self.server.receive_client(data, client, self.now)
        return self.server.events()


class Client:
    """A TURN client on one flow with a user's long-term credentials."""

    def __init__(
        self, h: Harness, flow: ClientFlow, user: str | None = "alice", *, sha256: bool = False
    ) -> None:
        self.h = h
        self.flow = flow
        self.user = user
        self.sha256 = sha256
        self.nonce = f"n-{h.now:.0f}"
        self.tids = itertools.count(1)

    def key(self) -> bytes:
        assert self.user is not None
        return long_term_key(self.user, REALM_NAME, PASSWORDS[self.user])

    def tid(self) -> bytes:
        return self.flow.remote[1].to_bytes(2, "big") + next(self.tids).to_bytes(10, "big")

    def raw(
        self,
        method: int,
        *fields: Field | tuple[int, bytes],
        tid: bytes | None = None,
        signed: bool = True,
        key: bytes | None = None,
        fingerprint: bool = False,
        cls: Class = Class.REQUEST,
    ) -> bytes:
        tid = tid or self.tid()
        if signed and self.user is not None:
            fields = (*fields, USERNAME(self.user), REALM(REALM_NAME), NONCE(self.nonce))
            msg = build(method, cls, tid, *fields)
            return encode(msg, key=key or self.key(), sha256=self.sha256, fingerprint=fingerprint)
        return encode(build(method, cls, tid, *fields), fingerprint=fingerprint)

    def send(self, method: int, *fields: Field | tuple[int, bytes], **kw: Any) -> Message:
        """Send a request, return the one response (checked signed when we signed)."""
        events = self.h.feed(self.flow, self.raw(method, *fields, **kw))
        replies = [e for e in events if isinstance(e, ToClient) and e.client == self.flow]
        assert len(replies) == 1, events
        return decode(replies[0].data)

    def events(self, method: int, *fields: Field | tuple[int, bytes], **kw: Any) -> list[Event]:
        return self.h.feed(self.flow, self.raw(method, *fields, **kw))


def code(msg: Message) -> int | None:
    """The error code of a response, None for a success."""
    if msg.cls is Class.SUCCESS:
        return None
    value = msg.get(ERROR_CODE)
    assert value is not None
    return value[0]
