# Rules: the routed-prefix side of the tunnel server, without a TUN device.
# - The prefix is a route in the host's own table toward a sink link (``dummy``, or
#   ``ifb`` on kernels built without the dummy driver): both are NOARP and drop what they
#   transmit. The kernel forwards (hop limit, FORWARD firewall, its own ICMPv6 errors)
#   and routes the host's own packets to the prefix there too, so a gateway on the same
#   host reaches tunnel clients; nothing answers for client addresses (no ``local``
#   route: the kernel would answer echo and reset TCP for every client).
# - Downstream: an AF_PACKET tap (ETH_P_ALL, SOCK_DGRAM: no link header) on the sink
#   sees each packet the kernel transmits there; a classic BPF filter keeps only IPv6
#   packets going out (PACKET_OUTGOING), so each read is one packet for ``on_packet``.
# - Upstream: one IPPROTO_RAW IPv6 socket (header included, the source kept as the
#   client's) sends each packet through the host's routing table as it is: the caller
#   is the router hop (decrements the hop limit). Send errors are counted, never raised.
# - The sink's transmit offloads are turned off (ethtool ioctls: checksum, scatter-gather,
#   TSO, GSO): the tap sits before the driver, so with them on it would see UDP/TCP
#   packets whose checksum is not filled in yet and GRO-merged TCP super-packets far over
#   the tunnel MTU. Off, the kernel completes checksums and segments before the tap.
# - The sink carries the server's own address (prefix::1/128, nodad) and the route; it
#   is deleted on close, which removes both (the host is restored).
# Needs CAP_NET_ADMIN (link, route) and CAP_NET_RAW (tap, raw socket).
"""The routed-prefix backend: packet tap on a sink link plus a raw IPv6 socket."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import functools
import socket
import struct
from collections.abc import Callable

from rtc64.io.tun import MAX_PACKET, ip_command, read_packets

ETH_P_ALL = 0x0003
ETH_P_IPV6 = 0x86DD
PACKET_OUTGOING = 4
IPV6_HDRINCL = 36  # linux/in6.h; IPPROTO_RAW implies it, set for clarity
SINK_KINDS = ("dummy", "ifb")
SIOCETHTOOL = 0x8946
# linux/ethtool.h legacy per-feature commands: (set, get, what)
OFFLOADS = (
    (0x0000001F, 0x0000001E, "tcp-segmentation-offload"),
    (0x00000024, 0x00000023, "generic-segmentation-offload"),
    (0x00000019, 0x00000018, "scatter-gather"),
    (0x00000017, 0x00000016, "tx-checksumming"),
)


SO_ATTACH_FILTER = 26
# classic BPF (linux/filter.h): accept IPv6 packets the host transmits, drop the rest
# before they are queued: ld proto; jeq ETH_P_IPV6; ld pkttype; jeq PACKET_OUTGOING
_SKF_AD_PROTOCOL = 0xFFFFF000  # SKF_AD_OFF + SKF_AD_PROTOCOL
_SKF_AD_PKTTYPE = 0xFFFFF004  # SKF_AD_OFF + SKF_AD_PKTTYPE
_PROGRAM = (
    (0x20, 0, 0, _SKF_AD_PROTOCOL),  # BPF_LD | BPF_W | BPF_ABS
    (0x15, 0, 3, ETH_P_IPV6),  # BPF_JMP | BPF_JEQ | BPF_K
    (0x20, 0, 0, _SKF_AD_PKTTYPE),
    (0x15, 0, 1, PACKET_OUTGOING),
    (0x06, 0, 0, MAX_PACKET),  # BPF_RET | BPF_K: accept
    (0x06, 0, 0, 0),  # drop
)


def attach_filter(sock: socket.socket) -> None:
    """Attach ``_PROGRAM`` (``struct sock_fprog``; the kernel copies the instructions
    during the call, so the buffer only has to outlive it)."""
    code = b"".join(struct.pack("=HBBI", *insn) for insn in _PROGRAM)
    program = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("HP", len(_PROGRAM), ctypes.addressof(program))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def _ethtool(name: str, command: int, value: int = 0) -> int:
    """One ``struct ethtool_value`` ioctl on the link ``name``; returns its ``data``."""
    data = ctypes.create_string_buffer(struct.pack("=II", command, value))
    request = struct.pack("16sP", name.encode("ascii"), ctypes.addressof(data)).ljust(40, b"\0")
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
        fcntl.ioctl(sock.fileno(), SIOCETHTOOL, request)
    result: int = struct.unpack_from("=II", data.raw)[1]
    return result


def disable_offloads(name: str) -> None:
    """Turn off the sink's transmit offloads; OSError naming one that stays on."""
    for set_command, get_command, what in OFFLOADS:
        with contextlib.suppress(OSError):  # not offered by this driver: checked below
            _ethtool(name, set_command, 0)
        if _ethtool(name, get_command):
            raise OSError(f"{name}: cannot turn off {what} (the packet tap needs it off)")


async def create_sink(name: str, mtu: int) -> str:
    """Create the sink link ``name`` (the first kind this kernel knows); return its kind."""
    for kind in SINK_KINDS:
        try:
            await ip_command("link", "add", name, "type", kind)
        except OSError as exc:
            if "Unknown device type" in str(exc) and kind != SINK_KINDS[-1]:
                continue
            if "exists" in str(exc):  # never take over a link: it may not be ours
                raise OSError(
                    f"link {name} already exists (left by a server that was killed? "
                    f"check it, then `ip link del {name}`)"
                ) from None
            raise
        try:
            await ip_command("link", "set", "dev", name, "addrgenmode", "none")
            await ip_command("link", "set", "dev", name, "mtu", str(mtu), "up")
            disable_offloads(name)
        except OSError:
            await delete_sink(name)
            raise
        return kind
    raise OSError(f"no link kind among {', '.join(SINK_KINDS)}")  # pragma: no cover


async def delete_sink(name: str) -> None:
    """Delete the sink (and with it its address and the prefix route)."""
    with contextlib.suppress(OSError):
        await ip_command("link", "del", "dev", name)


class RoutedPrefix:
    """The tap on the sink ``name`` (``on_packet`` per packet routed there) and the raw
    socket ``write`` sends upstream packets with."""

    def __init__(self, name: str, on_packet: Callable[[bytes], None]) -> None:
        self.name = name
        self.written = 0
        self.write_errors = 0
        # protocol 0 receives nothing until bind names the link: no packet of another
        # link is queued before the filter and the binding are in place
        self._tap = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
        try:
            attach_filter(self._tap)
            self._tap.bind((name, ETH_P_ALL))
            self._tap.setblocking(False)
            self._raw = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
        except OSError:
            self._tap.close()
            raise
        self._raw.setsockopt(socket.IPPROTO_IPV6, IPV6_HDRINCL, 1)
        self._raw.setblocking(False)
        self._loop = asyncio.get_running_loop()
        read = functools.partial(self._tap.recv, MAX_PACKET)  # no address: an ioctl each
        self._loop.add_reader(self._tap.fileno(), read_packets, read, on_packet)
        self._open = True

    def write(self, packet: bytes) -> None:
        """Send one IPv6 packet (header included) through the host's routing table."""
        destination = socket.inet_ntop(socket.AF_INET6, packet[24:40])
        try:
            self._raw.sendto(packet, (destination, 0))
            self.written += 1
        except OSError:
            self.write_errors += 1

    def close(self) -> None:
        """Stop reading and close both sockets (the sink is deleted by ``delete_sink``)."""
        if self._open:
            self._open = False
            self._loop.remove_reader(self._tap.fileno())
            self._tap.close()
            self._raw.close()
