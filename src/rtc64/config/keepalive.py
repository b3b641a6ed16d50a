"""``[keepalive]``: keepalives toward every registered contact (RFC 5626 CRLF/STUN over
flows, SIP OPTIONS otherwise): its keys and typed section."""

from __future__ import annotations

from dataclasses import dataclass

from rtc64.config.convert import (
    Key,
    as_bool,
    float_range,
    int_range,
)


def _payload(value: object) -> bytes:
    if not isinstance(value, str):
        raise TypeError
    if value.lower() == "crlf":
        return b"\r\n\r\n"
    if not value.lower().startswith("hex:"):
        raise ValueError
    data = bytes.fromhex(value[4:])
    if not 1 <= len(data) <= 512:
        raise ValueError
    return data


KEEPALIVE_KEYS: tuple[Key, ...] = (
    Key(
        "keepalive.enabled",
        True,
        as_bool,
        "true or false",
        "keep every registered contact's path open (pinhole keepalives, OPTIONS)",
    ),
    Key(
        "keepalive.interval",
        25.0,
        float_range(0.05, 3600.0),
        "seconds, 0.05..3600",
        "at most this long between pinhole keepalives to each registered contact",
    ),
    Key(
        "keepalive.options_interval",
        120.0,
        float_range(0.0, 86400.0),
        "seconds, 0..86400 (0: no OPTIONS)",
        "how often each registered contact gets an OPTIONS liveness check",
    ),
    Key(
        "keepalive.max_failures",
        3,
        int_range(1, 1000),
        "an integer 1..1000",
        "OPTIONS left unanswered in a row before a contact is unreachable and removed",
    ),
    Key(
        "keepalive.payload",
        "crlf",
        _payload,
        "crlf (CRLF CRLF) or hex:HEX (1..512 bytes, e.g. hex:0d0a0d0a)",
        "the UDP pinhole keepalive datagram",
    ),
    Key("turn.enabled", True, as_bool, "true or false", "run the TURN server in rtc64 serve"),
)


@dataclass(frozen=True, slots=True)
class KeepaliveSection:
    enabled: bool
    interval: float
    options_interval: float
    max_failures: int
    payload: bytes
