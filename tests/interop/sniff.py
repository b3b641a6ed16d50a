"""Packet captures inside a lab host: tcpdump writes a pcap, a small reader gives UDP packets.

``Sniffer`` runs ``tcpdump -i any`` in a namespace (every interface of that host) and
``stop()`` returns the captured UDP datagrams with their addresses, ports, payloads and
timestamps, so a test can count RTP per direction and order it against SIP messages.
The reader knows the link types tcpdump writes for ``-i any`` (Linux cooked v1 and v2)
and Ethernet; IPv6 extension headers are not followed (none in the lab).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path

from tests.interop.lab import Host, stop

LINKTYPE_ETHERNET = 1
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD


@dataclass(frozen=True, slots=True)
class Datagram:
    """One captured UDP datagram."""

    time: float
    src: IPv4Address | IPv6Address
    sport: int
    dst: IPv4Address | IPv6Address
    dport: int
    payload: bytes

    @property
    def is_rtp(self) -> bool:
        """RTP version 2, not RTCP (payload types 200-204 with the marker bit), not SIP."""
        p = self.payload
        return len(p) >= 12 and p[0] >> 6 == 2 and not 200 <= p[1] <= 204

    def starts(self, text: bytes) -> bool:
        return self.payload.startswith(text)


def read_pcap(path: Path) -> list[Datagram]:
    """Every UDP datagram of a classic pcap file (microsecond or nanosecond stamps)."""
    data = path.read_bytes()
    if len(data) < 24:
        return []
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise ValueError(f"{path}: not a pcap file")
    nanos = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack_from(endian + "I", data, 20)[0]
    out: list[Datagram] = []
    pos = 24
    while pos + 16 <= len(data):
        sec, frac, caplen, _ = struct.unpack_from(endian + "IIII", data, pos)
        frame = data[pos + 16 : pos + 16 + caplen]
        pos += 16 + caplen
        stamp = sec + frac / (1e9 if nanos else 1e6)
        found = _udp(frame, linktype)
        if found is not None:
            out.append(Datagram(stamp, *found))
    return out


def _udp(
    frame: bytes, linktype: int
) -> tuple[IPv4Address | IPv6Address, int, IPv4Address | IPv6Address, int, bytes] | None:
    if linktype == LINKTYPE_LINUX_SLL2:
        proto, offset = struct.unpack_from("!H", frame, 0)[0], 20
    elif linktype == LINKTYPE_LINUX_SLL:
        proto, offset = struct.unpack_from("!H", frame, 14)[0], 16
    elif linktype == LINKTYPE_ETHERNET:
        proto, offset = struct.unpack_from("!H", frame, 12)[0], 14
    else:
        raise ValueError(f"unsupported pcap link type {linktype}")
    ip = frame[offset:]
    if proto == ETH_P_IP and len(ip) >= 20 and ip[9] == 17:
        header = (ip[0] & 0x0F) * 4
        src, dst = ip_address(ip[12:16]), ip_address(ip[16:20])
    elif proto == ETH_P_IPV6 and len(ip) >= 40 and ip[6] == 17:
        header = 40
        src, dst = ip_address(ip[8:24]), ip_address(ip[24:40])
    else:
        return None
    udp = ip[header:]
    if len(udp) < 8:
        return None
    sport, dport, length = struct.unpack_from("!HHH", udp, 0)
    return src, sport, dst, dport, udp[8:length]


class Sniffer:
    """``tcpdump -i any udp`` in ``host`` until ``stop()``."""

    def __init__(self, host: Host, workdir: Path, name: str, expression: str = "udp") -> None:
        self.path = workdir / f"{name}.pcap"
        self.log = workdir / f"{name}.tcpdump.log"
        argv = ["tcpdump", "-i", "any", "-n", "-U", "-s", "0", "-Z", "root"]
        argv += ["-w", str(self.path), expression]
        self.proc = host.popen(argv, log=self.log)
        deadline = time.monotonic() + 10
        while "listening on" not in self._text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"tcpdump in {host.ns} did not start: {self._text()}")
            time.sleep(0.05)
        self._packets: list[Datagram] | None = None

    def _text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> list[Datagram]:
        """Stop tcpdump (it flushes on SIGTERM) and read what it captured."""
        if self._packets is None:
            time.sleep(0.2)  # the last packets in flight
            stop(self.proc)
            self._packets = read_pcap(self.path)
        return self._packets


def rtp(
    packets: Iterable[Datagram],
    *,
    src: IPv4Address | IPv6Address | None = None,
    dst: IPv4Address | IPv6Address | None = None,
    dport: int | None = None,
    after: float | None = None,
    before: float | None = None,
) -> list[Datagram]:
    """The RTP packets matching every given condition."""
    return [
        p
        for p in packets
        if p.is_rtp
        and (src is None or p.src == src)
        and (dst is None or p.dst == dst)
        and (dport is None or p.dport == dport)
        and (after is None or p.time > after)
        and (before is None or p.time < before)
    ]


def first_sip(packets: Iterable[Datagram], start: bytes, contains: bytes = b"") -> Datagram:
    """The first captured SIP message starting with ``start`` (and containing ``contains``)."""
    for p in packets:
        if p.starts(start) and contains in p.payload:
            return p
    raise AssertionError(f"no captured SIP message {start!r} with {contains!r}")
