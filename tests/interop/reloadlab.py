"""What the reload tests share: SIPp calls with G.711 both ways from the IPv6-only host to
the IPv4-only host through the gateway, their relay ports and packets in the API, and
waits on the gateway's log."""

from __future__ import annotations

import time
from pathlib import Path

from tests.interop.lab import V4_HOST, V6_GW, V6_HOST, Lab
from tests.interop.peers import Gateway, Sipp, media_dirs, wait_port

GW6 = f"[{V6_GW}]:5060"


def media_call(
    net: Lab, work: Path, name: str, port: int, hold_ms: int, remote: str = GW6
) -> tuple[Sipp, Sipp]:
    """A call with G.711 both ways from the IPv6 host to the IPv4 host through ``remote``
    (SIPp's media ports from 6000 up, 100 apart per call: SIPp binds several from the one
    given); returns (caller, callee)."""
    media = 6000 + (port - 5060) * 50
    uas_dir, uac_dir = media_dirs(work, name)
    callee = Sipp(
        net.v4, uas_dir, f"{name}-uas", "uas_media.xml", local=str(V4_HOST), port=port,
        extra=["-mp", str(media)],
    )  # fmt: skip
    wait_port(net.v4, "udp", port)
    caller = Sipp(
        net.v6, uac_dir, f"{name}-uac", "web_uac_call.xml", local=str(V6_HOST), port=port,
        remote=remote, keys={"target": f"{V4_HOST}:{port}"},
        extra=["-s", "callee", "-d", str(hold_ms), "-mp", str(media + 1000)],
    )  # fmt: skip
    return caller, callee


def relay_ports(call: dict[str, object]) -> set[int]:
    """The relay's RTP ports of a call in ``/api/calls``."""
    legs = call["legs"]
    assert isinstance(legs, list)
    return {s["relay_port"] for leg in legs for s in leg["streams"] if s["component"] == "rtp"}


def packets_of(body: dict[str, list[dict[str, int]]], call_id: object) -> int:
    return sum(c["packets"] for c in body["calls"] if c["call_id"] == call_id)


def wait_log(gw: Gateway, text: str, timeout: float = 20.0, count: int = 1) -> str:
    """The gateway's log once ``text`` is in it ``count`` times."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = gw.text()
        if log.count(text) >= count:
            return log
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not {count}x in the gateway log:\n{gw.text()[-6000:]}")
