"""Allocate, Refresh, lifetimes, families, quotas and authentication of the TURN core."""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from rtc64.net.address import Family
from rtc64.net.endpoint import Transport
from rtc64.stun.attributes import (
    ADDITIONAL_ADDRESS_FAMILY,
    ADDRESS_ERROR_CODE,
    DONT_FRAGMENT,
    EVEN_PORT,
    LIFETIME,
    MESSAGE_INTEGRITY,
    MESSAGE_INTEGRITY_SHA256,
    NONCE,
    PASSWORD_ALGORITHM,
    PASSWORD_ALGORITHMS,
    REALM,
    REQUESTED_ADDRESS_FAMILY,
    REQUESTED_TRANSPORT,
    RESERVATION_TOKEN,
    SOFTWARE,
    UNKNOWN_ATTRIBUTES,
    XOR_MAPPED_ADDRESS,
    XOR_RELAYED_ADDRESS,
    PasswordAlgorithm,
)
from rtc64.stun.integrity import long_term_key
from rtc64.stun.message import Class, Method, check_fingerprint, check_integrity, decode
from rtc64.turn.events import Lookup, RelayClosed, ToClient
from rtc64.turn.server import quota_user
from tests.unit.turn.helpers import (
    LISTEN6,
    PASSWORDS,
    RELAY4,
    RELAY6,
    Client,
    FakeCredentials,
    Harness,
    code,
)

UDP = REQUESTED_TRANSPORT(17)
TCP = REQUESTED_TRANSPORT(6)


def test_binding_answered_without_credentials() -> None:
    h = Harness()
    flow = h.flow()
    reply = Client(h, flow, None).send(Method.BINDING, signed=False)
    assert reply.cls is Class.SUCCESS
    assert reply.get(XOR_MAPPED_ADDRESS) == flow.remote


def test_binding_with_fingerprint_is_answered_with_one() -> None:
    h = Harness()
    events = h.feed(
        h.flow(), Client(h, h.flow(), None).raw(Method.BINDING, signed=False, fingerprint=True)
    )
    assert isinstance(events[0], ToClient)
    assert check_fingerprint(decode(events[0].data))


def test_allocate_without_credentials_is_401_with_realm_nonce_algorithms() -> None:
    h = Harness()
    reply = Client(h, h.flow()).send(Method.ALLOCATE, UDP, signed=False)
    assert code(reply) == 401
    assert reply.get(REALM) == "example.org"
    assert reply.get(NONCE) == "n-1000"
    assert reply.get(PASSWORD_ALGORITHMS) == ((2, b""), (1, b""))
    assert not reply.has(MESSAGE_INTEGRITY)


def test_ipv6_client_gets_an_ipv4_relay_by_default() -> None:
    h = Harness()
    c = Client(h, h.flow())
    reply = c.send(Method.ALLOCATE, UDP)
    assert reply.cls is Class.SUCCESS
    assert reply.get_all(XOR_RELAYED_ADDRESS) == [(RELAY4, 50000)]
    assert reply.get(LIFETIME) == 600
    assert reply.get(XOR_MAPPED_ADDRESS) == c.flow.remote
    assert reply.get(SOFTWARE) == "rtc64"
    assert check_integrity(reply, c.key())
    assert h.server.stats().allocations_by_family == {(Family.INET6, Family.INET): 1}


def test_response_signed_with_sha256_when_request_was() -> None:
    h = Harness()
    c = Client(h, h.flow(), sha256=True)
    reply = c.send(Method.ALLOCATE, UDP)
    assert reply.cls is Class.SUCCESS
    assert reply.has(MESSAGE_INTEGRITY_SHA256)
    assert check_integrity(reply, c.key())


