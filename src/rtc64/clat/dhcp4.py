"""DHCPv4 "IPv6-only preferred" probe: does the link's DHCP server send option 108?

Rules (RFC 2131 §2, §3.1, §4.1, §4.3.1; RFC 2132 §9.3, §9.6, §9.8, §9.14; RFC 3396;
RFC 8925 §3.2-§3.4):

- Sans-I/O. ``Dhcp4Probe.start(now)`` and ``handle_timer(now)`` return the DISCOVER to
  broadcast (or None); ``receive(data, now)`` takes a datagram from server port 67 and
  returns what it means (``V6Only``, ``Ipv4Offered``) or None. No clock reads, no sockets.
- The DISCOVER asks for option 108 in the parameter request list (RFC 8925 §3.2) and sets
  the broadcast flag (the client has no IPv4 address to receive a unicast on).
- The probe NEVER takes a lease: it sends no REQUEST. An OFFER with option 108 (length 4;
  another length is ignored, RFC 8925 §3.2) means IPv6-only is preferred: wait
  V6ONLY_WAIT (at least MIN_V6ONLY_WAIT, 300 s), then DISCOVER again (§3.2 "restart the
  configuration process after V6ONLY_WAIT"). An OFFER without it says the network offers
  IPv4: reported, and re-probed after ``REPROBE`` so a change of policy is seen. Within one
  exchange an OFFER with option 108 overrides an earlier one without it (several servers).
- DISCOVER retransmission (RFC 2131 §4.1): 4, 8, 16, 32, 64 s; after that the link has no
  DHCPv4 server for us (reported), and we try again after ``REPROBE_SILENT``.
- The messages travel in IPv4/UDP built here (``encapsulate``: 0.0.0.0:68 to
  255.255.255.255:67, RFC 768 checksum) and read here (``decapsulate``: one unfragmented
  datagram from port 67 to port 68, lengths and a non-zero checksum verified), so the
  socket can be a link-layer one that never binds UDP port 68 (the host's own DHCP
  client keeps it).
- Replies are checked before use: BOOTREPLY, our transaction id and hardware address,
  message type OFFER; anything else is dropped and counted. The parser is bounded: any
  overrun, a missing magic cookie, a truncated option raises ``DhcpError`` (a
  ``RemoteProtocolError``). Options split over several instances are concatenated (RFC
  3396); option overload (52) is honoured for ``file`` and ``sname``.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address

from rtc64.errors import RemoteProtocolError

BOOTREQUEST, BOOTREPLY = 1, 2
HTYPE_ETHER = 1
MAGIC_COOKIE = b"\x63\x82\x53\x63"
FIXED = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")  # RFC 2131 §2, 236 octets
BROADCAST_FLAG = 0x8000
MIN_BOOTP = 300  # RFC 1542 §3.1.1: some relays drop shorter requests
OPT_PAD, OPT_END = 0, 255
OPT_SUBNET_MASK, OPT_ROUTER, OPT_DNS = 1, 3, 6
OPT_OVERLOAD, OPT_MESSAGE_TYPE, OPT_SERVER_ID, OPT_PRL, OPT_CLIENT_ID = 52, 53, 54, 55, 61
OPT_V6ONLY_PREFERRED = 108
DHCPDISCOVER, DHCPOFFER = 1, 2
MIN_V6ONLY_WAIT = 300.0
RETRANSMIT = (4.0, 8.0, 16.0, 32.0, 64.0)
REPROBE = 3600.0
"""After an OFFER without option 108: ask again (a network may turn IPv6-mostly on)."""
REPROBE_SILENT = 600.0
"""After a DISCOVER round nobody answered."""
CLIENT_PORT, SERVER_PORT = 68, 67
IPPROTO_UDP = 17
IPV4_HEADER = struct.Struct("!BBHHHBBH4s4s")
UDP_HEADER = struct.Struct("!HHHH")


class DhcpError(RemoteProtocolError):
    """A DHCP message that cannot be parsed."""


@dataclass(frozen=True, slots=True)
class Reply:
    """The fields of a server's message the probe looks at."""

    op: int
    xid: int
    chaddr: bytes
    yiaddr: IPv4Address
    options: dict[int, bytes]

    @property
    def message_type(self) -> int | None:
        value = self.options.get(OPT_MESSAGE_TYPE)
        return value[0] if value is not None and len(value) == 1 else None

    @property
    def server(self) -> IPv4Address | None:
        value = self.options.get(OPT_SERVER_ID)
        return IPv4Address(value) if value is not None and len(value) == 4 else None

    @property
    def v6only_wait(self) -> int | None:
        """Option 108's V6ONLY_WAIT in seconds; None when absent or not 4 octets long."""
        value = self.options.get(OPT_V6ONLY_PREFERRED)
        return int.from_bytes(value, "big") if value is not None and len(value) == 4 else None


