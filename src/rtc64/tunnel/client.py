# Rules (RFC 5572 §3 in the Public TSP profile; issue 16 client):
# - Exchange: VERSION -> CAPABILITY (must offer TUNNEL=V6UDPV4 and AUTH=ANONYMOUS),
#   AUTHENTICATE ANONYMOUS -> 200, tunnel create -> 200 + info, then accept. Every
#   request is NUL-padded to tsp.REQUEST_SIZE (the server never answers with more bytes
#   than it received) and retransmitted every RETRANSMIT seconds, MAX_TRIES times; an
#   answer counts only with the sequence number of the outstanding request.
# - Up: Echo Requests to the keepalive address every keepalive interval hold the NAT
#   mapping; they carry KEEPALIVE_DATA bytes so the server's ICMPv6 error about them fits
#   in the same size. The mapping is considered changed (exchange re-run) on a
#   Destination Unreachable code 5 quoting our own source, or after MISSED_KEEPALIVES
#   intervals without an Echo Reply, and renewed at 90 % of the tunnel's lifetime
#   (RFC 5572 ``lifetime``). A new address is reported with ``Configured``.
# - Pure: bytes and ``now`` in, datagrams and events out; one timer (get_timer/handle_timer).
"""The Public TSP client state machine."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from ipaddress import IPv6Address

from rtc64.errors import RemoteProtocolError
from rtc64.tunnel import packet as ip
from rtc64.tunnel import tsp

RETRANSMIT = 2.0
MAX_TRIES = 5
MISSED_KEEPALIVES = 3
KEEPALIVE_DATA = 56
ECHO_ID = 0x7473


class State(enum.Enum):
    VERSION = "version"
    AUTHENTICATE = "authenticate"
    CREATE = "create"
    UP = "up"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Configured:
    """The tunnel is up (again) with this information."""

    address: IPv6Address
    server: IPv6Address
    keepalive: IPv6Address
    interval: int
    lifetime: int


@dataclass(frozen=True, slots=True)
class Failed:
    """The exchange failed: the server's status (0: no answer)."""

    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class Inbound:
    """An IPv6 packet for the TUN device."""

    packet: bytes


Event = Configured | Failed | Inbound