def test_password_algorithm_sha256() -> None:
    h = Harness()
    c = Client(h, h.flow())
    key = long_term_key("alice", "example.org", "alice-pw", PasswordAlgorithm.SHA256)
    reply = c.send(
        Method.ALLOCATE,
        UDP,
        PASSWORD_ALGORITHMS(((2, b""), (1, b""))),
        PASSWORD_ALGORITHM((2, b"")),
        key=key,
    )
    assert reply.cls is Class.SUCCESS and check_integrity(reply, key)
    # an algorithm list unlike the one we offered: 400 (downgrade protection)
    reply = Client(h, h.flow(2)).send(
        Method.ALLOCATE, UDP, PASSWORD_ALGORITHMS(((1, b""),)), PASSWORD_ALGORITHM((1, b""))
    )
    assert code(reply) == 400


def test_keep_client_family_and_requested_family() -> None:
    h = Harness(keep_client_family=True)
    reply = Client(h, h.flow()).send(Method.ALLOCATE, UDP)
    assert reply.get_all(XOR_RELAYED_ADDRESS) == [(RELAY6, 50000)]
    reply = Client(h, h.flow(2)).send(Method.ALLOCATE, UDP, REQUESTED_ADDRESS_FAMILY(Family.INET))
    assert reply.get_all(XOR_RELAYED_ADDRESS) == [(RELAY4, 50000)]


def test_keep_client_family_per_listener() -> None:
    h = Harness(keep_client_family_on=frozenset({(Transport.UDP, LISTEN6)}))
    assert (
        Client(h, h.flow()).send(Method.ALLOCATE, UDP).get_all(XOR_RELAYED_ADDRESS)[0][0] == RELAY6
    )
    tcp = h.flow(transport=Transport.TCP, connection=3)
    assert Client(h, tcp).send(Method.ALLOCATE, UDP).get_all(XOR_RELAYED_ADDRESS)[0][0] == RELAY4


def test_requested_family_without_relay_is_440() -> None:
    h = Harness(relay_families=frozenset({Family.INET}))
    reply = Client(h, h.flow()).send(Method.ALLOCATE, UDP, REQUESTED_ADDRESS_FAMILY(Family.INET6))
    assert code(reply) == 440
    assert h.relays.live == set()


def test_dual_allocation() -> None:
    h = Harness()
    reply = Client(h, h.flow()).send(Method.ALLOCATE, UDP, ADDITIONAL_ADDRESS_FAMILY(Family.INET6))
    assert reply.get_all(XOR_RELAYED_ADDRESS) == [(RELAY4, 50000), (RELAY6, 50000)]
    assert not reply.has(ADDRESS_ERROR_CODE)


def test_dual_allocation_one_family_fails_address_error_code() -> None:
    h = Harness()
    h.relays.full.add(Family.INET6)
    reply = Client(h, h.flow()).send(Method.ALLOCATE, UDP, ADDITIONAL_ADDRESS_FAMILY(Family.INET6))
    assert reply.cls is Class.SUCCESS
    assert reply.get_all(XOR_RELAYED_ADDRESS) == [(RELAY4, 50000)]
    assert reply.get(ADDRESS_ERROR_CODE) == (Family.INET6, 508, "no port")
    h2 = Harness(relay_families=frozenset({Family.INET}))
    reply = Client(h2, h2.flow()).send(
        Method.ALLOCATE, UDP, ADDITIONAL_ADDRESS_FAMILY(Family.INET6)
    )
    assert reply.get(ADDRESS_ERROR_CODE) == (Family.INET6, 440, "Address Family not Supported")


