# Rules: a Linux TUN device (Documentation/networking/tuntap.rst): open /dev/net/tun,
# TUNSETIFF with IFF_TUN | IFF_NO_PI, so each read() is one bare IP packet and each
# write() sends one; non-blocking, read from the event loop. The device disappears (with
# its addresses and routes) when the descriptor closes: restoring the host is closing it.
# Addresses, MTU and routes are set with iproute2 (``ip``), failures raise OSError with
# the command's message.
"""TUN device adapter and its iproute2 configuration."""

from __future__ import annotations

import asyncio
import fcntl
import functools
import os
import struct
from collections.abc import Callable, Sequence

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
MAX_PACKET = 65535
BURST = 64  # packets read per readiness callback before the loop runs other work


def read_packets(read: Callable[[], bytes], deliver: Callable[[bytes], None]) -> None:
    """The reader of a non-blocking packet descriptor (a TUN device, a packet socket): up
    to ``BURST`` packets to ``deliver``; the first would-block or error ends the burst (the
    loop calls again while the descriptor is readable)."""
    for _ in range(BURST):
        try:
            packet = read()
        except OSError:  # BlockingIOError and InterruptedError too
            return
        deliver(packet)


class Tun:
    """One TUN device: ``on_packet`` gets each packet read; ``write`` sends one."""

    def __init__(self, name: str, on_packet: Callable[[bytes], None]) -> None:
        self._fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
        try:
            ifr = struct.pack("16sH", name.encode("ascii"), IFF_TUN | IFF_NO_PI)
            result = fcntl.ioctl(self._fd, TUNSETIFF, ifr)
        except OSError:
            os.close(self._fd)
            raise
        self.name = result[:16].rstrip(b"\x00").decode("ascii")
        self._loop = asyncio.get_running_loop()
        read = functools.partial(os.read, self._fd, MAX_PACKET)
        self._loop.add_reader(self._fd, read_packets, read, on_packet)
        self.written = 0
        self.write_errors = 0

    def write(self, packet: bytes) -> None:
        """Send one packet into the host's stack (dropped and counted on error)."""
        try:
            os.write(self._fd, packet)
            self.written += 1
        except OSError:
            self.write_errors += 1

    def close(self) -> None:
        """Remove the device (and with it its addresses and routes)."""
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1


async def ip_command(*args: str) -> None:
    """Run ``ip`` with ``args``; OSError with its message when it fails."""
    proc = await asyncio.create_subprocess_exec(
        "ip", *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise OSError(f"ip {' '.join(args)}: {err.decode(errors='replace').strip()}")


async def configure(name: str, address: str, mtu: int, routes: Sequence[str]) -> None:
    """Bring the device up with ``address`` (a /128), ``mtu`` and IPv6 ``routes``."""
    await ip_command("link", "set", "dev", name, "mtu", str(mtu), "up")
    await ip_command("-6", "addr", "replace", address, "dev", name, "nodad")
    for route in routes:
        await ip_command("-6", "route", "replace", route, "dev", name, "mtu", str(mtu))


async def unconfigure_address(name: str, address: str) -> None:
    """Remove one address from the device (a changed mapping)."""
    await ip_command("-6", "addr", "del", address, "dev", name)
