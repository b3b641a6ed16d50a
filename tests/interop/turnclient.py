"""A small synchronous TURN client for interop tests (RFC 8656, RFC 6156, RFC 6062).

It speaks to any TURN server over UDP, TCP or TLS from whatever namespace it runs in:
long-term credentials (401 → realm/nonce → retry, 438 stale nonce → retry) or TURN REST
credentials, Allocate with REQUESTED-ADDRESS-FAMILY / ADDITIONAL-ADDRESS-FAMILY and
REQUESTED-TRANSPORT (UDP or TCP), one CreatePermission or Connect per peer address (so
each address gets its own answer), Send indications echoed back by a peer as Data
indications. Run as a module it executes one JSON job (argv[1]) and prints a JSON result,
so tests start it inside a network namespace with ``ip netns exec``.

The STUN codec is a deliberately separate, minimal implementation (header, XOR addresses,
MESSAGE-INTEGRITY with the long-term key, FINGERPRINT): an interop client must not share
the server's codec, or a codec bug would cancel itself out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import os
import socket
import ssl
import struct
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAGIC_COOKIE = 0x2112A442
BINDING, ALLOCATE, REFRESH, SEND, DATA = 0x001, 0x003, 0x004, 0x006, 0x007
CREATE_PERMISSION, CHANNEL_BIND, CONNECT, CONNECTION_BIND = 0x008, 0x009, 0x00A, 0x00B
REQUEST, INDICATION, SUCCESS, ERROR = 0x000, 0x010, 0x100, 0x110

XOR_MAPPED_ADDRESS, XOR_PEER_ADDRESS, XOR_RELAYED_ADDRESS = 0x0020, 0x0012, 0x0016
USERNAME, MESSAGE_INTEGRITY, ERROR_CODE, REALM, NONCE = 0x0006, 0x0008, 0x0009, 0x0014, 0x0015
LIFETIME, DATA_ATTR, REQUESTED_TRANSPORT = 0x000D, 0x0013, 0x0019
REQUESTED_ADDRESS_FAMILY, ADDITIONAL_ADDRESS_FAMILY = 0x0017, 0x8000
ADDRESS_ERROR_CODE, CONNECTION_ID, FINGERPRINT, SOFTWARE = 0x8001, 0x002A, 0x8028, 0x8022
# coturn 4.6 (and its uclient -Z) still use the draft codepoints of these two attributes.
DRAFT_ADDITIONAL_ADDRESS_FAMILY = 0x8032
FAMILY = {4: 0x01, 6: 0x02}
UDP, TCP = 17, 6


@dataclass(frozen=True, slots=True)
class Message:
    """A decoded STUN message: method, class, transaction id, attributes in wire order."""

    method: int
    cls: int
    tid: bytes
    attrs: tuple[tuple[int, bytes], ...]

    def get(self, kind: int) -> bytes | None:
        return next((value for t, value in self.attrs if t == kind), None)

    def all(self, kind: int) -> list[bytes]:
        return [value for t, value in self.attrs if t == kind]

    @property
    def code(self) -> int:
        """0 for a success, the ERROR-CODE number otherwise."""
        value = self.get(ERROR_CODE)
        if self.cls != ERROR or value is None:
            return 0
        return (value[2] & 0x7) * 100 + value[3]


def _attr(kind: int, value: bytes) -> bytes:
    return struct.pack("!HH", kind, len(value)) + value + b"\0" * (-len(value) % 4)


def xor_address(ip: IPAddress, port: int, tid: bytes) -> bytes:
    """XOR-*-ADDRESS value (RFC 8489 §14.2)."""
    cookie = struct.pack("!I", MAGIC_COOKIE)
    mask = cookie if ip.version == 4 else cookie + tid
    raw = bytes(a ^ b for a, b in zip(ip.packed, mask, strict=True))
    return struct.pack("!BBH", 0, FAMILY[ip.version], port ^ (MAGIC_COOKIE >> 16)) + raw


def parse_xor_address(value: bytes, tid: bytes) -> tuple[IPAddress, int]:
    family, port = value[1], struct.unpack_from("!H", value, 2)[0] ^ (MAGIC_COOKIE >> 16)
    mask = struct.pack("!I", MAGIC_COOKIE) + (tid if family == 2 else b"")
    raw = bytes(a ^ b for a, b in zip(value[4:], mask, strict=False))
    return ipaddress.ip_address(raw), port


def encode(
    method: int,
    cls: int,
    tid: bytes,
    attrs: list[tuple[int, bytes]],
    key: bytes | None = None,
) -> bytes:
    """A STUN message, with MESSAGE-INTEGRITY (when ``key``) and FINGERPRINT."""
    body = b"".join(_attr(t, v) for t, v in attrs)
    kind = (method & 0xF) | ((method & 0x70) << 1) | ((method & 0xF80) << 2) | cls

    def header(length: int) -> bytes:
        return struct.pack("!HHI", kind, length, MAGIC_COOKIE) + tid

    if key is not None:
        mac = hmac.new(key, header(len(body) + 24) + body, hashlib.sha1).digest()
        body += _attr(MESSAGE_INTEGRITY, mac)
    crc = zlib.crc32(header(len(body) + 8) + body) ^ 0x5354554E
    body += _attr(FINGERPRINT, struct.pack("!I", crc))
    return header(len(body)) + body


def decode(data: bytes) -> Message:
    kind, length, cookie = struct.unpack_from("!HHI", data)
    if cookie != MAGIC_COOKIE or len(data) < 20 + length:
        raise ValueError(f"not a STUN message: {data[:20].hex()}")
    method = (kind & 0xF) | ((kind >> 1) & 0x70) | ((kind >> 2) & 0xF80)
    attrs: list[tuple[int, bytes]] = []
    pos = 20
    while pos + 4 <= 20 + length:
        t, n = struct.unpack_from("!HH", data, pos)
        attrs.append((t, data[pos + 4 : pos + 4 + n]))
        pos += 4 + n + (-n % 4)
    return Message(method, kind & 0x110, data[8:20], tuple(attrs))


def rest_credentials(secret: str, user: str, ttl: int = 3600) -> tuple[str, str]:
    """TURN REST credentials (coturn's use-auth-secret): ``expiry:user``, base64 HMAC-SHA1."""
    username = f"{int(time.time()) + ttl}:{user}"
    mac = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(mac).decode()


class Link:
    """One client transport: UDP (retransmits requests), TCP or TLS (stream framing)."""

    def __init__(self, transport: str, server: tuple[str, int], timeout: float = 3.0) -> None:
        self.transport = transport
        family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
        kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
        sock = socket.socket(family, kind)
        sock.settimeout(timeout)
        sock.connect(server)
        if transport == "tls":
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            sock = ctx.wrap_socket(sock)
        self.sock = sock
        self.buffer = b""
        self.pending: list[Message] = []

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def receive(self) -> Message | None:
        """The next STUN message (ChannelData is skipped); None on timeout or close."""
        while True:
            if self.transport == "udp":
                try:
                    data = self.sock.recv(65536)
                except TimeoutError:
                    return None
            else:
                frame = self._frame()
                if frame is None:
                    return None
                data = frame
            if data and data[0] < 0x40:
                return decode(data)

    def _frame(self) -> bytes | None:
        while True:
            if len(self.buffer) >= 4:
                channel = self.buffer[0] >= 0x40
                length = struct.unpack_from("!H", self.buffer, 2)[0]
                size = 4 + length + (-length % 4) if channel else 20 + length
                if len(self.buffer) >= size:
                    frame, self.buffer = self.buffer[:size], self.buffer[size:]
                    return frame
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                return None
            if not chunk:
                return None
            self.buffer += chunk

    def close(self) -> None:
        self.sock.close()


@dataclass
class Client:
    """A TURN client on one ``Link`` with long-term credentials."""

    link: Link
    username: str
    password: str
    realm: str = ""
    nonce: bytes = b""
    key: bytes | None = None
    software: bytes = b"rtc64-interop-client"
    indications: list[Message] = field(default_factory=list)

    def request(
        self,
        method: int,
        attrs: list[tuple[int, bytes]],
        peer: tuple[IPAddress, int] | None = None,
    ) -> Message:
        """Send an authenticated request (challenge answered), return the final response;
        ``peer`` becomes an XOR-PEER-ADDRESS (its value depends on the transaction id)."""
        for _ in range(4):
            tid = os.urandom(12)
            extra = [(SOFTWARE, self.software)]
            if peer is not None:
                extra.insert(0, (XOR_PEER_ADDRESS, xor_address(*peer, tid)))
            if self.key is not None:
                extra += [(USERNAME, self.username.encode()), (REALM, self.realm.encode())]
                extra += [(NONCE, self.nonce)]
            data = encode(method, REQUEST, tid, attrs + extra, self.key)
            response = self._transact(tid, data)
            if response.code in (401, 438) and response.get(NONCE) is not None:
                stale = response.code == 438 or self.key is None
                self.nonce = response.get(NONCE) or b""
                self.realm = (response.get(REALM) or b"").decode()
                text = f"{self.username}:{self.realm}:{self.password}"
                self.key = hashlib.md5(text.encode()).digest()  # RFC 8489 long-term key
                if stale:
                    continue
            return response
        raise RuntimeError(f"no answer but challenges for method {method:#x}")

    def _transact(self, tid: bytes, data: bytes) -> Message:
        tries = 6 if self.link.transport == "udp" else 1
        for _ in range(tries):
            self.link.send(data)
            while True:
                message = self.link.receive()
                if message is None:
                    break
                if message.cls == INDICATION:
                    self.indications.append(message)
                elif message.tid == tid:
                    return message
        raise TimeoutError(f"no response to transaction {tid.hex()}")

    def allocate(
        self,
        *,
        transport: int = UDP,
        family: int | None = None,
        additional: bool = False,
        additional_type: int = ADDITIONAL_ADDRESS_FAMILY,
        lifetime: int = 600,
    ) -> Message:
        attrs = [(REQUESTED_TRANSPORT, bytes([transport, 0, 0, 0]))]
        attrs.append((LIFETIME, struct.pack("!I", lifetime)))
        if family is not None:
            attrs.append((REQUESTED_ADDRESS_FAMILY, bytes([FAMILY[family], 0, 0, 0])))
        if additional:
            attrs.append((additional_type, bytes([FAMILY[6], 0, 0, 0])))
        return self.request(ALLOCATE, attrs)

    def create_permission(self, peer: IPAddress, port: int = 3480) -> Message:
        return self.request(CREATE_PERMISSION, [], (peer, port))

    def connect(self, peer: IPAddress, port: int) -> Message:
        return self.request(CONNECT, [], (peer, port))

    def refresh(self, lifetime: int) -> Message:
        return self.request(REFRESH, [(LIFETIME, struct.pack("!I", lifetime))])

    def send_indication(self, peer: IPAddress, port: int, payload: bytes) -> None:
        tid = os.urandom(12)
        attrs = [(XOR_PEER_ADDRESS, xor_address(peer, port, tid)), (DATA_ATTR, payload)]
        self.link.send(encode(SEND, INDICATION, tid, attrs))

    def data_indications(self, wait: float) -> list[tuple[IPAddress, int, bytes]]:
        """Data indications received so far and within ``wait`` seconds: (peer, port, data)."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            message = self.link.receive()
            if message is not None and message.cls == INDICATION:
                self.indications.append(message)
        out = []
        for message in self.indications:
            if message.method == DATA and message.get(XOR_PEER_ADDRESS) is not None:
                ip, port = parse_xor_address(message.get(XOR_PEER_ADDRESS) or b"", message.tid)
                out.append((ip, port, message.get(DATA_ATTR) or b""))
        self.indications.clear()
        return out


def relayed(response: Message) -> list[tuple[IPAddress, int]]:
    return [parse_xor_address(v, response.tid) for v in response.all(XOR_RELAYED_ADDRESS)]


def _code(request: Callable[[IPAddress, int], Message], peer: IPAddress, port: int) -> int:
    """The request's answer as a number: 0 success, the error code, -1 no answer."""
    try:
        return request(peer, port).code
    except TimeoutError:
        return -1


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Execute one JSON job; see the module docstring and the tests for the keys."""
    server = (job["server"][0], int(job["server"][1]))
    username, password = job.get("username", ""), job.get("password", "")
    if job.get("secret"):
        username, password = rest_credentials(job["secret"], job.get("user", "alice"))
    link = Link(job.get("transport", "udp"), server)
    client = Client(link, username, password)
    result: dict[str, Any] = {}
    try:
        alloc = job.get("allocate", {})
        response = client.allocate(
            transport=int(alloc.get("transport", UDP)),
            family=alloc.get("family"),
            additional=bool(alloc.get("additional", False)),
            additional_type=int(alloc.get("additional_type", ADDITIONAL_ADDRESS_FAMILY)),
        )
        result["allocate"] = response.code
        result["relayed"] = [[str(ip), port] for ip, port in relayed(response)]
        err = response.get(ADDRESS_ERROR_CODE)
        result["address_error"] = (err[2] & 7) * 100 + err[3] if err else 0
        if response.code:
            return result
        result["permissions"] = {
            peer: _code(client.create_permission, ipaddress.ip_address(peer), 3480)
            for peer in job.get("permissions", [])
        }
        result["connects"] = {
            peer: _code(client.connect, ipaddress.ip_address(peer), int(port))
            for peer, port in job.get("connects", [])
        }
        echoes: dict[str, int] = {}
        for peer, port, count in job.get("echo", []):
            ip = ipaddress.ip_address(peer)
            if client.create_permission(ip, port).code:
                echoes[peer] = -1
                continue
            sent = [os.urandom(8).hex().encode() for _ in range(count)]
            for payload in sent:
                client.send_indication(ip, port, payload)
                time.sleep(0.01)
            got = client.data_indications(1.0)
            echoes[peer] = sum(1 for src, _, data in got if src == ip and data in sent)
        result["echo"] = echoes
        result["refresh0"] = client.refresh(0).code
    finally:
        link.close()
    return result


def main() -> None:
    """One job (a JSON object) or several in a row (a JSON list) from argv[1]."""
    job = json.loads(sys.argv[1])
    out = [run_job(j) for j in job] if isinstance(job, list) else run_job(job)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
