"""Test doubles for the ng protocol: a recording media engine, Kamailio-shaped requests."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from rtc64.errors import RemoteProtocolError
from rtc64.net.address import Family, IPAddress
from rtc64.relay.bencode import Encodable, encode
from rtc64.relay.options import RelayOptions
from rtc64.relay.stats import CallStats, LegStats
from rtc64.rtp.legs import LatchMode

SDP6 = (
    b"v=0\r\no=- 1 1 IN IP6 fd00::2\r\ns=-\r\nc=IN IP6 fd00::2\r\nt=0 0\r\n"
    b"m=audio 6000 RTP/AVP 0\r\n"
)
SDP4 = (
    b"v=0\r\no=- 2 2 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n"
    b"m=audio 7000 RTP/AVP 0\r\n"
)


@dataclass
class Call:
    offer: dict[str, Any]
    answer: dict[str, Any] | None = None


@dataclass
class FakeEngine:
    """Records what the protocol asks; answers with a marker SDP."""

    calls_: dict[bytes, Call] = field(default_factory=dict)
    log: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    fail: Exception | None = None

    def offer(
        self,
        call_id: bytes,
        from_tag: bytes,
        sdp: bytes,
        *,
        to_family: Family,
        from_source: IPAddress | None,
        options: RelayOptions,
    ) -> bytes:
        args = {
            "call_id": call_id,
            "from_tag": from_tag,
            "sdp": sdp,
            "to_family": to_family,
            "from_source": from_source,
            "options": options,
        }
        self.log.append(("offer", args))
        if self.fail:
            raise self.fail
        self.calls_[call_id] = Call(args)
        return b"offer-sdp:" + to_family.sdp.encode()

    def answer(
        self,
        call_id: bytes,
        from_tag: bytes,
        to_tag: bytes,
        sdp: bytes,
        *,
        to_family: Family,
        from_source: IPAddress | None,
        options: RelayOptions,
    ) -> bytes:
        args = {
            "call_id": call_id,
            "from_tag": from_tag,
            "to_tag": to_tag,
            "sdp": sdp,
            "to_family": to_family,
            "from_source": from_source,
            "options": options,
        }
        self.log.append(("answer", args))
        if call_id not in self.calls_:
            raise RemoteProtocolError("Unknown call-id")
        self.calls_[call_id].answer = args
        return b"answer-sdp:" + to_family.sdp.encode()

    def _report(self, call_id: bytes) -> CallStats:
        call = self.calls_[call_id]
        ft = call.offer["from_tag"]
        gw4, gw6 = IPv4Address("10.64.4.1"), IPv6Address("fd00:64:6::1")
        legs = [
            leg(ft, "rtp", (gw6, 30000), (IPv6Address("fd00::2"), 6000), packets=10, dropped=1),
            leg(ft, "rtcp", (gw6, 30001), (IPv6Address("fd00::2"), 6001), packets=2),
        ]
        tags = [ft]
        if call.answer:
            tags.append(call.answer["to_tag"])
            legs.insert(
                0,
                leg(
                    call.answer["to_tag"],
                    "rtp",
                    (gw4, 30002),
                    (IPv4Address("10.0.0.2"), 7000),
                    packets=5,
                    latched=True,
                ),
            )
        return CallStats(call_id, 100.0, 103.0 if call.answer else None, tuple(tags), tuple(legs))

    def delete(
        self, call_id: bytes, from_tag: bytes | None = None, to_tag: bytes | None = None
    ) -> CallStats | None:
        self.log.append(("delete", {"call_id": call_id, "from_tag": from_tag, "to_tag": to_tag}))
        if call_id not in self.calls_:
            return None
        report = self._report(call_id)
        del self.calls_[call_id]
        return report

    def query(self, call_id: bytes) -> CallStats | None:
        return self._report(call_id) if call_id in self.calls_ else None

    def calls(self) -> list[bytes]:
        return list(self.calls_)


def request(cookie: bytes, body: dict[str, Encodable]) -> bytes:
    return cookie + b" " + encode(body)


def kamailio_offer(**extra: Encodable) -> dict[str, Encodable]:
    """What Kamailio 5.6's rtpengine_offer() sends (captured from the real module)."""
    body: dict[str, Encodable] = {
        "supports": ["load limit"],
        "sdp": SDP6,
        "address-family": "IP4",
        "ICE": "remove",
        "direction": ["internal", "external"],
        "flags": ["trust-address", "symmetric"],
        "replace": ["origin", "session-connection"],
        "SDES": ["off"],
        "call-id": "cid1",
        "received-from": ["IP6", "fd00:64:6::2"],
        "from-tag": "ft1",
        "command": "offer",
    }
    body.update(extra)
    return body


def leg(
    tag: bytes,
    component: str,
    local: tuple[IPAddress, int],
    remote: tuple[IPAddress, int] | None,
    *,
    packets: int = 0,
    dropped: int = 0,
    latched: bool = False,
) -> LegStats:
    """A leg snapshot; 172-byte packets, the last one 2 s after the call was created."""
    return LegStats(
        tag=tag,
        media=0,
        kind="audio",
        component=component,
        local=local,
        remote=remote,
        latched=remote if latched else None,
        mode=LatchMode.ADDRESS,
        held=False,
        packets=packets,
        octets=172 * packets,
        forwarded=packets,
        dropped=dropped,
        last_packet=102.0 if packets else None,
        reception=None,
    )
