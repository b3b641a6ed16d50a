"""A small synchronous TURN client for interop tests (RFC 8656, RFC 6156, RFC 6062).

It speaks to any TURN server over UDP, TCP or TLS from whatever namespace it runs in:
long-term credentials (401 → realm/nonce → retry, 438 stale nonce → retry) or TURN REST
credentials, Allocate with REQUESTED-ADDRESS-FAMILY / ADDITIONAL-ADDRESS-FAMILY and
REQUESTED-TRANSPORT (UDP or TCP), one CreatePermission or Connect per peer address (so
each address gets its own answer), Send indications echoed back by a peer as Data
indications. Run as a module it executes one JSON job (argv[1]) and prints a JSON result,
so tests start it inside a network namespace with ``ip netns exec``.

Messages are built and read with ``rtc64.stun`` (the project's codec); coturn's clients and
Chromium, in the other interop tests, are the independent implementations on the wire.
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
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rtc64.net.address import Family
from rtc64.stun import attributes as at
from rtc64.stun.channeldata import frame_length
from rtc64.stun.integrity import long_term_key
from rtc64.stun.message import Class, Message, Method, build, decode, encode

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
FAMILY = {4: Family.INET, 6: Family.INET6}
UDP, TCP = 17, 6
ADDITIONAL_ADDRESS_FAMILY = at.ADDITIONAL_ADDRESS_FAMILY.type
# coturn 4.6 (and its uclient -Z) still use the draft's codepoint for this attribute.
DRAFT_ADDITIONAL_ADDRESS_FAMILY = 0x8032
SOFTWARE = "rtc64-interop-client"


def code_of(message: Message) -> int:
    """0 for a success, the ERROR-CODE number otherwise."""
    if message.cls != Class.ERROR:
        return 0
    error = message.error()
    return error[0] if error else 400


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
            size = frame_length(self.buffer) if self.buffer else None
            if size is not None and len(self.buffer) >= size:
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
    nonce: str = ""
    key: bytes | None = None
    indications: list[Message] = field(default_factory=list)

    def request(
        self,
        method: int,
        fields: list[at.Field | tuple[int, bytes]],
        peer: tuple[IPAddress, int] | None = None,
    ) -> Message:
        """Send an authenticated request (challenge answered), return the final response;
        ``peer`` becomes the XOR-PEER-ADDRESS."""
        for _ in range(4):
            tid = os.urandom(12)
            extra: list[at.Field | tuple[int, bytes]] = [at.SOFTWARE(SOFTWARE)]
            if peer is not None:
                extra.insert(0, at.XOR_PEER_ADDRESS(peer))
            if self.key is not None:
                extra += [at.USERNAME(self.username), at.REALM(self.realm), at.NONCE(self.nonce)]
            message = build(method, Class.REQUEST, tid, *fields, *extra)
            response = self._transact(tid, encode(message, key=self.key, fingerprint=True))
            code = code_of(response)
            if code in (401, 438) and response.get(at.NONCE) is not None:
                retry = code == 438 or self.key is None
                self.nonce = response.get(at.NONCE) or ""
                self.realm = response.get(at.REALM) or self.realm
                self.key = long_term_key(self.username, self.realm, self.password)
                if retry:
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
                if message.cls == Class.INDICATION:
                    self.indications.append(message)
                elif message.transaction_id == tid:
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
        fields: list[at.Field | tuple[int, bytes]] = [
            at.REQUESTED_TRANSPORT(transport),
            at.LIFETIME(lifetime),
        ]
        if family is not None:
            fields.append(at.REQUESTED_ADDRESS_FAMILY(FAMILY[family]))
        if additional:  # raw, so the draft codepoint can be sent to coturn
            fields.append((additional_type, bytes([0x02, 0, 0, 0])))
        return self.request(Method.ALLOCATE, fields)

    def create_permission(self, peer: IPAddress, port: int = 3480) -> Message:
        return self.request(Method.CREATE_PERMISSION, [], (peer, port))

    def connect(self, peer: IPAddress, port: int) -> Message:
        return self.request(Method.CONNECT, [], (peer, port))

    def refresh(self, lifetime: int) -> Message:
        return self.request(Method.REFRESH, [at.LIFETIME(lifetime)])

    def send_indication(self, peer: IPAddress, port: int, payload: bytes) -> None:
        tid = os.urandom(12)
        fields = (at.XOR_PEER_ADDRESS((peer, port)), at.DATA(payload))
        self.link.send(encode(build(Method.SEND, Class.INDICATION, tid, *fields)))

    def echoes(self, peer: IPAddress, payloads: list[bytes], wait: float) -> int:
        """How many of ``payloads`` came back from ``peer`` as Data indications, waiting
        until all did or ``wait`` seconds passed (a bound, not a measurement)."""
        missing = set(payloads)
        deadline = time.monotonic() + wait
        pending, self.indications = self.indications, []
        while missing and time.monotonic() < deadline:
            message = pending.pop(0) if pending else self.link.receive()
            if message is None or message.cls != Class.INDICATION:
                continue
            source = message.get(at.XOR_PEER_ADDRESS)
            data: bytes = message.get(at.DATA) or b""
            if message.method == Method.DATA and source is not None and source[0] == peer:
                missing.discard(data)
        return len(payloads) - len(missing)


def relayed(response: Message) -> list[tuple[IPAddress, int]]:
    return response.get_all(at.XOR_RELAYED_ADDRESS)


def _code(request: Callable[[IPAddress, int], Message], peer: IPAddress, port: int) -> int:
    """The request's answer as a number: 0 success, the error code, -1 no answer."""
    try:
        return code_of(request(peer, port))
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
        result["allocate"] = code_of(response)
        result["relayed"] = [[str(ip), port] for ip, port in relayed(response)]
        address_error = response.get(at.ADDRESS_ERROR_CODE)
        result["address_error"] = address_error[1] if address_error else 0
        if result["allocate"]:
            return result
        result["permissions"] = {
            peer: _code(client.create_permission, ipaddress.ip_address(peer), 3480)
            for peer in job.get("permissions", [])
        }
        connects: dict[str, int] = {}
        for peer, port in job.get("connects", []):
            # as clients do (uclient -T): a permission first, whatever its answer, then Connect
            _code(client.create_permission, ipaddress.ip_address(peer), int(port))
            connects[peer] = _code(client.connect, ipaddress.ip_address(peer), int(port))
        result["connects"] = connects
        echoes: dict[str, int] = {}
        for peer, port, count in job.get("echo", []):
            ip = ipaddress.ip_address(peer)
            if code_of(client.create_permission(ip, port)):
                echoes[peer] = -1
                continue
            sent = [os.urandom(8).hex().encode() for _ in range(count)]
            for payload in sent:
                client.send_indication(ip, port, payload)
                time.sleep(0.01)
            echoes[peer] = client.echoes(ip, sent, float(job.get("echo_wait", 10.0)))
        result["echo"] = echoes
        result["refresh0"] = code_of(client.refresh(0))
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
