"""The real credentials, peer policy and 401 limiter driving the real TURN core."""

from __future__ import annotations

import asyncio
import itertools
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

import pytest

from rtc64.gateway.location.users import UserRecord
from rtc64.net.address import Family, IPAddress
from rtc64.net.endpoint import Transport
from rtc64.stun.attributes import (
    ERROR_CODE,
    NONCE,
    REALM,
    REQUESTED_ADDRESS_FAMILY,
    REQUESTED_TRANSPORT,
    USERNAME,
    XOR_PEER_ADDRESS,
    XOR_RELAYED_ADDRESS,
    Field,
)
from rtc64.stun.message import Class, Message, Method, build, decode, encode
from rtc64.turn.events import ClientFlow, Lookup, ToClient
from rtc64.turn.server import TurnServer
from rtc64.turn.settings import TurnSettings
from rtc64.turnserver.credentials import (
    ALGORITHM_MD5,
    Credentials,
    CredentialSettings,
    long_term_key,
    rest_credentials,
)
from rtc64.turnserver.peers import PeerPolicy
from rtc64.turnserver.quotas import ChallengeLimiter, is_unauthorized
from tests.unit.turn.helpers import FakeRelays

REALM_NAME = "example.net"
WALL = 1_765_000_000.0
UDP = REQUESTED_TRANSPORT(17)
ALICE = UserRecord.from_password("alice", REALM_NAME, "alice-pw")
CLIENT = ClientFlow(
    Transport.UDP, (IPv6Address("2a00:1450:1::5"), 40000), (IPv6Address("2a00:1450::1"), 3478), 0
)


class Store:
    def __init__(self) -> None:
        self.users = {"alice": ALICE}

    async def get_user(self, name: str) -> UserRecord | None:
        return self.users.get(name)


class Rig:
    def __init__(self, *, secrets: tuple[bytes, ...] = (), **policy: object) -> None:
        self.credentials = Credentials(
            CredentialSettings(realm=REALM_NAME, secrets=secrets), Store(), wall=lambda: WALL
        )
        self.policy = PeerPolicy(**policy)  # type: ignore[arg-type]
        counter = itertools.count(1)
        self.server = TurnServer(
            TurnSettings(realm=REALM_NAME),
            credentials=self.credentials,
            relays=FakeRelays(),
            policy=self.policy,
            random=lambda n: next(counter).to_bytes(n, "big"),
        )
        self.now = 1000.0
        self.tids = itertools.count(1)

    def feed(self, data: bytes) -> list[object]:
        self.server.receive_client(data, CLIENT, self.now)
        return list(self.server.events())

    def answer(self, data: bytes) -> tuple[bytes, Message]:
        events = self.feed(data)
        replies = [e for e in events if isinstance(e, ToClient)]
        assert len(replies) == 1, events
        return replies[0].data, decode(replies[0].data)

    def request(
        self, method: int, *fields: Field | tuple[int, bytes], user: str | None, key: bytes = b""
    ) -> bytes:
        tid = next(self.tids).to_bytes(12, "big")
        if user is None:
            return encode(build(method, Class.REQUEST, tid, *fields))
        nonce = self.credentials.nonce(CLIENT, self.now)
        signed = (*fields, USERNAME(user), REALM(REALM_NAME), NONCE(nonce))
        return encode(build(method, Class.REQUEST, tid, *signed), key=key)


def code(msg: Message) -> int | None:
    if msg.cls is Class.SUCCESS:
        return None
    value = msg.get(ERROR_CODE)
    assert value is not None
    return value[0]


def test_unauthenticated_allocate_gets_a_401_with_our_nonce() -> None:
    rig = Rig()
    raw, reply = rig.answer(rig.request(Method.ALLOCATE, UDP, user=None))
    assert code(reply) == 401
    assert is_unauthorized(raw)
    nonce = reply.get(NONCE)
    assert nonce is not None and str(nonce).startswith("obMatJos2gAAA")
    assert rig.credentials.nonce_ok(str(nonce), CLIENT, rig.now) is True
    limiter = ChallengeLimiter(rate=1.0, burst=1.0)
    assert limiter.admit(raw, CLIENT.remote[0], rig.now)
    assert not limiter.admit(raw, CLIENT.remote[0], rig.now)


