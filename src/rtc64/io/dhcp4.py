"""The DHCPv4 probe's socket: a link-layer (``AF_PACKET``) socket on one interface.

Rules (RFC 2131 §4.1, RFC 8925; the probe's logic and its IPv4/UDP framing are in
``clat.dhcp4``):

- Like the DHCP clients of Linux distributions (ISC dhclient, systemd-networkd,
  NetworkManager) in their DISCOVER phase, the probe uses a packet socket, not UDP port
  68: binding port 68 could keep the host's own DHCP client from binding it, and a host
  without IPv4 address receives the server's broadcast anyway. ``SOCK_DGRAM`` packet
  sockets carry whole IPv4 packets (the kernel adds and strips the Ethernet header);
  frames go to the Ethernet broadcast address.
- A classic BPF filter, attached before the socket is bound, lets only unfragmented IPv4
  UDP to port 68 through: the daemon never sees the link's other traffic.
- ``recv_all`` drains what is queued without blocking.
"""

from __future__ import annotations

import contextlib
import ctypes
import socket
import struct
from pathlib import Path

ETH_P_IP = 0x0800
SO_ATTACH_FILTER = 26
BROADCAST_MAC = b"\xff" * 6
MAX_PACKET = 1500
MAX_DRAIN = 64
# ldb [9]; jeq #17 else drop; ldh [6]; jset #0x1fff (a fragment) drop;
# ldxb 4*([0]&0xf); ldh [x+2]; jeq #68 else drop; ret #65535; drop: ret #0
DHCP_CLIENT_FILTER = (
    (0x30, 0, 0, 9),
    (0x15, 0, 6, 17),
    (0x28, 0, 0, 6),
    (0x45, 4, 0, 0x1FFF),
    (0xB1, 0, 0, 0),
    (0x48, 0, 0, 2),
    (0x15, 0, 1, 68),
    (0x06, 0, 0, 0xFFFF),
    (0x06, 0, 0, 0),
)


def hardware_address(ifname: str) -> bytes | None:
    """The interface's 6-octet Ethernet address, None for other link types."""
    try:
        text = Path("/sys/class/net", ifname, "address").read_text().strip()
        mac = bytes.fromhex(text.replace(":", ""))
    except (OSError, ValueError):
        return None
    return mac if len(mac) == 6 and any(mac) else None


def _attach_filter(sock: socket.socket) -> None:
    program = b"".join(struct.pack("HBBI", *insn) for insn in DHCP_CLIENT_FILTER)
    buf = ctypes.create_string_buffer(program)
    fprog = struct.pack("HL", len(DHCP_CLIENT_FILTER), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


class Dhcp4Socket:
    """IPv4 packets to UDP port 68 on ``ifname``; ``close`` when done."""

    def __init__(self, ifname: str) -> None:
        self.ifname = ifname
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
        try:
            _attach_filter(self.sock)
            self.sock.bind((ifname, ETH_P_IP))
            self.sock.setblocking(False)
        except OSError:
            self.sock.close()
            raise

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, packet: bytes) -> None:
        """One IPv4 packet to the link's broadcast address."""
        self.sock.sendto(packet, (self.ifname, ETH_P_IP, 0, 0, BROADCAST_MAC))

    def recv_all(self) -> list[bytes]:
        """Queued IPv4 packets (at most ``MAX_DRAIN``)."""
        out: list[bytes] = []
        for _ in range(MAX_DRAIN):
            try:
                out.append(self.sock.recv(MAX_PACKET))
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
        return out

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
