# ``rtc64 ctl``: talk to a running gateway over its local REST API (``web.listen``), the
# way ``kamcmd ul.dump`` and ``rtpengine-ctl list`` do for Kamailio and rtpengine.
#
# Rules: the API's URL and token come from the configuration (``web.listen``, ``web.tls``,
# ``web.token``) unless ``--url``/``RTC64_TOKEN`` say otherwise; without a token the
# console must be open (loopback, no credentials) and POSTs carry its CSRF token. Every
# command has ``--json`` (the API's body as is); errors are one line, exit 1 (gateway said
# no, or unreachable) or 2 (usage).
"""The ``rtc64 ctl`` client (standard library only: urllib)."""

from __future__ import annotations

import json
import os
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from ipaddress import ip_address
from typing import Any

from rtc64.net.address import IPAddress, format_hostport

TIMEOUT = 10.0
Json = dict[str, Any]


class CtlError(Exception):
    """The gateway answered an error, or could not be reached."""


@dataclass(frozen=True, slots=True)
class Api:
    url: str
    token: str | None

    def _context(self) -> ssl.SSLContext | None:
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme != "https":
            return None
        context = ssl.create_default_context()
        try:
            loopback = ip_address((parts.hostname or "").strip("[]")).is_loopback
        except ValueError:
            loopback = parts.hostname == "localhost"
        if loopback:  # the gateway's own self-signed certificate, on this host
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def call(self, method: str, path: str, body: Json | None = None) -> Json:
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        elif method != "GET":
            headers["X-CSRF-Token"] = str(self.call("GET", "/api/session").get("csrf") or "")
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if urllib.parse.urlsplit(self.url).scheme not in ("http", "https"):
            raise CtlError(f"--url {self.url!r}: expected http://HOST:PORT or https://HOST:PORT")
        request = urllib.request.Request(  # noqa: S310 - scheme checked above
            self.url.rstrip("/") + path, data=data, headers=headers, method=method
        )
        try:
            with urllib.request.urlopen(  # noqa: S310 - the URL is the operator's
                request, timeout=TIMEOUT, context=self._context()
            ) as response:
                answer: Json = json.loads(response.read())
                return answer
        except urllib.error.HTTPError as exc:
            try:
                reason = json.loads(exc.read()).get("error", exc.reason)
            except ValueError:
                reason = exc.reason
            raise CtlError(f"{self.url}{path}: {exc.code} {reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            why = getattr(exc, "reason", exc)
            raise CtlError(f"cannot reach the gateway at {self.url}: {why}") from None


def default_url(listen: tuple[IPAddress, int], tls: bool) -> str:
    address, port = listen
    if address.is_unspecified:
        address = ip_address("::1") if address.version == 6 else ip_address("127.0.0.1")
    return f"{'https' if tls else 'http'}://{format_hostport(address, port)}"


# --- text output --------------------------------------------------------------------------


def _table(rows: list[list[str]], head: list[str]) -> str:
    if not rows:
        return "(none)"
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in [head, *rows]
    ]
    return "\n".join(line.rstrip() for line in lines)


def _utc(wall: float) -> str:
    """A wall-clock time as ISO 8601 UTC to the second."""
    return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def show_registrations(body: Json) -> str:
    rows = []
    for aor in body["aors"]:
        for c in aor["contacts"]:
            rtt = "-" if c["rtt_ms"] is None else f"{c['rtt_ms']} ms"
            last = c.get("last_keepalive")
            rows.append(
                [
                    aor["aor"],
                    c["contact"],
                    c["family"],
                    c["transport"],
                    c["received"] or "-",
                    f"{c['expires_in']} s",
                    c.get("keepalive") or "-",
                    "-" if last is None else _utc(last),
                    rtt,
                ]
            )
    head = ["AOR", "CONTACT", "FAMILY", "TRANSPORT", "RECEIVED", "EXPIRES", "KEEPALIVE",
            "LAST-KEEPALIVE", "RTT"]  # fmt: skip
    return _table(rows, head)


def _party(party: Json | None) -> str:
    if not party:
        return "-"
    return " ".join(x for x in (party["family"], party.get("transport"), party.get("address")) if x)


