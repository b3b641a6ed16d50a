# Rules (issue 16, the Public TSP profile):
# - No per-client state: every datagram is answered from its own bytes and the UDP
#   source address (a restarted server or a second instance loses nothing).
# - Signalling (RFC 5572 §4.4): VERSION -> CAPABILITY, AUTHENTICATE ANONYMOUS -> 200,
#   tunnel create (v6udpv4, or v6anyv4: the broker picks, here always v6udpv4) -> tunnel
#   info, accept -> nothing, delete -> 200 (nothing is held); other versions (302),
#   mechanisms (300), tunnel types (303) and malformed text (500) get the status codes.
#   Every answer in the command phase carries Content-length (§4.4.3), errors included.
#   An answer is sent only when it is not larger than the request (anti-amplification:
#   clients pad, see tsp.REQUEST_SIZE); otherwise the request is dropped and counted.
# - Upstream data: a bare IPv6 packet whose source embeds the datagram's own IPv4:port
#   (egress filter). Multicast destinations (the client's link chatter) are ignored and
#   counted apart; destinations a router never forwards to (loopback, unspecified,
#   link-local, IPv4-mapped) are dropped: a raw socket would deliver ::1 to this host's
#   loopback services. Packets to the prefix go straight to the embedded endpoint; others
#   to the TUN side. Echo requests to the server address are answered (keepalive); other
#   packets to it go to the host, which owns that address (the host's own sockets use it
#   as their source toward clients).
#   A prefix source that does not match (a changed NAT mapping) gets Destination
#   Unreachable code 5 back to the datagram's sender (same size or smaller, rate-limited).
# - Downstream data (from the TUN side): multicast destinations are the host's own link
#   chatter on the device (MLD reports, router solicitations), ignored and counted apart
#   from drops; a prefix source other than the server address
#   (the host's own) is dropped; only to a prefix address whose embedded endpoint
#   is a routable unicast IPv4 and a non-zero port; otherwise Destination Unreachable
#   (code 3) to the source. Larger than the 1280-byte tunnel MTU: Packet Too Big.
# - Per-IPv4-source rate limit on everything received, per-IPv4-destination rate limit on
#   everything sent to an embedded endpoint (the stateless design lets anyone address any
#   IPv4:port through the prefix: this bounds how hard one host can be hit through us,
#   with the same size, never more), and never to the server's own IPv4 address.
#   ICMPv6 errors are rate-limited too.
# - ``router``: the IPv6 side does not forward through the kernel (the routed-prefix
#   backend sends upstream packets as they are), so the core is the router hop for that
#   direction: it decrements the hop limit and answers Time Exceeded (RFC 8200 §3,
#   RFC 4443 §3.3) when it runs out. Behind a TUN device the kernel does both.
"""The stateless Public TSP server core: datagrams in, datagrams and packets out."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, IPv6Network

from rtc64.errors import RemoteProtocolError
from rtc64.tunnel import packet as ip
from rtc64.tunnel import tsp
from rtc64.tunnel.mapping import Mapping, routable
from rtc64.tunnel.ratelimit import TokenBuckets

UdpAddr = tuple[IPv4Address, int]


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """What the server announces and enforces."""

    prefix: IPv6Network
    server_ipv4: IPv4Address
    lifetime: int = 604800
    keepalive: int = 30
    mtu: int = ip.MIN_MTU
    rate: float = 500.0  # packets per second per IPv4 source
    burst: float = 1000.0
    icmp_rate: float = 100.0  # ICMPv6 errors per second, all destinations together
    router: bool = False  # decrement the hop limit of upstream packets (see the rules)


@dataclass(frozen=True, slots=True)
class ToUdp:
    """Send ``data`` to the IPv4 endpoint ``addr``."""

    data: bytes
    addr: UdpAddr


@dataclass(frozen=True, slots=True)
class ToTun:
    """Write ``packet`` to the IPv6 side (TUN device or routed network)."""

    packet: bytes


Action = ToUdp | ToTun


@dataclass(slots=True)
class Counters:
    """Per-direction and per-reason counters (monotonic)."""

    signalling: int = 0
    signalling_errors: int = 0
    amplification_refused: int = 0
    tunnels_created: int = 0
    up_packets: int = 0
    up_bytes: int = 0
    down_packets: int = 0
    down_bytes: int = 0
    client_to_client: int = 0
    keepalives: int = 0
    dropped_malformed: int = 0
    dropped_spoofed: int = 0
    dropped_rate_limited: int = 0
    dropped_unroutable: int = 0
    dropped_too_big: int = 0
    dropped_hop_limit: int = 0
    ignored_multicast: int = 0
    icmp_sent: int = 0
    icmp_rate_limited: int = 0

    def snapshot(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(slots=True)
class TunnelServer:
    """Handles one datagram or one packet at a time; keeps only counters and buckets."""

    settings: ServerSettings
    counters: Counters = field(default_factory=Counters)
    mapping: Mapping = field(init=False)
    _sources: TokenBuckets = field(init=False)
    _targets: TokenBuckets = field(init=False)
    _icmp: TokenBuckets = field(init=False)

    def __post_init__(self) -> None:
        self.mapping = Mapping(self.settings.prefix)
        self._sources = TokenBuckets(self.settings.rate, self.settings.burst)
        self._targets = TokenBuckets(self.settings.rate, self.settings.burst)
        rate = self.settings.icmp_rate
        self._icmp = TokenBuckets(rate, max(1.0, rate))

    # ------------------------------------------------------------------ from the UDP side

    def from_udp(self, data: bytes, addr: UdpAddr, now: float) -> list[Action]:
        """One datagram received from ``addr`` on the tunnel port."""
        ipv4, port = addr
        if not routable(ipv4) or port == 0:
            self.counters.dropped_unroutable += 1
            return []
        if not self._sources.allow(ipv4, now):
            self.counters.dropped_rate_limited += 1
            return []
        if tsp.is_signalling(data):
            return self._signalling(data, addr)
        return self._upstream(data, addr, now)

    def _signalling(self, data: bytes, addr: UdpAddr) -> list[Action]:
        self.counters.signalling += 1
        try:
            header, message = tsp.split_header(data)
        except RemoteProtocolError:
            self.counters.signalling_errors += 1
            return []
        command = tsp.is_command(message)
        try:
            response = self.answer(tsp.parse_request(message), addr)
        except RemoteProtocolError as exc:
            self.counters.signalling_errors += 1
            known = exc.status in tsp.Status.__members__.values()
            status = tsp.Status(exc.status) if known else tsp.Status.INVALID_REQUEST_FORMAT
            response = tsp.Response(status, status.reason, framed=command)
        if response is None:
            return []
        reply = header.encode() + tsp.encode_response(response)
        if len(reply) > len(data):
            self.counters.amplification_refused += 1
            return []
        return [ToUdp(reply, addr)]

    def answer(self, request: tsp.Request, addr: UdpAddr) -> tsp.Response | None:
        """The answer to one request from ``addr`` (None: nothing to answer)."""
        if request.kind is tsp.Kind.VERSION:
            if request.version != tsp.VERSION:
                status = tsp.Status.UNSUPPORTED_CLIENT_VERSION
                return tsp.Response(status, status.reason)
            return tsp.Response(0, "", capability=tsp.CAPABILITY)
        if request.kind is tsp.Kind.AUTHENTICATE:
            status = tsp.Status.SUCCESS
            if request.mechanism.upper() != b"ANONYMOUS":
                status = tsp.Status.AUTHENTICATION_FAILED
            return tsp.Response(status, status.reason)
        doc = request.document
        if doc is None or doc.action in ("accept", "reject"):
            return None
        status = tsp.Status.SUCCESS
        if doc.action != "create":
            if doc.action != "delete":
                status = tsp.Status.INVALID_REQUEST_FORMAT
            return tsp.Response(status, status.reason, framed=True)
        if doc.type not in (tsp.TUNNEL_TYPE, "v6anyv4"):
            status = tsp.Status.UNSUPPORTED_TUNNEL_TYPE
            if doc.type is None:
                status = tsp.Status.INVALID_REQUEST_FORMAT
            return tsp.Response(status, status.reason, framed=True)
        self.counters.tunnels_created += 1
        info = tsp.TunnelDoc(
            action="info",
            lifetime=self.settings.lifetime,
            server_ipv4=self.settings.server_ipv4,
            server_ipv6=self.mapping.server_address,
            client_ipv4=addr[0],
            client_ipv6=self.mapping.client_address(*addr),
            keepalive_interval=self.settings.keepalive,
            keepalive_ipv6=self.mapping.server_address,
        )
        return tsp.Response(int(tsp.Status.SUCCESS), tsp.Status.SUCCESS.reason, document=info)

    def _upstream(self, data: bytes, addr: UdpAddr, now: float) -> list[Action]:
        try:
            header = ip.parse_header(data)
        except RemoteProtocolError:
            self.counters.dropped_malformed += 1
            return []
        if len(data) > self.settings.mtu:
            self.counters.dropped_too_big += 1
            return self._error(data, header, now, too_big=True, addr=addr)
        if not self.mapping.embeds(header.source, *addr):
            self.counters.dropped_spoofed += 1
            if self.mapping.contains(header.source):
                return self._error(data, header, now, code=ip.SOURCE_POLICY, addr=addr)
            return []
        destination = header.destination
        if destination.is_multicast:
            self.counters.ignored_multicast += 1  # the client's link chatter: not routed
            return []
        if not ip.forwardable(destination):
            self.counters.dropped_unroutable += 1  # ::1, link-local...: never this host's
            return []
        self.counters.up_packets += 1
        self.counters.up_bytes += len(data)
        to_me = destination == self.mapping.server_address
        if to_me:
            reply = self._keepalive(data, header, addr)
            if reply:
                return reply  # anything else to the server address is for this host
        elif self.mapping.contains(header.destination):
            target = self.mapping.endpoint(header.destination)
            if target is None:
                self.counters.dropped_unroutable += 1
                return self._error(data, header, now, code=ip.ADDRESS_UNREACHABLE, addr=addr)
            if not self._deliverable(target, now):
                return []
            self.counters.client_to_client += 1
            return [ToUdp(data, target)]
        if self.settings.router and not to_me:  # delivered to this host: not forwarded
            hop = ip.forwarded(data)
            if hop is None:
                self.counters.dropped_hop_limit += 1
                return self._error(data, header, now, addr=addr, expired=True)
            data = hop
        return [ToTun(data)]

    def _keepalive(self, data: bytes, header: ip.Ipv6Header, addr: UdpAddr) -> list[Action]:
        icmp = ip.read_icmp(data, header)
        if icmp is None or icmp.kind != ip.ECHO_REQUEST or len(icmp.body) < 4:
            return []
        self.counters.keepalives += 1
        ident, seq = int.from_bytes(icmp.body[:2]), int.from_bytes(icmp.body[2:4])
        reply = ip.echo(header.destination, header.source, ident, seq, icmp.body[4:], reply=True)
        return [ToUdp(reply, addr)]

    # ------------------------------------------------------------------ from the IPv6 side

    def from_tun(self, packet: bytes, now: float) -> list[Action]:
        """One packet from the IPv6 side toward the tunnel prefix."""
        try:
            header = ip.parse_header(packet)
        except RemoteProtocolError:
            self.counters.dropped_malformed += 1
            return []
        if header.destination.is_multicast:
            self.counters.ignored_multicast += 1  # the host's own link chatter (MLD, RS)
            return []
        me = self.mapping.server_address
        if self.mapping.contains(header.source) and header.source != me:
            self.counters.dropped_spoofed += 1  # prefix sources only come from the tunnel
            return []
        target = self.mapping.endpoint(header.destination)
        if target is None:
            self.counters.dropped_unroutable += 1
            if not self.mapping.contains(header.destination):
                return []  # not ours: never reflect outside the prefix
            return self._icmp_to_tun(packet, header, now, code=ip.ADDRESS_UNREACHABLE)
        if len(packet) > self.settings.mtu:
            self.counters.dropped_too_big += 1
            return self._icmp_to_tun(packet, header, now, too_big=True)
        if not self._deliverable(target, now):
            return []
        self.counters.down_packets += 1
        self.counters.down_bytes += len(packet)
        return [ToUdp(packet, target)]

    def _deliverable(self, target: UdpAddr, now: float) -> bool:
        if target[0] == self.settings.server_ipv4:
            self.counters.dropped_unroutable += 1  # never loop back into ourselves
            return False
        if not self._targets.allow(target[0], now):
            self.counters.dropped_rate_limited += 1
            return False
        return True

    # ------------------------------------------------------------------ ICMPv6 errors

    def _allowed_error(self, packet: bytes, header: ip.Ipv6Header, now: float) -> bool:
        if not ip.may_answer(packet, header):
            return False
        if not self._icmp.allow("icmp", now):
            self.counters.icmp_rate_limited += 1
            return False
        self.counters.icmp_sent += 1
        return True

    def _build(
        self,
        packet: bytes,
        header: ip.Ipv6Header,
        code: int,
        size: int,
        *,
        too_big: bool = False,
        expired: bool = False,
    ) -> bytes:
        me = self.mapping.server_address
        if too_big:
            return ip.packet_too_big(me, packet, header, self.settings.mtu, size)
        if expired:
            return ip.time_exceeded(me, packet, header, size)
        return ip.destination_unreachable(me, packet, header, code, size)

    def _error(
        self,
        packet: bytes,
        header: ip.Ipv6Header,
        now: float,
        *,
        addr: UdpAddr,
        code: int = 0,
        too_big: bool = False,
        expired: bool = False,
    ) -> list[Action]:
        # toward the tunnel an error is never larger than the packet it is about (no
        # amplification toward a possibly spoofed UDP source); it quotes at least a header
        if len(packet) < 2 * ip.HEADER + 8 or not self._allowed_error(packet, header, now):
            return []
        reply = self._build(packet, header, code, len(packet), too_big=too_big, expired=expired)
        return [ToUdp(reply, addr)]

    def _icmp_to_tun(
        self,
        packet: bytes,
        header: ip.Ipv6Header,
        now: float,
        *,
        code: int = 0,
        too_big: bool = False,
    ) -> list[Action]:
        if not self._allowed_error(packet, header, now):
            return []
        return [ToTun(self._build(packet, header, code, ip.MIN_MTU, too_big=too_big))]


def client_address(settings: ServerSettings, ipv4: IPv4Address, port: int) -> IPv6Address:
    """The address a client behind ``ipv4:port`` gets (for logs and tests)."""
    return Mapping(settings.prefix).client_address(ipv4, port)
