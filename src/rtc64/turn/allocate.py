# Allocate (RFC 8656 §7.2, RFC 6156, RFC 6062 §5.1): checks in the RFC's order, quotas,
# relay families, EVEN-PORT reservations and the success response.
#
# Rules:
# - A second Allocate on a 5-tuple: 437, except the allocating transaction itself (its
#   success again, when the cache forgot it).
# - REQUESTED-TRANSPORT: missing 400; not UDP/TCP 442; TCP only over TCP/TLS (400) and
#   without EVEN-PORT, RESERVATION-TOKEN, DONT-FRAGMENT (400). DONT-FRAGMENT on UDP is
#   accepted.
# - RESERVATION-TOKEN with EVEN-PORT or an address family attribute: 400; EVEN-PORT's R bit
#   with ADDITIONAL-ADDRESS-FAMILY: 400. A token is the user's own, used once, within 30 s
#   (508 otherwise); the kept port counts against the quotas like an allocation.
# - Quotas (486): allocations + reservations per user (the user part of a TURN REST
#   username) and in total. No relay port: 508.
# - Lifetime: min(requested, max), at least the default.
"""Allocate handling for TurnServer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from rtc64.net.address import Family, family_of
from rtc64.net.endpoint import Transport
from rtc64.stun.attributes import (
    ADDITIONAL_ADDRESS_FAMILY,
    ADDRESS_ERROR_CODE,
    DONT_FRAGMENT,
    EVEN_PORT,
    LIFETIME,
    REQUESTED_ADDRESS_FAMILY,
    REQUESTED_TRANSPORT,
    RESERVATION_TOKEN,
    SOFTWARE,
    XOR_MAPPED_ADDRESS,
    XOR_RELAYED_ADDRESS,
    Field,
)
from rtc64.stun.message import Message, response
from rtc64.turn import families
from rtc64.turn.allocation import Allocation
from rtc64.turn.auth import Authenticated
from rtc64.turn.events import ClientFlow, SockAddr
from rtc64.turn.protocols import TCP, UDP, RelayUnavailable
from rtc64.turn.refusal import Refuse
from rtc64.turn.settings import RESERVATION_LIFETIME, TurnSettings

ADDITIONAL_ADDRESS_FAMILY_DRAFT: Final = 0x8032
"""ADDITIONAL-ADDRESS-FAMILY under its draft-ietf-tram-turnbis number, as coturn's
``turnutils_uclient -Z`` (Debian 4.6) sends it; only the value IPv6 is honoured."""

if TYPE_CHECKING:
    from rtc64.turn.server import TurnServer


@dataclass(slots=True, eq=False)
class Reservation:
    """A port kept by EVEN-PORT's R bit for a later Allocate with RESERVATION-TOKEN."""

    token: bytes
    address: SockAddr
    username: str
    quota_user: str
    until: float


def quota_user(username: str, client: ClientFlow) -> str:
    """Whose quota an allocation counts against: the user part of a TURN REST username
    (``expiry:user``), the username, or the client's IP in open mode."""
    if not username:
        return f"@{client.remote[0]}"
    head, sep, rest = username.partition(":")
    return rest if sep and head.isdigit() and rest else username


def desired_lifetime(settings: TurnSettings, requested: int | None) -> int:
    """RFC 8656 §7.2/§7.3: min(requested, max), at least the default."""
    if requested is None:
        return settings.default_lifetime
    return max(settings.default_lifetime, min(requested, settings.max_lifetime))


def check_quota(server: TurnServer, user: str, slots: int) -> None:
    """486 unless ``slots`` more allocations/reservations fit the user's and the
    server's quota."""
    total = len(server.by_flow) + len(server.reservations)
    if total + slots > server.settings.max_allocations:
        raise Refuse(486, "Allocation Quota Reached (server)")
    if server.per_user[user] + slots > server.settings.user_quota:
        raise Refuse(486, "Allocation Quota Reached")