def test_long_term_user_from_the_store_through_lookup() -> None:
    rig = Rig()
    key = long_term_key("alice", REALM_NAME, "alice-pw", ALGORITHM_MD5)
    data = rig.request(Method.ALLOCATE, UDP, user="alice", key=key)
    events = rig.feed(data)
    lookups = [e for e in events if isinstance(e, Lookup)]
    assert [e.username for e in lookups] == ["alice"]
    assert asyncio.run(rig.credentials.fetch("alice"))
    _, reply = rig.answer(lookups[0].data)
    assert code(reply) is None
    assert reply.get(XOR_RELAYED_ADDRESS) is not None


def test_wrong_password_gets_401() -> None:
    rig = Rig()
    asyncio.run(rig.credentials.fetch("alice"))
    wrong = long_term_key("alice", REALM_NAME, "guess", ALGORITHM_MD5)
    _, reply = rig.answer(rig.request(Method.ALLOCATE, UDP, user="alice", key=wrong))
    assert code(reply) == 401


@pytest.mark.parametrize("secret", [b"new-secret", b"old-secret"])
def test_rest_credentials_with_rotated_secrets(secret: bytes) -> None:
    rig = Rig(secrets=(b"new-secret", b"old-secret"))
    cred = rest_credentials(secret, "alice", 3600, WALL)
    key = long_term_key(cred.username, REALM_NAME, cred.password, ALGORITHM_MD5)
    _, reply = rig.answer(rig.request(Method.ALLOCATE, UDP, user=cred.username, key=key))
    assert code(reply) is None


def test_expired_or_foreign_rest_credentials_get_401() -> None:
    rig = Rig(secrets=(b"new-secret",))
    expired = rest_credentials(b"new-secret", "alice", 10, WALL - 11)
    foreign = rest_credentials(b"someone-else", "alice", 3600, WALL)
    for cred in (expired, foreign):
        key = long_term_key(cred.username, REALM_NAME, cred.password, ALGORITHM_MD5)
        _, reply = rig.answer(rig.request(Method.ALLOCATE, UDP, user=cred.username, key=key))
        assert code(reply) == 401, cred.username


def _allocated(rig: Rig, family: Family) -> bytes:
    cred = rest_credentials(b"s", "alice", 3600, WALL)
    key = long_term_key(cred.username, REALM_NAME, cred.password, ALGORITHM_MD5)
    data = rig.request(
        Method.ALLOCATE, UDP, REQUESTED_ADDRESS_FAMILY(family), user=cred.username, key=key
    )
    _, reply = rig.answer(data)
    assert code(reply) is None, reply
    return key


def _permission(rig: Rig, key: bytes, peer: IPAddress) -> int | None:
    cred_user = rest_credentials(b"s", "alice", 3600, WALL).username
    data = rig.request(
        Method.CREATE_PERMISSION, XOR_PEER_ADDRESS((peer, 9)), user=cred_user, key=key
    )
    return code(rig.answer(data)[1])


@pytest.mark.parametrize(
    "peer",
    ["::ffff:127.0.0.1", "::ffff:10.1.2.3", "0.0.0.0", "127.0.0.1", "169.254.169.254"],
)
def test_ipv4_relay_refuses_denied_peers_with_403(peer: str) -> None:
    rig = Rig(secrets=(b"s",))
    key = _allocated(rig, Family.INET)
    assert _permission(rig, key, ip_address(peer)) == 403
    assert _permission(rig, key, IPv4Address("8.8.8.8")) is None


@pytest.mark.parametrize(
    "peer",
    [
        "::",
        "::1",
        "64:ff9b::7f00:1",
        "2002:7f00:1::1",
        "::127.0.0.1",
        "fd00::1",
        "::ffff:127.0.0.1",  # an IPv4-mapped peer is forbidden before its family is judged
        "::ffff:10.1.2.3",
    ],
)
def test_ipv6_relay_refuses_denied_peers_with_403(peer: str) -> None:
    rig = Rig(secrets=(b"s",))
    key = _allocated(rig, Family.INET6)
    assert _permission(rig, key, IPv6Address(peer)) == 403
    assert _permission(rig, key, IPv6Address("2a00:1450::99")) is None


def test_lab_allow_flag_opens_loopback() -> None:
    rig = Rig(secrets=(b"s",), allow=[ip_network("127.0.0.0/8")])
    key = _allocated(rig, Family.INET)
    assert _permission(rig, key, IPv4Address("127.0.0.1")) is None
    assert _permission(rig, key, IPv4Address("10.0.0.1")) == 403