@dataclass(slots=True)
class TunnelClient:
    """One client of one server."""

    state: State = State.VERSION
    info: Configured | None = None
    sequence: int = 0
    restarts: int = 0
    _request: bytes = b""
    _tries: int = 0
    _deadline: float = 0.0
    _last_reply: float = 0.0
    _echo_seq: int = 0
    _renew_at: float | None = None

    def start(self, now: float) -> list[bytes]:
        """Begin (or re-run) the exchange: the first datagram to send."""
        self.state = State.VERSION
        return self._send(
            tsp.encode_request(tsp.Request(tsp.Kind.VERSION, version=tsp.VERSION)), now
        )

    def _send(self, message: bytes, now: float, *, fresh: bool = True) -> list[bytes]:
        if fresh:
            self.sequence = (self.sequence + 1) & 0x0FFFFFFF
            self._tries = 0
            self._request = tsp.Header(self.sequence, int(now) & 0xFFFFFFFF).encode() + tsp.pad(
                message
            )
        self._tries += 1
        self._deadline = now + RETRANSMIT
        return [self._request]

    def get_timer(self) -> float | None:
        """The next deadline, or None when failed."""
        return None if self.state is State.FAILED else self._deadline

    def handle_timer(self, now: float) -> tuple[list[bytes], list[Event]]:
        """Retransmit, send a keepalive or detect a lost mapping."""
        if self.state is State.FAILED or now < self._deadline:
            return [], []
        if self.state is not State.UP:
            if self._tries >= MAX_TRIES:
                self.state = State.FAILED
                return [], [Failed(0, "no answer from the tunnel server")]
            return self._send(b"", now, fresh=False), []
        assert self.info is not None
        lost = now - self._last_reply > MISSED_KEEPALIVES * self.info.interval
        if lost or (self._renew_at is not None and now >= self._renew_at):
            self.restarts += 1
            return self.start(now), []
        self._deadline = now + self.info.interval
        self._echo_seq = (self._echo_seq + 1) & 0xFFFF
        data = b"\x00" * KEEPALIVE_DATA
        probe = ip.echo(
            self.info.address, self.info.keepalive, ECHO_ID, self._echo_seq, data, reply=False
        )
        return [probe], []

    def receive(self, data: bytes, now: float) -> tuple[list[bytes], list[Event]]:
        """One datagram from the server."""
        if tsp.is_signalling(data):
            try:
                return self._signalling(data, now)
            except RemoteProtocolError as exc:
                if self.state is State.UP:
                    return [], []
                self.state = State.FAILED
                return [], [Failed(exc.status, exc.reason)]
        if self.state is not State.UP or self.info is None:
            return [], []
        try:
            header = ip.parse_header(data)
        except RemoteProtocolError:
            return [], []
        if header.source == self.info.keepalive and header.destination == self.info.address:
            icmp = ip.read_icmp(data, header)
            if icmp is not None and icmp.kind == ip.ECHO_REPLY:
                self._last_reply = now
                return [], []
            if icmp is not None and self._lost_mapping(icmp):
                self.restarts += 1
                return self.start(now), []
        return [], [Inbound(data)]

    def _lost_mapping(self, icmp: ip.Icmp) -> bool:
        if icmp.kind != ip.DEST_UNREACHABLE or icmp.code != ip.SOURCE_POLICY:
            return False
        quoted = icmp.body[4:]
        return self.info is not None and quoted[8:24] == self.info.address.packed

    def _signalling(self, data: bytes, now: float) -> tuple[list[bytes], list[Event]]:
        header, message = tsp.split_header(data)
        if header.sequence != self.sequence or self.state in (State.UP, State.FAILED):
            return [], []
        response = tsp.parse_response(message)
        if self.state is State.VERSION:
            offered = tsp.capabilities(response.capability)
            if not {b"TUNNEL=V6UDPV4", b"AUTH=ANONYMOUS"} <= offered:
                return self._fail(response, "server does not offer V6UDPV4 with ANONYMOUS")
            self.state = State.AUTHENTICATE
            req = tsp.Request(tsp.Kind.AUTHENTICATE, mechanism=b"ANONYMOUS")
            return self._send(tsp.encode_request(req), now), []
        if response.status != tsp.Status.SUCCESS:
            return self._fail(response, response.reason)
        if self.state is State.AUTHENTICATE:
            self.state = State.CREATE
            doc = tsp.TunnelDoc(action="create")
            return self._send(
                tsp.encode_request(tsp.Request(tsp.Kind.TUNNEL, document=doc)), now
            ), []
        return self._up(response, now)

    def _up(self, response: tsp.Response, now: float) -> tuple[list[bytes], list[Event]]:
        doc = response.document
        if doc is None or doc.client_ipv6 is None or doc.server_ipv6 is None:
            return self._fail(response, "tunnel info without addresses")
        info = Configured(
            address=doc.client_ipv6,
            server=doc.server_ipv6,
            keepalive=doc.keepalive_ipv6 or doc.server_ipv6,
            interval=max(1, doc.keepalive_interval or 30),
            lifetime=doc.lifetime or 0,
        )
        self.state = State.UP
        self._last_reply = now
        self._deadline = now + info.interval
        self._renew_at = now + 0.9 * info.lifetime if info.lifetime else None
        changed = info != self.info
        self.info = info
        accept = tsp.Request(tsp.Kind.TUNNEL, document=tsp.TunnelDoc(action="accept", type=None))
        self.sequence = (self.sequence + 1) & 0x0FFFFFFF
        datagram = tsp.Header(self.sequence, int(now) & 0xFFFFFFFF).encode()
        datagram += tsp.pad(tsp.encode_request(accept))
        return [datagram], [info] if changed else []

    def _fail(self, response: tsp.Response, reason: str) -> tuple[list[bytes], list[Event]]:
        self.state = State.FAILED
        return [], [Failed(response.status, reason)]

    def outbound(self, packet: bytes) -> bytes | None:
        """A packet from the TUN device to send to the server (None: not up)."""
        return packet if self.state is State.UP else None