def read_options(area: bytes) -> dict[int, bytes]:
    """Option code -> value of an options area (repeats concatenated, RFC 3396)."""
    out: dict[int, bytes] = {}
    _options(area, out)
    return out


def _options(data: bytes, into: dict[int, bytes]) -> None:
    """Read TLV options up to END (or the end of ``data``), concatenating repeats."""
    i = 0
    while i < len(data):
        code = data[i]
        if code == OPT_END:
            return
        if code == OPT_PAD:
            i += 1
            continue
        if i + 2 > len(data) or i + 2 + data[i + 1] > len(data):
            raise DhcpError(f"DHCP option {code} runs past the end of the message")
        length = data[i + 1]
        into[code] = into.get(code, b"") + data[i + 2 : i + 2 + length]
        i += 2 + length


def parse(data: bytes) -> Reply:
    """A BOOTP/DHCP message (RFC 2131 §2); ``DhcpError`` on anything malformed."""
    if len(data) < FIXED.size + len(MAGIC_COOKIE):
        raise DhcpError(f"DHCP message of {len(data)} octets is shorter than 240")
    op, htype, hlen, _, xid, _, _, _, yiaddr, _, _, chaddr, sname, file = FIXED.unpack_from(data)
    if data[FIXED.size : FIXED.size + 4] != MAGIC_COOKIE:
        raise DhcpError("DHCP message without the magic cookie")
    if htype != HTYPE_ETHER or hlen != 6:
        raise DhcpError(f"DHCP hardware type {htype}/length {hlen} is not Ethernet")
    options: dict[int, bytes] = {}
    _options(data[FIXED.size + 4 :], options)
    overload = options.pop(OPT_OVERLOAD, b"")
    if overload:
        if len(overload) != 1 or overload[0] not in (1, 2, 3):
            raise DhcpError(f"DHCP option overload value {overload.hex()} is not 1, 2 or 3")
        if overload[0] & 1:
            _options(file, options)
        if overload[0] & 2:
            _options(sname, options)
    return Reply(op, xid, chaddr[:6], IPv4Address(yiaddr), options)


def discover(xid: int, mac: bytes) -> bytes:
    """A DHCPDISCOVER asking for option 108 (RFC 8925 §3.2), broadcast flag set."""
    if len(mac) != 6:
        raise ValueError(f"an Ethernet address has 6 octets, not {len(mac)}")
    fixed = FIXED.pack(
        BOOTREQUEST, HTYPE_ETHER, 6, 0, xid, 0, BROADCAST_FLAG, bytes(4), bytes(4), bytes(4),
        bytes(4), mac.ljust(16, b"\0"), bytes(64), bytes(128),
    )  # fmt: skip
    prl = bytes((OPT_SUBNET_MASK, OPT_ROUTER, OPT_DNS, OPT_V6ONLY_PREFERRED))
    options = (
        bytes((OPT_MESSAGE_TYPE, 1, DHCPDISCOVER))
        + bytes((OPT_PRL, len(prl)))
        + prl
        + bytes((OPT_CLIENT_ID, 7, HTYPE_ETHER))
        + mac
        + bytes((OPT_END,))
    )
    return (fixed + MAGIC_COOKIE + options).ljust(MIN_BOOTP, b"\0")


def _checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    blob = data + b"\0" if len(data) % 2 else data
    total: int = sum(struct.unpack(f"!{len(blob) // 2}H", blob))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _udp_checksum(src: bytes, dst: bytes, segment: bytes) -> int:
    pseudo = src + dst + struct.pack("!BBH", 0, IPPROTO_UDP, len(segment))
    return _checksum(pseudo + segment)


def encapsulate(payload: bytes) -> bytes:
    """``payload`` as an IPv4/UDP datagram from 0.0.0.0:68 to 255.255.255.255:67."""
    src, dst = bytes(4), b"\xff" * 4
    udp = UDP_HEADER.pack(CLIENT_PORT, SERVER_PORT, UDP_HEADER.size + len(payload), 0)
    checksum = _udp_checksum(src, dst, udp + payload) or 0xFFFF  # 0 means "none"
    udp = udp[:6] + checksum.to_bytes(2, "big")
    total = IPV4_HEADER.size + len(udp) + len(payload)
    header = IPV4_HEADER.pack(0x45, 0x10, total, 0, 0, 64, IPPROTO_UDP, 0, src, dst)
    header = header[:10] + _checksum(header).to_bytes(2, "big") + header[12:]
    return header + udp + payload