def show_calls(body: Json) -> str:
    rows = [
        [
            c["call_id"],
            c.get("state") or ("confirmed" if c["answered"] else "early"),
            f"{c['age']:.0f} s",
            " -> ".join(c["families"]),
            _party(c.get("caller")),
            _party(c.get("callee")),
            "yes" if c.get("relayed", True) else "no",
            str(c["packets"]),
        ]
        for c in body["calls"]
    ]
    head = ["CALL-ID", "STATE", "AGE", "FAMILIES", "CALLER", "CALLEE", "RELAYED", "PACKETS"]
    return _table(rows, head)


def show_relay(body: Json) -> str:
    rows = []
    for c in body["calls"]:
        for leg in c["legs"]:
            for s in leg["streams"]:
                rows.append(
                    [
                        c["call_id"],
                        leg["tag"],
                        f"{s['kind']}/{s['component']}",
                        f"{s['relay_address']}:{s['relay_port']}"
                        if s["family"] == "IPv4"
                        else f"[{s['relay_address']}]:{s['relay_port']}",
                        s["latched"] or s["remote"] or "-",
                        str(s["packets"]),
                        str(s["lost"]),
                        f"{s['jitter_ms']}",
                    ]
                )
    head = ["CALL-ID", "TAG", "STREAM", "RELAY", "PEER", "PACKETS", "LOST", "JITTER-MS"]
    return _table(rows, head)


def show_turn(body: Json) -> str:
    if not body["enabled"]:
        return "TURN is not running"
    rows = [
        [
            f"{a['client']['transport']} {a['client']['address']}",
            a["username"],
            ", ".join(r["address"] for r in a["relays"]),
            ", ".join(a["peers"]) or "-",
            f"{a['to_peer_bytes']}/{a['from_peer_bytes']}",
            f"{a['expires_in']:.0f} s",
        ]
        for a in body["allocations"]
    ]
    return _table(rows, ["CLIENT", "USER", "RELAYED", "PEERS", "BYTES-OUT/IN", "EXPIRES"])


def show_tunnel(body: Json) -> str:
    if not body["enabled"]:
        return "the tunnel is not running"
    head = f"{body['listen']} {body['prefix']} {body['backend']} ({body['device']})"
    rows = [
        [direction, str(body[direction]["packets"]), str(body[direction]["bytes"])]
        for direction in ("upstream", "downstream")
    ]
    signalling = body["signalling"]
    rows.append(["signalling", str(signalling["datagrams"]), "-"])
    rows.append(["tunnels created", str(signalling["tunnels_created"]), "-"])
    rows += [[f"dropped: {k}", str(v), "-"] for k, v in body["dropped"].items()]
    return head + "\n" + _table(rows, ["WHAT", "PACKETS", "BYTES"])


@dataclass(frozen=True, slots=True)
class Command:
    method: str
    path: str
    body: Json | None
    show: Callable[[Json], str]
    ok: Callable[[Json], bool] = lambda _: True


def command(name: str, arg: str | None) -> Command:
    """The request and the text rendering of one ctl command."""
    if name == "registrations":
        query = "" if not arg else "?" + urllib.parse.urlencode({"aor": arg})
        return Command("GET", f"/api/registrations{query}", None, show_registrations)
    if name == "calls":
        return Command("GET", "/api/calls", None, show_calls)
    if name == "relay":
        return Command("GET", "/api/calls", None, show_relay)
    if name == "turn":
        return Command("GET", "/api/turn", None, show_turn)
    if name == "tunnel":
        return Command("GET", "/api/tunnel", None, show_tunnel)
    if name == "unblock":
        return Command(
            "POST",
            "/api/blocks/unblock",
            {"target": arg or ""},
            lambda b: f"{b['target']}: {b['lifted']} block(s) lifted",
            lambda b: bool(b["lifted"]),
        )
    if name == "reload":
        return Command("POST", "/api/reload", None, lambda _: "reload requested")
    raise CtlError(f"unknown ctl command {name!r}")


def run(api: Api, name: str, arg: str | None, *, as_json: bool) -> int:
    """Run one command; 0 on success, 1 when the gateway refused or nothing matched."""
    cmd = command(name, arg)
    body = api.call(cmd.method, cmd.path, cmd.body)
    print(json.dumps(body, indent=2) if as_json else cmd.show(body))
    return 0 if cmd.ok(body) else 1


def token_from_env() -> str | None:
    return os.environ.get("RTC64_TOKEN") or None


def fail(message: str) -> int:
    print(f"rtc64 ctl: {message}", file=sys.stderr)
    return 1