def allocate(
    server: TurnServer, msg: Message, client: ClientFlow, auth: Authenticated, now: float
) -> Message | None:
    """Allocate (see the module rules): the success response, or ``Refuse``."""
    existing = server.by_flow.get(client)
    if existing is not None:
        if existing.transaction_id == msg.transaction_id and existing.username == auth.username:
            return allocate_success(server, msg, existing, (), None)
        raise Refuse(437, "Allocation Mismatch")
    protocol = msg.get(REQUESTED_TRANSPORT)
    if protocol is None:
        raise Refuse(400, "REQUESTED-TRANSPORT missing")
    if protocol not in (UDP, TCP) or (protocol == TCP and not server.settings.tcp_relay):
        raise Refuse(442, "Unsupported Transport Protocol")
    present = {t for t, _ in msg.attributes}  # most requests carry none of the options
    token = msg.get(RESERVATION_TOKEN) if RESERVATION_TOKEN.type in present else None
    even = msg.get(EVEN_PORT) if EVEN_PORT.type in present else None
    requested = (
        msg.get(REQUESTED_ADDRESS_FAMILY) if REQUESTED_ADDRESS_FAMILY.type in present else None
    )
    additional = (
        msg.get(ADDITIONAL_ADDRESS_FAMILY) if ADDITIONAL_ADDRESS_FAMILY.type in present else None
    )
    if additional is None and msg.value(ADDITIONAL_ADDRESS_FAMILY_DRAFT) == b"\x02\0\0\0":
        additional = Family.INET6
    if protocol == TCP:
        if client.transport is Transport.UDP:
            raise Refuse(400, "TCP relay needs a TCP or TLS connection (RFC 6062)")
        if token is not None or even is not None or msg.has(DONT_FRAGMENT):
            raise Refuse(400, "EVEN-PORT, RESERVATION-TOKEN, DONT-FRAGMENT on TCP")
    if token is not None and (even is not None or requested is not None or additional is not None):
        raise Refuse(400, "RESERVATION-TOKEN with EVEN-PORT or an address family")
    if even and additional is not None:
        raise Refuse(400, "EVEN-PORT R bit with ADDITIONAL-ADDRESS-FAMILY")
    user = quota_user(auth.username, client)
    lifetime = desired_lifetime(
        server.settings, msg.get(LIFETIME) if LIFETIME.type in present else None
    )
    failures: list[tuple[Family, int, str]] = []
    reserved: Reservation | None = None
    if token is not None:
        # the reservation becomes this allocation: it already counted in the quota
        relays = take_reservation(server, token, auth.username)
    else:
        check_quota(server, user, 2 if even else 1)
        relays = reserve_relays(server, client, (protocol, even), (requested, additional), failures)
        if even:
            relay = next(iter(relays.values()))
            reserved = reserve_next(server, relay, auth.username, user, now)
    alloc = Allocation(
        client,
        username=auth.username,
        transaction_id=msg.transaction_id,
        relays=relays,
        protocol=protocol,
        lifetime=lifetime,
        now=now,
    )
    server.by_flow[client] = alloc
    for family, relay in relays.items():
        server.by_relay[relay] = alloc
        server.counters.by_family[(client.family, family)] += 1
    server.per_user[user] += 1
    server.deadlines.schedule(alloc.next_deadline(), alloc)
    return allocate_success(server, msg, alloc, tuple(failures), reserved)


def reserve_relays(
    server: TurnServer,
    client: ClientFlow,
    wanted: tuple[int, bool | None],
    asked: tuple[Family | None, Family | None],
    failures: list[tuple[Family, int, str]],
) -> dict[Family, SockAddr]:
    """Bind the relays ``asked`` for (REQUESTED-, ADDITIONAL-ADDRESS-FAMILY);
    ``failures`` gets the ADDRESS-ERROR-CODE of each family that failed."""
    requested, additional = asked
    protocol, even = wanted
    keep = server.settings.keep_client_family or (
        (client.transport, client.local) in server.settings.keep_client_family_on
    )
    choice = families.choose(
        requested,
        additional,
        client_family=client.family,
        keep_client_family=keep,
        available=server.settings.relay_families,
    )
    if isinstance(choice, families.Refusal):
        raise Refuse(choice.code, choice.reason)
    failures.extend((f, 440, "Address Family not Supported") for f in choice.missing)
    relays: dict[Family, SockAddr] = {}
    for family in choice.families:
        try:
            relays[family] = server.relays.reserve(
                family, protocol, even=even is not None, reserve_next=bool(even)
            )
        except RelayUnavailable as exc:
            failures.append((family, 508, exc.reason))
    if not relays:
        code, reason = (failures[0][1], failures[0][2]) if failures else (508, "")
        raise Refuse(code, reason or "Insufficient Capacity")
    return relays


def reserve_next(
    server: TurnServer, relay: SockAddr, username: str, user: str, now: float
) -> Reservation:
    token = server.random(8)
    while token in server.reservations:
        token = server.random(8)
    reservation = Reservation(
        token, (relay[0], relay[1] + 1), username, user, now + RESERVATION_LIFETIME
    )
    server.reservations[token] = reservation
    server.per_user[user] += 1
    server.deadlines.schedule(reservation.until, reservation)
    return reservation


def take_reservation(server: TurnServer, token: bytes, username: str) -> dict[Family, SockAddr]:
    reservation = server.reservations.get(token)
    if reservation is None or reservation.username != username:
        raise Refuse(508, "Insufficient Capacity (no such reservation)")
    del server.reservations[token]
    server.deadlines.cancel(reservation)
    server.unquota(reservation.quota_user)
    relay = server.relays.take_reserved(reservation.address)
    if relay is None:
        raise Refuse(508, "Insufficient Capacity (reservation lost)")
    return {family_of(relay[0]): relay}


def advertised(server: TurnServer, relay: SockAddr) -> SockAddr:
    """The relay address as clients see it (an external address behind 1:1 NAT)."""
    return (server._external.get(relay[0], relay[0]), relay[1])


def allocate_success(
    server: TurnServer,
    msg: Message,
    alloc: Allocation,
    failures: tuple[tuple[Family, int, str], ...],
    reserved: Reservation | None,
) -> Message:
    fields: list[Field] = [
        XOR_RELAYED_ADDRESS(advertised(server, alloc.relays[f]))
        for f in (Family.INET, Family.INET6)
        if f in alloc.relays
    ]
    fields.append(LIFETIME(alloc.lifetime))
    fields.append(XOR_MAPPED_ADDRESS(alloc.client.remote))
    if reserved is not None:
        fields.append(RESERVATION_TOKEN(reserved.token))
    fields.extend(ADDRESS_ERROR_CODE(f) for f in failures)
    if server.settings.software:
        fields.append(SOFTWARE(server.settings.software))
    return response(msg, *fields)
