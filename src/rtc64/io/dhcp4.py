"""The DHCPv4 probe's socket: UDP port 68 on one interface, broadcasts to port 67.

Rules (RFC 2131 §4.1, RFC 8925; the probe's logic is ``clat.dhcp4``):

- One socket per interface: ``0.0.0.0:68`` with ``SO_BINDTODEVICE`` (replies from other
  links never reach it) and ``SO_REUSEADDR`` (beside another client's socket on another
  interface), ``SO_BROADCAST`` to send to ``255.255.255.255:67``. The interface needs no
  IPv4 address: Linux routes the limited broadcast out of the bound device.
- Datagrams are handed over raw; parsing and checks are the core's. ``recv_all`` drains
  what is queued without blocking.
"""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

CLIENT_PORT, SERVER_PORT = 68, 67
LIMITED_BROADCAST = "255.255.255.255"
MAX_DATAGRAM = 1500
MAX_DRAIN = 64


def hardware_address(ifname: str) -> bytes | None:
    """The interface's 6-octet Ethernet address, None for other link types."""
    try:
        text = Path("/sys/class/net", ifname, "address").read_text().strip()
        mac = bytes.fromhex(text.replace(":", ""))
    except (OSError, ValueError):
        return None
    return mac if len(mac) == 6 and any(mac) else None


class Dhcp4Socket:
    """UDP 68 bound to ``ifname``; ``close`` when done."""

    def __init__(self, ifname: str) -> None:
        self.ifname = ifname
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
            self.sock.bind(("0.0.0.0", CLIENT_PORT))  # noqa: S104 - DHCP clients must
            self.sock.setblocking(False)
        except OSError:
            self.sock.close()
            raise

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, (LIMITED_BROADCAST, SERVER_PORT))

    def recv_all(self) -> list[tuple[bytes, str]]:
        """Queued datagrams with their source address (at most ``MAX_DRAIN``)."""
        out: list[tuple[bytes, str]] = []
        for _ in range(MAX_DRAIN):
            try:
                data, addr = self.sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            out.append((data, str(addr[0])))
        return out

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