def decapsulate(packet: bytes) -> bytes:
    """The DHCP message in an IPv4/UDP datagram to port 68; ``DhcpError`` otherwise."""
    if len(packet) < IPV4_HEADER.size + UDP_HEADER.size:
        raise DhcpError(f"IPv4 packet of {len(packet)} octets is too short for UDP")
    vihl, _, total, _, frag, _, proto, _, src, dst = IPV4_HEADER.unpack_from(packet)
    ihl = (vihl & 0x0F) * 4
    if vihl >> 4 != 4 or ihl < IPV4_HEADER.size or not ihl + UDP_HEADER.size <= total:
        raise DhcpError("not an IPv4 header")
    if total > len(packet) or proto != IPPROTO_UDP or frag & 0x3FFF:
        raise DhcpError("not one whole UDP datagram")
    if _checksum(packet[:ihl]) != 0:
        raise DhcpError("bad IPv4 header checksum")
    sport, dport, length, checksum = UDP_HEADER.unpack_from(packet, ihl)
    if sport != SERVER_PORT or dport != CLIENT_PORT:
        raise DhcpError(f"UDP {sport} -> {dport} is not DHCP server -> client")
    if length < UDP_HEADER.size or ihl + length > total:
        raise DhcpError(f"UDP length {length} does not fit the IPv4 packet")
    segment = packet[ihl : ihl + length]
    if checksum and _udp_checksum(src, dst, segment) != 0:
        raise DhcpError("bad UDP checksum")
    return segment[UDP_HEADER.size :]


@dataclass(frozen=True, slots=True)
class V6Only:
    """Option 108: IPv6-only is preferred for ``wait`` seconds (already at least 300)."""

    wait: float
    server: IPv4Address | None


@dataclass(frozen=True, slots=True)
class Ipv4Offered:
    """An OFFER without option 108: the network offers IPv4 (not taken by us)."""

    address: IPv4Address
    server: IPv4Address | None


Event = V6Only | Ipv4Offered


class State(enum.Enum):
    IDLE = "idle"
    SELECTING = "selecting"
    V6ONLY_WAIT = "v6only-wait"
    IPV4_OFFERED = "ipv4-offered"
    NO_SERVER = "no-server"


@dataclass(slots=True)
class Dhcp4Probe:
    """One link's probe; see the module rules. ``new_xid`` gives random transaction ids."""

    mac: bytes
    new_xid: Callable[[], int]
    state: State = State.IDLE
    xid: int = 0
    deadline: float | None = None
    tries: int = 0
    last: Event | None = None
    dropped: int = 0

    def start(self, now: float) -> bytes:
        """Begin (or restart) an exchange: the DISCOVER to broadcast."""
        self.state, self.xid, self.tries = State.SELECTING, self.new_xid() & 0xFFFFFFFF, 0
        return self._send(now)

    def _send(self, now: float) -> bytes:
        self.deadline = now + RETRANSMIT[min(self.tries, len(RETRANSMIT) - 1)]
        self.tries += 1
        return discover(self.xid, self.mac)

    def get_timer(self) -> float | None:
        return self.deadline

    def handle_timer(self, now: float) -> bytes | None:
        if self.deadline is None or now < self.deadline:
            return None
        if self.state is State.SELECTING and self.tries < len(RETRANSMIT):
            return self._send(now)
        if self.state is State.SELECTING:  # no answer to any DISCOVER
            self.state, self.deadline, self.last = State.NO_SERVER, now + REPROBE_SILENT, None
            return None
        return self.start(now)  # the wait or the re-probe interval is over

    def receive(self, data: bytes, now: float) -> Event | None:
        try:
            reply = parse(data)
        except DhcpError:
            self.dropped += 1
            return None
        ours = reply.op == BOOTREPLY and reply.xid == self.xid and reply.chaddr == self.mac
        if not ours or reply.message_type != DHCPOFFER:
            self.dropped += 1
            return None
        if self.state not in (State.SELECTING, State.IPV4_OFFERED):
            return None  # a late OFFER: option 108 already decided this exchange
        wait = reply.v6only_wait
        event: Event
        if wait is not None:
            event = V6Only(max(float(wait), MIN_V6ONLY_WAIT), reply.server)
            self.state, self.deadline = State.V6ONLY_WAIT, now + event.wait
        else:
            if self.state is State.IPV4_OFFERED:
                return None
            event = Ipv4Offered(reply.yiaddr, reply.server)
            self.state, self.deadline = State.IPV4_OFFERED, now + REPROBE
        self.last = event
        return event

    def describe(self) -> str:
        """One line for the status and the log."""
        last = self.last
        if isinstance(last, V6Only):
            return (
                f"IPv6-only preferred (option 108 from {last.server}, V6ONLY_WAIT {last.wait:g} s)"
            )
        if isinstance(last, Ipv4Offered):
            return f"IPv4 {last.address} offered by {last.server} without option 108 (not taken)"
        if self.state is State.NO_SERVER:
            return "no DHCPv4 server answered"
        return "asking" if self.state is State.SELECTING else "not asked"
