"""What other commands learn from a running ``rtc64 clat``: its addresses, kept current.

Rules: the source is the daemon's ``status.json`` in its state directory (what ``rtc64
clat status --json`` prints), read only while its daemon lives (``running_clats``). The
gateway asks on every SDP offer it inspects; the file is looked at (one ``stat``) at most
once per ``RECHECK`` seconds and re-read only when it changed, so a CLAT coming up or
going away after the gateway started is learnt within seconds. A change is logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from .service import clat_addresses, running_clats

RECHECK = 2.0


@dataclass(slots=True)
class ClatWatch:
    """``addresses()``: the CLAT addresses no SDP may carry (see ``clat_addresses``)."""

    state_dir: Path
    log: logging.Logger
    clock: Callable[[], float] = time.monotonic
    _checked: float | None = None
    _stamp: tuple[int, int] | None = None
    _addresses: frozenset[IPv4Address | IPv6Address] = field(default_factory=frozenset)

    def addresses(self) -> frozenset[IPv4Address | IPv6Address]:
        now = self.clock()
        if self._checked is not None and now - self._checked < RECHECK:
            return self._addresses
        self._checked = now
        try:
            st = (self.state_dir / "status.json").stat()
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_ino)
        except OSError:
            stamp = None
        changed, self._stamp = stamp != self._stamp, stamp
        if changed or stamp is not None:  # a status left by a killed daemon stops counting
            self._reload()
        return self._addresses

    def _reload(self) -> None:
        clats = running_clats(self.state_dir)  # also notices a daemon that died
        found = clat_addresses(clats)
        if found != self._addresses:
            if clats:
                self.log.info(
                    "CLAT addresses never used for media (rtc64 clat): %s",
                    "; ".join(
                        f"{c['interface']}: {c['ipv4']}, {c['clat_ipv6']} ({c['policy']})"
                        for c in clats
                    ),
                )
            else:
                self.log.info("no CLAT run by rtc64 clat any more (%s)", self.state_dir)
        self._addresses = found