@pytest.mark.parametrize(
    "fields",
    [
        (REQUESTED_ADDRESS_FAMILY(Family.INET), ADDITIONAL_ADDRESS_FAMILY(Family.INET6)),
        (ADDITIONAL_ADDRESS_FAMILY(Family.INET),),
        (),  # no REQUESTED-TRANSPORT
        (EVEN_PORT(True), ADDITIONAL_ADDRESS_FAMILY(Family.INET6)),
        (RESERVATION_TOKEN(b"12345678"), EVEN_PORT(False)),
        (RESERVATION_TOKEN(b"12345678"), REQUESTED_ADDRESS_FAMILY(Family.INET)),
    ],
)
def test_bad_allocate_is_400(fields: tuple[object, ...]) -> None:
    h = Harness()
    transport = () if fields == () else (UDP,)
    reply = Client(h, h.flow()).send(Method.ALLOCATE, *transport, *fields)  # type: ignore[arg-type]
    assert code(reply) == 400
    assert h.server.stats().allocations == 0


def test_unsupported_transport_is_442() -> None:
    h = Harness()
    assert code(Client(h, h.flow()).send(Method.ALLOCATE, REQUESTED_TRANSPORT(132))) == 442


def test_tcp_relay_over_udp_is_400_and_over_tcp_ok() -> None:
    h = Harness()
    assert code(Client(h, h.flow()).send(Method.ALLOCATE, TCP)) == 400
    tcp = h.flow(transport=Transport.TCP, connection=7)
    assert Client(h, tcp).send(Method.ALLOCATE, TCP).cls is Class.SUCCESS
    assert h.relays.calls[-1] == ("reserve", Family.INET, 6, False, False)
    tcp2 = h.flow(2, transport=Transport.TCP, connection=8)
    assert code(Client(h, tcp2).send(Method.ALLOCATE, TCP, DONT_FRAGMENT(True))) == 400


def test_dont_fragment_accepted_for_udp() -> None:
    h = Harness()
    assert Client(h, h.flow()).send(Method.ALLOCATE, UDP, DONT_FRAGMENT(True)).cls is Class.SUCCESS


def test_unknown_comprehension_required_attribute_is_420() -> None:
    h = Harness()
    reply = Client(h, h.flow()).send(Method.ALLOCATE, UDP, (0x7777, b"\0\0\0\0"))
    assert code(reply) == 420
    assert reply.get(UNKNOWN_ATTRIBUTES) == (0x7777,)


def test_wrong_password_unknown_user_and_bad_nonce_are_401() -> None:
    h = Harness()
    c = Client(h, h.flow())
    assert code(c.send(Method.ALLOCATE, UDP, key=b"\0" * 16)) == 401
    assert code(Client(h, h.flow(2), "mallory").send(Method.ALLOCATE, UDP, key=b"k")) == 401
    c.nonce = "forged"
    assert code(c.send(Method.ALLOCATE, UDP)) == 401
    assert h.server.stats().allocations == 0


def test_stale_nonce_is_438_with_a_fresh_nonce() -> None:
    h = Harness()
    c = Client(h, h.flow())
    h.now += 700
    reply = c.send(Method.ALLOCATE, UDP)
    assert code(reply) == 438
    assert reply.get(NONCE) == "n-1700"
    c.nonce = "n-1700"
    assert c.send(Method.ALLOCATE, UDP).cls is Class.SUCCESS


def test_pending_user_emits_lookup_and_refeed_works() -> None:
    h = Harness()
    h.credentials.pending.add("alice")
    c = Client(h, h.flow())
    data = c.raw(Method.ALLOCATE, UDP)
    events = h.feed(c.flow, data)
    assert events == [Lookup("alice", c.flow, data)]
    h.credentials.pending.clear()
    events = h.feed(c.flow, data)
    assert decode(events[0].data).cls is Class.SUCCESS  # type: ignore[union-attr]


def test_open_mode_needs_no_credentials() -> None:
    h = Harness(open=True)
    reply = Client(h, h.flow(), None).send(Method.ALLOCATE, UDP, signed=False)
    assert reply.cls is Class.SUCCESS and not reply.has(MESSAGE_INTEGRITY)


