"""Web probe logic without I/O: the HTTP request, reading answers, hosts a page reveals.

Rules (RFC 9110/9112 for HTTP, RFC 6455 §4 WebSocket handshake, RFC 7064/7065 URIs):

- Requests are HTTP/1.0-style GETs with ``Host`` and ``Connection: close`` so the answer
  is never chunked and ends with the connection; bodies are read up to ``MAX_BODY``.
- Hosts a client needs: every redirect's ``Location`` host, and in the page every
  ``ws://``/``wss://`` URL (signalling), every ``turn:``/``turns:``/``stun:`` URI (media) and
  every ``http(s)://`` URL host (web), at most ``MAX_HOSTS``.
- Content parity: same final status over both families and bodies of similar size
  (within 10 %, pages embed per-request tokens, so equality is too strict).
"""

from __future__ import annotations

import base64
import re
import secrets
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from rtc64.probe.verdict import Aspect

MAX_BODY = 512 * 1024
MAX_HOSTS = 20
USER_AGENT = "rtc64-probe"
_URL = re.compile(r"""(?:wss?|https?)://[^\s"'<>`\\)]+""", re.I)
_ICE = re.compile(r"""\b(?:turns?|stuns?):[A-Za-z0-9.\-\[\]:]+(?:\?transport=(?:udp|tcp))?""")


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        lname = name.lower()
        return next((v for k, v in self.headers if k.lower() == lname), None)


def request(url: str, *, websocket: bool = False) -> tuple[bytes, str]:
    """The GET (or WebSocket upgrade) for ``url``; with the Sec-WebSocket-Key it sent."""
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.netloc.rpartition("@")[2]
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", f"User-Agent: {USER_AGENT}", "Accept: */*"]
    key = ""
    if websocket:
        key = base64.b64encode(secrets.token_bytes(16)).decode()
        lines += [
            "Connection: Upgrade",
            "Upgrade: websocket",
            "Sec-WebSocket-Version: 13",
            f"Sec-WebSocket-Key: {key}",
        ]
    else:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode(), key


def head_length(buffer: bytes) -> int | None:
    """A WebSocket handshake answer ends with its header section."""
    end = buffer.find(b"\r\n\r\n")
    return end + 4 if end >= 0 else None


def read_answer(raw: bytes) -> HttpAnswer | None:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/\d(?:\.\d)? (\d{3})", lines[0]) if lines else None
    if m is None:
        return None
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers.append((name.strip(), value.strip()))
    answer = HttpAnswer(int(m.group(1)), tuple(headers), body)
    if (answer.header("transfer-encoding") or "").lower() == "chunked":
        return HttpAnswer(answer.status, answer.headers, dechunk(body))
    return answer


def dechunk(body: bytes) -> bytes:
    out, pos = bytearray(), 0
    while True:
        end = body.find(b"\r\n", pos)
        if end < 0:
            return bytes(out)
        try:
            size = int(body[pos:end].split(b";")[0], 16)
        except ValueError:
            return bytes(out)
        if size == 0:
            return bytes(out)
        out += body[end + 2 : end + 2 + size]
        pos = end + 2 + size + 2


def redirect_target(base: str, answer: HttpAnswer) -> str | None:
    if answer.status in (301, 302, 303, 307, 308):
        location = answer.header("location")
        if location:
            return urljoin(base, location)
    return None


@dataclass(frozen=True, slots=True)
class Needed:
    """A host a client needs, where it was found and for what."""

    host: str
    aspect: Aspect
    found: str
    url: str


def host_of(url: str) -> str:
    if re.match(r"(?i)(turns?|stuns?):", url):
        rest = url.split(":", 1)[1].split("?", 1)[0]
        if rest.startswith("["):
            return rest[1 : rest.find("]")]
        return rest.rsplit(":", 1)[0] if rest.count(":") == 1 else rest
    return (urlsplit(url).hostname or "").lower()


def revealed(body: bytes, page: str) -> list[Needed]:
    """Hosts the page names: WebSocket endpoints, ICE servers, other web hosts."""
    text = body[:MAX_BODY].decode("utf-8", "replace")
    found: dict[str, Needed] = {}
    for m in _URL.finditer(text):
        url = m.group(0).rstrip(".,;")
        scheme = url.split(":", 1)[0].lower()
        aspect = Aspect.SIGNALLING if scheme in ("ws", "wss") else Aspect.WEB
        host = host_of(url)
        if host and (host, aspect) not in {(n.host, n.aspect) for n in found.values()}:
            found.setdefault(url, Needed(host, aspect, f"named in {page}", url))
    for m in _ICE.finditer(text):
        url = m.group(0)
        host = host_of(url)
        if host:
            found.setdefault(url, Needed(host, Aspect.MEDIA, f"ICE server in {page}", url))
    return list(found.values())[:MAX_HOSTS]


def similar(a: HttpAnswer, b: HttpAnswer) -> bool:
    if a.status != b.status:
        return False
    la, lb = len(a.body), len(b.body)
    return abs(la - lb) <= max(la, lb) * 0.1
