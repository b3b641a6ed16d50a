"""Option 108 probes on the uplinks: one ``Dhcp4Probe`` and its socket per up link.

Rules (RFC 8925 §3.2; the probe's own rules are in ``dhcp4``):

- ``follow`` is called with each netlink snapshot: a probe starts on every eligible link
  that is up and has an Ethernet address, and stops (socket closed) when the link goes
  down or away; it starts afresh when the link comes back (a new network may answer).
- A link whose socket cannot be opened (no permission, not Ethernet) is reported once and
  not probed again while the daemon runs.
- What the probes learn is handed to ``on_event(index, event)``; send failures are
  counted, never raised into the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from rtc64.io.dhcp4 import Dhcp4Socket, hardware_address

from .dhcp4 import Dhcp4Probe, DhcpError, Event, decapsulate, encapsulate


@dataclass(slots=True)
class Dhcp4Watch:
    log: logging.Logger
    on_event: Callable[[int, Event], None]
    probes: dict[int, Dhcp4Probe] = field(default_factory=dict)
    socks: dict[int, Dhcp4Socket] = field(default_factory=dict)
    unavailable: set[int] = field(default_factory=set)
    send_errors: int = 0
    dropped: int = 0
    """Packets that were not a well-formed IPv4/UDP datagram to port 68."""

    def follow(self, links: Iterable[tuple[int, str, bool]], now: float) -> None:
        """``links``: (index, name, up) of every eligible link right now."""
        wanted: dict[int, str] = {i: name for i, name, up in links if up}
        for index in set(self.probes) - set(wanted):
            self._close(index)
        for index, name in wanted.items():
            if index in self.probes or index in self.unavailable:
                continue
            mac = hardware_address(name)
            if mac is None:
                self.unavailable.add(index)
                continue
            try:
                sock = Dhcp4Socket(name)
            except OSError as exc:
                self.unavailable.add(index)
                self.log.warning("%s: no DHCPv4 option 108 probe: %s", name, exc)
                continue
            probe = Dhcp4Probe(mac, lambda: secrets.randbits(32))
            self.probes[index], self.socks[index] = probe, sock
            asyncio.get_running_loop().add_reader(sock.fileno(), self._readable, index)
            self._send(index, probe.start(now))

    def _send(self, index: int, data: bytes) -> None:
        try:
            self.socks[index].send(encapsulate(data))
        except OSError as exc:
            self.send_errors += 1
            self.log.debug("DHCPDISCOVER on %s failed: %s", self.socks[index].ifname, exc)

    def _readable(self, index: int) -> None:
        sock, probe = self.socks.get(index), self.probes.get(index)
        if sock is None or probe is None:
            return
        now = asyncio.get_running_loop().time()
        for packet in sock.recv_all():
            try:
                data = decapsulate(packet)
            except DhcpError:
                self.dropped += 1
                continue
            event = probe.receive(data, now)
            if event is not None:
                self.on_event(index, event)

    def get_timer(self) -> float | None:
        deadlines = [t for p in self.probes.values() if (t := p.get_timer()) is not None]
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> None:
        for index, probe in list(self.probes.items()):
            data = probe.handle_timer(now)
            if data is not None:
                self._send(index, data)

    def describe(self, index: int) -> str | None:
        probe = self.probes.get(index)
        return None if probe is None else probe.describe()

    def _close(self, index: int) -> None:
        self.probes.pop(index, None)
        sock = self.socks.pop(index, None)
        if sock is not None:
            with contextlib.suppress(RuntimeError, ValueError, OSError):
                asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()

    def close(self) -> None:
        for index in list(self.probes):
            self._close(index)