def test_lifetime_rules_and_refresh_zero_deletes() -> None:
    h = Harness(max_lifetime=3600)
    c = Client(h, h.flow())
    assert c.send(Method.ALLOCATE, UDP, LIFETIME(30)).get(LIFETIME) == 600
    assert c.send(Method.REFRESH, LIFETIME(99999)).get(LIFETIME) == 3600
    assert c.send(Method.REFRESH).get(LIFETIME) == 600
    assert c.send(Method.REFRESH, LIFETIME(1000)).get(LIFETIME) == 1000
    events = c.events(Method.REFRESH, LIFETIME(0))
    assert decode(events[0].data).get(LIFETIME) == 0  # type: ignore[union-attr]
    assert events[1:] == [RelayClosed((RELAY4, 50000))]
    assert h.relays.live == set()
    assert code(c.send(Method.REFRESH)) == 437


def test_allocation_expires_on_the_fake_clock() -> None:
    h = Harness()
    c = Client(h, h.flow())
    c.send(Method.ALLOCATE, UDP)
    assert h.server.get_timer() is not None
    assert h.tick(599) == []
    c.nonce = f"n-{h.now:.0f}"
    assert c.send(Method.REFRESH).get(LIFETIME) == 600  # now expires at 1000+599+600
    assert h.tick(599) == []
    assert h.tick(1) == [RelayClosed((RELAY4, 50000))]
    assert h.server.stats().allocations == 0


def test_second_allocate_on_same_five_tuple_is_437_retransmission_is_cached() -> None:
    h = Harness()
    c = Client(h, h.flow())
    tid = c.tid()
    first = h.feed(c.flow, c.raw(Method.ALLOCATE, UDP, tid=tid))
    again = h.feed(c.flow, c.raw(Method.ALLOCATE, UDP, tid=tid))
    assert again == first
    assert len(h.relays.live) == 1
    assert code(c.send(Method.ALLOCATE, UDP)) == 437
    # after the cache entry expired the allocating transaction still gets its success
    h.tick(41)
    c.nonce = f"n-{h.now:.0f}"
    reply = decode(h.feed(c.flow, c.raw(Method.ALLOCATE, UDP, tid=tid))[0].data)  # type: ignore[union-attr]
    assert reply.cls is Class.SUCCESS
    assert reply.get_all(XOR_RELAYED_ADDRESS) == [(RELAY4, 50000)]


def test_quota_per_user_and_total_486() -> None:
    h = Harness(user_quota=2, max_allocations=3)
    for port in (1, 2):
        assert Client(h, h.flow(port)).send(Method.ALLOCATE, UDP).cls is Class.SUCCESS
    assert code(Client(h, h.flow(3)).send(Method.ALLOCATE, UDP)) == 486
    assert Client(h, h.flow(4), "bob").send(Method.ALLOCATE, UDP).cls is Class.SUCCESS
    assert code(Client(h, h.flow(5), "carol").send(Method.ALLOCATE, UDP)) == 486
    assert h.server.stats().errors == {486: 2}


def test_rest_usernames_share_the_user_quota() -> None:
    flow = Harness().flow()
    assert quota_user("1700000000:alice", flow) == "alice"
    assert quota_user("alice", flow) == "alice"
    assert quota_user("x:alice", flow) == "x:alice"
    assert quota_user("", flow) == "@2001:db8:1::5"


def test_no_port_is_508() -> None:
    h = Harness()
    h.relays.full.add(Family.INET)
    assert code(Client(h, h.flow()).send(Method.ALLOCATE, UDP)) == 508
    assert h.server.stats().allocations == 0


