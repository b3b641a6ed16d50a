"""``[web]``: the console, REST API and /metrics of ``rtc64 serve``: keys and section."""

from __future__ import annotations

from dataclasses import dataclass, field

from rtc64.config.convert import (
    DetailError,
    Key,
    as_bool,
    as_str,
    int_range,
)
from rtc64.net.address import IPAddress, parse_hostport


def _web_listen(value: object) -> tuple[IPAddress, int]:
    """``[::1]:8064`` or ``127.0.0.1:8064``: an address literal and a port."""
    hp = parse_hostport(as_str(value))
    if isinstance(hp.host, str) or hp.port is None:
        raise ValueError("not ADDRESS:PORT")
    return hp.host, hp.port


def _token(value: object) -> str:
    text = as_str(value)
    if text and (len(text) < 16 or text != text.strip()):
        raise DetailError("a token is at least 16 characters, without surrounding spaces")
    return text


WEB_KEYS: tuple[Key, ...] = (
    Key(
        "web.enabled", True, as_bool, "true or false", "run the web console, REST API and /metrics"
    ),
    Key(
        "web.listen",
        "[::1]:8064",
        _web_listen,
        "ADDRESS:PORT, e.g. [::1]:8064 or 127.0.0.1:8064",
        "where the console, REST API and /metrics listen (loopback unless credentials exist)",
    ),
    Key(
        "web.token",
        "",
        _token,
        "a secret of at least 16 characters (empty: none)",
        "API token (Authorization: Bearer) with full access, for rtc64 ctl and scripts",
    ),
    Key(
        "web.turn_token",
        "",
        _token,
        "a secret of at least 16 characters (empty: none)",
        "token that may only call /api/turn-credentials (for an application server)",
    ),
    Key(
        "web.tls",
        False,
        as_bool,
        "true or false",
        "serve HTTPS (sip.tls_cert/sip.tls_key, else the self-signed certificate)",
    ),
    Key(
        "web.session_lifetime",
        28800,
        int_range(60, 604800),
        "seconds, 60..604800",
        "how long a console login lasts",
    ),
)


@dataclass(frozen=True, slots=True)
class WebSection:
    enabled: bool
    listen: tuple[IPAddress, int]
    token: str = field(repr=False)
    turn_token: str = field(repr=False)
    tls: bool
    session_lifetime: int