def test_even_port_reservation_token_and_expiry() -> None:
    h = Harness(user_quota=2)
    c = Client(h, h.flow())
    reply = c.send(Method.ALLOCATE, UDP, EVEN_PORT(True))
    token = reply.get(RESERVATION_TOKEN)
    assert token is not None and len(token) == 8
    assert h.relays.calls[-1] == ("reserve", Family.INET, 17, True, True)
    assert (RELAY4, 50001) in h.relays.kept
    # the reservation counts against the quota: a third allocation is refused
    assert code(Client(h, h.flow(2)).send(Method.ALLOCATE, UDP)) == 486
    # the token gives port N+1
    reply = Client(h, h.flow(3)).send(Method.ALLOCATE, UDP, RESERVATION_TOKEN(token))
    assert reply.get_all(XOR_RELAYED_ADDRESS) == [(RELAY4, 50001)]
    # used once only
    assert code(Client(h, h.flow(4)).send(Method.ALLOCATE, UDP, RESERVATION_TOKEN(token))) in (
        486,
        508,
    )


def test_reservation_expires_after_30_s_and_frees_the_port() -> None:
    h = Harness()
    reply = Client(h, h.flow()).send(Method.ALLOCATE, UDP, EVEN_PORT(True))
    token = reply.get(RESERVATION_TOKEN)
    assert token is not None
    h.tick(30)
    assert (RELAY4, 50001) not in h.relays.kept
    assert ("release", (RELAY4, 50001)) in h.relays.calls
    c = Client(h, h.flow(2))
    c.nonce = f"n-{h.now:.0f}"
    assert code(c.send(Method.ALLOCATE, UDP, RESERVATION_TOKEN(token))) == 508
    assert h.server.stats().reservations == 0


def test_reservation_token_guessing_and_other_users() -> None:
    h = Harness()
    token = Client(h, h.flow()).send(Method.ALLOCATE, UDP, EVEN_PORT(True)).get(RESERVATION_TOKEN)
    assert token is not None
    for guess in range(50):
        reply = Client(h, h.flow(100 + guess), "bob").send(
            Method.ALLOCATE, UDP, RESERVATION_TOKEN(guess.to_bytes(8, "big"))
        )
        assert code(reply) == 508
    # the right token in another user's hands is refused too
    assert (
        code(Client(h, h.flow(7), "bob").send(Method.ALLOCATE, UDP, RESERVATION_TOKEN(token)))
        == 508
    )
    assert (RELAY4, 50001) in h.relays.kept


def test_flood_of_unauthenticated_allocates_keeps_no_state() -> None:
    h = Harness()
    for port in range(2000):
        c = Client(h, h.flow(1024 + port), None)
        assert code(c.send(Method.ALLOCATE, UDP, signed=False)) == 401
    stats = h.server.stats()
    assert stats.allocations == 0 and stats.errors == {401: 2000}
    assert h.relays.calls == []
    assert len(h.server.cache) == 0
    assert h.server.get_timer() is None


def test_refresh_from_another_five_tuple_is_437_other_user_441() -> None:
    h = Harness()
    c = Client(h, h.flow())
    c.send(Method.ALLOCATE, UDP)
    attacker = Client(h, h.flow(4444))
    assert code(attacker.send(Method.REFRESH, LIFETIME(0))) == 437
    bob_same_tuple = Client(h, c.flow, "bob")
    bob_same_tuple.tids = c.tids  # new transactions, not retransmissions
    assert code(bob_same_tuple.send(Method.REFRESH, LIFETIME(0))) == 441
    assert h.server.stats().allocations == 1


def test_refresh_with_a_family_the_allocation_lacks_is_443() -> None:
    h = Harness()
    c = Client(h, h.flow())
    c.send(Method.ALLOCATE, UDP)
    assert code(c.send(Method.REFRESH, REQUESTED_ADDRESS_FAMILY(Family.INET6))) == 443
    assert c.send(Method.REFRESH, REQUESTED_ADDRESS_FAMILY(Family.INET)).cls is Class.SUCCESS


def test_external_address_advertised() -> None:
    h = Harness(external_addresses=((RELAY4, ip_address("203.0.113.77")),))
    reply = Client(h, h.flow()).send(Method.ALLOCATE, UDP)
    assert reply.get(XOR_RELAYED_ADDRESS) == (ip_address("203.0.113.77"), 50000)


def test_malformed_request_is_400_garbage_dropped() -> None:
    h = Harness()
    c = Client(h, h.flow())
    data = bytearray(c.raw(Method.ALLOCATE, UDP))
    data[3] += 4  # length beyond the datagram
    events = h.feed(c.flow, bytes(data))
    assert code(decode(events[0].data)) == 400  # type: ignore[union-attr]
    assert h.feed(c.flow, b"\xff" * 40) == []
    assert h.feed(c.flow, b"") == []
    assert h.feed(c.flow, b"\x00\x01\x00") == []
    assert h.server.stats().dropped["not-stun"] == 1


def test_even_port_r_bit_needs_room_for_the_reservation() -> None:
    h = Harness(user_quota=2)
    Client(h, h.flow()).send(Method.ALLOCATE, UDP)
    assert code(Client(h, h.flow(2)).send(Method.ALLOCATE, UDP, EVEN_PORT(True))) == 486
    assert Client(h, h.flow(3)).send(Method.ALLOCATE, UDP, EVEN_PORT(False)).cls is Class.SUCCESS


class RotatingCredentials(FakeCredentials):
    """Two keys per user (two REST secrets), and a foreign Pending type."""

    class OtherPending:
        pass

    def keys(self, username: str, realm: str, algorithm: int) -> object:
        if username in self.pending:
            return self.OtherPending()
        if username not in PASSWORDS:
            return ()
        old = long_term_key(username, realm, "old-secret-pw")
        return (old, long_term_key(username, realm, PASSWORDS[username]))


def test_any_of_several_keys_may_sign_and_foreign_pending_waits() -> None:
    h = Harness()
    creds = RotatingCredentials()
    h.server.auth._credentials = creds  # type: ignore[assignment]
    c = Client(h, h.flow())
    reply = c.send(Method.ALLOCATE, UDP)
    assert reply.cls is Class.SUCCESS and check_integrity(reply, c.key())
    creds.pending.add("bob")
    bob = Client(h, h.flow(2), "bob")
    data = bob.raw(Method.ALLOCATE, UDP)
    assert h.feed(bob.flow, data) == [Lookup("bob", bob.flow, data)]


@pytest.mark.parametrize("transport", [Transport.UDP, Transport.TCP, Transport.TLS])
@pytest.mark.parametrize("v6", [True, False])
def test_binding_on_every_listener_even_with_wrong_credentials(
    transport: Transport, v6: bool
) -> None:
    h = Harness()
    flow = h.flow(transport=transport, v6=v6, connection=0 if transport is Transport.UDP else 9)
    reply = Client(h, flow).send(Method.BINDING, key=b"wrong")
    assert reply.cls is Class.SUCCESS and reply.get(XOR_MAPPED_ADDRESS) == flow.remote


def test_refresh_zero_with_family_deletes_one_relay_of_a_dual_allocation() -> None:
    h = Harness()
    c = Client(h, h.flow())
    c.send(Method.ALLOCATE, UDP, ADDITIONAL_ADDRESS_FAMILY(Family.INET6))
    events = c.events(Method.REFRESH, LIFETIME(0), REQUESTED_ADDRESS_FAMILY(Family.INET6))
    assert decode(events[0].data).get(LIFETIME) == 0  # type: ignore[union-attr]
    assert events[1:] == [RelayClosed((RELAY6, 50000))]
    assert h.relays.live == {(RELAY4, 50000)}
    assert c.send(Method.REFRESH).get(LIFETIME) == 600  # the IPv4 relay lives on
    assert code(c.send(Method.REFRESH, REQUESTED_ADDRESS_FAMILY(Family.INET6))) == 443
    events = c.events(Method.REFRESH, LIFETIME(0), REQUESTED_ADDRESS_FAMILY(Family.INET))
    assert events[1:] == [RelayClosed((RELAY4, 50000))]
    assert h.server.stats().allocations == 0
